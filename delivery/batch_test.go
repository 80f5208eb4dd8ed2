package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
)

// batchSink is a fakeSink that is also a sinks.Batcher: each batch is checked for two
// events of one export and recorded; every event's outcome comes from fn as in Deliver.
type batchSink struct {
	*fakeSink
	mu         sync.Mutex
	sizes      []int
	sameExport int
}

func (b *batchSink) DeliverBatch(ctx context.Context, evs []event.Event) []error {
	keys := map[string]bool{}
	b.mu.Lock()
	b.sizes = append(b.sizes, len(evs))
	for _, e := range evs {
		if keys[e.OrderKey()] {
			b.sameExport++
		}
		keys[e.OrderKey()] = true
	}
	b.mu.Unlock()
	errs := make([]error, len(evs))
	for i, e := range evs {
		errs[i] = b.Deliver(ctx, e)
	}
	return errs
}

// TestBatchingSinkSettlesEachEventOnItsOwn: a sink that takes batches gets the heads of
// many exports at once (never two events of one export in a batch, at most MaxBatch),
// and each event of a batch is retried, dead-lettered or acked by its own answer.
func TestBatchingSinkSettlesEachEventOnItsOwn(t *testing.T) {
	st := newStore(t)
	var evs []event.Event
	for i := range 10 {
		for k := range 300 {
			evs = append(evs, evt(fmt.Sprintf("%d/%d", k, i), fmt.Sprintf("export-%d", k)))
		}
	}
	enqueue(t, st, evs...)
	var mu sync.Mutex
	last := map[int]int{}
	outOfOrder := 0
	b := &batchSink{fakeSink: newFake(func(_ context.Context, e event.Event, call int) error {
		var k, i int
		fmt.Sscanf(e.ID, "%d/%d", &k, &i)
		switch {
		case e.ID == "5/5":
			return sinks.Permanent(errors.New("HTTP 400 from fake"))
		case strings.HasSuffix(e.ID, "7/3") && call == 1:
			return retryable(503)
		}
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[k]; ok && prev >= i {
			outOfOrder++
		}
		last[k] = i
		return nil
	})}
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: b, InitialInterval: time.Millisecond,
		MaxInterval: 5 * time.Millisecond, ProbeInitial: time.Millisecond, ProbeMax: 5 * time.Millisecond})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, delivered, _, _, _ := b.get()
	if len(delivered) != len(evs)-1 || outOfOrder != 0 {
		t.Errorf("delivered %d (want %d), %d out of per-export order", len(delivered), len(evs)-1, outOfOrder)
	}
	if dl, err := st.DeadLetters(sinkName); err != nil || len(dl) != 1 || dl[0].Event.ID != "5/5" {
		t.Errorf("dead letters = %+v, %v; want 5/5 only", dl, err)
	}
	if n := b.callsOf("7/3"); n != 2 {
		t.Errorf("7/3 attempted %d times, want 2 (failed once in its batch)", n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	biggest := 0
	for _, n := range b.sizes {
		biggest = max(biggest, n)
	}
	t.Logf("%d batches for %d events, the biggest %d", len(b.sizes), len(evs), biggest)
	if biggest < 100 || biggest > sinks.MaxBatch {
		t.Errorf("biggest batch %d, want 100..%d (300 exports were due at once)", biggest, sinks.MaxBatch)
	}
	if b.sameExport != 0 {
		t.Errorf("%d batches held two events of one export", b.sameExport)
	}
}
