package poller_test

// Tests that kill mutants scripts/mutation.sh found alive in ./poller (issue 17).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/store"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestUnsetIntervalsTakeTheirDefaults: a poller given no POLL_INTERVAL polls every
// 30 s, and one given no POLL_INTERVAL_ACTIVE polls at POLL_INTERVAL while exports are
// in flight: never back to back. The waits are recorded, not waited.
func TestUnsetIntervalsTakeTheirDefaults(t *testing.T) {
	tests := []struct {
		name             string
		interval, active time.Duration
		inflight         bool
		lo, hi           time.Duration
	}{
		{"no POLL_INTERVAL: 30 s", 0, 0, false, 29 * time.Second, 31 * time.Second},
		{"no POLL_INTERVAL_ACTIVE, an export in flight: POLL_INTERVAL", 2 * time.Second, 0, true, time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var waits []time.Duration
			f := newFixture(t, 5, func(o *poller.Options) {
				o.Interval, o.ActiveInterval, o.FullSyncInterval = tt.interval, tt.active, time.Hour
				o.Wait = func(_ context.Context, d time.Duration) bool { waits = append(waits, d); return false }
			})
			if tt.inflight {
				f.sim.AddN(1, plugchoice.StatusProcessing)
			}
			if err := f.p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(waits) != 1 || waits[0] < tt.lo || waits[0] > tt.hi {
				t.Errorf("waits %v, want one between %v and %v", waits, tt.lo, tt.hi)
			}
		})
	}
}

// TestUnsetFailureThresholdIsFive: with no POLL_FAILURE_THRESHOLD, bridge.poll_failing
// is queued at the fifth failed cycle in a row, not before.
func TestUnsetFailureThresholdIsFive(t *testing.T) {
	f := newFixture(t, 3, func(o *poller.Options) { o.FailureThreshold = 0 })
	f.cycle()
	f.sim.SetDownAll(503)
	for i := 1; i <= 5; i++ {
		if _, err := f.p.Cycle(context.Background()); err == nil {
			t.Fatalf("cycle %d succeeded against a down API", i)
		}
		want := 0
		if i == 5 {
			want = 1
		}
		if q := f.queued(); len(q) != want {
			t.Fatalf("after %d failed cycles: queued %v, want %s", i, q, map[int]string{0: "nothing", 1: "one bridge.poll_failing"}[want])
		}
	}
	if q := f.queued(); q[0] != ":bridge.poll_failing" {
		t.Errorf("queued %v, want bridge.poll_failing", q)
	}
}

// TestRunPacing: the loop keeps polling after a failed cycle; a slow cycle is not added
// to the interval (counted from the start of the previous cycle); and the jitter is
// added to the interval, up to 2.5 %, never taken off it. The waits are recorded, not
// waited.
func TestRunPacing(t *testing.T) {
	const slow = 200 * time.Millisecond
	tests := []struct {
		name     string
		interval time.Duration
		runs     int
		setup    func(f *fixture)
		check    func(t *testing.T, waits []time.Duration)
	}{
		{"a failed cycle does not stop the loop", time.Hour, 1,
			func(f *fixture) { f.sim.SetDownAll(503) },
			func(t *testing.T, waits []time.Duration) {
				if len(waits) != 1 {
					t.Errorf("Run waited %d times after a failed cycle, want 1 (the loop goes on)", len(waits))
				}
			}},
		{"a slow cycle is not added to the interval", time.Second, 1,
			func(f *fixture) { f.sim.SetOnRequest(func(*http.Request) { time.Sleep(slow) }) },
			func(t *testing.T, waits []time.Duration) {
				// Healthy: 1 s + up to 25 ms of jitter - the 200 ms cycle; added: 1.2 s.
				if len(waits) != 1 || waits[0] >= time.Second {
					t.Errorf("waits %v after a cycle of at least %v, want one under the 1 s interval", waits, slow)
				}
			}},
		{"jitter is added, up to 2.5 %", time.Hour, 5, nil,
			func(t *testing.T, waits []time.Duration) {
				above := 0
				for _, w := range waits {
					if w < time.Hour-time.Second || w > time.Hour+time.Hour/40 {
						t.Errorf("wait %v, want between 1h (less the cycle) and 1h + 2.5 %%", w)
					}
					if w > time.Hour {
						above++
					}
				}
				// Each wait is above 1 h unless its jitter (0-90 s) is under the cycle's
				// few milliseconds.
				if len(waits) != 5 || above == 0 {
					t.Errorf("waits %v: want 5, some above the 1 h interval (jitter added)", waits)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var waits []time.Duration
			f := newFixture(t, 5, func(o *poller.Options) {
				o.Interval, o.FullSyncInterval = tt.interval, 2*time.Hour
				o.Wait = func(_ context.Context, d time.Duration) bool { waits = append(waits, d); return false }
			})
			f.cycle() // baseline
			if tt.setup != nil {
				tt.setup(f)
			}
			for range tt.runs {
				if err := f.p.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			f.sim.SetOnRequest(nil)
			tt.check(t, waits)
		})
	}
}

// countingStore is the real store counting the poller's commits; it fails the commits
// only (not the poll facts) while failCommit is set.
type countingStore struct {
	poller.Store
	commits    atomic.Int32
	failCommit atomic.Bool
}

func (s *countingStore) CommitCycle(c store.Cycle) error {
	if s.failCommit.Load() {
		return errDisk
	}
	s.commits.Add(1)
	return s.Store.CommitCycle(c)
}

// TestFullListingOfAnUnchangedAccountCommitsOnce: a full listing whose pages change
// nothing writes one transaction at its end, not one (an fsync) per page.
func TestFullListingOfAnUnchangedAccountCommitsOnce(t *testing.T) {
	cs := &countingStore{}
	f := newFixture(t, 300, func(o *poller.Options) { cs.Store = o.Store; o.Store = cs }) // 12 pages
	f.cycle()                                                                             // baseline
	before := cs.commits.Load()
	rep, err := f.p.FullCycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Full || rep.Requests < 12 {
		t.Fatalf("test set-up: %+v, want a full listing of 12 pages", rep)
	}
	if n := cs.commits.Load() - before; n != 1 {
		t.Errorf("a full listing of %d unchanged pages committed %d times, want 1", rep.Requests, n)
	}
}

// TestCommitFailureReachesHealth: a store that fails the cycle's commit (while it still
// records the poll facts) is reported to health (/readyz store_error).
func TestCommitFailureReachesHealth(t *testing.T) {
	cs := &countingStore{}
	f := newFixture(t, 10, func(o *poller.Options) { cs.Store = o.Store; o.Store = cs })
	f.cycle()
	f.sim.AddN(1, plugchoice.StatusReady)
	cs.failCommit.Store(true)
	if _, err := f.p.Cycle(context.Background()); !errors.Is(err, errDisk) {
		t.Fatalf("cycle = %v, want the commit's error", err)
	}
	f.health.mu.Lock()
	got := f.health.storeErr
	f.health.mu.Unlock()
	if !errors.Is(got, errDisk) {
		t.Errorf("health heard store error %v, want the failed commit", got)
	}
}

// logLines is a concurrency-safe JSON log capture.
type logLines struct{ bridgetest.SyncBuf }

// with returns the lines whose message is msg.
func (l *logLines) with(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestAbsentExportLoggedOnceAsAwaitingRemoval: a complete listing that lacks an export
// logs that it awaits the next listing's confirmation; listings that lack nothing do
// not log it.
func TestAbsentExportLoggedOnceAsAwaitingRemoval(t *testing.T) {
	const msg = "exports absent from this complete listing; removed only if the next one lacks them too"
	logs := &logLines{}
	f := newFixture(t, 10, func(o *poller.Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	full := func() {
		t.Helper()
		if _, err := f.p.FullCycle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	f.cycle() // baseline
	full()    // nothing absent
	gone := f.sim.AddN(1, plugchoice.StatusReady)[0]
	f.cycle()
	f.sim.Remove(gone)
	full() // absent once: awaits
	full() // absent twice: removed
	full() // nothing absent
	got := logs.with(msg)
	if len(got) != 1 || got[0]["count"] != float64(1) {
		t.Errorf("awaiting-removal logs %v, want one with count 1", got)
	}
}

// TestInFlightExportTiedWithTheHeadPageIsResolvedCheaply: an in-flight export requested
// at the same instant as the last export of the head page (timestamps of the API are
// often whole seconds) may be on the next page: when it finishes, the cheap cycle reads
// on and announces it without a full listing.
func TestInFlightExportTiedWithTheHeadPageIsResolvedCheaply(t *testing.T) {
	f := newFixture(t, 0, nil)
	at := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) string { return at.Add(d).Format(time.RFC3339Nano) }
	f.sim.Add(plugchoice.Export{UUID: "tied-inflight", Status: plugchoice.StatusProcessing, RequestedAt: ts(0)})
	f.sim.Add(plugchoice.Export{UUID: "tied-ready", Status: plugchoice.StatusReady, RequestedAt: ts(0)}) // listed first of the two
	for i := range 24 {
		f.sim.Add(plugchoice.Export{UUID: fmt.Sprintf("newer-%02d", i), Status: plugchoice.StatusReady, RequestedAt: ts(time.Duration(i+1) * time.Second)})
	}
	f.cycle() // baseline: page 1 ends with tied-ready, page 2 holds tied-inflight
	skip := len(f.sim.Transitions())
	f.sim.SetStatus("tied-inflight", plugchoice.StatusReady)
	rep := f.cycle()
	if rep.Full {
		t.Errorf("the tied export's end took a full listing: %+v, want a cheap cycle reading on to page 2", rep)
	}
	if q, want := f.queued(), f.expected(skip); len(want) != 1 || !slices.Equal(q, want) {
		t.Errorf("queued %v, want %v", q, want)
	}
}

// TestFullListingDueAtExactlyFullSyncInterval: a full listing is due once
// FULL_SYNC_INTERVAL has passed since the last one, at exactly that time too.
func TestFullListingDueAtExactlyFullSyncInterval(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	set := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	start := now()
	f := newFixture(t, 10, func(o *poller.Options) { o.Now = now; o.FullSyncInterval = time.Hour })
	if rep := f.cycle(); !rep.Full {
		t.Fatalf("baseline: %+v, want a full listing", rep)
	}
	set(start.Add(time.Hour - time.Second))
	if rep := f.cycle(); rep.Full {
		t.Fatalf("a second before FULL_SYNC_INTERVAL: %+v, want a cheap cycle", rep)
	}
	set(start.Add(time.Hour))
	if rep := f.cycle(); !rep.Full {
		t.Errorf("at exactly FULL_SYNC_INTERVAL: %+v, want a full listing", rep)
	}
}

// TestUnrecordedFailedPollReachesHealth: a failed cycle whose poll facts the store
// cannot record is reported to health (/readyz store_error), not only logged.
func TestUnrecordedFailedPollReachesHealth(t *testing.T) {
	f, flaky := newFlakyFixture(t, 5)
	f.cycle()
	f.sim.SetDownAll(503)
	flaky.failing.Store(true)
	if _, err := f.p.Cycle(context.Background()); err == nil {
		t.Fatal("cycle succeeded against a down API")
	}
	f.health.mu.Lock()
	got := f.health.storeErr
	f.health.mu.Unlock()
	if !errors.Is(got, errDisk) {
		t.Errorf("health heard store error %v, want the failed SavePoll", got)
	}
}

// TestFullListingRunsACheapCycleOnceIntervalHasPassed: a full listing runs a cheap cycle
// between two pages as soon as POLL_INTERVAL has passed since the last one, at exactly
// POLL_INTERVAL too, and not again before the next interval. The clock moves once, by
// exactly POLL_INTERVAL, when the listing's first page is requested.
func TestFullListingRunsACheapCycleOnceIntervalHasPassed(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	f := newFixture(t, 300, func(o *poller.Options) { o.Now = now }) // 12 pages; Interval 1s
	f.cycle()                                                        // baseline
	var once sync.Once
	f.sim.SetOnRequest(func(*http.Request) {
		once.Do(func() { mu.Lock(); clock = clock.Add(time.Second); mu.Unlock() })
	})
	rep, err := f.p.FullCycle(context.Background())
	f.sim.SetOnRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	// 12 pages, and one cheap cycle of one request (nothing in flight, nothing new).
	if rep.Requests != 13 {
		t.Errorf("full listing made %d requests, want 13 (12 pages and one cheap cycle after the first)", rep.Requests)
	}
}
