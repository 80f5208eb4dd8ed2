package natsstore

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/exportbridge/exportbridge/store"
)

// What the status page asks of a store. The JetStream store keeps no ring of recent
// events and no per-sink delivery health yet: RecentEvents and SinkHealths answer
// empty (the page shows no "last events" with STORE=nats).

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

// RecentEvents is empty: the JetStream store keeps no ring of recent events.
func (s *Store) RecentEvents(int) ([]store.RecentEvent, error) { return nil, nil }

// SinkHealths is empty: the JetStream store keeps no per-sink delivery health.
func (s *Store) SinkHealths() (map[string]store.SinkHealth, error) {
	return map[string]store.SinkHealth{}, nil
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
