package main

import (
	"context"
	"fmt"
	"io"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// requestsInFlight measures the requests of cheap cycles in the situations of issue
// 12, at n exports, with no API rate limit (only requests are counted):
//   - idle, quiet: nothing in flight, nothing changes;
//   - recent, quiet: 10 recent exports in flight, nothing changes between cycles;
//   - recent, 1 change: the same, and each cycle one in-flight export finishes and a
//     new pending one appears (page 1 changed, so page 2 is read too);
//   - old, quiet: the same 10 recent ones plus one in flight since before all others
//     (it is on the last page).
func requestsInFlight(ctx context.Context, w io.Writer, n, cycles int) error {
	for _, sc := range []struct {
		name   string
		idle   bool
		old    bool
		change bool
	}{
		{name: "idle,quiet", idle: true},
		{name: "recent,quiet"},
		{name: "recent,1-change", change: true},
		{name: "old,quiet", old: true},
	} {
		e := newEnv(-1)
		var inflight []string
		switch {
		case sc.idle:
			e.sim.AddN(n, plugchoice.StatusReady)
		case sc.old:
			e.sim.AddN(1, plugchoice.StatusProcessing)
			e.sim.AddN(n-11, plugchoice.StatusReady)
			inflight = e.sim.AddN(10, plugchoice.StatusPending)
		default:
			e.sim.AddN(n-10, plugchoice.StatusReady)
			inflight = e.sim.AddN(10, plugchoice.StatusPending)
		}
		c, err := e.client(nil)
		if err != nil {
			e.close()
			return err
		}
		p, _, cleanup, err := newPoller(c, 0, nil, nil)
		if err != nil {
			e.close()
			return err
		}
		reqs, fulls, events, err := func() ([]int, int, int, error) {
			defer e.close()
			defer cleanup()
			if _, err := p.Cycle(ctx); err != nil {
				return nil, 0, 0, fmt.Errorf("baseline cycle: %w", err)
			}
			var reqs []int
			fulls, events := 0, 0
			for i := 0; i < cycles; i++ {
				if sc.change {
					e.sim.SetStatus(inflight[0], plugchoice.StatusReady)
					inflight = append(inflight[1:], e.sim.AddN(1, plugchoice.StatusPending)...)
				}
				rep, err := p.Cycle(ctx)
				if err != nil {
					return nil, 0, 0, fmt.Errorf("%s cycle %d: %w", sc.name, i+1, err)
				}
				reqs = append(reqs, rep.Requests)
				events += rep.Events
				if rep.Full {
					fulls++
				}
			}
			return reqs, fulls, events, nil
		}()
		if err != nil {
			return err
		}
		mn, mx := reqs[0], reqs[0]
		for _, r := range reqs {
			mn, mx = min(mn, r), max(mx, r)
		}
		fmt.Fprintf(w, "%-8d %-16s %8.1f %8d %8d %8d %10d %8d\n", n, sc.name, median(reqs), mn, mx, len(reqs), events, fulls)
	}
	return nil
}
