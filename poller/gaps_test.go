package poller_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/store"
)

// These tests pin what the poller promises across failures that the same process
// survives: no restart hides an in-memory snapshot that moved on without its commit.

// queuedIDs returns "uuid:type" -> event id of every event in the test sink's outbox.
func (f *fixture) queuedIDs() map[string]string {
	f.t.Helper()
	recs, err := f.st.Pending(sink, 0, 1_000_000)
	if err != nil {
		f.t.Fatal(err)
	}
	out := make(map[string]string, len(recs))
	for _, r := range recs {
		out[r.Event.Subject+":"+r.Event.Type] = r.Event.ID
	}
	return out
}

// flakyStore is the real store whose writes fail while failing is set: the poller
// keeps the same Store throughout (no restart), as in a process whose disk errs once.
type flakyStore struct {
	poller.Store
	failing atomic.Bool
}

var errDisk = errors.New("disk says no")

func (s *flakyStore) CommitCycle(c store.Cycle) error {
	if s.failing.Load() {
		return errDisk
	}
	return s.Store.CommitCycle(c)
}

func (s *flakyStore) SavePoll(p store.PollInfo) error {
	if s.failing.Load() {
		return errDisk
	}
	return s.Store.SavePoll(p)
}

// newFlakyFixture is newFixture with the poller's store wrapped in a flakyStore.
func newFlakyFixture(t *testing.T, n int) (*fixture, *flakyStore) {
	fs := &flakyStore{}
	f := newFixture(t, n, func(o *poller.Options) { fs.Store = o.Store; o.Store = fs })
	return f, fs
}

// A cycle whose commit fails changes nothing, in memory too: the same poller, on the
// next cycle, detects the same transitions again, with the same stable ids.
func TestFailedCommitIsRedetectedWithoutRestart(t *testing.T) {
	f, flaky := newFlakyFixture(t, 20)
	inflight := f.sim.AddN(3, plugchoice.StatusProcessing)
	f.cycle() // baseline
	skip := len(f.sim.Transitions())
	f.sim.SetStatus(inflight[0], plugchoice.StatusReady)
	f.sim.SetStatus(inflight[1], plugchoice.StatusFailed)
	fresh := f.sim.AddN(1, plugchoice.StatusReady)
	f.sim.AddN(1, plugchoice.StatusPending)

	flaky.failing.Store(true)
	heal := func() { flaky.failing.Store(false) }
	if _, err := f.p.Cycle(context.Background()); err == nil {
		t.Fatal("cycle succeeded on a store that cannot commit")
	}
	f.health.mu.Lock()
	storeErr := f.health.storeErr
	f.health.mu.Unlock()
	if storeErr == nil {
		t.Error("store error not reported to health")
	}
	heal()

	f.cycle() // the same poller, no restart
	want := f.expected(skip)
	if len(want) != 4 {
		t.Fatalf("test set-up: %d transitions, want 4", len(want))
	}
	sameMultiset(t, f.queued(), want)

	ids := f.queuedIDs()
	for _, uuid := range []string{inflight[0], inflight[1], fresh[0]} {
		exp, ok := f.sim.Get(uuid)
		if !ok {
			t.Fatalf("export %s gone from the simulation", uuid)
		}
		key := uuid + ":export." + exp.Status
		if got, want := ids[key], event.ID(uuid, exp.Status, exp.StatusTime()); got != want {
			t.Errorf("%s: event id %q, want the stable id %q", key, got, want)
		}
	}
	// And nothing more on later cycles.
	f.cycle()
	sameMultiset(t, f.queued(), want)
}

// The first listing is the baseline only when it is complete: when it fails on page 2,
// nothing of page 1 is taken as baseline, and later cycles announce no export of the
// pages the failed listing never read.
func TestFailedFirstListingCommitsNoPartialBaseline(t *testing.T) {
	f := newFixture(t, 60, nil) // 3 pages of 25
	var failPage2 atomic.Bool
	failPage2.Store(true)
	var faulted atomic.Int32
	f.sim.SetOnRequest(func(r *http.Request) {
		if failPage2.Load() && r.URL.Query().Get("page") == "2" {
			faulted.Add(1)
			f.sim.InjectFaults(simapi.Fault{Status: 500})
		}
	})
	if _, err := f.p.Cycle(context.Background()); err == nil {
		t.Fatal("first listing succeeded with page 2 failing")
	}
	if faulted.Load() == 0 {
		t.Fatal("test set-up: page 2 was never requested")
	}
	if n := f.p.Tracked(); n != 0 {
		t.Errorf("tracked %d exports after a failed first listing, want 0 (no partial baseline)", n)
	}
	failPage2.Store(false)
	f.sim.SetOnRequest(nil)

	for i := 0; i < 3; i++ {
		f.cycle()
	}
	if q := f.queued(); len(q) != 0 {
		t.Fatalf("spurious events after a first listing failed on page 2: %d, first %v", len(q), q[:min(len(q), 3)])
	}
	if n := f.p.Tracked(); n != 60 {
		t.Fatalf("tracked %d, want 60", n)
	}
	// The same holds across a restart.
	f.restart()
	f.cycle()
	if q := f.queued(); len(q) != 0 {
		t.Fatalf("spurious events after a restart: %v", q)
	}
}

// "Baseline taken" is not "snapshot not empty": an account empty at the baseline
// announces its first export, whether the bridge restarted in between or not.
func TestEmptyBaselineThenFirstExportIsAnnounced(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := "same process"
		if restart {
			name = "after a restart"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 0, nil)
			if rep := f.cycle(); !rep.Full || rep.Events != 0 {
				t.Fatalf("baseline of an empty account: %+v", rep)
			}
			ready := f.sim.AddN(1, plugchoice.StatusReady)
			if restart {
				f.restart()
			}
			f.cycle()
			if q, want := f.queued(), []string{ready[0] + ":export.ready"}; !slices.Equal(q, want) {
				t.Fatalf("queued %v, want %v", q, want)
			}
		})
	}
}

// A rate-limited API is waited out however many times in a row it answers 429: each
// retry comes after the server's Retry-After, never at once.
func TestRepeatedRateLimitIsWaitedOut(t *testing.T) {
	f := newFixture(t, 10, nil) // client: 2 retries, 1-5 ms backoff
	f.cycle()
	skip := len(f.sim.Transitions())
	f.sim.AddN(1, plugchoice.StatusReady)

	var mu sync.Mutex
	var at []time.Time
	f.sim.SetOnRequest(func(*http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	})
	f.sim.InjectFaults(simapi.Fault{Status: 429, RetryAfter: "1", Body: `{"message":"Too Many Attempts."}`, Count: 2})
	f.cycle()
	f.sim.SetOnRequest(nil)
	sameMultiset(t, f.queued(), f.expected(skip))

	mu.Lock()
	defer mu.Unlock()
	if len(at) < 3 {
		t.Fatalf("%d requests, want at least 3 (two 429s and a success)", len(at))
	}
	// The lower bound is the contract (Retry-After: 1); a retry at once takes about 1 ms.
	for i := 1; i <= 2; i++ {
		if gap := at[i].Sub(at[i-1]); gap < 900*time.Millisecond {
			t.Errorf("request %d came %v after a 429 with Retry-After: 1", i+1, gap)
		}
	}
}
