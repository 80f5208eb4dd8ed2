package poller_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/store"
)

// benchPoller returns a poller over a simulated API of n exports (10 in flight) whose
// baseline is done; full makes every cycle a full listing. life advances the simulation
// by one cycle: 2 new exports, 2 finish, 1 starts processing (10 stay in flight).
func benchPoller(b *testing.B, n int, full bool) (p *poller.Poller, life func()) {
	b.Helper()
	sim := simapi.New(simapi.Options{Seed: 1, RateLimit: -1})
	srv := httptest.NewServer(sim)
	b.Cleanup(srv.Close)
	sim.AddN(n-10, plugchoice.StatusReady)
	inflight := sim.AddN(10, plugchoice.StatusPending)
	c, err := plugchoice.New(plugchoice.Options{BaseURL: srv.URL, Token: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	o := poller.Options{Client: c, Store: st, Source: srv.URL + "/exports", Interval: time.Hour,
		FullSyncInterval: 1000 * time.Hour, Logger: slog.New(slog.DiscardHandler)}
	p, err = poller.New(o)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Cycle(context.Background()); err != nil {
		b.Fatal(err)
	}
	life = func() {
		newOnes := sim.AddN(2, plugchoice.StatusPending)
		sim.SetStatus(inflight[0], plugchoice.StatusReady)
		sim.SetStatus(inflight[1], plugchoice.StatusFailed)
		inflight = append(inflight[2:], newOnes...)
		sim.SetStatus(inflight[len(inflight)-3], plugchoice.StatusProcessing)
	}
	return p, life
}

func runCycles(b *testing.B, p *poller.Poller, life func(), wantFull bool) {
	b.Helper()
	ctx := context.Background()
	reqs, events := 0, 0
	b.ReportAllocs()
	b.ResetTimer()
	cycle := p.Cycle
	if wantFull {
		cycle = p.FullCycle
	}
	for b.Loop() {
		life()
		rep, err := cycle(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Full != wantFull {
			b.Fatalf("cycle full=%v, want %v", rep.Full, wantFull)
		}
		reqs += rep.Requests
		events += rep.Events
	}
	b.ReportMetric(float64(reqs)/float64(b.N), "requests/cycle")
	b.ReportMetric(float64(events)/float64(b.N), "events/cycle")
}

// BenchmarkCheapCycle: one cheap cycle (in-flight query + head pages + diff + commit)
// against simapi on loopback, the simulated API's serving time included.
func BenchmarkCheapCycle(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("exports=%d", n), func(b *testing.B) {
			p, life := benchPoller(b, n, false)
			runCycles(b, p, life, false)
		})
	}
}

// BenchmarkFullCycle: one full-listing cycle, for comparison.
func BenchmarkFullCycle(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("exports=%d", n), func(b *testing.B) {
			p, life := benchPoller(b, n, true)
			runCycles(b, p, life, true)
		})
	}
}
