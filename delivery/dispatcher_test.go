package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/store"
)

const sinkName = "fake"

// fakeSink records calls, deliveries and concurrency; fn decides each call's outcome
// (call is the 1-based number of calls for that event id).
type fakeSink struct {
	fn func(ctx context.Context, e event.Event, call int) error

	mu          sync.Mutex
	calls       map[string]int
	callTimes   map[string][]time.Time
	delivered   []string
	inflight    int
	maxInflight int
	perKey      map[string]int
	maxPerKey   int
}

func newFake(fn func(ctx context.Context, e event.Event, call int) error) *fakeSink {
	return &fakeSink{fn: fn, calls: map[string]int{}, callTimes: map[string][]time.Time{}, perKey: map[string]int{}}
}

func (f *fakeSink) Name() string { return sinkName }

func (f *fakeSink) Deliver(ctx context.Context, e event.Event) error {
	f.mu.Lock()
	f.calls[e.ID]++
	n := f.calls[e.ID]
	f.callTimes[e.ID] = append(f.callTimes[e.ID], time.Now())
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	f.perKey[e.OrderKey()]++
	f.maxPerKey = max(f.maxPerKey, f.perKey[e.OrderKey()])
	f.mu.Unlock()
	var err error
	if f.fn != nil {
		err = f.fn(ctx, e, n)
	}
	f.mu.Lock()
	f.inflight--
	f.perKey[e.OrderKey()]--
	if err == nil {
		f.delivered = append(f.delivered, e.ID)
	}
	f.mu.Unlock()
	return err
}

func (f *fakeSink) get() (calls map[string]int, delivered []string, inflight, maxInflight, maxPerKey int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cloneMap(f.calls), slices.Clone(f.delivered), f.inflight, f.maxInflight, f.maxPerKey
}

func (f *fakeSink) callsOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func (f *fakeSink) isDelivered(ids ...string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if !slices.Contains(f.delivered, id) {
			return false
		}
	}
	return true
}

func cloneMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// logBuf is a concurrency-safe JSON log sink for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func (l *logBuf) find(msgPart string) map[string]any {
	for _, m := range l.lines() {
		if s, _ := m["msg"].(string); strings.Contains(s, msgPart) {
			return m
		}
	}
	return nil
}

func newLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func newStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// evt is event id of export key ("" for a bridge event).
func evt(id, key string) event.Event {
	return event.Event{ID: id, Type: "export.ready", Subject: key, Status: "ready",
		DetectedAt: time.Now(), Body: []byte(fmt.Sprintf(`{"id":%q}`, id))}
}

func enqueue(t testing.TB, st *store.Store, evs ...event.Event) {
	t.Helper()
	if err := st.Enqueue(sinkName, evs...); err != nil {
		t.Fatal(err)
	}
}

// start runs d until the returned stop function is called; stop returns Run's error.
func start(t *testing.T, d *delivery.Dispatcher) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("Run did not return within 60s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func pendingIDs(t *testing.T, st *store.Store) []string {
	t.Helper()
	recs, err := st.Pending(sinkName, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Event.ID
	}
	return out
}

func pendingRec(t *testing.T, st *store.Store, id string) store.Record {
	t.Helper()
	recs, err := st.Pending(sinkName, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Event.ID == id {
			return r
		}
	}
	t.Fatalf("event %s not pending", id)
	return store.Record{}
}

func waitIdle(t *testing.T, d *delivery.Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

func retryable(code int) error { return sinks.Errorf(code, "HTTP %d from fake", code) }

func TestDeliversInOrderPerExport(t *testing.T) {
	st := newStore(t)
	m := metrics.New(nil)
	var want = map[string][]string{}
	var evs []event.Event
	for i := range 20 {
		for k := range 10 {
			key := fmt.Sprintf("export-%d", k)
			if k == 9 {
				key = "" // bridge events are ordered too
			}
			e := evt(fmt.Sprintf("%d/%d", k, i), key)
			evs = append(evs, e)
			want[e.OrderKey()] = append(want[e.OrderKey()], e.ID)
		}
	}
	enqueue(t, st, evs...)
	failures := 0
	var fmu sync.Mutex
	fake := newFake(func(_ context.Context, e event.Event, call int) error {
		// Every third event fails on its first two calls: later events of its export
		// must wait for it.
		if strings.HasSuffix(e.ID, "0") || strings.HasSuffix(e.ID, "3") || strings.HasSuffix(e.ID, "6") {
			if call <= 2 {
				fmu.Lock()
				failures++
				fmu.Unlock()
				return retryable(503)
			}
		}
		return nil
	})
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Concurrency: 4,
		InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond,
		ProbeInitial: time.Millisecond, ProbeMax: 5 * time.Millisecond, Metrics: m})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	calls, delivered, _, maxInflight, maxPerKey := fake.get()
	if len(delivered) != 200 {
		t.Fatalf("delivered %d events, want 200", len(delivered))
	}
	got := map[string][]string{}
	for _, id := range delivered {
		var k, i int
		fmt.Sscanf(id, "%d/%d", &k, &i)
		key := fmt.Sprintf("export-%d", k)
		if k == 9 {
			key = "bridge"
		}
		got[key] = append(got[key], id)
	}
	for key, ids := range want {
		if !slices.Equal(got[key], ids) {
			t.Errorf("export %s delivered in order %v, want %v", key, got[key], ids)
		}
	}
	if maxPerKey != 1 {
		t.Errorf("max in-flight deliveries for one export = %d, want 1", maxPerKey)
	}
	if maxInflight > 4 {
		t.Errorf("max in-flight deliveries = %d, want <= 4", maxInflight)
	}
	for id, n := range calls {
		if n > 3 {
			t.Errorf("event %s called %d times, want at most 3", id, n)
		}
	}
	if n := len(pendingIDs(t, st)); n != 0 {
		t.Errorf("%d records left in the outbox", n)
	}
	if d.Queued() != 0 {
		t.Errorf("Queued() = %d after drain, want 0", d.Queued())
	}
	if v := testutil.ToFloat64(m.Deliveries.WithLabelValues(sinkName, "delivered")); v != 200 {
		t.Errorf("delivered metric = %v, want 200", v)
	}
	if v := testutil.ToFloat64(m.Deliveries.WithLabelValues(sinkName, "retry")); int(v) != failures {
		t.Errorf("retry metric = %v, want %d", v, failures)
	}
	if v := testutil.ToFloat64(m.OutboxDepth.WithLabelValues(sinkName)); v != 0 {
		t.Errorf("outbox depth gauge = %v, want 0", v)
	}
	if n := testutil.CollectAndCount(m.DeliveryLatency); n != 1 {
		t.Errorf("latency histogram series = %d, want 1", n)
	}
}

func TestRetryDoesNotBlockOtherExports(t *testing.T) {
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"), evt("A2", "A"), evt("B1", "B"), evt("C1", "C"))
	fake := newFake(func(_ context.Context, e event.Event, _ int) error {
		if e.ID == "A1" {
			return retryable(503)
		}
		return nil
	})
	log, logs := newLogger()
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, InitialInterval: time.Hour, Logger: log})
	stop := start(t, d)
	waitFor(t, "B1 and C1 delivered", func() bool { return fake.isDelivered("B1", "C1") })
	waitFor(t, "A1's attempt saved", func() bool { return pendingRec(t, st, "A1").Attempts == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	calls, delivered, _, _, _ := fake.get()
	if slices.Contains(delivered, "A2") || calls["A2"] != 0 {
		t.Errorf("A2 was attempted while A1 waits for its retry: calls %v", calls)
	}
	if calls["A1"] != 1 {
		t.Errorf("A1 called %d times, want 1 (next retry is an hour away)", calls["A1"])
	}
	if got := pendingIDs(t, st); !slices.Equal(got, []string{"A1", "A2"}) {
		t.Errorf("outbox = %v, want [A1 A2]", got)
	}
	a1 := pendingRec(t, st, "A1")
	if a1.Attempts != 1 || a1.FirstAttemptAt.IsZero() || a1.NextAttemptAt.Before(time.Now().Add(20*time.Minute)) ||
		a1.LastError != "HTTP 503 from fake" || a1.LastStatus != 503 {
		t.Errorf("A1 record = %+v, want 1 attempt, next in ~1h, last error and status", a1)
	}
	w := logs.find("will retry")
	if w == nil {
		t.Fatal("no warning logged for the failed attempt")
	}
	for k, v := range map[string]any{"level": "WARN", "sink": sinkName, "event_id": "A1", "export": "A",
		"attempt": float64(1), "error": "HTTP 503 from fake", "status": float64(503)} {
		if w[k] != v {
			t.Errorf("log %s = %v, want %v (line %v)", k, w[k], v, w)
		}
	}
	if next, _ := w["next_attempt"].(string); next == "" {
		t.Errorf("log has no next_attempt: %v", w)
	}
}

func TestConcurrencyCap(t *testing.T) {
	st := newStore(t)
	var evs []event.Event
	for i := range 4 {
		for k := range 5 {
			evs = append(evs, evt(fmt.Sprintf("%d-%d", k, i), fmt.Sprintf("export-%d", k)))
		}
	}
	enqueue(t, st, evs...)
	release := make(chan struct{})
	fake := newFake(func(ctx context.Context, _ event.Event, _ int) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Concurrency: 3})
	stop := start(t, d)
	waitFor(t, "3 deliveries in flight", func() bool { _, _, n, _, _ := fake.get(); return n == 3 })
	time.Sleep(50 * time.Millisecond) // room for a 4th to (wrongly) start
	close(release)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, delivered, _, maxInflight, maxPerKey := fake.get()
	if len(delivered) != 20 || maxInflight != 3 || maxPerKey != 1 {
		t.Errorf("delivered %d, max in flight %d, max per export %d; want 20, 3, 1", len(delivered), maxInflight, maxPerKey)
	}
}

func TestDeadLetters(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		opts         delivery.DispatcherOptions
		wantAttempts func(int) bool
		wantStatus   int
		wantError    string
	}{
		{
			name: "permanent error, no retry", err: sinks.WithStatus(sinks.Permanent(errors.New("410 Gone")), 410),
			wantAttempts: func(n int) bool { return n == 1 }, wantStatus: 410, wantError: "410 Gone",
		},
		{
			name: "long error kept short", err: sinks.Permanent(errors.New("x" + strings.Repeat("é", 3000))),
			wantAttempts: func(n int) bool { return n == 1 }, wantError: "x" + strings.Repeat("é", 499) + "…",
		},
		{
			name: "retry budget spent", err: retryable(503),
			opts:         delivery.DispatcherOptions{MaxElapsed: 300 * time.Millisecond, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond},
			wantAttempts: func(n int) bool { return n >= 2 }, wantStatus: 503, wantError: "HTTP 503 from fake",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t)
			m := metrics.New(nil)
			enqueue(t, st, evt("A1", "A"), evt("A2", "A"))
			fake := newFake(func(_ context.Context, e event.Event, _ int) error {
				if e.ID == "A1" {
					return tt.err
				}
				return nil
			})
			log, logs := newLogger()
			o := tt.opts
			o.Sink, o.Metrics, o.Logger = fake, m, log
			d := delivery.NewDispatcher(st, o)
			stop := start(t, d)
			waitIdle(t, d) // dead letters leave the outbox
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			dl, err := st.DeadLetters(sinkName)
			if err != nil || len(dl) != 1 {
				t.Fatalf("DeadLetters = %d, %v; want 1", len(dl), err)
			}
			r := dl[0]
			if r.Event.ID != "A1" || !tt.wantAttempts(r.Attempts) || r.LastStatus != tt.wantStatus ||
				r.LastError != tt.wantError || r.DeadAt.IsZero() {
				t.Errorf("dead letter = %+v", r)
			}
			if n := fake.callsOf("A1"); n != r.Attempts {
				t.Errorf("A1 called %d times, record says %d attempts", n, r.Attempts)
			}
			if !fake.isDelivered("A2") {
				t.Error("A2 not delivered after A1 was dead-lettered")
			}
			if v := testutil.ToFloat64(m.Deliveries.WithLabelValues(sinkName, "dead_letter")); v != 1 {
				t.Errorf("dead_letter metric = %v, want 1", v)
			}
			if v := testutil.ToFloat64(m.DeadLetterDepth.WithLabelValues(sinkName)); v != 1 {
				t.Errorf("dead-letter depth gauge = %v, want 1", v)
			}
			if l := logs.find("dead-letter"); l == nil || l["level"] != "ERROR" || l["event_id"] != "A1" {
				t.Errorf("dead-letter log = %v", l)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	tests := []struct {
		name     string
		after    time.Duration
		maxAfter time.Duration
		minGap   time.Duration
	}{
		{"server delay used instead of backoff", 40 * time.Millisecond, 0, 40 * time.Millisecond},
		{"server delay capped", 10 * time.Hour, 30 * time.Millisecond, 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t)
			enqueue(t, st, evt("A1", "A"))
			fake := newFake(func(_ context.Context, _ event.Event, call int) error {
				if call == 1 {
					return sinks.RetryAfter(retryable(429), tt.after)
				}
				return nil
			})
			// The backoff alone would wait an hour.
			d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, InitialInterval: time.Hour, MaxRetryAfter: tt.maxAfter})
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
			if gap := times[1].Sub(times[0]); gap < tt.minGap {
				t.Errorf("retried after %v, before the server-given %v", gap, tt.minGap)
			}
		})
	}
}

func TestRestartContinuesSchedule(t *testing.T) {
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"))
	failing := newFake(func(context.Context, event.Event, int) error { return retryable(503) })
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: failing, InitialInterval: time.Hour})
	stop := start(t, d)
	waitFor(t, "A1's attempt saved", func() bool { return pendingRec(t, st, "A1").Attempts == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	a1 := pendingRec(t, st, "A1")
	if a1.NextAttemptAt.Before(time.Now().Add(20 * time.Minute)) {
		t.Fatalf("A1 next attempt %v, want about an hour away", a1.NextAttemptAt)
	}

	// A new dispatcher (a restart) must not retry A1 before its NextAttemptAt, while it
	// delivers another export's event.
	ok := newFake(nil)
	d = delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: ok, InitialInterval: time.Hour})
	stop = start(t, d)
	enqueue(t, st, evt("B1", "B"))
	d.Notify()
	waitFor(t, "B1 delivered", func() bool { return ok.isDelivered("B1") })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := ok.callsOf("A1"); n != 0 {
		t.Errorf("A1 retried %d times after restart, before its next attempt time", n)
	}

	// The backoff continues from the stored attempt count: after attempt 6 with a 1s
	// initial interval the wait is 32s +/- 50%.
	a1 = pendingRec(t, st, "A1")
	a1.Attempts, a1.NextAttemptAt, a1.FirstAttemptAt = 5, time.Now().Add(-time.Second), time.Now()
	if err := st.Settle(a1.Sink, store.Settlement{Attempts: []store.Record{a1}}); err != nil {
		t.Fatal(err)
	}
	failing = newFake(func(context.Context, event.Event, int) error { return retryable(503) })
	d = delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: failing, InitialInterval: time.Second, MaxInterval: time.Hour})
	before := time.Now()
	stop = start(t, d)
	waitFor(t, "attempt 6 saved", func() bool { return pendingRec(t, st, "A1").Attempts == 6 })
	after := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	a1 = pendingRec(t, st, "A1")
	if a1.NextAttemptAt.Sub(before) < 16*time.Second || a1.NextAttemptAt.Sub(after) > 48*time.Second {
		t.Errorf("next attempt %v after attempt 6, want 16s..48s later", a1.NextAttemptAt.Sub(before))
	}

	// The retry budget counts from the stored first attempt: one more failure past it
	// dead-letters.
	a1.NextAttemptAt, a1.FirstAttemptAt = time.Time{}, time.Now().Add(-2*time.Hour)
	if err := st.Settle(a1.Sink, store.Settlement{Attempts: []store.Record{a1}}); err != nil {
		t.Fatal(err)
	}
	d = delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: failing, MaxElapsed: time.Hour})
	stop = start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if dl, _ := st.DeadLetters(sinkName); len(dl) != 1 || dl[0].Attempts != 7 {
		t.Errorf("dead letters = %+v, want A1 with 7 attempts", dl)
	}
}

func TestBackoff(t *testing.T) {
	d := delivery.NewDispatcher(nil, delivery.DispatcherOptions{Sink: newFake(nil)}) // defaults 1s, 5m
	tests := []struct {
		attempts int
		lo, hi   time.Duration
	}{
		{0, 500 * time.Millisecond, 1500 * time.Millisecond},
		{1, 500 * time.Millisecond, 1500 * time.Millisecond},
		{2, time.Second, 3 * time.Second},
		{4, 4 * time.Second, 12 * time.Second},
		{9, 128 * time.Second, 384 * time.Second},
		{10, 150 * time.Second, 450 * time.Second}, // capped at 5m
		{10_000, 150 * time.Second, 450 * time.Second},
	}
	for _, tt := range tests {
		for range 20 {
			if got := d.Backoff(tt.attempts); got < tt.lo || got > tt.hi {
				t.Errorf("Backoff(%d) = %v, want %v..%v", tt.attempts, got, tt.lo, tt.hi)
			}
		}
	}
}

func TestGracefulStop(t *testing.T) {
	t.Run("in-flight delivery finishes within grace; nothing new starts", func(t *testing.T) {
		st := newStore(t)
		enqueue(t, st, evt("A1", "A"), evt("B1", "B"))
		release := make(chan struct{})
		fake := newFake(func(ctx context.Context, _ event.Event, _ int) error {
			<-release
			return nil
		})
		log, logs := newLogger()
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Logger: log, Grace: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		waitFor(t, "A1 in flight", func() bool { return fake.callsOf("A1") == 1 })
		cancel()
		waitFor(t, "dispatcher stopping", func() bool { return logs.find("dispatcher stopping") != nil })
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if got := pendingIDs(t, st); !slices.Equal(got, []string{"B1"}) {
			t.Errorf("outbox after stop = %v, want [B1] (A1 delivered and acked)", got)
		}
		if n := fake.callsOf("B1"); n != 0 {
			t.Errorf("B1 started %d times after stop", n)
		}
	})
	t.Run("grace over: cancelled delivery stays queued", func(t *testing.T) {
		st := newStore(t)
		enqueue(t, st, evt("A1", "A"))
		fake := newFake(func(ctx context.Context, _ event.Event, _ int) error {
			<-ctx.Done()
			return ctx.Err()
		})
		log, logs := newLogger()
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Logger: log, Grace: 20 * time.Millisecond})
		stop := start(t, d)
		waitFor(t, "A1 in flight", func() bool { return fake.callsOf("A1") == 1 })
		if err := stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		r := pendingRec(t, st, "A1")
		if r.Attempts != 0 || r.LastError != "" {
			t.Errorf("cancelled delivery counted as an attempt: %+v", r)
		}
		if logs.find("cancelled by shutdown") == nil {
			t.Error("no log of the cancelled delivery")
		}
		if dl, _ := st.DeadLetters(""); len(dl) != 0 {
			t.Errorf("dead letters after stop: %+v", dl)
		}
	})
	t.Run("sink ignoring cancellation", func(t *testing.T) {
		defer delivery.SetAfterCancel(50 * time.Millisecond)()
		st := newStore(t)
		enqueue(t, st, evt("A1", "A"))
		release := make(chan struct{})
		defer close(release)
		fake := newFake(func(context.Context, event.Event, int) error { <-release; return nil })
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Grace: -1})
		stop := start(t, d)
		waitFor(t, "A1 in flight", func() bool { return fake.callsOf("A1") == 1 })
		err := stop()
		if err == nil || !strings.Contains(err.Error(), "1 deliveries did not return") {
			t.Errorf("Run = %v, want an error about the stuck delivery", err)
		}
		if got := pendingIDs(t, st); !slices.Equal(got, []string{"A1"}) {
			t.Errorf("outbox = %v, want [A1]", got)
		}
	})
}

func TestReplayPickedUpWhileRunning(t *testing.T) {
	for _, notify := range []bool{true, false} {
		t.Run(fmt.Sprintf("notify=%v", notify), func(t *testing.T) {
			st := newStore(t)
			enqueue(t, st, evt("A1", "A"))
			fake := newFake(func(_ context.Context, _ event.Event, call int) error {
				if call == 1 {
					return sinks.Permanent(errors.New("400 bad request"))
				}
				return nil
			})
			d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake})
			stop := start(t, d)
			waitFor(t, "A1 dead-lettered", func() bool {
				dl, err := st.DeadLetters(sinkName)
				return err == nil && len(dl) == 1
			})
			if n, err := st.Replay(sinkName, []string{"A1"}, false); err != nil || n != 1 {
				t.Fatalf("Replay = %d, %v", n, err)
			}
			if notify {
				d.Notify()
			} // else the periodic re-scan finds it
			waitFor(t, "replayed A1 delivered", func() bool { return fake.isDelivered("A1") })
			waitIdle(t, d)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if n := fake.callsOf("A1"); n != 2 {
				t.Errorf("A1 called %d times, want 2", n)
			}
		})
	}
}

func TestWaitIdle(t *testing.T) {
	st := newStore(t)
	var evs []event.Event
	for i := range 50 {
		evs = append(evs, evt(fmt.Sprint(i), fmt.Sprint(i%7)))
	}
	enqueue(t, st, evs...)
	fake := newFake(func(_ context.Context, e event.Event, _ int) error {
		if e.ID == "stuck" {
			return retryable(500)
		}
		return nil
	})
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, InitialInterval: time.Hour})
	for range 100 {
		d.Notify() // never blocks, even before Run
	}
	stop := start(t, d)
	waitIdle(t, d)
	if n := len(pendingIDs(t, st)); n != 0 {
		t.Errorf("WaitIdle returned with %d queued", n)
	}

	enqueue(t, st, evt("stuck", "S"))
	d.Notify()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := d.WaitIdle(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "wait for sink fake to drain") {
		t.Errorf("WaitIdle with a stuck event = %v, want deadline error naming the sink", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRunErrors(t *testing.T) {
	t.Run("no sink", func(t *testing.T) {
		err := delivery.NewDispatcher(newStore(t), delivery.DispatcherOptions{}).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "no sink") {
			t.Errorf("Run without sink = %v", err)
		}
	})
	t.Run("already running", func(t *testing.T) {
		st := newStore(t)
		enqueue(t, st, evt("A1", "A"))
		fake := newFake(nil)
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake})
		stop := start(t, d)
		waitFor(t, "first Run delivering", func() bool { return fake.isDelivered("A1") })
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // were it not refused, this Run would stop at once and return nil
		if err := d.Run(ctx); err == nil || !strings.Contains(err.Error(), "dispatcher fake is already running") {
			t.Errorf("second Run = %v", err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("closed store", func(t *testing.T) {
		st := newStore(t)
		_ = st.Close()
		err := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: newFake(nil)}).Run(context.Background())
		if !errors.Is(err, bolt.ErrDatabaseNotOpen) || !strings.Contains(err.Error(), "dispatcher fake") {
			t.Errorf("Run on closed store = %v", err)
		}
		err = delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: newFake(nil)}).WaitIdle(context.Background())
		if !errors.Is(err, bolt.ErrDatabaseNotOpen) {
			t.Errorf("WaitIdle on closed store = %v", err)
		}
	})
	t.Run("store fails while running", func(t *testing.T) {
		st := newStore(t)
		enqueue(t, st, evt("A1", "A"))
		release := make(chan struct{})
		fake := newFake(func(context.Context, event.Event, int) error { <-release; return nil })
		log, logs := newLogger()
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Logger: log})
		stop := start(t, d)
		waitFor(t, "A1 in flight", func() bool { return fake.callsOf("A1") == 1 })
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		close(release)
		waitFor(t, "settle error logged", func() bool { return logs.find("cannot record delivery outcomes") != nil })
		d.Notify()
		waitFor(t, "read error logged", func() bool { return logs.find("cannot read its outbox") != nil })
		err := stop()
		if !errors.Is(err, bolt.ErrDatabaseNotOpen) || !strings.Contains(err.Error(), "re-delivered") {
			t.Errorf("Run = %v, want the failed final settle", err)
		}
	})
}

func TestSinkPanicIsRetried(t *testing.T) {
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"))
	fake := newFake(func(_ context.Context, _ event.Event, call int) error {
		if call == 1 {
			panic("boom")
		}
		return nil
	})
	log, logs := newLogger()
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, InitialInterval: time.Millisecond, Logger: log})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := fake.callsOf("A1"); n != 2 || !fake.isDelivered("A1") {
		t.Errorf("A1 called %d times, delivered %v; want 2, true", n, fake.isDelivered("A1"))
	}
	if l := logs.find("will retry"); l == nil || !strings.Contains(fmt.Sprint(l["error"]), "sink fake panicked delivering event A1: boom") {
		t.Errorf("retry log = %v, want the panic as error", l)
	}
}

// TestLargeBacklog drains more records than a dispatcher holds in memory at once.
func TestLargeBacklog(t *testing.T) {
	st := newStore(t)
	const n, keys = 12_000, 300
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = evt(fmt.Sprint(i), fmt.Sprint(i%keys))
	}
	enqueue(t, st, evs...)
	var mu sync.Mutex
	last := map[string]int{}
	outOfOrder := 0
	fake := newFake(func(_ context.Context, e event.Event, _ int) error {
		var i int
		fmt.Sscan(e.ID, &i)
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[e.Subject]; ok && prev >= i {
			outOfOrder++
		}
		last[e.Subject] = i
		return nil
	})
	m := metrics.New(nil)
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Concurrency: 4, Metrics: m})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, delivered, _, _, maxPerKey := fake.get()
	if len(delivered) != n || outOfOrder != 0 || maxPerKey != 1 {
		t.Errorf("delivered %d (want %d), out of order %d, max per export %d", len(delivered), n, outOfOrder, maxPerKey)
	}
	if q := d.Queued(); q != 0 {
		t.Errorf("Queued() = %d after drain", q)
	}
	if v := testutil.ToFloat64(m.Deliveries.WithLabelValues(sinkName, "delivered")); v != n {
		t.Errorf("delivered metric = %v, want %d", v, n)
	}
}

// wakingSink is a fakeSink whose destination can announce that it is back (sinks.Waker).
type wakingSink struct {
	*fakeSink
	mu   sync.Mutex
	wake func()
}

func (w *wakingSink) OnRecover(wake func()) { w.mu.Lock(); w.wake = wake; w.mu.Unlock() }

func (w *wakingSink) recovered() {
	w.mu.Lock()
	wake := w.wake
	w.mu.Unlock()
	wake()
}

// TestWakerRetriesWaitingEventsAtOnce: events waiting an hour for their retry go as soon
// as the sink says its destination is back, keeping their per-export order.
func TestWakerRetriesWaitingEventsAtOnce(t *testing.T) {
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"), evt("A2", "A"), evt("B1", "B"))
	var down atomic.Bool
	down.Store(true)
	w := &wakingSink{fakeSink: newFake(func(_ context.Context, _ event.Event, _ int) error {
		if down.Load() {
			return sinks.RetryAfter(errors.New("destination down"), time.Hour)
		}
		return nil
	})}
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: w, Concurrency: 2})
	stop := start(t, d)
	waitFor(t, "A1 and B1 attempted", func() bool { return w.callsOf("A1") == 1 && w.callsOf("B1") == 1 })
	down.Store(false)
	w.recovered()
	waitFor(t, "everything delivered after the wake", func() bool { return w.isDelivered("A1", "A2", "B1") })
	_, delivered, _, _, _ := w.get()
	if i1, i2 := slices.Index(delivered, "A1"), slices.Index(delivered, "A2"); i1 > i2 {
		t.Errorf("per-export order broken: %v", delivered)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
