package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
)

// Intervals of the virtual hour: the defaults of POLL_INTERVAL and POLL_INTERVAL_ACTIVE.
const (
	hourIdleInterval   = 30 * time.Second
	hourActiveInterval = 10 * time.Second
)

// requestsPerHour runs the poller's own loop (poller.Run) for one virtual hour at n
// exports: its clock (Now) and its waits between cycles (Wait) follow a simulated clock,
// so the schedule is the real one (POLL_INTERVAL 30s, POLL_INTERVAL_ACTIVE 10s, the
// jitter) and the hour takes seconds. Full listings are left out (FULL_SYNC_INTERVAL
// beyond the hour): each adds ceil(n/25) requests per FULL_SYNC_INTERVAL.
//   - idle: nothing in flight, nothing changes;
//   - busy: 10 exports always in flight; every virtual minute one finishes and a new one
//     is requested.
func requestsPerHour(ctx context.Context, w io.Writer, n int) error {
	fmt.Fprintf(w, "# API requests per hour of cheap cycles at %d exports (poller.Run over a virtual hour; POLL_INTERVAL %s, POLL_INTERVAL_ACTIVE %s; full listings not included)\n",
		n, hourIdleInterval, hourActiveInterval)
	fmt.Fprintf(w, "%-8s %-6s %8s %10s %12s %14s\n", "exports", "mode", "cycles", "requests", "api-changes", "share-of-500/min")
	for _, busy := range []bool{false, true} {
		e := newEnv(-1)
		var inflight []string
		if busy {
			e.sim.AddN(n-10, plugchoice.StatusReady)
			inflight = e.sim.AddN(10, plugchoice.StatusPending)
		} else {
			e.sim.AddN(n, plugchoice.StatusReady)
		}
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		clock, nextLife, cycles := start, start.Add(time.Minute), 0
		c, err := e.client(nil)
		if err != nil {
			e.close()
			return err
		}
		p, _, cleanup, err := newPollerWith(c, hourIdleInterval, nil, nil, func(o *poller.Options) {
			o.ActiveInterval = hourActiveInterval
			o.Now = func() time.Time { return clock } // Run, Wait and Now run in this goroutine
			o.Wait = func(ctx context.Context, d time.Duration) bool {
				cycles++
				clock = clock.Add(d)
				for busy && !clock.Before(nextLife) {
					e.sim.SetStatus(inflight[0], plugchoice.StatusReady)
					inflight = append(inflight[1:], e.sim.AddN(1, plugchoice.StatusPending)...)
					nextLife = nextLife.Add(time.Minute)
				}
				return ctx.Err() == nil && clock.Sub(start) < time.Hour
			}
		})
		if err != nil {
			e.close()
			return err
		}
		reqs, err := func() (int64, error) {
			defer e.close()
			defer cleanup()
			if _, err := p.Cycle(ctx); err != nil {
				return 0, fmt.Errorf("baseline cycle: %w", err)
			}
			r0 := c.Requests()
			if err := p.Run(ctx); err != nil {
				return 0, err
			}
			return c.Requests() - r0, ctx.Err()
		}()
		if err != nil {
			return err
		}
		mode := "idle"
		if busy {
			mode = "busy"
		}
		changes := len(e.sim.Transitions()) - n // the baseline's creations excluded
		fmt.Fprintf(w, "%-8d %-6s %8d %10d %12d %13.2f%%\n", n, mode, cycles, reqs, changes, 100*float64(reqs)/(500*60))
	}
	return nil
}
