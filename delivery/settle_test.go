package delivery_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/store"
)

// countingQueue counts the settle transactions of a dispatcher.
type countingQueue struct {
	delivery.Queue
	settles atomic.Int64
	acks    atomic.Int64
}

func (q *countingQueue) Settle(sink string, s store.Settlement) error {
	err := q.Queue.Settle(sink, s)
	q.acks.Add(int64(len(s.Acks)))
	q.settles.Add(1)
	return err
}

// TestBurstIsSettledInFewTransactions: while deliveries keep a healthy sink busy, their
// outcomes are written in few transactions (each one costs the disk an fsync), not one
// per handful of events; every event is still acked, and an idle dispatcher writes at
// once.
func TestBurstIsSettledInFewTransactions(t *testing.T) {
	st := newStore(t)
	const n = 2000
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = evt(fmt.Sprintf("e%d", i), fmt.Sprintf("export-%d", i))
	}
	enqueue(t, st, evs...)
	fake := newFake(func(ctx context.Context, _ event.Event, _ int) error {
		time.Sleep(100 * time.Microsecond) // a fast endpoint
		return nil
	})
	q := &countingQueue{Queue: st}
	d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: fake, Concurrency: 4})
	t0 := time.Now()
	stop := start(t, d)
	waitIdle(t, d)
	el := time.Since(t0)
	// The outbox is empty once the last transaction commits, a moment before Settle
	// returns to countingQueue and the counters move: wait for them.
	waitFor(t, fmt.Sprintf("%d acks counted", n), func() bool { return q.acks.Load() >= n })
	settles := q.settles.Load()
	t.Logf("%d events delivered in %s, settled in %d transactions", n, el, settles)
	if got := q.acks.Load(); got != n {
		t.Fatalf("%d acks written, want %d", got, n)
	}
	// Healthy: one transaction per 20 ms of the burst. Broken (one per fsync): one per
	// millisecond or two. The bound is one per 5 ms, plus a few.
	if limit := int64(el/(5*time.Millisecond)) + 5; settles > limit {
		t.Errorf("a burst of %d events taking %s was settled in %d transactions, want at most %d", n, el, settles, limit)
	}

	// Idle now: a lone event is settled without waiting for more.
	before := q.settles.Load()
	enqueue(t, st, evt("lone", "export-lone"))
	d.Notify()
	waitFor(t, "the lone event to be settled", func() bool { return q.settles.Load() > before })
	if got := pendingIDs(t, st); len(got) != 0 {
		t.Errorf("outbox holds %v after the lone event was settled, want it empty", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
