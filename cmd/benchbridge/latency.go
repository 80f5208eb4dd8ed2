package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// benchLatency times status change in the simulated API -> event at a loopback webhook
// receiver, wired like cmd/exportbridge: poller.Run + a dispatcher + the webhook sink.
func benchLatency(ctx context.Context, w io.Writer, changes int, interval, active time.Duration) error {
	e := newEnv(0) // the API's real default limit, 500/minute, and the real budget
	defer e.close()
	e.sim.AddN(1000, plugchoice.StatusReady)
	inflight := e.sim.AddN(10, plugchoice.StatusPending)

	var (
		mu      sync.Mutex
		changed = map[string]time.Time{}
		lat     []time.Duration
		deliver []time.Duration // detection (data.observed_at) -> arrival
		done    = make(chan struct{})
	)
	key := []byte("benchbridge-latency-secret-key!!")
	recv := httptest.NewServer(webhook.NewReceiver([][]byte{key}, func(id string, ce *event.CloudEvent, body []byte) {
		now := time.Now()
		if !strings.HasSuffix(ce.Type, ".export.ready") {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		t0, ok := changed[ce.Subject]
		if !ok {
			return
		}
		delete(changed, ce.Subject)
		lat = append(lat, now.Sub(t0))
		if d, _, err := event.ExportOf(ce); err == nil {
			if obs, err := time.Parse(time.RFC3339Nano, d.ObservedAt); err == nil {
				deliver = append(deliver, now.Sub(obs))
			}
		}
		if len(lat) == changes {
			close(done)
		}
	}))
	defer recv.Close()

	sink, err := webhook.NewSink(webhook.Options{URL: recv.URL + "/hook", Secrets: [][]byte{key}, Concurrency: 4})
	if err != nil {
		return fmt.Errorf("webhook sink: %w", err)
	}
	defer sink.Close()
	c, err := e.client(plugchoice.NewBudget(0))
	if err != nil {
		return err
	}
	var d *delivery.Dispatcher
	rp, st, cleanup, err := newPollerWith(c, interval, func(event.Event) []string { return []string{sink.Name()} }, func() { d.Notify() },
		func(o *poller.Options) { o.ActiveInterval = active })
	if err != nil {
		return err
	}
	defer cleanup()
	d = delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: sink, Concurrency: 4, Logger: quietLogger()})

	// The baseline, before Run starts (Cycle must not run concurrently, and Tracked
	// is only safe to read here).
	if _, err := rp.Cycle(ctx); err != nil {
		return fmt.Errorf("baseline cycle: %w", err)
	}
	if rp.Tracked() != 1010 {
		return fmt.Errorf("baseline tracks %d exports, want 1010", rp.Tracked())
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = rp.Run(rctx) }()
	go func() { defer wg.Done(); _ = d.Run(rctx) }()
	defer func() { cancel(); wg.Wait() }()

	period := interval // the poll period: exports are always in flight here
	if active > 0 && active < interval {
		period = active
	}
	reqs0 := c.Requests()
	start := time.Now()
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < changes; i++ {
		// Changes at random instants relative to the poll cycle.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(rng.Int64N(int64(period) * 6 / 10))):
		}
		u := inflight[0]
		inflight = inflight[1:]
		mu.Lock()
		changed[u] = time.Now()
		mu.Unlock()
		e.sim.SetStatus(u, plugchoice.StatusReady)
		inflight = append(inflight, e.sim.AddN(1, plugchoice.StatusPending)...)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		got := len(lat)
		mu.Unlock()
		return fmt.Errorf("only %d of %d changes reached the webhook within 30s", got, changes)
	case <-ctx.Done():
		return ctx.Err()
	}
	elapsed := time.Since(start)
	mu.Lock()
	s := summarize(lat)
	mu.Unlock()
	perMin := float64(c.Requests()-reqs0) / elapsed.Minutes()
	iv := fmt.Sprintf("POLL_INTERVAL %s", interval)
	if active > 0 {
		iv += fmt.Sprintf(", POLL_INTERVAL_ACTIVE %s", active)
	}
	fmt.Fprintf(w, "# detection latency: status change in simapi -> event at a loopback webhook (%s, %d changes)\n", iv, changes)
	fmt.Fprintf(w, "min %s  median %s  p90 %s  p99 %s  max %s\n", ms(s.min), ms(s.median), ms(s.p90), ms(s.p99), ms(s.max))
	fmt.Fprintf(w, "API requests: %.0f per minute during the run\n", perMin)
	if len(deliver) > 0 {
		ds := summarize(deliver)
		fmt.Fprintf(w, "detection -> delivery (observed_at -> arrival, %d events): min %s  median %s  p99 %s  max %s\n",
			len(deliver), ms(ds.min), ms(ds.median), ms(ds.p99), ms(ds.max))
	}
	return nil
}
