package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/store"
)

// What the status page asks of a store (the ring of recent events is in recent.go).

// pollHook is the callback OnPoll registers, shared by the fenced views of a Store.
type pollHook struct {
	fn atomic.Pointer[func(store.PollInfo)]
}

// OnPoll registers fn, called with the facts of every poll recorded through this store
// (CommitCycle, SavePoll) by this process; nil removes it.
func (s *Store) OnPoll(fn func(store.PollInfo)) {
	if fn == nil {
		s.hook.fn.Store(nil)
		return
	}
	s.hook.fn.Store(&fn)
}

func (s *Store) polled(p store.PollInfo) {
	if fn := s.hook.fn.Load(); fn != nil {
		(*fn)(p)
	}
}

// Path names the state for the status page: the bucket and streams.
func (s *Store) Path() string {
	return fmt.Sprintf("JetStream bucket %s, streams %s and %s (%d replicas)", Bucket, OutboxStream, DLQStream, s.o.Replicas)
}

// healthKey holds a sink's SinkHealth (JSON), written by Settle.
func healthKey(sink string) string { return "health." + esc(sink) }

// recordHealth updates sink's last success and last failure after a settlement.
func (s *Store) recordHealth(ctx context.Context, sink string, st store.Settlement) error {
	var h store.SinkHealth
	e, err := s.kv.Get(ctx, healthKey(sink))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("sink health: %w", err)
	default:
		if err := json.Unmarshal(e.Value(), &h); err != nil {
			return fmt.Errorf("sink health: %w", err)
		}
	}
	now := time.Now().UTC()
	if len(st.Acks) > 0 {
		h.LastSuccess = now
	}
	for _, rs := range [][]store.Record{st.Attempts, st.Dead} {
		if len(rs) > 0 {
			h.LastError, h.LastErrorAt = rs[len(rs)-1].LastError, now
		}
	}
	v, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("sink health: %w", err)
	}
	if _, err := s.kv.Put(ctx, healthKey(sink), v); err != nil {
		return fmt.Errorf("sink health: %w", err)
	}
	return nil
}

// SinkHealths returns the last success and failure of every sink that settled a
// delivery, by sink name.
func (s *Store) SinkHealths() (map[string]store.SinkHealth, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	out := map[string]store.SinkHealth{}
	err := s.scan(ctx, "health.*", func(key string, v []byte) error {
		sink, err := unesc(key[len("health."):])
		if err != nil {
			return err
		}
		var h store.SinkHealth
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("sink %s: %w", sink, err)
		}
		out[sink] = h
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sink health: %w", err)
	}
	return out, nil
}

// InFlight returns up to limit exports of the account's snapshot that are pending or
// processing, oldest request first, and how many there are in all.
func (s *Store) InFlight(limit int) ([]store.InFlightExport, int, error) {
	snap, _, err := s.LoadSnapshot()
	if err != nil {
		return nil, 0, fmt.Errorf("exports in flight: %w", err)
	}
	var out []store.InFlightExport
	for uuid, e := range snap {
		if e.Status == "pending" || e.Status == "processing" {
			out = append(out, store.InFlightExport{UUID: uuid, Status: e.Status, RequestedAt: time.Unix(0, e.At).UTC()})
		}
	}
	slices.SortFunc(out, func(a, b store.InFlightExport) int { return a.RequestedAt.Compare(b.RequestedAt) })
	total := len(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, total, nil
}
