package natsstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/store"
)

// Keys of the migration markers.
const (
	keyMigrating = "migration.running"
	keyMigrated  = "migration.done"
)

// Migration is what Migrate copied (or, Already, found copied before).
type Migration struct {
	From      string    `json:"from"` // the bolt file
	At        time.Time `json:"at"`
	Already   bool      `json:"-"`
	Exports   int       `json:"exports"`
	Queued    int       `json:"queued"`
	Dead      int       `json:"dead_letters"`
	Meta      int       `json:"meta"`
	SinkNames []string  `json:"sinks"`
}

// ErrNotEmpty is wrapped by Migrate's error when the JetStream store already holds the
// state of a bridge that ran with STORE=nats.
var ErrNotEmpty = errors.New("JetStream store not empty")

// Migrate copies a bolt store into s once: every sink's queued events (same ids and
// bodies, in order, with their attempt state), dead letters, metadata (Slack message
// ids) and destination, then the snapshot and the last poll facts (events first, as in
// a cycle). A second run finds the marker and copies nothing (Already). A run that
// stopped half-way is resumed: the events it had copied carry the same Nats-Msg-Id and
// are dropped as duplicates within the duplicate window. progress, when set, is called
// after each sink.
func Migrate(from *store.Store, s *Store, progress func(sink string, queued, dead int)) (Migration, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	if e, err := s.kv.Get(ctx, keyMigrated); err == nil {
		var m Migration
		if err := json.Unmarshal(e.Value(), &m); err != nil {
			return Migration{}, fmt.Errorf("migrate: read marker %s: %w", keyMigrated, err)
		}
		m.Already = true
		return m, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return Migration{}, fmt.Errorf("migrate: read marker %s: %w", keyMigrated, err)
	}
	resuming, err := s.has(ctx, keyMigrating)
	if err != nil {
		return Migration{}, fmt.Errorf("migrate: %w", err)
	}
	if init, err := s.has(ctx, s.initKey()); err != nil {
		return Migration{}, fmt.Errorf("migrate: %w", err)
	} else if init && !resuming {
		return Migration{}, fmt.Errorf("migrate: the JetStream store already holds a snapshot (a bridge ran with STORE=nats): copying %s into it would mix two states; nothing copied: %w", from.Path(), ErrNotEmpty)
	}
	if _, err := s.kv.Put(ctx, keyMigrating, []byte(from.Path())); err != nil {
		return Migration{}, fmt.Errorf("migrate: write marker: %w", err)
	}
	m := Migration{From: from.Path()}
	sinks, err := from.Sinks()
	if err != nil {
		return Migration{}, fmt.Errorf("migrate: %w", err)
	}
	m.SinkNames = sinks
	stats, err := from.Stats()
	if err != nil {
		return Migration{}, fmt.Errorf("migrate: %w", err)
	}
	done, total := 0, 0
	for _, sink := range sinks {
		total += stats.Outbox[sink] + stats.DeadLetters[sink]
	}
	onAck := func() { done++; s.o.Progress(done, max(total, done)) }
	for _, sink := range sinks {
		queued, err := from.Pending(sink, 0, 0)
		if err != nil {
			return Migration{}, fmt.Errorf("migrate: %w", err)
		}
		dead, err := from.DeadLetters(sink)
		if err != nil {
			return Migration{}, fmt.Errorf("migrate: %w", err)
		}
		if err := s.importQueue(sink, queued, dead, onAck); err != nil {
			return Migration{}, fmt.Errorf("migrate: sink %s: %w", sink, err)
		}
		if d, err := from.Destination(sink); err != nil {
			return Migration{}, fmt.Errorf("migrate: %w", err)
		} else if d != "" {
			if err := s.SetDestination(sink, d); err != nil {
				return Migration{}, fmt.Errorf("migrate: %w", err)
			}
		}
		m.Queued += len(queued)
		m.Dead += len(dead)
		if progress != nil {
			progress(sink, len(queued), len(dead))
		}
	}
	err = from.ForEachMeta(func(sink, key string, v []byte) error {
		m.Meta++
		return s.PutMeta(sink, key, v)
	})
	if err != nil {
		return Migration{}, fmt.Errorf("migrate: %w", err)
	}
	snap, init, err := from.LoadSnapshot()
	if err != nil {
		return Migration{}, fmt.Errorf("migrate: %w", err)
	}
	if init {
		last, err := from.LastPoll()
		if err != nil {
			return Migration{}, fmt.Errorf("migrate: %w", err)
		}
		if err := s.CommitCycle(store.Cycle{Upserts: snap, Poll: last}); err != nil {
			return Migration{}, fmt.Errorf("migrate: snapshot: %w", err)
		}
	}
	m.Exports, m.At = len(snap), time.Now().UTC()
	v, err := json.Marshal(m)
	if err != nil {
		return Migration{}, fmt.Errorf("migrate: %w", err)
	}
	ctx2, cancel2 := s.ctx()
	defer cancel2()
	if _, err := s.kv.Put(ctx2, keyMigrated, v); err != nil {
		return Migration{}, fmt.Errorf("migrate: write marker: %w", err)
	}
	if err := s.kv.Purge(ctx2, keyMigrating); err != nil {
		return Migration{}, fmt.Errorf("migrate: clear marker: %w", err)
	}
	return m, nil
}

// importQueue appends records to sink's outbox with their attempt state, and dead
// letters to its DLQ, each with a Nats-Msg-Id derived from its bolt sequence.
func (s *Store) importQueue(sink string, queued, dead []store.Record, onAck func()) error {
	ctx, cancel := s.ctxFor(len(queued) + len(dead))
	defer cancel()
	b := batch{js: s.js, ctx: ctx, onAck: onAck}
	for i := range queued {
		m, err := recordMsg(outboxSubject(sink), &queued[i], true)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("%s/migrate/%d", msgID(&queued[i].Event, sink), queued[i].Seq)
		if err := b.add(m, orderKey(m, &queued[i]), jetstream.WithMsgID(id), jetstream.WithExpectStream(OutboxStream)); err != nil {
			return err
		}
	}
	acks, err := b.wait()
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	for i, a := range acks {
		if at := attemptOf(&queued[i]); !at.zero() && !a.Duplicate {
			v, err := json.Marshal(at)
			if err != nil {
				return err
			}
			if _, err := s.kv.Put(ctx, attKey(sink, a.Sequence), v); err != nil {
				return fmt.Errorf("attempt state: %w", err)
			}
		}
	}
	for i := range dead {
		m, err := recordMsg(dlqSubject(sink), &dead[i], true)
		if err != nil {
			return err
		}
		m.Header.Set(hdrSeq, strconv.FormatUint(dead[i].Seq, 10))
		id := fmt.Sprintf("dead/%s/migrate/%d", esc(sink), dead[i].Seq)
		if err := b.add(m, orderKey(m, &dead[i]), jetstream.WithMsgID(id), jetstream.WithExpectStream(DLQStream)); err != nil {
			return err
		}
	}
	if _, err := b.wait(); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}
