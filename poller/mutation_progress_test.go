package poller_test

// Tests of the full listing's progress report and of bridge events of an account, for
// mutants scripts/mutation.sh found alive in ./poller on the merged tree (issue 17).

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestListingProgressEveryTenSecondsWithItsRate: without ProgressEvery a full listing
// reports every 10 s (DefaultProgressEvery), at the first page that ends 10 s or more
// after the last report, with the requests per minute of the listing itself (not of
// what the poller asked before it), the log's requests_per_minute rounded, and no rate
// limit where the API sends none.
func TestListingProgressEveryTenSecondsWithItsRate(t *testing.T) {
	// The clock moves on by one second per API request: a listing of n pages takes n
	// seconds, exactly.
	clock := bridgetest.NewClock(time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC))
	var logs bytes.Buffer
	var mu sync.Mutex
	var got []poller.Progress
	f := newFixture(t, 1000, func(o *poller.Options) { // 40 pages of 25
		o.Now = clock.Now
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		o.OnProgress = func(g poller.Progress) { mu.Lock(); got = append(got, g); mu.Unlock() }
	})
	f.sim.SetOnRequest(func(*http.Request) { clock.Advance(time.Second) })
	take := func() []poller.Progress {
		mu.Lock()
		defer mu.Unlock()
		g := got
		got = nil
		return g
	}
	for _, listing := range []string{"baseline", "full listing"} {
		if listing == "full listing" {
			clock.Advance(2 * time.Hour) // past FULL_SYNC_INTERVAL: the next cycle lists everything
			logs.Reset()
		}
		if rep := f.cycle(); !rep.Full {
			t.Fatalf("%s: cycle %+v, want a full listing", listing, rep)
		}
		reports := take()
		if len(reports) < 4 {
			t.Fatalf("%s of 40 pages at 1 s each: %d progress reports, want 3 during it and one at its end: %+v", listing, len(reports), reports)
		}
		first := reports[0]
		// The baseline is pages only: its 10th page ends 10 s in. A later full listing
		// begins with the cycle's head scan, which its time and rate count too.
		if el := first.At.Sub(first.Started); first.Listing != listing || first.Done || el < 10*time.Second || el > 11*time.Second ||
			listing == "baseline" && (first.Pages != 10 || el != 10*time.Second) {
			t.Errorf("%s: first report %+v (%s in), want the first page that ends 10 s or more in (the 10th of a baseline)", listing, first, el)
		}
		if first.PerMinute < 59.9 || first.PerMinute > 60.1 {
			t.Errorf("%s: %.2f requests/min in the first report, want 60 (one request a second since the listing began)", listing, first.PerMinute)
		}
		if first.RateRemaining != -1 || strings.Contains(first.String(), "rate limit") {
			t.Errorf("%s: rate limit %d in %q; the API sent none (want -1, not shown)", listing, first.RateRemaining, first.String())
		}
		if !strings.Contains(logs.String(), `"requests_per_minute":60,`) {
			t.Errorf("%s: the log's progress line lacks requests_per_minute 60:\n%s", listing, logs.String())
		}
	}
}

// TestProgressLineShowsTheRateLimitLeft: the line shows the rate limit left whenever
// the API sent one, none left included, and nothing when it sent none.
func TestProgressLineShowsTheRateLimitLeft(t *testing.T) {
	at := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		remaining int
		want      string
	}{
		{0, ", rate limit 0 left"},
		{412, ", rate limit 412 left"},
		{-1, ""},
	} {
		g := poller.Progress{Listing: "baseline", Started: at, At: at.Add(20 * time.Second), Pages: 20, Exports: 500, PerMinute: 60, RateRemaining: tc.remaining}
		want := "baseline: 20 pages, 500 exports read in 20s, 60 requests/min" + tc.want
		if got := g.String(); got != want {
			t.Errorf("RateRemaining %d: %q, want %q", tc.remaining, got, want)
		}
	}
}

// TestBridgeEventsOfAnAccountAreStampedOnce: bridge.poll_failing and
// bridge.poll_recovered of an account carry its attribute and an id of that account:
// the one-account bridge's id moved into the account once, as for export events.
func TestBridgeEventsOfAnAccountAreStampedOnce(t *testing.T) {
	at := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	bridgeEvents := func(account string) map[string]event.Event {
		f := newFixture(t, 3, func(o *poller.Options) {
			o.Account, o.FailureThreshold, o.Source = account, 1, "https://api.test/api/v3/exports"
			o.Now = func() time.Time { return at }
		})
		f.cycle()
		f.sim.InjectFaults(simapi.Fault{Status: 500, Count: 10})
		if _, err := f.p.Cycle(context.Background()); err == nil {
			t.Fatal("a cycle against an API answering 500 succeeded")
		}
		for range 10 { // the next cycles use up the 500s left; the first good one recovers
			if _, err := f.p.Cycle(context.Background()); err == nil {
				break
			}
		}
		recs, err := f.st.Pending(sink, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]event.Event{}
		for _, r := range recs {
			if strings.HasPrefix(r.Event.Type, "bridge.") {
				out[r.Event.Type] = r.Event
			}
		}
		if len(out) != 2 {
			t.Fatalf("account %q: bridge events %v, want poll_failing and poll_recovered", account, out)
		}
		return out
	}
	plain, acme := bridgeEvents(""), bridgeEvents("acme")
	for typ, pe := range plain {
		ae, ok := acme[typ]
		if !ok {
			t.Fatalf("acme has no %s", typ)
		}
		if got := event.AccountOf(ae.Body); got != "acme" {
			t.Errorf("%s of acme: account attribute %q, want acme", typ, got)
		}
		if want := event.AccountID("acme", pe.ID); ae.ID != want {
			t.Errorf("%s of acme: id %s, want %s (the one-account id %s moved into acme once)", typ, ae.ID, want, pe.ID)
		}
	}
}
