package main

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/store"
)

// env is one simulated API on loopback.
type env struct {
	sim *simapi.API
	srv *httptest.Server
}

func newEnv(rateLimit int) *env {
	sim := simapi.New(simapi.Options{Seed: 1, RateLimit: rateLimit})
	return &env{sim: sim, srv: httptest.NewServer(sim)}
}

func (e *env) close() { e.srv.Close() }

func (e *env) client(budget *plugchoice.Budget) (*plugchoice.Client, error) {
	c, err := plugchoice.New(plugchoice.Options{BaseURL: e.srv.URL, Token: "bench", Budget: budget, Logger: quietLogger()})
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	return c, nil
}

// newPoller opens a store in a new temp dir and a poller on it. Every cycle after the
// first is cheap (no periodic full sync); FullCycle forces a full listing.
func newPoller(c *plugchoice.Client, interval time.Duration, route func(event.Event) []string, notify func()) (*poller.Poller, *store.Store, func(), error) {
	return newPollerWith(c, interval, route, notify, nil)
}

// newPollerWith is newPoller with mod applied to the poller's options.
func newPollerWith(c *plugchoice.Client, interval time.Duration, route func(event.Event) []string, notify func(), mod func(*poller.Options)) (*poller.Poller, *store.Store, func(), error) {
	dir, err := os.MkdirTemp("", "benchbridge-store-")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("temp dir: %w", err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, fmt.Errorf("open store: %w", err)
	}
	cleanup := func() { st.Close(); os.RemoveAll(dir) }
	o := poller.Options{Client: c, Store: st, Source: c.Endpoint(), Interval: interval,
		FullSyncInterval: 1000 * time.Hour, Logger: quietLogger(), Route: route, Notify: notify}
	if mod != nil {
		mod(&o)
	}
	p, err := poller.New(o)
	if err != nil {
		cleanup()
		return nil, nil, nil, fmt.Errorf("poller: %w", err)
	}
	return p, st, cleanup, nil
}

// benchRequests measures API requests per cycle, cheap cycle and full listing side by
// side, at each size with 10 exports in flight and 2 new per cycle.
func benchRequests(ctx context.Context, w io.Writer, sizes []int, cycles, fullCycles int) error {
	fmt.Fprintf(w, "# API requests per cycle (10 in flight, 2 new per cycle; %d cheap cycles, %d full cycles per size)\n", cycles, fullCycles)
	fmt.Fprintf(w, "%-8s %-6s %8s %8s %8s %8s %10s %12s %12s\n", "exports", "mode", "median", "min", "max", "cycles", "events", "cycle-med", "cycle-max")
	for _, n := range sizes {
		if err := requestsAt(ctx, w, n, cycles, fullCycles); err != nil {
			return fmt.Errorf("%d exports: %w", n, err)
		}
	}
	fmt.Fprintf(w, "# API requests per cheap cycle with exports in flight (%d cycles per size and scenario)\n", cycles)
	fmt.Fprintf(w, "%-8s %-16s %8s %8s %8s %8s %10s %8s\n", "exports", "scenario", "median", "min", "max", "cycles", "events", "fulls")
	for _, n := range sizes {
		if err := requestsInFlight(ctx, w, n, cycles); err != nil {
			return fmt.Errorf("%d exports: %w", n, err)
		}
	}
	return requestsPerHour(ctx, w, sizes[len(sizes)-1])
}

func requestsAt(ctx context.Context, w io.Writer, n, cycles, fullCycles int) error {
	e := newEnv(-1) // no API rate limit: only requests are counted here
	defer e.close()
	e.sim.AddN(n-10, plugchoice.StatusReady)
	inflight := e.sim.AddN(10, plugchoice.StatusPending)

	type side struct {
		name   string
		p      *poller.Poller
		reqs   []int
		durs   []time.Duration
		events int
		fulls  int
		cycles int
	}
	var sides []*side
	for _, full := range []bool{false, true} {
		c, err := e.client(nil)
		if err != nil {
			return err
		}
		p, _, cleanup, err := newPoller(c, time.Hour, nil, nil)
		if err != nil {
			return err
		}
		defer cleanup()
		// Baseline: the first cycle is always a complete full listing.
		rep, err := p.Cycle(ctx)
		if err != nil {
			return fmt.Errorf("baseline cycle: %w", err)
		}
		if !rep.Full || p.Tracked() != n {
			return fmt.Errorf("baseline: full=%v tracked=%d, want a full listing of %d", rep.Full, p.Tracked(), n)
		}
		name := "cheap"
		if full {
			name = "full"
		}
		sides = append(sides, &side{name: name, p: p})
	}
	for i := 0; i < cycles; i++ {
		// One cycle of life: 2 new pending, the 2 oldest in flight finish, one pending
		// starts processing. 10 stay in flight.
		newOnes := e.sim.AddN(2, plugchoice.StatusPending)
		e.sim.SetStatus(inflight[0], plugchoice.StatusReady)
		e.sim.SetStatus(inflight[1], plugchoice.StatusFailed)
		inflight = append(inflight[2:], newOnes...)
		e.sim.SetStatus(inflight[len(inflight)-3], plugchoice.StatusProcessing)
		for _, s := range sides {
			if s.name == "full" && i >= fullCycles {
				continue
			}
			cycle := s.p.Cycle
			if s.name == "full" {
				cycle = s.p.FullCycle
			}
			rep, err := cycle(ctx)
			if err != nil {
				return fmt.Errorf("%s cycle %d: %w", s.name, i+1, err)
			}
			s.reqs = append(s.reqs, rep.Requests)
			s.durs = append(s.durs, rep.Duration)
			s.events += rep.Events
			s.cycles++
			if rep.Full {
				s.fulls++
			}
		}
	}
	for _, s := range sides {
		mn, mx := s.reqs[0], s.reqs[0]
		for _, r := range s.reqs {
			mn, mx = min(mn, r), max(mx, r)
		}
		sd := summarize(s.durs)
		fmt.Fprintf(w, "%-8d %-6s %8.1f %8d %8d %8d %10d %12s %12s\n", n, s.name, median(s.reqs), mn, mx, s.cycles, s.events, ms(sd.median), ms(sd.max))
		if s.name == "cheap" && s.fulls > 0 {
			fmt.Fprintf(w, "  note: %d of the cheap poller's cycles fell back to a full listing\n", s.fulls)
		}
	}
	// Both pollers saw the same cycles of life for the first fullCycles cycles: the
	// events per cycle must agree there (5 per cycle: 2 new, 2 finished, 1 processing).
	fmt.Fprintf(w, "  expected events per cycle: 5 (2 new pending, 1 ready, 1 failed, 1 processing)\n")
	return nil
}
