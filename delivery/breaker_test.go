package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/sinks"
)

func sinkUp(m *metrics.Metrics) float64 {
	return testutil.ToFloat64(m.SinkUp.WithLabelValues(sinkName))
}

// waitDown waits until f had at least BreakerThreshold attempts and the sink is marked
// down (the gauge also reads 0 before a dispatcher first sets it).
func waitDown(t *testing.T, m *metrics.Metrics, f *fakeSink) {
	t.Helper()
	waitFor(t, "the sink down", func() bool {
		f.mu.Lock()
		n := 0
		for _, c := range f.calls {
			n += c
		}
		f.mu.Unlock()
		return n >= delivery.BreakerThreshold && sinkUp(m) == 0
	})
}

// outage is a sink destination that is down until up is called.
type outage struct{ down atomic.Bool }

func newOutage() *outage { o := &outage{}; o.down.Store(true); return o }

func (o *outage) up() { o.down.Store(false) }

func (o *outage) deliver(context.Context, event.Event, int) error {
	if o.down.Load() {
		return retryable(503)
	}
	return nil
}

// TestSinkGoesDownAfterFiveFailuresInARow: one event per export, one delivery at a time,
// each failed event's own retry an hour away; outcomes are given per event, in queue order.
func TestSinkGoesDownAfterFiveFailuresInARow(t *testing.T) {
	const (
		fail = "503"
		perm = "400"
		ok   = "ok"
	)
	tests := []struct {
		name      string
		outcomes  []string
		wantCalls int
		wantUp    bool
	}{
		{"four failures in a row: still up", []string{fail, fail, fail, fail, ok, ok}, 6, true},
		{"five failures in a row: down, nothing else attempted", []string{fail, fail, fail, fail, fail, ok, ok}, 5, false},
		{"a success ends the row", []string{fail, fail, fail, fail, ok, fail, fail, fail, fail}, 9, true},
		{"permanent errors do not count", []string{fail, fail, fail, fail, perm, perm, perm, perm, perm, perm}, 10, true},
		{"permanent errors do not break the row", []string{fail, fail, perm, fail, perm, fail, fail, ok}, 7, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t)
			var evs []event.Event
			outcome := map[string]string{}
			for i, o := range tt.outcomes {
				id := fmt.Sprintf("e%02d", i)
				evs = append(evs, evt(id, "export-"+id))
				outcome[id] = o
			}
			enqueue(t, st, evs...)
			fake := newFake(func(_ context.Context, e event.Event, _ int) error {
				switch outcome[e.ID] {
				case fail:
					return retryable(503)
				case perm:
					return sinks.WithStatus(sinks.Permanent(errors.New("HTTP 400 from fake")), 400)
				}
				return nil
			})
			m := metrics.New(nil)
			log, logs := newLogger()
			d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, InitialInterval: time.Hour,
				ProbeInitial: time.Hour, Metrics: m, Logger: log})
			stop := start(t, d)
			total := func() int {
				n := 0
				for _, c := range fake.calls {
					n += c
				}
				return n
			}
			waitFor(t, fmt.Sprintf("%d attempts", tt.wantCalls), func() bool {
				fake.mu.Lock()
				defer fake.mu.Unlock()
				return total() >= tt.wantCalls
			})
			time.Sleep(100 * time.Millisecond) // room for an attempt that must not happen
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			fake.mu.Lock()
			calls := total()
			fake.mu.Unlock()
			if calls != tt.wantCalls {
				t.Errorf("%d attempts, want %d", calls, tt.wantCalls)
			}
			if up := sinkUp(m) == 1; up != tt.wantUp {
				t.Errorf("exportbridge_sink_up = %v, want up=%v", sinkUp(m), tt.wantUp)
			}
			down := logs.find("sink is down")
			if (down != nil) == tt.wantUp {
				t.Errorf("sink-down log = %v, want one only when down", down)
			}
			if down != nil && (down["level"] != "ERROR" || down["last_error"] != "HTTP 503 from fake" || down["failed_attempts"] != float64(5)) {
				t.Errorf("sink-down log = %v, want ERROR with last_error and failed_attempts 5", down)
			}
		})
	}
}

// TestDownSinkGetsOneProbeAtATime: a sink whose every attempt fails, with room for 8
// deliveries and each event's own retry a few milliseconds away, is sent one probe at
// a time on the breaker's backoff instead of every event's retry.
func TestDownSinkGetsOneProbeAtATime(t *testing.T) {
	st := newStore(t)
	var evs []event.Event
	for i := range 40 {
		evs = append(evs, evt(fmt.Sprint(i), fmt.Sprintf("export-%d", i)))
	}
	enqueue(t, st, evs...)
	var (
		mu                   sync.Mutex
		calls, inflight      int
		maxProbeInflight     int
		probeStarts          []time.Time
		beforeOpenConcurrent int
	)
	fake := newFake(func(context.Context, event.Event, int) error {
		mu.Lock()
		calls++
		inflight++
		if calls > delivery.BreakerThreshold {
			maxProbeInflight = max(maxProbeInflight, inflight)
			probeStarts = append(probeStarts, time.Now())
		} else {
			beforeOpenConcurrent = max(beforeOpenConcurrent, inflight)
		}
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
		return retryable(503)
	})
	m := metrics.New(nil)
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Concurrency: 8,
		InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond,
		ProbeInitial: 20 * time.Millisecond, ProbeMax: 80 * time.Millisecond, Metrics: m})
	stop := start(t, d)
	time.Sleep(time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d attempts in 1s (%d probes); at most %d in flight before the breaker opened", calls, len(probeStarts), beforeOpenConcurrent)
	if sinkUp(m) != 0 {
		t.Errorf("exportbridge_sink_up = %v, want 0", sinkUp(m))
	}
	if len(probeStarts) < 5 {
		t.Fatalf("%d probes in 1s, want at least 5 (20ms doubling, capped at 80ms)", len(probeStarts))
	}
	// Without a breaker: 8 in flight, each retried every few ms, thousands of attempts.
	if calls > 40 {
		t.Errorf("%d attempts in 1s, want at most 40 (5, then one probe per 10-80ms)", calls)
	}
	if maxProbeInflight != 1 {
		t.Errorf("%d probes in flight at once, want 1", maxProbeInflight)
	}
	for i := 1; i < len(probeStarts); i++ {
		if gap := probeStarts[i].Sub(probeStarts[i-1]); gap < 10*time.Millisecond || gap > 500*time.Millisecond {
			t.Errorf("probe %d came %v after the previous one, want 10ms..500ms (backoff 20ms doubling to 80ms)", i+1, gap)
			break
		}
	}
}

// TestSinkBackDeliversEveryWaitingEventAtOnce: events whose own retry is an hour away go
// as soon as a probe succeeds, in per-export order.
func TestSinkBackDeliversEveryWaitingEventAtOnce(t *testing.T) {
	st := newStore(t)
	var evs []event.Event
	want := map[string][]string{}
	for i := range 3 {
		for k := range 10 {
			e := evt(fmt.Sprintf("%d/%d", k, i), fmt.Sprintf("export-%d", k))
			evs = append(evs, e)
			want[e.Subject] = append(want[e.Subject], e.ID)
		}
	}
	enqueue(t, st, evs...)
	o := newOutage()
	fake := newFake(o.deliver)
	m := metrics.New(nil)
	log, logs := newLogger()
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Concurrency: 4, InitialInterval: time.Hour,
		ProbeInitial: 20 * time.Millisecond, ProbeMax: 50 * time.Millisecond, Metrics: m, Logger: log})
	stop := start(t, d)
	waitFor(t, "the sink down and probed twice", func() bool {
		calls, _, _, _, _ := fake.get()
		n := 0
		for _, c := range calls {
			n += c
		}
		return sinkUp(m) == 0 && n >= delivery.BreakerThreshold+2
	})
	o.up()
	back := time.Now()
	waitFor(t, "all 30 delivered", func() bool { _, delivered, _, _, _ := fake.get(); return len(delivered) == 30 })
	// Healthy: one probe gap (<= 50ms) and the drain; broken: the hour of each event's retry.
	if took := time.Since(back); took > 5*time.Second {
		t.Errorf("catch-up took %v after the sink came back, want under 5s", took)
	}
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, delivered, _, _, maxPerKey := fake.get()
	got := map[string][]string{}
	for _, id := range delivered {
		var k, i int
		fmt.Sscanf(id, "%d/%d", &k, &i)
		got[fmt.Sprintf("export-%d", k)] = append(got[fmt.Sprintf("export-%d", k)], id)
	}
	for key, ids := range want {
		if !slices.Equal(got[key], ids) {
			t.Errorf("export %s delivered in order %v, want %v", key, got[key], ids)
		}
	}
	if maxPerKey != 1 {
		t.Errorf("max in-flight deliveries for one export = %d, want 1", maxPerKey)
	}
	if sinkUp(m) != 1 {
		t.Errorf("exportbridge_sink_up = %v after recovery, want 1", sinkUp(m))
	}
	if l := logs.find("sink is back"); l == nil || l["level"] != "INFO" {
		t.Errorf("sink-back log = %v", l)
	}
}

// TestFlappingSinkKeepsPerExportOrder: a sink failing every other attempt opens and
// closes its breaker over and over; every event still arrives, in order per export.
func TestFlappingSinkKeepsPerExportOrder(t *testing.T) {
	st := newStore(t)
	var evs []event.Event
	for i := range 10 {
		for k := range 10 {
			evs = append(evs, evt(fmt.Sprintf("%d/%d", k, i), fmt.Sprintf("export-%d", k)))
		}
	}
	enqueue(t, st, evs...)
	var n atomic.Int64
	fake := newFake(func(context.Context, event.Event, int) error {
		// Runs of six failures, then four successes: the breaker opens on every run.
		if n.Add(1)%10 < 6 {
			return retryable(503)
		}
		return nil
	})
	log, logs := newLogger()
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Concurrency: 4,
		InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond,
		ProbeInitial: time.Millisecond, ProbeMax: 5 * time.Millisecond, Logger: log})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, delivered, _, _, maxPerKey := fake.get()
	last := map[int]int{}
	for _, id := range delivered {
		var k, i int
		fmt.Sscanf(id, "%d/%d", &k, &i)
		if prev, ok := last[k]; ok && prev >= i {
			t.Errorf("export-%d: event %d delivered after %d", k, i, prev)
		}
		last[k] = i
	}
	if len(delivered) != 100 || maxPerKey != 1 {
		t.Errorf("delivered %d (want 100), max in flight per export %d (want 1)", len(delivered), maxPerKey)
	}
	if logs.find("sink is down") == nil || logs.find("sink is back") == nil {
		t.Error("the breaker never opened and closed: the test checked nothing")
	}
}

// TestRestartMidOutage: a bridge restarted while its sink is down keeps each event's
// stored schedule, probes one attempt at a time from the start instead of trying every
// event whose retry is due, and delivers everything at once when the sink is back.
func TestRestartMidOutage(t *testing.T) {
	st := newStore(t)
	var evs []event.Event
	for i := range 20 {
		evs = append(evs, evt(fmt.Sprint(i), fmt.Sprintf("export-%d", i)))
	}
	evs = append(evs, evt("0b", "export-0"))
	enqueue(t, st, evs...)

	// Before the restart: the sink goes down after 5 attempts, each retry an hour away.
	o := newOutage()
	first := newFake(o.deliver)
	m := metrics.New(nil)
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: first, InitialInterval: time.Hour,
		ProbeInitial: time.Hour, Metrics: m})
	stop := start(t, d)
	waitDown(t, m, first)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	attempted := map[string]bool{}
	for _, id := range pendingIDs(t, st) {
		r := pendingRec(t, st, id)
		if r.Attempts > 0 {
			attempted[id] = true
			if r.NextAttemptAt.Before(time.Now().Add(20 * time.Minute)) {
				t.Errorf("event %s: next attempt %v, want about an hour away", id, r.NextAttemptAt)
			}
		}
	}
	if len(attempted) != delivery.BreakerThreshold {
		t.Fatalf("%d events attempted before the restart, want %d", len(attempted), delivery.BreakerThreshold)
	}

	// After the restart, still down: one probe at a time, on the breaker's backoff.
	var mu sync.Mutex
	var callTimes []time.Time
	var inflight, maxDownInflight int
	second := newFake(func(ctx context.Context, e event.Event, call int) error {
		mu.Lock()
		callTimes = append(callTimes, time.Now())
		inflight++
		if o.down.Load() {
			maxDownInflight = max(maxDownInflight, inflight)
		}
		mu.Unlock()
		defer func() { mu.Lock(); inflight--; mu.Unlock() }()
		return o.deliver(ctx, e, call)
	})
	m = metrics.New(nil)
	log, logs := newLogger()
	d = delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: second, Concurrency: 4, InitialInterval: time.Hour,
		ProbeInitial: 200 * time.Millisecond, ProbeMax: 200 * time.Millisecond, Metrics: m, Logger: log})
	started := time.Now()
	stop = start(t, d)
	waitFor(t, "two probes after the restart", func() bool { mu.Lock(); defer mu.Unlock(); return len(callTimes) >= 2 })
	if sinkUp(m) != 0 {
		t.Errorf("exportbridge_sink_up = %v after a restart mid-outage, want 0", sinkUp(m))
	}
	if l := logs.find("failing before the restart"); l == nil || l["waiting_events"] != float64(5) {
		t.Errorf("restart log = %v, want the 5 waiting events", l)
	}
	mu.Lock()
	firstAfter := callTimes[0].Sub(started)
	mu.Unlock()
	// Healthy: the first probe after the breaker's backoff (100-200ms); broken: at once.
	if firstAfter < 50*time.Millisecond {
		t.Errorf("first attempt %v after the restart, want the breaker's backoff first (>= 100ms)", firstAfter)
	}
	for id := range attempted {
		if n := second.callsOf(id); n != 0 {
			t.Errorf("event %s, whose retry is an hour away, was attempted %d times while the sink is down", id, n)
		}
	}

	o.up()
	back := time.Now()
	waitIdle(t, d)
	if took := time.Since(back); took > 5*time.Second {
		t.Errorf("catch-up took %v after the sink came back, want under 5s", took)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, delivered, _, _, _ := second.get()
	if len(delivered) != 21 {
		t.Errorf("delivered %d after the restart, want 21", len(delivered))
	}
	if i0, ib := slices.Index(delivered, "0"), slices.Index(delivered, "0b"); i0 < 0 || i0 > ib {
		t.Errorf("per-export order broken across the restart: %v", delivered)
	}
	if maxDownInflight != 1 {
		t.Errorf("%d deliveries in flight at once while the sink was down, want 1 (the probe)", maxDownInflight)
	}
	if sinkUp(m) != 1 {
		t.Errorf("exportbridge_sink_up = %v after recovery, want 1", sinkUp(m))
	}
}

// TestWakeProbesDownSinkAtOnce: the NATS reconnect wake (sinks.Waker) makes a down sink's
// next probe go now instead of at the breaker's next backoff, and its success delivers
// every waiting event.
func TestWakeProbesDownSinkAtOnce(t *testing.T) {
	st := newStore(t)
	var evs []event.Event
	for i := range 8 {
		evs = append(evs, evt(fmt.Sprint(i), fmt.Sprintf("export-%d", i%6)))
	}
	enqueue(t, st, evs...)
	o := newOutage()
	w := &wakingSink{fakeSink: newFake(o.deliver)}
	m := metrics.New(nil)
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: w, Concurrency: 2, InitialInterval: time.Hour,
		ProbeInitial: time.Hour, Metrics: m})
	stop := start(t, d)
	waitDown(t, m, w.fakeSink)
	o.up()
	w.recovered()
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, delivered, _, _, _ := w.get(); len(delivered) != 8 {
		t.Errorf("delivered %d, want 8", len(delivered))
	}
	if sinkUp(m) != 1 {
		t.Errorf("exportbridge_sink_up = %v after the wake, want 1", sinkUp(m))
	}
}

// alerts records the sink health alerts a dispatcher hands over.
type alerts struct {
	mu   sync.Mutex
	list []delivery.Alert
}

func (a *alerts) SinkHealth(al delivery.Alert) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = append(a.list, al)
	return nil
}

func (a *alerts) get() []delivery.Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.list)
}

// TestSinkHealthAlerts: a sink down for longer than AlertOptions.After is announced
// (bridge.sink_failing), and its first delivery after that too (bridge.sink_recovered).
func TestSinkHealthAlerts(t *testing.T) {
	tests := []struct {
		name      string
		after     time.Duration
		downFor   time.Duration
		wantTypes []string
	}{
		{"down past the alert delay: failing, then recovered", 100 * time.Millisecond, 400 * time.Millisecond,
			[]string{event.TypeSinkFailing, event.TypeSinkRecovered}},
		{"back before the alert delay: no alert", time.Hour, 200 * time.Millisecond, nil},
		{"alert delay 0: no alert", 0, 400 * time.Millisecond, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t)
			var evs []event.Event
			for i := range 12 {
				evs = append(evs, evt(fmt.Sprint(i), fmt.Sprintf("export-%d", i)))
			}
			enqueue(t, st, evs...)
			o := newOutage()
			fake := newFake(o.deliver)
			m := metrics.New(nil)
			rec := &alerts{}
			d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Concurrency: 2, InitialInterval: time.Hour,
				ProbeInitial: 20 * time.Millisecond, ProbeMax: 50 * time.Millisecond, Metrics: m,
				Alert: delivery.AlertOptions{Kind: "webhook", Destination: "https://example.com/hook", After: tt.after, Alerter: rec}})
			stop := start(t, d)
			waitDown(t, m, fake)
			time.Sleep(tt.downFor)
			o.up()
			waitIdle(t, d)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			got := rec.get()
			var types []string
			for _, a := range got {
				types = append(types, a.Type)
			}
			if !slices.Equal(types, tt.wantTypes) {
				t.Fatalf("alerts %v, want %v", types, tt.wantTypes)
			}
			if len(got) == 0 {
				return
			}
			failing, recovered := got[0], got[1]
			if failing.Sink != sinkName || failing.Kind != "webhook" || failing.Destination != "https://example.com/hook" ||
				failing.LastError != "HTTP 503 from fake" || failing.Queued != 12 || failing.Failures < delivery.BreakerThreshold ||
				failing.Since.IsZero() || failing.At.Sub(failing.Since) < tt.after {
				t.Errorf("sink_failing alert = %+v", failing)
			}
			if recovered.Sink != sinkName || !recovered.Since.Equal(failing.Since) || recovered.Queued > 12 ||
				recovered.Failures < failing.Failures || recovered.At.Before(failing.At) {
				t.Errorf("sink_recovered alert = %+v (after %+v)", recovered, failing)
			}
		})
	}
}
