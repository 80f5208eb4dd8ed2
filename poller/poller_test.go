package poller_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
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

const sink = "test"

type fixture struct {
	t      *testing.T
	sim    *simapi.API
	client *plugchoice.Client
	st     *store.Store
	p      *poller.Poller
	health *fakeHealth
	opts   poller.Options
}

type fakeHealth struct {
	mu         sync.Mutex
	ok, failed int
	auth       bool
	storeErr   error
}

func (h *fakeHealth) PollOK(time.Time) { h.mu.Lock(); h.ok++; h.auth = false; h.mu.Unlock() }
func (h *fakeHealth) PollFailed(_ time.Time, _, _ string, auth bool) {
	h.mu.Lock()
	h.failed++
	h.auth = auth
	h.mu.Unlock()
}
func (h *fakeHealth) StoreError(err error) { h.mu.Lock(); h.storeErr = err; h.mu.Unlock() }

// newFixture starts a simulated API with n existing exports and a poller on a fresh store.
func newFixture(t *testing.T, n int, mod func(*poller.Options)) *fixture {
	t.Helper()
	sim := simapi.New(simapi.Options{Token: "tok", Seed: 1, RateLimit: -1})
	if n > 0 {
		sim.AddN(n, plugchoice.StatusReady)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	client, err := plugchoice.New(plugchoice.Options{BaseURL: srv.URL, Token: "tok", Timeout: 5 * time.Second,
		RetryInitial: time.Millisecond, RetryMaxInterval: 5 * time.Millisecond, MaxRetries: 2, MaxRetryWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, sim: sim, client: client, st: st, health: &fakeHealth{}}
	f.opts = poller.Options{
		Client: client, Store: st, Source: srv.URL + "/exports",
		Interval: time.Second, FullSyncInterval: time.Hour, FailureThreshold: 3,
		Route:  func(event.Event) []string { return []string{sink} },
		Health: f.health,
	}
	if mod != nil {
		mod(&f.opts)
	}
	f.restart()
	return f
}

// restart builds a new poller on the same store, as a process restart would.
func (f *fixture) restart() {
	p, err := poller.New(f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.p = p
}

func (f *fixture) cycle() poller.Report {
	f.t.Helper()
	rep, err := f.p.Cycle(context.Background())
	if err != nil {
		f.t.Fatalf("cycle: %v", err)
	}
	return rep
}

// queued returns "uuid:type" of every event in the test sink's outbox, in order.
func (f *fixture) queued() []string {
	f.t.Helper()
	recs, err := f.st.Pending(sink, 0, 1_000_000)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Event.Subject+":"+r.Event.Type)
	}
	return out
}

// expected returns "uuid:export.status" for every transition the simulation made after
// skip transitions, in order per export (the order events must have).
func (f *fixture) expected(skip int) []string {
	var out []string
	for _, tr := range f.sim.Transitions()[skip:] {
		if tr.To == "" {
			continue
		}
		out = append(out, tr.UUID+":export."+tr.To)
	}
	return out
}

func sameMultiset(t *testing.T, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("events differ\n got: %v\nwant: %v", got, want)
	}
}

func TestBaselineThenTransitionsOnce(t *testing.T) {
	f := newFixture(t, 30, nil)
	uuids := f.sim.AddN(5, plugchoice.StatusProcessing)
	rep := f.cycle()
	if !rep.Full || rep.Events != 0 || len(f.queued()) != 0 {
		t.Fatalf("baseline: %+v, queued %v", rep, f.queued())
	}
	skip := len(f.sim.Transitions())
	f.sim.SetStatus(uuids[0], plugchoice.StatusReady)
	f.sim.SetStatus(uuids[1], plugchoice.StatusFailed)
	newReady := f.sim.AddN(1, plugchoice.StatusReady)
	rep = f.cycle()
	if rep.Full {
		t.Errorf("second cycle should be cheap: %+v", rep)
	}
	want := f.expected(skip)
	sameMultiset(t, f.queued(), want)
	if !slices.Contains(f.queued(), newReady[0]+":export.ready") {
		t.Errorf("a new export already ready must yield export.ready")
	}
	// Nothing changes (download URLs are re-signed on every request): nothing new.
	for i := 0; i < 3; i++ {
		f.cycle()
	}
	sameMultiset(t, f.queued(), want)
	// A restart on the same store re-notifies nothing.
	f.restart()
	f.cycle()
	sameMultiset(t, f.queued(), want)
}

// A restart does not start with a full listing (4,000 requests at 100k exports) when
// the last one is recent: the store remembers when it was taken.
func TestRestartKeepsFullSyncSchedule(t *testing.T) {
	f := newFixture(t, 200, nil) // FULL_SYNC_INTERVAL 1h
	f.cycle()
	f.restart()
	if rep := f.cycle(); rep.Full || rep.Requests > 3 {
		t.Fatalf("first cycle after a restart: %+v, want a cheap cycle", rep)
	}
}

func TestEmitExisting(t *testing.T) {
	f := newFixture(t, 4, func(o *poller.Options) { o.EmitExisting = true })
	f.cycle()
	if got := len(f.queued()); got != 4 {
		t.Fatalf("EMIT_EXISTING: %d events, want 4", got)
	}
}

func TestCheapCycleCost(t *testing.T) {
	for _, n := range []int{100, 1000, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t, n, nil)
			inflight := f.sim.AddN(10, plugchoice.StatusProcessing)
			f.cycle()
			skip := len(f.sim.Transitions())
			for i := 0; i < 5; i++ {
				f.sim.AddN(2, plugchoice.StatusPending)
				f.sim.SetStatus(inflight[i], plugchoice.StatusReady)
				rep := f.cycle()
				if rep.Full || rep.Requests > 3 {
					t.Errorf("cycle %d: full=%v requests=%d, want a cheap cycle of at most 3", i, rep.Full, rep.Requests)
				}
			}
			sameMultiset(t, f.queued(), f.expected(skip))
		})
	}
}

// TestNoTransitionLost runs the situations that break the cheap cycle's assumptions.
func TestNoTransitionLost(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fixture, inflight []string)
		act   func(f *fixture, inflight []string)
	}{
		{name: "list not newest-first", setup: func(f *fixture, _ []string) { f.sim.SetOrder(simapi.OrderShuffled) },
			act: func(f *fixture, inflight []string) {
				f.sim.AddN(3, plugchoice.StatusReady) // land anywhere in a shuffled list
			}},
		{name: "list not newest-first, in-flight export finishes", setup: func(f *fixture, _ []string) { f.sim.SetOrder(simapi.OrderShuffled) },
			act: func(f *fixture, inflight []string) { f.sim.SetStatus(inflight[0], plugchoice.StatusReady) }},
		{name: "exports inserted while paging", setup: func(f *fixture, _ []string) { f.sim.SetShiftOnPage(1) },
			act: func(f *fixture, inflight []string) {
				f.sim.SetStatus(inflight[0], plugchoice.StatusReady)
				f.sim.AddN(3, plugchoice.StatusPending)
			}},
		{name: "export finishes between in-flight query and head scan",
			act: func(f *fixture, inflight []string) {
				var once sync.Once
				f.sim.SetOnRequest(func(r *http.Request) {
					if !strings.Contains(r.URL.RawQuery, "filter") {
						once.Do(func() { f.sim.SetStatus(inflight[1], plugchoice.StatusReady) })
					}
				})
				f.sim.SetStatus(inflight[0], plugchoice.StatusFailed)
			}},
		{name: "export seen in flight on the head finishes before the in-flight query",
			act: func(f *fixture, inflight []string) {
				f.sim.AddN(60, plugchoice.StatusReady) // the old in-flight ones: page 3+
				recent := f.sim.AddN(1, plugchoice.StatusProcessing)[0]
				f.cycle()
				var once sync.Once
				f.sim.SetOnRequest(func(r *http.Request) {
					if strings.Contains(r.URL.RawQuery, "filter") {
						once.Do(func() { f.sim.SetStatus(recent, plugchoice.StatusReady) })
					}
				})
			}},
		{name: "old in-flight export finishes deep in the list",
			act: func(f *fixture, inflight []string) {
				f.sim.AddN(60, plugchoice.StatusReady) // push the in-flight ones to page 3+
				f.cycle()
				f.sim.SetStatus(inflight[2], plugchoice.StatusReady)
			}},
		{name: "in-flight export vanishes", act: func(f *fixture, inflight []string) {
			f.sim.Remove(inflight[3])
			f.sim.SetStatus(inflight[0], plugchoice.StatusReady)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 200, nil)
			inflight := f.sim.AddN(5, plugchoice.StatusProcessing)
			f.cycle() // baseline
			skip := len(f.sim.Transitions())
			if tt.setup != nil {
				tt.setup(f, inflight)
			}
			tt.act(f, inflight)
			f.cycle()
			// What the simulation does during the last cycle's requests no poll has
			// seen yet: switch the disturbances off and poll once more.
			f.sim.SetOnRequest(nil)
			f.sim.SetShiftOnPage(0)
			f.cycle()
			sameMultiset(t, f.queued(), f.expected(skip))
		})
	}
}

// An export that leaves the in-flight set and is nowhere in the head pages can only be
// resolved by a full listing; the second full listing without it proves its removal.
func TestVanishedInFlightExportForcesFullListing(t *testing.T) {
	f := newFixture(t, 100, func(o *poller.Options) { o.EmitRemoved = true })
	inflight := f.sim.AddN(3, plugchoice.StatusProcessing)
	f.cycle()
	f.sim.Remove(inflight[1])
	for i := 1; i <= 2; i++ {
		if rep := f.cycle(); !rep.Full {
			t.Fatalf("cycle %d after an in-flight export vanished was not a full listing: %+v", i, rep)
		}
		if q := f.queued(); i == 1 && len(q) != 0 {
			t.Fatalf("queued %v after one complete listing without it, want nothing yet", q)
		}
	}
	if q := f.queued(); len(q) != 1 || q[0] != inflight[1]+":export.removed" {
		t.Fatalf("queued = %v, want the removal", q)
	}
}

func TestRemoved(t *testing.T) {
	f := newFixture(t, 5, func(o *poller.Options) { o.EmitRemoved = true; o.FullSyncInterval = time.Second })
	all := f.sim.Snapshot()
	f.cycle()
	f.sim.Remove(all[0].UUID)
	f.cycle() // cheap: cannot prove a removal
	if len(f.queued()) != 0 {
		t.Fatalf("removal from a cheap cycle: %v", f.queued())
	}
	// An hour later the next cycle is a full listing; it lacks the export, but only the
	// second complete listing in a row without it confirms the removal.
	for i, later := range []time.Duration{time.Hour, 2 * time.Hour} {
		f.opts.Now = func() time.Time { return time.Now().Add(later) }
		f.restart()
		if rep := f.cycle(); !rep.Full {
			t.Fatalf("no full listing after FULL_SYNC_INTERVAL: %+v", rep)
		}
		if q := f.queued(); i == 0 && len(q) != 0 {
			t.Fatalf("queued %v after the first complete listing without it, want nothing yet", q)
		}
	}
	if q := f.queued(); len(q) != 1 || q[0] != all[0].UUID+":export.removed" {
		t.Fatalf("queued = %v, want one export.removed", q)
	}
	if f.p.Tracked() != 4 {
		t.Fatalf("tracked = %d", f.p.Tracked())
	}
}

func TestSafetyValve(t *testing.T) {
	var later atomic.Int64 // each cycle an hour later than the last: every one is a full listing
	f := newFixture(t, 30, func(o *poller.Options) {
		o.EmitRemoved = true
		o.Now = func() time.Time { return time.Now().Add(time.Duration(later.Load()) * time.Hour) }
	})
	f.cycle()
	for _, e := range f.sim.Snapshot() {
		f.sim.Remove(e.UUID)
	}
	for i := 0; i < 3; i++ { // never confirmed, however many listings lack them
		later.Add(1)
		if rep := f.cycle(); !rep.Full {
			t.Fatalf("cycle %d was not a full listing: %+v", i, rep)
		}
	}
	if len(f.queued()) != 0 || f.p.Tracked() != 30 {
		t.Fatalf("empty list against 30: queued %v tracked %d", f.queued(), f.p.Tracked())
	}
}

func TestAPIFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault simapi.Fault
		auth  bool
	}{
		{name: "500", fault: simapi.Fault{Status: 500, Count: 10}},
		{name: "503", fault: simapi.Fault{Status: 503, Count: 10}},
		{name: "garbage", fault: simapi.Fault{Garbage: true, Count: 10}},
		{name: "truncated", fault: simapi.Fault{Truncate: true, Count: 10}},
		{name: "401", fault: simapi.Fault{Status: 401, Body: `{"message":"Unauthenticated."}`}, auth: true},
		{name: "empty list", fault: simapi.Fault{Status: 200, Body: `{"data":[],"links":{"next":null},"meta":{}}`, Count: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 40, func(o *poller.Options) { o.EmitRemoved = true; o.FullSyncInterval = time.Nanosecond })
			f.cycle()
			f.sim.InjectFaults(tt.fault)
			_, err := f.p.Cycle(context.Background())
			if tt.name != "empty list" && err == nil {
				t.Fatalf("cycle succeeded against %s", tt.name)
			}
			f.health.mu.Lock()
			auth := f.health.auth
			f.health.mu.Unlock()
			if auth != tt.auth {
				t.Errorf("auth failure reported = %v, want %v", auth, tt.auth)
			}
			for i := 0; i < 10 && f.sim.Requests() < 1000; i++ {
				f.p.Cycle(context.Background()) // let the remaining faults pass
			}
			f.cycle()
			for _, q := range f.queued() {
				if !strings.HasPrefix(q, ":bridge.") {
					t.Fatalf("spurious events after %s: %v", tt.name, f.queued())
				}
			}
			if f.p.Tracked() != 40 {
				t.Fatalf("tracked %d after %s", f.p.Tracked(), tt.name)
			}
		})
	}
}

func TestRateLimitedAPIIsWaitedOut(t *testing.T) {
	f := newFixture(t, 10, nil)
	f.cycle()
	skip := len(f.sim.Transitions())
	f.sim.AddN(1, plugchoice.StatusReady)
	f.sim.InjectFaults(simapi.Fault{Status: 429, RetryAfter: "1", Body: `{"message":"Too Many Attempts."}`})
	f.cycle()
	sameMultiset(t, f.queued(), f.expected(skip))
}

func TestPollFailingAndRecovered(t *testing.T) {
	f := newFixture(t, 3, nil) // threshold 3
	f.cycle()
	f.sim.SetDownAll(401)
	for i := 0; i < 6; i++ {
		if _, err := f.p.Cycle(context.Background()); err == nil {
			t.Fatal("cycle succeeded against 401")
		}
	}
	if q := f.queued(); len(q) != 1 || q[0] != ":bridge.poll_failing" {
		t.Fatalf("after 6 failures: %v, want one bridge.poll_failing", q)
	}
	f.sim.SetDownAll(0)
	f.cycle()
	f.cycle()
	if q := f.queued(); len(q) != 2 || q[1] != ":bridge.poll_recovered" {
		t.Fatalf("after recovery: %v", q)
	}
	recs, _ := f.st.Pending(sink, 0, 10)
	ce, err := event.Decode(recs[0].Event.Body)
	if err != nil || !strings.Contains(string(ce.Data), `"error_kind":"auth"`) || !strings.Contains(string(ce.Data), `"consecutive_failures":3`) {
		t.Fatalf("poll_failing data: %s (%v)", ce.Data, err)
	}
}

func TestStoreFailureDoesNotAdvanceSnapshot(t *testing.T) {
	f := newFixture(t, 5, nil)
	f.cycle()
	skip := len(f.sim.Transitions())
	f.sim.AddN(1, plugchoice.StatusReady)
	f.st.Close() // every commit now fails
	if _, err := f.p.Cycle(context.Background()); err == nil {
		t.Fatal("cycle succeeded on a closed store")
	}
	if f.health.storeErr == nil {
		t.Error("store error not reported to health")
	}
	st, err := store.Open(filepath.Dir(f.st.Path()), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f.st, f.opts.Store = st, st
	f.restart()
	f.cycle()
	sameMultiset(t, f.queued(), f.expected(skip))
}

// TestFullListingInterleavesCheapCycles: a long full listing runs cheap cycles between
// its pages; exports created or finished meanwhile are announced once, and none of the
// exports those cheap cycles added is taken for removed.
func TestFullListingInterleavesCheapCycles(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { // every reading is 300ms later: POLL_INTERVAL passes every few pages
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(300 * time.Millisecond)
		return clock
	}
	f := newFixture(t, 300, func(o *poller.Options) { o.Now = now; o.EmitRemoved = true; o.FullSyncInterval = 2 * time.Second })
	inflight := f.sim.AddN(5, plugchoice.StatusProcessing)
	f.cycle() // baseline
	skip := len(f.sim.Transitions())
	var pages atomic.Int32
	f.sim.SetOnRequest(func(r *http.Request) {
		if !strings.Contains(r.URL.RawQuery, "filter") && pages.Add(1) == 5 {
			f.sim.SetStatus(inflight[0], plugchoice.StatusReady)
			f.sim.AddN(2, plugchoice.StatusPending)
		}
	})
	rep := f.cycle()
	if !rep.Full || rep.Requests <= 13 {
		t.Fatalf("want a full listing (13 pages) with cheap cycles in between: %+v", rep)
	}
	f.sim.SetOnRequest(nil)
	f.cycle()
	f.cycle()
	sameMultiset(t, f.queued(), f.expected(skip))
	if f.p.Tracked() != 307 {
		t.Fatalf("tracked %d, want 307", f.p.Tracked())
	}
}

// With Options.Account, every event (bridge events too) carries the account attribute
// and an id of that account; without it, events are those of a single-account bridge.
func TestAccountStampsEveryEvent(t *testing.T) {
	f := newFixture(t, 3, func(o *poller.Options) { o.Account = "acme" })
	uuids := f.sim.AddN(1, plugchoice.StatusProcessing)
	f.cycle()
	f.sim.SetStatus(uuids[0], plugchoice.StatusReady)
	f.cycle()
	recs, err := f.st.Pending(sink, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d events queued, want 1", len(recs))
	}
	ev := recs[0].Event
	if got := event.AccountOf(ev.Body); got != "acme" {
		t.Errorf("account attribute %q, want acme: %s", got, ev.Body)
	}
	ce, err := event.Decode(ev.Body)
	if err != nil || ce.ID != ev.ID || ce.Account != "acme" {
		t.Errorf("CloudEvent id %q account %q, event id %q (%v)", ce.ID, ce.Account, ev.ID, err)
	}
	// The same export seen by a single-account bridge: the plain id, which acme's is
	// derived from.
	st2, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	o := f.opts
	o.Store, o.Account, o.EmitExisting = st2, "", true
	p2, err := poller.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs2, _ := st2.Pending(sink, 0, 100)
	found := false
	for _, r := range recs2 {
		if r.Event.Subject == uuids[0] {
			found = true
			if event.AccountOf(r.Event.Body) != "default" || r.Event.ID == ev.ID || event.AccountID("acme", r.Event.ID) != ev.ID {
				t.Errorf("single-account event id %s body %s; acme's id %s", r.Event.ID, r.Event.Body, ev.ID)
			}
		}
	}
	if !found {
		t.Fatalf("the single-account poller queued no event for %s", uuids[0])
	}
}
