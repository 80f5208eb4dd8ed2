package main

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/sinks/webhook"
	"github.com/exportbridge/exportbridge/store"
)

// pipelineStore is what the poller and a dispatcher need of a store: both STORE=bolt
// (*store.Store) and STORE=nats (*natsstore.Store) are one.
type pipelineStore interface {
	poller.Store
	delivery.Queue
	DeadLetters(sink string) ([]store.Record, error)
	Close() error
}

// backend opens a fresh store of one kind; close removes it.
type backend struct {
	name string
	open func() (pipelineStore, func(), error)
}

// storeBackends are bolt in a temp dir and JetStream on an embedded server (one
// replica, file storage: what STORE=nats with STORE_NATS_REPLICAS=1 runs on).
func storeBackends() []backend {
	return []backend{
		{"bolt", func() (pipelineStore, func(), error) {
			dir, err := os.MkdirTemp("", "benchbridge-bolt-")
			if err != nil {
				return nil, nil, err
			}
			st, err := store.Open(dir, store.Options{})
			if err != nil {
				os.RemoveAll(dir)
				return nil, nil, fmt.Errorf("open bolt store: %w", err)
			}
			return st, func() { st.Close(); os.RemoveAll(dir) }, nil
		}},
		{"nats", func() (pipelineStore, func(), error) {
			dir, err := os.MkdirTemp("", "benchbridge-js-")
			if err != nil {
				return nil, nil, err
			}
			srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: dir})
			if err != nil {
				os.RemoveAll(dir)
				return nil, nil, err
			}
			stop := func() { srv.Shutdown(); srv.WaitForShutdown(); os.RemoveAll(dir) }
			nc, err := nats.Connect(srv.ClientURL())
			if err != nil {
				stop()
				return nil, nil, fmt.Errorf("connect: %w", err)
			}
			st, err := natsstore.Open(context.Background(), nc, natsstore.Options{})
			if err != nil {
				nc.Close()
				stop()
				return nil, nil, err
			}
			return st, func() { st.Close(); nc.Close(); stop() }, nil
		}},
	}
}

// benchStores runs, for each store, the same two end-to-end measurements through the
// poller, the store and a dispatcher with a signed webhook sink on a loopback receiver,
// alternating the stores run after run (so drift of a shared machine hits both alike):
//   - throughput: a burst of n transitions detected in one cycle, then drained;
//   - latency: changes one at a time, detection (the event's observed_at) -> arrival.
func benchStores(ctx context.Context, w io.Writer, n, changes, runs int) error {
	type figures struct {
		rate []float64
		lat  []time.Duration
	}
	got := map[string]*figures{}
	backends := storeBackends()
	for run := range runs {
		for _, be := range backends {
			if got[be.name] == nil {
				got[be.name] = &figures{}
			}
			rate, err := storeBurst(ctx, be, n)
			if err != nil {
				return fmt.Errorf("%s throughput run %d: %w", be.name, run+1, err)
			}
			lat, err := storeLatency(ctx, be, changes)
			if err != nil {
				return fmt.Errorf("%s latency run %d: %w", be.name, run+1, err)
			}
			f := got[be.name]
			f.rate = append(f.rate, rate)
			f.lat = append(f.lat, lat...)
			fmt.Fprintf(w, "run %d %-4s  webhook %6.0f events/s  detection->delivery median %s p99 %s\n",
				run+1, be.name, rate, ms(summarize(lat).median), ms(summarize(lat).p99))
		}
	}
	fmt.Fprintf(w, "# STORE=bolt and STORE=nats side by side: %d-event burst to a signed webhook (concurrency 4), %d single changes per run, %d runs\n", n, changes, runs)
	fmt.Fprintf(w, "%-5s %22s %14s %14s %14s\n", "store", "webhook events/s (med)", "latency med", "latency p90", "latency p99")
	for _, be := range backends {
		f := got[be.name]
		s := summarize(f.lat)
		fmt.Fprintf(w, "%-5s %22.0f %14s %14s %14s\n", be.name, median(f.rate), ms(s.median), ms(s.p90), ms(s.p99))
	}
	return nil
}

// storeRig is one store with a poller on a simulated API and a dispatcher delivering
// to a signed webhook sink; arrived is called per delivered export.ready.
type storeRig struct {
	e       *env
	c       *plugchoice.Client
	p       *poller.Poller
	d       *delivery.Dispatcher
	st      pipelineStore
	sink    *webhook.Sink
	cleanup func()
}

func newStoreRig(be backend, interval time.Duration, arrived func(ce *event.CloudEvent, at time.Time)) (*storeRig, error) {
	r := &storeRig{e: newEnv(-1)}
	var closers []func()
	r.cleanup = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	closers = append(closers, r.e.close)
	key := []byte("benchbridge-stores-secret-key!!!")
	recv := httptest.NewServer(webhook.NewReceiver([][]byte{key}, func(_ string, ce *event.CloudEvent, _ []byte) {
		if strings.HasSuffix(ce.Type, ".export.ready") {
			arrived(ce, time.Now())
		}
	}))
	closers = append(closers, recv.Close)
	sink, err := webhook.NewSink(webhook.Options{URL: recv.URL + "/hook", Secrets: [][]byte{key}, Concurrency: 4})
	if err != nil {
		r.cleanup()
		return nil, fmt.Errorf("webhook sink: %w", err)
	}
	r.sink = sink
	closers = append(closers, func() { sink.Close() })
	st, closeStore, err := be.open()
	if err != nil {
		r.cleanup()
		return nil, err
	}
	r.st = st
	closers = append(closers, closeStore)
	if r.c, err = r.e.client(nil); err != nil {
		r.cleanup()
		return nil, err
	}
	r.d = delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: sink, Concurrency: 4, Logger: quietLogger()})
	r.p, err = poller.New(poller.Options{Client: r.c, Store: st, Source: r.c.Endpoint(), Interval: interval,
		FullSyncInterval: 1000 * time.Hour, Logger: quietLogger(), Notify: r.d.Notify,
		Route: func(event.Event) []string { return []string{sink.Name()} }})
	if err != nil {
		r.cleanup()
		return nil, fmt.Errorf("poller: %w", err)
	}
	return r, nil
}

// storeBurst: n pending exports turn ready at once; one cycle detects them; the time
// from the dispatcher's start to the last settlement gives events per second.
func storeBurst(ctx context.Context, be backend, n int) (float64, error) {
	r, err := newStoreRig(be, time.Hour, func(*event.CloudEvent, time.Time) {})
	if err != nil {
		return 0, err
	}
	defer r.cleanup()
	uuids := r.e.sim.AddN(n, plugchoice.StatusPending)
	if _, err := r.p.Cycle(ctx); err != nil {
		return 0, fmt.Errorf("baseline cycle: %w", err)
	}
	for _, u := range uuids {
		r.e.sim.SetStatus(u, plugchoice.StatusReady)
	}
	if rep, err := r.p.Cycle(ctx); err != nil || rep.Events != n {
		return 0, fmt.Errorf("burst cycle: %d events (%v), want %d", rep.Events, err, n)
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	t0 := time.Now()
	go func() { errc <- r.d.Run(rctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
	werr := r.d.WaitIdle(wctx)
	el := time.Since(t0)
	wcancel()
	cancel()
	if err := <-errc; err != nil {
		return 0, fmt.Errorf("dispatcher: %w", err)
	}
	if werr != nil {
		return 0, werr
	}
	if dead, err := r.st.DeadLetters(r.sink.Name()); err != nil || len(dead) > 0 {
		return 0, fmt.Errorf("%d events dead-lettered (%v)", len(dead), err)
	}
	return float64(n) / el.Seconds(), nil
}

// storeLatency: with POLL_INTERVAL 250ms, one export at a time turns ready; each
// event's detection (its observed_at) to its arrival at the receiver.
func storeLatency(ctx context.Context, be backend, changes int) ([]time.Duration, error) {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		next = make(chan struct{}, 1)
	)
	r, err := newStoreRig(be, 250*time.Millisecond, func(ce *event.CloudEvent, at time.Time) {
		d, _, err := event.ExportOf(ce)
		if err != nil {
			return
		}
		obs, err := time.Parse(time.RFC3339Nano, d.ObservedAt)
		if err != nil {
			return
		}
		mu.Lock()
		lat = append(lat, at.Sub(obs))
		mu.Unlock()
		select {
		case next <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	defer r.cleanup()
	uuids := r.e.sim.AddN(changes, plugchoice.StatusPending)
	if _, err := r.p.Cycle(ctx); err != nil {
		return nil, fmt.Errorf("baseline cycle: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = r.p.Run(rctx) }()
	go func() { defer wg.Done(); _ = r.d.Run(rctx) }()
	defer func() { cancel(); wg.Wait() }()
	for i, u := range uuids {
		r.e.sim.SetStatus(u, plugchoice.StatusReady)
		select {
		case <-next:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("change %d did not arrive within 30s", i+1)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return lat, nil
}
