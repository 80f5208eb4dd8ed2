package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/exportbridge/exportbridge/event"
)

// The ring of recent events: the last DefaultRecent events committed by CommitCycle, each
// with its delivery state per sink, kept in the same file as the outbox so the status
// page survives a restart. It is written in the transactions that change the outcomes
// (CommitCycle, Settle, Replay, Purge), so it never disagrees with the queues.
//
// Layout (bucket "recent"):
//
//	ring:  ring seq (8 bytes)             -> JSON RecentEvent
//	idx:   sink 0x00 outbox seq (8 bytes) -> ring seq: the ring entry of a queued record
//	sinks: sink                           -> JSON SinkHealth
//
// Only the last cap events of a cycle are recorded: a first cycle of 100k events
// (EMIT_EXISTING) costs the ring 100 entries, not 100k.

// DefaultRecent is how many recent events the ring keeps unless Options.Recent says
// otherwise.
const DefaultRecent = 100

// MaxRecent caps Options.Recent.
const MaxRecent = 1000

var (
	bktRecent   = []byte("recent")
	bktRing     = []byte("ring")
	bktRingIdx  = []byte("idx")
	bktRingSink = []byte("sinks")
)

// Delivery states of a recent event at one sink.
const (
	StateQueued    = "queued"    // in the outbox, not tried yet
	StateWaiting   = "waiting"   // tried, failed, waiting for the next attempt
	StateDelivered = "delivered" // accepted by the sink
	StateDead      = "dead"      // dead-lettered
	StatePurged    = "purged"    // dead letter purged: given up for good
)

// RecentEvent is one event of the ring with its delivery state per sink.
type RecentEvent struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Subject    string    `json:"subject,omitempty"`
	Status     string    `json:"status"`
	ExportType string    `json:"export_type,omitempty"`
	Label      string    `json:"label,omitempty"`    // the export's subject label
	Filename   string    `json:"filename,omitempty"` // the export's filename
	DetectedAt time.Time `json:"detected_at"`
	// Sinks holds one outcome per sink the event was routed to, by sink name.
	Sinks []Outcome `json:"sinks,omitempty"`
}

// Outcome is the delivery state of one event at one sink.
type Outcome struct {
	Sink        string    `json:"sink"`
	State       string    `json:"state"`         // one of the State* constants
	Seq         uint64    `json:"seq"`           // outbox (or dead-letter) seq
	Attempts    int       `json:"attempts"`      // attempts made
	At          time.Time `json:"at,omitzero"`   // delivered or dead-lettered at
	NextAttempt time.Time `json:"next,omitzero"` // waiting: when the next attempt runs
	LastError   string    `json:"error,omitempty"`
	LastStatus  int       `json:"status,omitempty"`
}

// SinkHealth is the last success and the last failure of one sink's deliveries.
type SinkHealth struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// ring is the recent-event ring of one write transaction; it caches decoded entries so
// that a batch touching one entry many times decodes and encodes it once.
type ring struct {
	cap     int
	b, idx  *bolt.Bucket
	sinks   *bolt.Bucket
	dirty   map[uint64]*RecentEvent
	entries map[uint64]*RecentEvent
}

// ringOf returns the ring of tx, or nil when the store keeps none.
func (s *Store) ringOf(tx *bolt.Tx) *ring {
	if s.recent <= 0 {
		return nil
	}
	r := tx.Bucket(bktRecent)
	if r == nil {
		return nil
	}
	return &ring{cap: s.recent, b: r.Bucket(bktRing), idx: r.Bucket(bktRingIdx), sinks: r.Bucket(bktRingSink)}
}

func initRecent(tx *bolt.Tx) error {
	r, err := tx.CreateBucketIfNotExists(bktRecent)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bktRecent, err)
	}
	for _, n := range [][]byte{bktRing, bktRingIdx, bktRingSink} {
		if _, err := r.CreateBucketIfNotExists(n); err != nil {
			return fmt.Errorf("create bucket %s/%s: %w", bktRecent, n, err)
		}
	}
	return nil
}

func idxKey(sink string, seq uint64) []byte {
	k := make([]byte, 0, len(sink)+9)
	k = append(k, sink...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// exportLabels is the part of an export event's body the ring keeps.
type exportLabels struct {
	Data struct {
		Export struct {
			Filename *string `json:"filename"`
			Subject  *struct {
				Label string `json:"label"`
			} `json:"subject"`
		} `json:"export"`
	} `json:"data"`
}

func newRecent(ev *event.Event) *RecentEvent {
	re := &RecentEvent{ID: ev.ID, Type: ev.Type, Subject: ev.Subject, Status: ev.Status,
		ExportType: ev.ExportType, DetectedAt: ev.DetectedAt}
	if !ev.IsBridge() && len(ev.Body) > 0 {
		var l exportLabels
		if json.Unmarshal(ev.Body, &l) == nil {
			if f := l.Data.Export.Filename; f != nil {
				re.Filename = *f
			}
			if s := l.Data.Export.Subject; s != nil {
				re.Label = s.Label
			}
		}
	}
	return re
}

// add records a freshly queued event (seqs: its outbox seq per sink, in sinks order) and
// evicts the oldest entries past the cap.
func (r *ring) add(ev *event.Event, sinks []string, seqs []uint64) error {
	re := newRecent(ev)
	n, err := r.b.NextSequence()
	if err != nil {
		return fmt.Errorf("recent events: next sequence: %w", err)
	}
	for i, sink := range sinks {
		re.Sinks = append(re.Sinks, Outcome{Sink: sink, State: StateQueued, Seq: seqs[i]})
		if err := r.idx.Put(idxKey(sink, seqs[i]), seqKey(n)); err != nil {
			return fmt.Errorf("recent events: index: %w", err)
		}
	}
	slices.SortFunc(re.Sinks, func(a, b Outcome) int { return cmpString(a.Sink, b.Sink) })
	r.put(n, re)
	if n <= uint64(r.cap) {
		return nil
	}
	return r.evict(n - uint64(r.cap))
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// evict deletes the entry old (if present) with its index keys.
func (r *ring) evict(old uint64) error {
	re, err := r.get(old)
	if err != nil || re == nil {
		return err
	}
	for _, o := range re.Sinks {
		if err := r.idx.Delete(idxKey(o.Sink, o.Seq)); err != nil {
			return fmt.Errorf("recent events: evict index: %w", err)
		}
	}
	delete(r.dirty, old)
	delete(r.entries, old)
	if err := r.b.Delete(seqKey(old)); err != nil {
		return fmt.Errorf("recent events: evict: %w", err)
	}
	return nil
}

func (r *ring) put(n uint64, re *RecentEvent) {
	if r.dirty == nil {
		r.dirty = map[uint64]*RecentEvent{}
		r.entries = map[uint64]*RecentEvent{}
	}
	r.dirty[n], r.entries[n] = re, re
}

func (r *ring) get(n uint64) (*RecentEvent, error) {
	if re, ok := r.entries[n]; ok {
		return re, nil
	}
	v := r.b.Get(seqKey(n))
	if v == nil {
		return nil, nil
	}
	re := &RecentEvent{}
	if err := json.Unmarshal(v, re); err != nil {
		return nil, fmt.Errorf("recent event %d: %w", n, err)
	}
	if r.entries == nil {
		r.entries = map[uint64]*RecentEvent{}
	}
	r.entries[n] = re
	return re, nil
}

// outcome returns the ring entry number and the outcome of sink's record seq, or nil
// when the record is not in the ring.
func (r *ring) outcome(sink string, seq uint64) (uint64, *Outcome, error) {
	v := r.idx.Get(idxKey(sink, seq))
	if v == nil {
		return 0, nil, nil
	}
	n := keySeq(v)
	re, err := r.get(n)
	if err != nil || re == nil {
		return 0, nil, err
	}
	for i := range re.Sinks {
		if re.Sinks[i].Sink == sink && re.Sinks[i].Seq == seq {
			r.put(n, re)
			return n, &re.Sinks[i], nil
		}
	}
	return 0, nil, nil
}

// settled records the outcomes of one Settle batch and the sink's last success or error.
func (r *ring) settled(sink string, st Settlement, now time.Time) error {
	for _, seq := range st.Acks {
		_, o, err := r.outcome(sink, seq)
		if err != nil {
			return err
		}
		if o != nil {
			o.State, o.At, o.Attempts, o.NextAttempt = StateDelivered, now, o.Attempts+1, time.Time{}
			if err := r.idx.Delete(idxKey(sink, seq)); err != nil {
				return fmt.Errorf("recent events: index: %w", err)
			}
		}
	}
	failed := func(rec *Record, state string) error {
		_, o, err := r.outcome(sink, rec.Seq)
		if err != nil || o == nil {
			return err
		}
		o.State, o.Attempts, o.NextAttempt = state, rec.Attempts, rec.NextAttemptAt
		o.LastError, o.LastStatus = rec.LastError, rec.LastStatus
		if state == StateDead {
			o.At, o.NextAttempt = rec.DeadAt, time.Time{}
			if o.At.IsZero() {
				o.At = now
			}
		}
		return nil
	}
	var lastErr string
	for i := range st.Attempts {
		if err := failed(&st.Attempts[i], StateWaiting); err != nil {
			return err
		}
		lastErr = st.Attempts[i].LastError
	}
	for i := range st.Dead {
		if err := failed(&st.Dead[i], StateDead); err != nil {
			return err
		}
		lastErr = st.Dead[i].LastError
	}
	h, err := r.health(sink)
	if err != nil {
		return err
	}
	if len(st.Acks) > 0 {
		h.LastSuccess = now
	}
	if len(st.Attempts)+len(st.Dead) > 0 {
		h.LastError, h.LastErrorAt = lastErr, now
	}
	return r.putHealth(sink, h)
}

// taken records a dead letter leaving the dead-letter queue: replayed (requeued at seq
// fresh) or purged (fresh == 0).
func (r *ring) taken(rec Record, fresh uint64) error {
	n, o, err := r.outcome(rec.Sink, rec.Seq)
	if err != nil || o == nil {
		return err
	}
	if err := r.idx.Delete(idxKey(rec.Sink, rec.Seq)); err != nil {
		return fmt.Errorf("recent events: index: %w", err)
	}
	if fresh == 0 {
		o.State, o.NextAttempt = StatePurged, time.Time{}
		return nil
	}
	*o = Outcome{Sink: rec.Sink, State: StateQueued, Seq: fresh}
	if err := r.idx.Put(idxKey(rec.Sink, fresh), seqKey(n)); err != nil {
		return fmt.Errorf("recent events: index: %w", err)
	}
	return nil
}

func (r *ring) health(sink string) (SinkHealth, error) {
	var h SinkHealth
	if v := r.sinks.Get([]byte(sink)); v != nil {
		if err := json.Unmarshal(v, &h); err != nil {
			return h, fmt.Errorf("sink health %s: %w", sink, err)
		}
	}
	return h, nil
}

func (r *ring) putHealth(sink string, h SinkHealth) error {
	v, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("sink health %s: %w", sink, err)
	}
	if err := r.sinks.Put([]byte(sink), v); err != nil {
		return fmt.Errorf("sink health %s: %w", sink, err)
	}
	return nil
}

// flush writes the entries changed in this transaction.
func (r *ring) flush() error {
	for n, re := range r.dirty {
		v, err := json.Marshal(re)
		if err != nil {
			return fmt.Errorf("recent event %d: %w", n, err)
		}
		if err := r.b.Put(seqKey(n), v); err != nil {
			return fmt.Errorf("recent event %d: %w", n, err)
		}
	}
	r.dirty = nil
	return nil
}

// RecentEvents returns up to limit events of the ring, newest first (limit <= 0: all).
func (s *Store) RecentEvents(limit int) ([]RecentEvent, error) {
	var out []RecentEvent
	err := s.db.View(func(tx *bolt.Tx) error {
		r := tx.Bucket(bktRecent)
		if r == nil {
			return nil
		}
		c := r.Bucket(bktRing).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if limit > 0 && len(out) >= limit {
				break
			}
			var re RecentEvent
			if err := json.Unmarshal(v, &re); err != nil {
				return fmt.Errorf("recent event %d: %w", keySeq(k), err)
			}
			out = append(out, re)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	return out, nil
}

// SinkHealths returns the last success and failure of every sink that settled a
// delivery, by sink name.
func (s *Store) SinkHealths() (map[string]SinkHealth, error) {
	out := map[string]SinkHealth{}
	err := s.db.View(func(tx *bolt.Tx) error {
		r := tx.Bucket(bktRecent)
		if r == nil {
			return nil
		}
		return r.Bucket(bktRingSink).ForEach(func(k, v []byte) error {
			var h SinkHealth
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("sink %s: %w", k, err)
			}
			out[string(k)] = h
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("sink health: %w", err)
	}
	return out, nil
}

// InFlightExport is an export of the snapshot that is pending or processing.
type InFlightExport struct {
	UUID        string
	Status      string
	RequestedAt time.Time
}

// InFlight returns up to limit exports of the snapshot that are pending or processing,
// oldest request first, and how many there are in all. It walks the whole snapshot
// (about 100k entries at most): for a status page, not a hot path.
func (s *Store) InFlight(limit int) ([]InFlightExport, int, error) {
	var out []InFlightExport
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktSnapshot).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			_, n := binary.Varint(v)
			if n <= 0 {
				return fmt.Errorf("export %q: %w", k, errCorrupt)
			}
			st := string(v[n:])
			if st != "pending" && st != "processing" {
				continue
			}
			e, err := decodeEntry(v, nil)
			if err != nil {
				return fmt.Errorf("export %q: %w", k, err)
			}
			out = append(out, InFlightExport{UUID: string(k), Status: e.Status, RequestedAt: time.Unix(0, e.At).UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("exports in flight: %w", err)
	}
	slices.SortFunc(out, func(a, b InFlightExport) int { return a.RequestedAt.Compare(b.RequestedAt) })
	total := len(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, total, nil
}
