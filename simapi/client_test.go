package simapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/simapi"
)

// serve mounts sim under /api/v3 and returns a plugchoice client of it.
func serve(t testing.TB, sim *simapi.API, mod func(*plugchoice.Options)) *plugchoice.Client {
	t.Helper()
	srv := httptest.NewServer(http.StripPrefix("/api/v3", sim))
	t.Cleanup(srv.Close)
	o := plugchoice.Options{
		BaseURL:      srv.URL + "/api/v3",
		Token:        token,
		RetryInitial: time.Millisecond,
		MaxRetryWait: 10 * time.Millisecond,
	}
	if mod != nil {
		mod(&o)
	}
	c, err := plugchoice.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// The client lists every export exactly once while items shift between pages.
func TestClientListsEverythingWhileItemsShift(t *testing.T) {
	tests := []struct {
		name  string
		setup func(sim *simapi.API)
	}{
		{"stable", func(sim *simapi.API) {}},
		{"shift after page 2", func(sim *simapi.API) { sim.SetShiftOnPage(2) }},
		{"shift before every page", func(sim *simapi.API) {
			sim.SetOnRequest(func(r *http.Request) {
				if r.URL.Query().Get("page") != "1" {
					sim.AddN(1, plugchoice.StatusPending)
				}
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := newSim(simapi.Options{Seed: 11})
			ids := sim.AddN(1000, plugchoice.StatusReady)
			tt.setup(sim)
			c := serve(t, sim, nil)
			l, err := c.List(ctx(t), plugchoice.Query{})
			if err != nil {
				t.Fatal(err)
			}
			if !l.Complete {
				t.Fatal("listing not complete")
			}
			got := make([]string, len(l.Exports))
			for i, e := range l.Exports {
				got[i] = e.UUID
			}
			// Nothing missing, nothing twice; the exports created at the head while
			// paging were never on a page still to read.
			if !slices.Equal(sorted(got), sorted(ids)) {
				t.Fatalf("listed %d exports, want the %d that existed", len(got), len(ids))
			}
			if !slices.Equal(got, reversed(ids)) {
				t.Fatal("listing not in newest-first order")
			}
			if int(c.Requests()) != l.Pages || sim.Requests() != l.Pages {
				t.Fatalf("client made %d requests, server saw %d, %d pages", c.Requests(), sim.Requests(), l.Pages)
			}
		})
	}
}

func TestClientFiltersAgainstSim(t *testing.T) {
	sim := newSim(simapi.Options{Seed: 5})
	pending := sim.AddN(30, plugchoice.StatusPending)
	processing := sim.AddN(30, plugchoice.StatusProcessing)
	sim.AddN(300, plugchoice.StatusReady)
	c := serve(t, sim, nil)
	l, err := c.List(ctx(t), plugchoice.Query{Statuses: []string{"pending", "processing"}, PerPage: 20})
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(pending), processing...)
	got := make([]string, len(l.Exports))
	for i, e := range l.Exports {
		got[i] = e.UUID
	}
	if !slices.Equal(got, reversed(want)) || l.Pages != 3 {
		t.Fatalf("%d exports in %d pages, want the 60 in-flight ones in 3 pages", len(got), l.Pages)
	}
}

func TestClientAgainstSimFaults(t *testing.T) {
	tests := []struct {
		name     string
		faults   []simapi.Fault
		wantKind string // "" for success
		wantReqs int
	}{
		{"5xx then success", []simapi.Fault{{Status: 503, Count: 2}, {Status: 502}}, "", 4},
		{"429 Retry-After then success", []simapi.Fault{{Status: 429, RetryAfter: "30", Body: `{"message":"Too Many Attempts."}`}}, "", 2},
		{"slow then success", []simapi.Fault{{Delay: 10 * time.Second}}, "", 2},
		{"garbage", []simapi.Fault{{Garbage: true}}, "decode", 1},
		{"truncated", []simapi.Fault{{Truncate: true}}, "decode", 1},
		{"data null", []simapi.Fault{{Body: `{"data":null}`}}, "decode", 1},
		{"down", []simapi.Fault{{Status: 500, Count: 10}}, "server", 3},
		{"422", []simapi.Fault{{Status: 422, Body: `{"message":"bad","errors":{"x":["y"]}}`}}, "client", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := newSim(simapi.Options{})
			sim.AddN(10, plugchoice.StatusReady)
			sim.InjectFaults(tt.faults...)
			c := serve(t, sim, func(o *plugchoice.Options) {
				o.MaxRetries = 3
				o.Timeout = 200 * time.Millisecond
				if tt.wantKind == "server" {
					o.MaxRetries = 2
				}
			})
			l, err := c.List(ctx(t), plugchoice.Query{})
			if tt.wantKind == "" {
				if err != nil || len(l.Exports) != 10 || !l.Complete {
					t.Fatalf("listing %d exports complete=%v, error %v", len(l.Exports), l.Complete, err)
				}
			} else {
				if got := plugchoice.Kind(err); got != tt.wantKind || l.Complete || len(l.Exports) != 0 {
					t.Fatalf("error %v (kind %q), want kind %q and an empty incomplete listing", err, got, tt.wantKind)
				}
			}
			if int(c.Requests()) != tt.wantReqs {
				t.Fatalf("%d requests, want %d", c.Requests(), tt.wantReqs)
			}
		})
	}
}

func TestClientAgainstSimAuthAndRateLimit(t *testing.T) {
	clk := newClock()
	sim := newSim(simapi.Options{RateLimit: 3, Now: clk.Now})
	sim.AddN(100, plugchoice.StatusReady)
	c := serve(t, sim, func(o *plugchoice.Options) { o.MaxRetries = 1 })
	// 4 pages, 3 requests a minute and a clock that stands still: page 4 is refused.
	l, err := c.List(ctx(t), plugchoice.Query{})
	if plugchoice.Kind(err) != "rate_limited" || l.Pages != 3 || l.Complete {
		t.Fatalf("error %v, %d pages; want rate_limited after 3 pages", err, l.Pages)
	}
	if !strings.HasPrefix(err.Error(), "list exports page 4: after 2 attempts: plugchoice API: 429 Too Many Attempts.") {
		t.Fatalf("error %v", err)
	}
	if limit, remaining, ok := c.RateLimit(); !ok || limit != 3 || remaining != 0 {
		t.Fatalf("RateLimit() = %d, %d, %v", limit, remaining, ok)
	}

	clk.Advance(time.Minute)
	sim.SetToken("rotated")
	_, err = c.ListPage(ctx(t), plugchoice.Query{}, 1)
	if !plugchoice.IsAuth(err) || err.Error() != "page 1: plugchoice API: 401 Unauthenticated." {
		t.Fatalf("error %v, want 401 Unauthenticated.", err)
	}
}

// A derived budget follows the sim's X-RateLimit-Limit.
func TestClientBudgetFollowsSimHeaders(t *testing.T) {
	sim := newSim(simapi.Options{RateLimit: 100})
	b := plugchoice.NewBudget(0)
	c := serve(t, sim, func(o *plugchoice.Options) { o.Budget = b })
	if _, err := c.ListPage(ctx(t), plugchoice.Query{}, 1); err != nil {
		t.Fatal(err)
	}
	if b.Limit() != 80 {
		t.Fatalf("budget %v per minute, want 80 (80%% of 100)", b.Limit())
	}
}

func TestClientGetsResignedURLs(t *testing.T) {
	sim := newSim(simapi.Options{})
	sim.AddN(1, plugchoice.StatusReady)
	c := serve(t, sim, nil)
	a, err := c.ListPage(ctx(t), plugchoice.Query{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.ListPage(ctx(t), plugchoice.Query{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if *a.Data[0].DownloadURL == *b.Data[0].DownloadURL || string(a.Data[0].Raw) == string(b.Data[0].Raw) {
		t.Fatal("download_url not re-signed between two requests")
	}
}

func newBigSim(b *testing.B, n int) *simapi.API {
	sim := newSim(simapi.Options{Seed: 1})
	statuses := []string{"ready", "ready", "ready", "failed", "cancelled"}
	for i := 0; i < n; i += 1000 {
		sim.AddN(1000, statuses[(i/1000)%len(statuses)])
	}
	sim.AddN(50, plugchoice.StatusPending)
	return sim
}

// BenchmarkServePage serves pages of a 100,000-export list through the handler.
func BenchmarkServePage(b *testing.B) {
	sim := newBigSim(b, 100_000)
	for _, bc := range []struct{ name, q string }{
		{"unfiltered", ""},
		{"ready", "filter[status][]=ready&"},
		{"in-flight", "filter[status][]=pending&filter[status][]=processing&"},
	} {
		q := bc.q
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				w := get(sim, fmt.Sprintf("/api/v3/exports?%spage=%d", q, i%2000+1), token)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

// BenchmarkListAll100k lists a 100,000-export list through the client over loopback
// HTTP and reports pages per second.
func BenchmarkListAll100k(b *testing.B) {
	sim := newBigSim(b, 100_000)
	c := serve(b, sim, nil)
	pages := 0
	start := time.Now()
	for b.Loop() {
		l, err := c.List(context.Background(), plugchoice.Query{})
		if err != nil || len(l.Exports) != 100_050 {
			b.Fatal(err)
		}
		pages += l.Pages
	}
	b.ReportMetric(float64(pages)/time.Since(start).Seconds(), "pages/s")
}
