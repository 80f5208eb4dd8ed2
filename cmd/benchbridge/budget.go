package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// benchBudget times a full listing of n exports through the real Budget against the
// simulated API's real limit (500/minute): how long a full sync holds the poller, and
// whether any request was refused (requests > pages means retries after 429).
func benchBudget(ctx context.Context, w io.Writer, n int) error {
	e := newEnv(0)
	defer e.close()
	e.sim.AddN(n, plugchoice.StatusReady)
	c, err := e.client(plugchoice.NewBudget(0))
	if err != nil {
		return err
	}
	p, _, cleanup, err := newPoller(c, time.Hour, nil, nil)
	if err != nil {
		return err
	}
	defer cleanup()
	t0 := time.Now()
	rep, err := p.Cycle(ctx)
	if err != nil {
		return fmt.Errorf("full listing: %w", err)
	}
	el := time.Since(t0)
	pages := (n + 24) / 25
	fmt.Fprintf(w, "# full listing of %d exports through the real budget (API limit 500/min, budget 80%%)\n", n)
	fmt.Fprintf(w, "duration %s, %d requests for %d pages (%.0f requests/minute), served requests %d\n",
		el.Round(time.Millisecond), rep.Requests, pages, float64(rep.Requests)/el.Minutes(), e.sim.Requests())
	return nil
}
