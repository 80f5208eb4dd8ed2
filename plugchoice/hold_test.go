package plugchoice_test

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// The sequence a new user met: a 503 with Retry-After: 3, then a 429 with Retry-After: 3
// that used up the page's retries. The rate limit belongs to the token: no request at
// all (another query, another page, the next cycle, several at once) may go before the
// 429's Retry-After has passed.
func TestRetryAfterHoldsEveryRequest(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "3")
			writeJSON(w, 503, `{"message":"Service Unavailable"}`)
		case 2:
			w.Header().Set("Retry-After", "3")
			writeJSON(w, 429, `{"message":"Too Many Attempts."}`)
		default:
			writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
		}
	})
	var logs bridgetest.SyncBuf
	m := metrics.New(prometheus.NewRegistry())
	c := newClient(t, f.URL, func(o *plugchoice.Options) {
		o.MaxRetries = 1 // the 429 is the last attempt
		o.Metrics = m
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	_, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1)
	if plugchoice.Kind(err) != "rate_limited" {
		t.Fatalf("first page: error %v, want the 429 after its retries", err)
	}
	// The cycle ends; what comes next (the other query, the next page, the next cycle,
	// all at once) waits for the 429's Retry-After.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i, q := range []plugchoice.Query{{Statuses: []string{"pending", "processing"}}, {}, {}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.ListPage(ctxT(t), q, 1+i)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("request after the hold: %v", err)
		}
	}
	reqs := f.requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5 (503, 429, then the three held ones)", len(reqs))
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 2900*time.Millisecond {
		t.Errorf("retry after the 503 came %v later, before its Retry-After: 3", gap)
	}
	for i, r := range reqs[2:] {
		if gap := r.At.Sub(reqs[1].At); gap < 2900*time.Millisecond {
			t.Errorf("request %d came %v after the 429, before its Retry-After: 3", i+3, gap)
		}
	}
	until := testutil.ToFloat64(m.APIRetryAfterUntil)
	want := float64(reqs[1].At.Add(3*time.Second).UnixNano()) / 1e9
	if until < want-1 || until > want+1 {
		t.Errorf("exportbridge_api_retry_after_until_timestamp_seconds = %.3f, want about %.3f", until, want)
	}
	if nb := c.NotBefore(); nb.Before(reqs[1].At.Add(2900*time.Millisecond)) || nb.After(reqs[2].At) {
		t.Errorf("NotBefore %v, want 3 s after the 429 (%v) and before the next request (%v)", nb, reqs[1].At, reqs[2].At)
	}
	// One line per rate-limited period (the 503's, the 429's), not one per request held.
	if n := strings.Count(logs.String(), "holding every request"); n != 2 {
		t.Errorf("%d hold lines, want 2 (one per period):\n%s", n, logs.String())
	}
}

// Only 429 and 503 hold the token; a Retry-After on another answer paces only the
// retries of its own page.
func TestRetryAfterOnOtherStatusDoesNotHold(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "60")
			writeJSON(w, 500, `{"message":"oops"}`)
			return
		}
		writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
	})
	c := newClient(t, f.URL, func(o *plugchoice.Options) { o.MaxRetries = -1 })
	if _, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1); err == nil {
		t.Fatal("500 without retries succeeded")
	}
	if nb := c.NotBefore(); !nb.IsZero() {
		t.Fatalf("NotBefore %v after a 500, want zero", nb)
	}
	if _, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1); err != nil {
		t.Fatal(err)
	}
}
