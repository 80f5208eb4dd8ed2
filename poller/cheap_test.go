package poller_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// A few recent in-flight exports (all on page 1): a cheap cycle in which nothing
// changed costs one request whatever the size of the account, and one in which an
// export finished or was created two (page 1 changed, so page 2 is read); the in-flight
// query is never needed.
func TestCheapCycleOneRequestWithRecentInFlight(t *testing.T) {
	for _, n := range []int{100, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t, n, nil)
			inflight := f.sim.AddN(5, plugchoice.StatusProcessing)
			f.cycle() // baseline
			skip := len(f.sim.Transitions())
			idle := func(when string) {
				t.Helper()
				for i := 0; i < 3; i++ {
					if rep := f.cycle(); rep.Full || rep.Requests != 1 {
						t.Fatalf("%s, quiet cycle %d: full=%v requests=%d, want a cheap cycle of 1 request", when, i, rep.Full, rep.Requests)
					}
				}
			}
			idle("in-flight exports on page 1")
			f.sim.SetStatus(inflight[0], plugchoice.StatusReady)
			if rep := f.cycle(); rep.Full || rep.Requests > 2 || rep.Events != 1 {
				t.Fatalf("an export finished: %+v, want a cheap cycle of at most 2 requests and 1 event", rep)
			}
			idle("after an export finished")
			f.sim.AddN(1, plugchoice.StatusPending)
			if rep := f.cycle(); rep.Full || rep.Requests > 2 || rep.Events != 1 {
				t.Fatalf("an export was created: %+v, want a cheap cycle of at most 2 requests and 1 event", rep)
			}
			idle("after an export was created")
			sameMultiset(t, f.queued(), f.expected(skip))
		})
	}
}

// An in-flight export older than the head pages is not seen there: the in-flight query
// (one more request) covers it while it runs, and when it finishes the cycle reads on
// down the head until its requested_at has passed. It is announced without a full
// listing.
func TestOldInFlightExportStillResolved(t *testing.T) {
	f := newFixture(t, 200, nil)
	old := f.sim.AddN(1, plugchoice.StatusProcessing)[0]
	f.sim.AddN(60, plugchoice.StatusReady) // the old one is now on page 3
	f.cycle()                              // baseline
	skip := len(f.sim.Transitions())
	for i := 0; i < 2; i++ {
		if rep := f.cycle(); rep.Full || rep.Requests != 2 {
			t.Fatalf("quiet cycle %d: full=%v requests=%d, want a cheap cycle of 2 (head page 1, in-flight query)", i, rep.Full, rep.Requests)
		}
	}
	f.sim.SetStatus(old, plugchoice.StatusReady)
	rep := f.cycle()
	if rep.Full || rep.Events != 1 {
		t.Fatalf("old export finished: %+v, want a cheap cycle announcing it", rep)
	}
	if !slices.Equal(f.queued(), f.expected(skip)) || len(f.queued()) != 1 {
		t.Fatalf("queued %v, want %v", f.queued(), f.expected(skip))
	}
	if rep := f.cycle(); rep.Full || rep.Requests != 1 {
		t.Fatalf("nothing in flight any more: full=%v requests=%d, want 1 request", rep.Full, rep.Requests)
	}
}
