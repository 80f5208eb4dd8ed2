package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
)

// TestRetryAfterLongerThanBackoffHonoured: a sink's Retry-After longer than the backoff
// is waited out in full; the backoff (a few milliseconds here) does not cut it short.
func TestRetryAfterLongerThanBackoffHonoured(t *testing.T) {
	const after = 300 * time.Millisecond
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"))
	fake := newFake(func(_ context.Context, _ event.Event, call int) error {
		if call == 1 {
			return sinks.RetryAfter(retryable(429), after)
		}
		return nil
	})
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	times := fake.callTimes["A1"]
	fake.mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("A1 called %d times, want 2", len(times))
	}
	// The lower bound is the contract; the backoff alone would retry within 5 ms.
	if gap := times[1].Sub(times[0]); gap < after {
		t.Errorf("retried %v after a Retry-After of %v (backoff 1-5 ms)", gap, after)
	}
}
