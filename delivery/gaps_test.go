package delivery_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/store"
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

// A short Retry-After is not waited out late either: the retry comes when it is due, not
// at the dispatcher's next periodic rescan (every second).
func TestShortRetryAfterIsNotLate(t *testing.T) {
	const after, late = 40 * time.Millisecond, 600 * time.Millisecond
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"))
	fake := newFake(func(_ context.Context, _ event.Event, call int) error {
		if call == 1 {
			return sinks.RetryAfter(retryable(429), after)
		}
		return nil
	})
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, InitialInterval: time.Hour})
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
	if gap := times[1].Sub(times[0]); gap < after || gap > late {
		t.Errorf("retried %v after a Retry-After of %v, want between %v and %v", gap, after, after, late)
	}
}

// An error exactly as long as the kept maximum (1,000 bytes) is kept whole.
func TestErrorOfMaximumLengthKeptWhole(t *testing.T) {
	msg := strings.Repeat("x", 1000)
	if got := deadLetterAfter(t, sinks.Permanent(errors.New(msg))).LastError; got != msg {
		t.Errorf("last error of %d bytes kept as %d bytes: %.40q…", len(msg), len(got), got)
	}
}

// The dead-letter gauge follows the store when dead letters are purged by another
// component (the CLI through the admin endpoint) while the dispatcher runs.
func TestDeadLetterGaugeFollowsPurge(t *testing.T) {
	st := newStore(t)
	m := metrics.New(nil)
	enqueue(t, st, evt("A1", "A"))
	failing := newFake(func(context.Context, event.Event, int) error { return sinks.Permanent(errors.New("410 Gone")) })
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: failing, Metrics: m})
	stop := start(t, d)
	defer stop()
	waitIdle(t, d)
	gauge := func() float64 { return testutil.ToFloat64(m.DeadLetterDepth.WithLabelValues(sinkName)) }
	waitFor(t, "the dead letter counted", func() bool { return gauge() == 1 })
	if n, err := st.Purge(sinkName, nil, true); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	// The depths are re-read on every rescan (each second): 3 s is ample.
	deadline := time.Now().Add(3 * time.Second)
	for gauge() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter gauge = %v 3s after the purge, want 0", gauge())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deadLetterAfter delivers one event to a sink that fails it with err (a permanent
// error) and returns its dead letter.
func deadLetterAfter(t *testing.T, err error) store.Record {
	t.Helper()
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"))
	fake := newFake(func(context.Context, event.Event, int) error { return err })
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dl, err := st.DeadLetters(sinkName)
	if err != nil || len(dl) != 1 {
		t.Fatalf("DeadLetters = %d, %v; want 1", len(dl), err)
	}
	return dl[0]
}
