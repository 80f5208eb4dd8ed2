package store

import (
	"bytes"
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
// Layout (two top-level buckets: a nested layout would write one more page per
// transaction):
//
//	recent:       ring seq (8 bytes) -> JSON RecentEvent
//	recent_sinks: sink               -> JSON SinkHealth
//
// Which ring entry a queued record (sink, outbox seq) belongs to is kept in memory
// (ringIndex), derived from the ring: an index bucket would cost the page writes of its
// own scattered keys on every cycle and every settle.
//
// Only the last cap events of a cycle are recorded: a first cycle of 100k events
// (EMIT_EXISTING) costs the ring 100 entries, not 100k.

// DefaultRecent is how many recent events the ring keeps unless Options.Recent says
// otherwise.
const DefaultRecent = 100

// MaxRecent caps Options.Recent.
const MaxRecent = 1000

var (
	bktRing     = []byte("recent")
	bktRingSink = []byte("recent_sinks")
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

// ringRef names a queued (or dead-lettered) record: its sink and outbox seq.
type ringRef struct {
	sink string
	seq  uint64
}

// ringIndex maps the records of the ring's entries that are still queued or dead to
// their entry. It is read and written only inside write transactions, which bbolt runs
// one at a time; a transaction that fails after changing it marks it stale, and the
// next one rebuilds it from the ring.
type ringIndex struct {
	m     map[ringRef]uint64
	rev   map[uint64][]ringRef // entry -> the refs ever indexed to it (eviction needs no decode)
	stale bool
}

// ring is the recent-event ring of one write transaction; it caches decoded entries so
// that a batch touching one entry many times decodes and encodes it once, and stages
// its index changes until flush.
type ring struct {
	cap     int
	ix      *ringIndex
	b       *bolt.Bucket
	sinks   *bolt.Bucket
	dirty   map[uint64]*RecentEvent
	entries map[uint64]*RecentEvent
	staged  map[ringRef]uint64   // 0: removed
	revised map[uint64][]ringRef // nil: removed
}

// ringOf returns the ring of tx, or nil when the store keeps none.
func (s *Store) ringOf(tx *bolt.Tx) (*ring, error) {
	if s.recent <= 0 {
		return nil, nil
	}
	rg := &ring{cap: s.recent, ix: &s.ringIdx, b: tx.Bucket(bktRing), sinks: tx.Bucket(bktRingSink)}
	if rg.b == nil || rg.sinks == nil {
		return nil, nil
	}
	// Ring keys only ever grow: full pages keep the ring on fewer pages to write.
	rg.b.FillPercent = 1.0
	if rg.ix.m == nil || rg.ix.stale {
		if err := rg.reindex(); err != nil {
			return nil, err
		}
	}
	return rg, nil
}

// reindex rebuilds the index from the ring.
func (r *ring) reindex() error {
	m, rev := map[ringRef]uint64{}, map[uint64][]ringRef{}
	err := r.b.ForEach(func(k, v []byte) error {
		var re RecentEvent
		if err := json.Unmarshal(v, &re); err != nil {
			return fmt.Errorf("recent event %d: %w", keySeq(k), err)
		}
		n := keySeq(k)
		for _, o := range re.Sinks {
			if o.State == StateQueued || o.State == StateWaiting || o.State == StateDead {
				ref := ringRef{o.Sink, o.Seq}
				m[ref] = n
				rev[n] = append(rev[n], ref)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recent events: index: %w", err)
	}
	r.ix.m, r.ix.rev, r.ix.stale = m, rev, false
	return nil
}

func (r *ring) lookup(ref ringRef) uint64 {
	if n, ok := r.staged[ref]; ok {
		return n
	}
	return r.ix.m[ref]
}

// stage points ref at entry n (0: at none) when the transaction commits.
func (r *ring) stage(ref ringRef, n uint64) {
	if r.staged == nil {
		r.staged = map[ringRef]uint64{}
	}
	if r.revised == nil {
		r.revised = map[uint64][]ringRef{}
	}
	r.staged[ref] = n
	if n != 0 {
		r.revised[n] = append(slices.Clone(r.refsOf(n)), ref)
	}
}

// refsOf returns the refs indexed to entry n (some may point elsewhere since).
func (r *ring) refsOf(n uint64) []ringRef {
	if refs, ok := r.revised[n]; ok {
		return refs
	}
	return r.ix.rev[n]
}

// ringFailed marks the index stale after a transaction that used rg failed.
func ringFailed(rg *ring, err error) {
	if rg != nil && err != nil {
		rg.ix.stale = true
	}
}

func initRecent(tx *bolt.Tx) error {
	for _, n := range [][]byte{bktRing, bktRingSink} {
		if _, err := tx.CreateBucketIfNotExists(n); err != nil {
			return fmt.Errorf("create bucket %s: %w", n, err)
		}
	}
	return nil
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

// NewRecentEvent is the ring entry of a freshly queued event, with no sink outcomes
// (the JetStream store's ring uses it too).
func NewRecentEvent(ev *event.Event) RecentEvent { return *newRecent(ev) }

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
		r.stage(ringRef{sink, seqs[i]}, n)
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
	for _, ref := range r.refsOf(old) {
		if r.lookup(ref) == old {
			r.stage(ref, 0)
		}
	}
	if r.revised == nil {
		r.revised = map[uint64][]ringRef{}
	}
	r.revised[old] = nil
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
	n := r.lookup(ringRef{sink, seq})
	if n == 0 {
		return 0, nil, nil
	}
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
			r.stage(ringRef{sink, seq}, 0)
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
	r.stage(ringRef{rec.Sink, rec.Seq}, 0)
	if fresh == 0 {
		o.State, o.NextAttempt = StatePurged, time.Time{}
		return nil
	}
	*o = Outcome{Sink: rec.Sink, State: StateQueued, Seq: fresh}
	r.stage(ringRef{rec.Sink, fresh}, n)
	return nil
}

// moved records a queued event or dead letter re-homed by MoveQueue.
func (r *ring) moved(from string, oldSeq uint64, to string, newSeq uint64) error {
	n, o, err := r.outcome(from, oldSeq)
	if err != nil || o == nil {
		return err
	}
	o.Sink, o.Seq = to, newSeq
	r.stage(ringRef{from, oldSeq}, 0)
	r.stage(ringRef{to, newSeq}, n)
	return nil
}

// dropped records that DropQueue deleted everything sink held: given up for good.
func (r *ring) dropped(sink string) error {
	for ref := range r.ix.m {
		if ref.sink != sink {
			continue
		}
		_, o, err := r.outcome(ref.sink, ref.seq)
		if err != nil {
			return err
		}
		if o != nil {
			o.State, o.NextAttempt = StatePurged, time.Time{}
		}
		r.stage(ref, 0)
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

// flush writes the entries changed in this transaction and applies its index changes:
// call it last in the transaction.
func (r *ring) flush() error {
	for ref, n := range r.staged {
		if n == 0 {
			delete(r.ix.m, ref)
		} else {
			r.ix.m[ref] = n
		}
	}
	for n, refs := range r.revised {
		if refs == nil {
			delete(r.ix.rev, n)
		} else {
			r.ix.rev[n] = refs
		}
	}
	r.staged, r.revised = nil, nil
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
		b := tx.Bucket(bktRing)
		if b == nil {
			return nil
		}
		c := b.Cursor()
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
		b := tx.Bucket(bktRingSink)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
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
			// A quick look at the status bytes first (most exports are done); an entry
			// missed by one complete listing carries a NUL suffix after its status.
			st := v[n:]
			if i := bytes.IndexByte(st, 0); i >= 0 {
				st = st[:i]
			}
			if string(st) != "pending" && string(st) != "processing" {
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
