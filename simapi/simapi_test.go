package simapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

const token = "sim-token"

// newClock is a settable clock for Options.Now.
func newClock() *bridgetest.Clock {
	return bridgetest.NewClock(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC))
}

func newSim(opts simapi.Options) *simapi.API {
	if opts.Token == "" {
		opts.Token = token
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = -1
	}
	return simapi.New(opts)
}

// get serves target through h and returns the recorder.
func get(h http.Handler, target, tok string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// getPage serves target and decodes the page strictly, failing the test otherwise.
func getPage(t *testing.T, h http.Handler, target string) *plugchoice.Page {
	t.Helper()
	w := get(h, target, token)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
	}
	p, err := plugchoice.DecodePage(w.Body.Bytes())
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return p
}

func uuids(es []plugchoice.Export) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.UUID
	}
	return out
}

func reversed(s []string) []string {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

func TestPagination(t *testing.T) {
	sim := newSim(simapi.Options{Now: newClock().Now})
	ids := sim.AddN(60, plugchoice.StatusReady)
	newestFirst := reversed(ids)
	tests := []struct {
		target   string
		want     []string
		page     int
		perPage  int
		from, to int // 0: null
		next     bool
	}{
		{"/exports", newestFirst[:25], 1, 25, 1, 25, true},
		{"/exports?page=2", newestFirst[25:50], 2, 25, 26, 50, true},
		{"/exports?page=3", newestFirst[50:], 3, 25, 51, 60, false},
		{"/exports?page=4", nil, 4, 25, 0, 0, false},
		{"/exports?page=999999999999", nil, 999999999999, 25, 0, 0, false},
		{"/exports?page=0", newestFirst[:25], 1, 25, 1, 25, true},
		{"/exports?page=abc", newestFirst[:25], 1, 25, 1, 25, true},
		{"/exports?per_page=7&page=2", newestFirst[7:14], 2, 7, 8, 14, true},
		{"/exports?per_page=500", newestFirst, 1, 100, 1, 60, false},
		{"/exports?per_page=60", newestFirst, 1, 60, 1, 60, false},
		{"/api/v3/exports?page=3", newestFirst[50:], 3, 25, 51, 60, false},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			p := getPage(t, sim, tt.target)
			if got := uuids(p.Data); !reflect.DeepEqual(got, tt.want) && (len(got) > 0 || len(tt.want) > 0) {
				t.Fatalf("uuids %v\nwant %v", got, tt.want)
			}
			if (p.Links.Next != nil) != tt.next {
				t.Fatalf("links.next %v, want set=%v", p.Links.Next, tt.next)
			}
			if p.Links.Last != nil || p.Links.First == nil || !strings.HasSuffix(*p.Links.First, "?page=1") {
				t.Fatalf("links %+v", p.Links)
			}
			if (p.Links.Prev != nil) != (tt.page > 1) {
				t.Fatalf("links.prev %v on page %d", p.Links.Prev, tt.page)
			}
			m := p.Meta
			if m.CurrentPage != tt.page || m.PerPage != tt.perPage {
				t.Fatalf("meta %+v, want page %d per page %d", m, tt.page, tt.perPage)
			}
			if tt.from == 0 {
				if m.From != nil || m.To != nil {
					t.Fatalf("meta from/to %v/%v, want null", m.From, m.To)
				}
			} else if m.From == nil || *m.From != tt.from || m.To == nil || *m.To != tt.to {
				t.Fatalf("meta from/to %v/%v, want %d/%d", m.From, m.To, tt.from, tt.to)
			}
		})
	}
}

func TestDefaultPerPageOption(t *testing.T) {
	sim := newSim(simapi.Options{PerPage: 10})
	sim.AddN(15, plugchoice.StatusPending)
	if p := getPage(t, sim, "/exports"); len(p.Data) != 10 || p.Meta.PerPage != 10 {
		t.Fatalf("%d exports, per_page %d; want 10", len(p.Data), p.Meta.PerPage)
	}
}

func TestNewestFirstByRequestedAt(t *testing.T) {
	sim := newSim(simapi.Options{Now: newClock().Now})
	sim.AddN(30, plugchoice.StatusPending)
	// An export added later but requested earlier sorts by requested_at.
	sim.Add(plugchoice.Export{UUID: "old", Type: "sessions", Status: "ready", RequestedAt: "2020-01-01T00:00:00Z"})
	sim.Add(plugchoice.Export{UUID: "future", Type: "sessions", RequestedAt: "2030-01-01T00:00:00Z"})
	var all []plugchoice.Export
	for page := 1; ; page++ {
		p := getPage(t, sim, fmt.Sprintf("/exports?page=%d", page))
		all = append(all, p.Data...)
		if p.Links.Next == nil {
			break
		}
	}
	if len(all) != 32 || all[0].UUID != "future" || all[31].UUID != "old" {
		t.Fatalf("%d exports, first %s, last %s", len(all), all[0].UUID, all[len(all)-1].UUID)
	}
	for i := 1; i < len(all); i++ {
		if all[i].RequestedAt > all[i-1].RequestedAt {
			t.Fatalf("requested_at increases at %d: %s after %s", i, all[i].RequestedAt, all[i-1].RequestedAt)
		}
	}
	if all[0].Status != plugchoice.StatusPending {
		t.Fatalf("missing status not defaulted to pending: %q", all[0].Status)
	}
}

func TestFilters(t *testing.T) {
	sim := newSim(simapi.Options{Seed: 7, Now: newClock().Now})
	for _, s := range []string{"pending", "processing", "ready", "failed", "cancelled"} {
		sim.AddN(40, s)
	}
	all := sim.Snapshot()
	pick := func(f func(e plugchoice.Export) bool) []string {
		var out []string
		for _, e := range all {
			if f(e) {
				out = append(out, e.UUID)
			}
		}
		return out
	}
	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"none", "", uuids(all)},
		{"one status", "filter[status][]=ready", pick(func(e plugchoice.Export) bool { return e.Status == "ready" })},
		{"two statuses", "filter[status][]=pending&filter[status][]=processing",
			pick(func(e plugchoice.Export) bool { return e.Status == "pending" || e.Status == "processing" })},
		{"escaped brackets", "filter%5Bstatus%5D%5B%5D=failed",
			pick(func(e plugchoice.Export) bool { return e.Status == "failed" })},
		{"type with space", "filter[type][]=meter+values",
			pick(func(e plugchoice.Export) bool { return e.Type == "meter values" })},
		{"two types and a status", "filter[type][]=sessions&filter[type][]=invoices%2Fmonthly&filter[status][]=ready",
			pick(func(e plugchoice.Export) bool {
				return e.Status == "ready" && (e.Type == "sessions" || e.Type == "invoices/monthly")
			})},
		{"subject", "filter[subject_type]=site&filter[subject_id]=3",
			pick(func(e plugchoice.Export) bool { return e.Subject != nil && e.Subject.ID == 3 })},
		{"subject type only", "filter[subject_type]=site",
			pick(func(e plugchoice.Export) bool { return e.Subject != nil })},
		{"unknown subject type", "filter[subject_type]=charger", nil},
		{"unknown type", "filter[type][]=nope", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.want) == 0 && tt.query != "filter[subject_type]=charger" && tt.query != "filter[type][]=nope" {
				t.Fatal("test selects nothing: fix the data")
			}
			var got []string
			for page := 1; page < 100; page++ {
				p := getPage(t, sim, fmt.Sprintf("/exports?%s&page=%d", tt.query, page))
				got = append(got, uuids(p.Data)...)
				if p.Links.Next == nil {
					break
				}
				// links.next carries no filters (Laravel's default).
				if u, _ := url.Parse(*p.Links.Next); u.RawQuery != fmt.Sprintf("page=%d", page+1) {
					t.Fatalf("links.next %q carries more than the page", *p.Links.Next)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %d exports, want %d\n got %v\nwant %v", len(got), len(tt.want), got, tt.want)
			}
		})
	}
}

func TestValidationErrors(t *testing.T) {
	sim := newSim(simapi.Options{})
	tests := []struct {
		query string
		field string
	}{
		{"filter[status][]=done", "filter.status.0"},
		{"per_page=abc", "per_page"},
		{"per_page=0", "per_page"},
		{"filter[subject_id]=x", "filter.subject_id"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			w := get(sim, "/exports?"+tt.query, token)
			if w.Code != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", w.Code)
			}
			var body struct {
				Message string
				Errors  map[string][]string
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Message == "" || len(body.Errors[tt.field]) == 0 {
				t.Fatalf("body %s (%v), want a message and errors[%s]", w.Body, err, tt.field)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	sim := newSim(simapi.Options{})
	tests := []struct {
		method, target string
		code           int
	}{
		{http.MethodGet, "/exports", 200},
		{http.MethodGet, "/api/v3/exports", 200},
		{http.MethodGet, "/exports/", 200},
		{http.MethodGet, "/api/v3/chargers", 404},
		{http.MethodPost, "/exports", 405},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		sim.ServeHTTP(w, r)
		if w.Code != tt.code || !json.Valid(w.Body.Bytes()) {
			t.Errorf("%s %s: %d %s, want %d with a JSON body", tt.method, tt.target, w.Code, w.Body, tt.code)
		}
	}
}

func TestMountedUnderPrefixLinks(t *testing.T) {
	sim := newSim(simapi.Options{})
	sim.AddN(30, plugchoice.StatusPending)
	srv := httptest.NewServer(http.StripPrefix("/api/v3", sim))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v3/exports?filter[status][]=pending", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p plugchoice.Page
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.Links.Next == nil || *p.Links.Next != srv.URL+"/api/v3/exports?page=2" {
		t.Fatalf("links.next %v, want %s", p.Links.Next, srv.URL+"/api/v3/exports?page=2")
	}
	if p.Meta.Path != srv.URL+"/api/v3/exports" {
		t.Fatalf("meta.path %q", p.Meta.Path)
	}
}

func TestAuth(t *testing.T) {
	sim := newSim(simapi.Options{})
	tests := []struct {
		name   string
		header string
		code   int
	}{
		{"right token", "Bearer " + token, 200},
		{"wrong token", "Bearer nope", 401},
		{"no header", "", 401},
		{"not bearer", "Basic " + token, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/exports", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			w := httptest.NewRecorder()
			sim.ServeHTTP(w, r)
			if w.Code != tt.code {
				t.Fatalf("status %d, want %d", w.Code, tt.code)
			}
			if tt.code == 401 && strings.TrimSpace(w.Body.String()) != `{"message":"Unauthenticated."}` {
				t.Fatalf("body %s", w.Body)
			}
		})
	}
	// A rotated token: the old one stops working.
	sim.SetToken("new-token")
	if w := get(sim, "/exports", token); w.Code != 401 {
		t.Fatalf("old token after rotation: %d", w.Code)
	}
	if w := get(sim, "/exports", "new-token"); w.Code != 200 {
		t.Fatalf("new token: %d", w.Code)
	}
}

func TestRateLimit(t *testing.T) {
	clk := newClock()
	sim := newSim(simapi.Options{RateLimit: 3, Now: clk.Now})
	for i := 1; i <= 3; i++ {
		w := get(sim, "/exports", token)
		if w.Code != 200 || w.Header().Get("X-RateLimit-Limit") != "3" || w.Header().Get("X-RateLimit-Remaining") != fmt.Sprint(3-i) {
			t.Fatalf("request %d: %d, limit %q remaining %q", i, w.Code, w.Header().Get("X-RateLimit-Limit"), w.Header().Get("X-RateLimit-Remaining"))
		}
		clk.Advance(10 * time.Second)
	}
	// 30 s into the window: the 4th request waits out the remaining 30 s.
	w := get(sim, "/exports", token)
	if w.Code != 429 || w.Header().Get("Retry-After") != "30" || w.Header().Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("over the limit: %d, Retry-After %q, remaining %q", w.Code, w.Header().Get("Retry-After"), w.Header().Get("X-RateLimit-Remaining"))
	}
	if strings.TrimSpace(w.Body.String()) != `{"message":"Too Many Attempts."}` {
		t.Fatalf("body %s", w.Body)
	}
	clk.Advance(29 * time.Second)
	if w := get(sim, "/exports", token); w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("1 s before the reset: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	clk.Advance(time.Second)
	if w := get(sim, "/exports", token); w.Code != 200 || w.Header().Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("new window: %d, remaining %q", w.Code, w.Header().Get("X-RateLimit-Remaining"))
	}
	if sim.Requests() != 6 {
		t.Fatalf("Requests() = %d, want 6", sim.Requests())
	}
}

func TestRateLimitDisabledHasNoHeaders(t *testing.T) {
	sim := newSim(simapi.Options{RateLimit: -1})
	for range 600 {
		if w := get(sim, "/exports", token); w.Code != 200 || w.Header().Get("X-RateLimit-Limit") != "" {
			t.Fatalf("%d, limit header %q", w.Code, w.Header().Get("X-RateLimit-Limit"))
		}
	}
}

func TestDefaultRateLimitIs500(t *testing.T) {
	sim := simapi.New(simapi.Options{Now: newClock().Now})
	w := get(sim, "/exports", "")
	if w.Code != 200 || w.Header().Get("X-RateLimit-Limit") != "500" || w.Header().Get("X-RateLimit-Remaining") != "499" {
		t.Fatalf("%d, limit %q remaining %q", w.Code, w.Header().Get("X-RateLimit-Limit"), w.Header().Get("X-RateLimit-Remaining"))
	}
}

func TestDownloadURLResignedOnEveryRequest(t *testing.T) {
	clk := newClock()
	sim := newSim(simapi.Options{Now: clk.Now})
	ids := sim.AddN(1, plugchoice.StatusReady)
	a := getPage(t, sim, "/exports").Data[0]
	b := getPage(t, sim, "/exports").Data[0] // same clock: only the signature can differ
	if a.UUID != ids[0] || a.DownloadURL == nil || b.DownloadURL == nil {
		t.Fatalf("no download_url: %+v", a)
	}
	if *a.DownloadURL == *b.DownloadURL {
		t.Fatalf("download_url not re-signed: %s", *a.DownloadURL)
	}
	ua, _ := url.Parse(*a.DownloadURL)
	ub, _ := url.Parse(*b.DownloadURL)
	if ua.Path != ub.Path || ua.Query().Get("signature") == "" || ua.Query().Get("expires") == "" {
		t.Fatalf("urls %s and %s", ua, ub)
	}
	stored, _ := sim.Get(ids[0])
	if strings.Contains(*stored.DownloadURL, "signature") {
		t.Fatalf("Get returns a signed URL: %s", *stored.DownloadURL)
	}
}

func TestSetStatusFillsFields(t *testing.T) {
	clk := newClock()
	sim := newSim(simapi.Options{Seed: 1, Now: clk.Now})
	id := sim.AddN(1, plugchoice.StatusPending)[0]
	check := func(status string, f func(e plugchoice.Export) bool) {
		t.Helper()
		clk.Advance(time.Minute)
		if !sim.SetStatus(id, status) {
			t.Fatalf("SetStatus(%s) found nothing", status)
		}
		e, ok := sim.Get(id)
		if !ok || e.Status != status || !f(e) {
			t.Fatalf("after SetStatus(%s): %+v", status, e)
		}
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	check("processing", func(e plugchoice.Export) bool { return e.CompletedAt == nil && e.DownloadURL == nil })
	check("ready", func(e plugchoice.Export) bool {
		return e.CompletedAt != nil && *e.CompletedAt > e.RequestedAt && e.Filename != nil && e.FileSize != nil &&
			*e.FileSize > 0 && e.RowCount != nil && e.DownloadURL != nil && e.ErrorMessage == nil && e.FailedAt == nil
	})
	check("failed", func(e plugchoice.Export) bool {
		return e.FailedAt != nil && e.ErrorMessage != nil && *e.ErrorMessage != "" && e.DownloadURL == nil &&
			e.Filename == nil && e.CompletedAt == nil
	})
	check("cancelled", func(e plugchoice.Export) bool { return e.DownloadURL == nil })
	check("archived", func(e plugchoice.Export) bool { return true }) // unknown statuses are allowed
	if sim.SetStatus("nope", "ready") || sim.Remove("nope") {
		t.Fatal("unknown uuid reported as found")
	}
	if _, ok := sim.Get("nope"); ok {
		t.Fatal("Get found an unknown uuid")
	}
}

func TestTransitions(t *testing.T) {
	clk := newClock()
	sim := newSim(simapi.Options{Now: clk.Now})
	ids := sim.AddN(2, plugchoice.StatusPending)
	clk.Advance(time.Second)
	sim.SetStatus(ids[0], "processing")
	sim.SetStatus(ids[0], "processing") // no change, no transition
	sim.SetStatus(ids[0], "ready")
	sim.Remove(ids[1])
	sim.Add(plugchoice.Export{UUID: "x", Status: "ready"})
	got := sim.Transitions()
	want := []simapi.Transition{
		{ids[0], "", "pending", clk.Now().Add(-time.Second)},
		{ids[1], "", "pending", clk.Now().Add(-time.Second)},
		{ids[0], "pending", "processing", clk.Now()},
		{ids[0], "processing", "ready", clk.Now()},
		{ids[1], "pending", "", clk.Now()},
		{"x", "", "ready", clk.Now()},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("transitions\n%v\nwant\n%v", got, want)
	}
	if sim.Len() != 2 {
		t.Fatalf("Len() = %d", sim.Len())
	}
}

func TestFaultsAppliedInOrder(t *testing.T) {
	sim := newSim(simapi.Options{})
	sim.AddN(3, plugchoice.StatusReady)
	sim.InjectFaults(
		simapi.Fault{Status: 503, Count: 2},
		simapi.Fault{Status: 429, RetryAfter: "7"},
		simapi.Fault{Garbage: true},
		simapi.Fault{Truncate: true},
		simapi.Fault{Body: `{"data":null}`},
		simapi.Fault{Status: 500, Body: "boom"},
		simapi.Fault{Delay: time.Millisecond},
	)
	type want struct {
		code       int
		retryAfter string
		check      func(body []byte) bool
	}
	decodes := func(b []byte) bool { _, err := plugchoice.DecodePage(b); return err == nil }
	fails := func(b []byte) bool { _, err := plugchoice.DecodePage(b); return err != nil }
	wants := []want{
		{503, "", func(b []byte) bool { return string(b) == `{"message":"Service Unavailable"}` }},
		{503, "", func(b []byte) bool { return string(b) == `{"message":"Service Unavailable"}` }},
		{429, "7", func(b []byte) bool { return json.Valid(b) }},
		{200, "", func(b []byte) bool { return !json.Valid(b) }},
		{200, "", fails},
		{200, "", func(b []byte) bool { return string(b) == `{"data":null}` }},
		{500, "", func(b []byte) bool { return string(b) == "boom" }},
		{200, "", decodes}, // delay only
		{200, "", decodes}, // queue empty
	}
	for i, w := range wants {
		rec := get(sim, "/exports", token)
		if rec.Code != w.code || rec.Header().Get("Retry-After") != w.retryAfter || !w.check(rec.Body.Bytes()) {
			t.Fatalf("request %d: %d Retry-After %q body %q", i+1, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	}
}

func TestDownAll(t *testing.T) {
	sim := newSim(simapi.Options{})
	sim.SetDownAll(503)
	for range 3 {
		if w := get(sim, "/exports", token); w.Code != 503 {
			t.Fatalf("down: %d", w.Code)
		}
	}
	sim.SetDownAll(0)
	if w := get(sim, "/exports", token); w.Code != 200 {
		t.Fatalf("back up: %d", w.Code)
	}
}

func TestShuffledOrder(t *testing.T) {
	sim := newSim(simapi.Options{Seed: 3, Now: newClock().Now})
	ids := sim.AddN(100, plugchoice.StatusReady)
	sim.SetOrder(simapi.OrderShuffled)
	read := func() []plugchoice.Export {
		var all []plugchoice.Export
		for page := 1; ; page++ {
			p := getPage(t, sim, fmt.Sprintf("/exports?page=%d", page))
			all = append(all, p.Data...)
			if p.Links.Next == nil {
				return all
			}
		}
	}
	first, second := read(), read()
	if !reflect.DeepEqual(uuids(first), uuids(second)) {
		t.Fatal("shuffled order changes while nothing changes")
	}
	if got := slices.Sorted(slices.Values(uuids(first))); !reflect.DeepEqual(got, slices.Sorted(slices.Values(ids))) {
		t.Fatal("shuffled listing lacks or repeats exports")
	}
	increases := false
	for i := 1; i < len(first); i++ {
		increases = increases || first[i].RequestedAt > first[i-1].RequestedAt
	}
	if !increases {
		t.Fatal("shuffled listing is still newest-first")
	}
	// Filtered listings are shuffled too.
	p := getPage(t, sim, "/exports?filter[status][]=ready&per_page=100")
	if reflect.DeepEqual(uuids(p.Data), reversed(ids)) {
		t.Fatal("filtered listing is still newest-first")
	}
	sim.SetOrder(simapi.OrderNewestFirst)
	if p := getPage(t, sim, "/exports?per_page=100"); !reflect.DeepEqual(uuids(p.Data), reversed(ids)) {
		t.Fatal("newest-first not restored")
	}
}

func TestShiftOnPage(t *testing.T) {
	sim := newSim(simapi.Options{Now: newClock().Now})
	sim.AddN(60, plugchoice.StatusPending)
	sim.SetShiftOnPage(1)
	p1 := getPage(t, sim, "/exports?page=1")
	p2 := getPage(t, sim, "/exports?page=2")
	if sim.Len() != 61 {
		t.Fatalf("Len() = %d after the shift, want 61", sim.Len())
	}
	if p2.Data[0].UUID != p1.Data[24].UUID {
		t.Fatalf("page 2 starts with %s, want page 1's last %s (shifted)", p2.Data[0].UUID, p1.Data[24].UUID)
	}
	head := getPage(t, sim, "/exports?page=2") // page 2 does not shift
	if sim.Len() != 61 || head.Data[0].UUID != p2.Data[0].UUID {
		t.Fatal("a request for another page shifted the list")
	}
	sim.SetShiftOnPage(0)
	getPage(t, sim, "/exports?page=1")
	if sim.Len() != 61 {
		t.Fatal("shift not turned off")
	}
}

func TestOnRequestHook(t *testing.T) {
	sim := newSim(simapi.Options{})
	id := sim.AddN(1, plugchoice.StatusProcessing)[0]
	sim.SetOnRequest(func(r *http.Request) {
		if r.URL.Query().Get("page") == "2" {
			sim.SetStatus(id, plugchoice.StatusReady)
		}
	})
	if p := getPage(t, sim, "/exports?page=1"); p.Data[0].Status != "processing" {
		t.Fatalf("status %s", p.Data[0].Status)
	}
	getPage(t, sim, "/exports?page=2")
	if p := getPage(t, sim, "/exports?page=1"); p.Data[0].Status != "ready" {
		t.Fatalf("hook did not run: status %s", p.Data[0].Status)
	}
	sim.SetOnRequest(nil)
}

func TestStepDeterministicAndForwardOnly(t *testing.T) {
	run := func() ([]plugchoice.Export, []simapi.Transition) {
		clk := newClock()
		sim := newSim(simapi.Options{Seed: 42, Now: clk.Now})
		sim.AddN(20, plugchoice.StatusPending)
		for range 30 {
			clk.Advance(time.Second)
			sim.Step()
		}
		return sim.Snapshot(), sim.Transitions()
	}
	snapA, trA := run()
	snapB, trB := run()
	if !reflect.DeepEqual(snapA, snapB) || !reflect.DeepEqual(trA, trB) {
		t.Fatal("same seed, different life")
	}
	allowed := map[string][]string{
		"":           {"pending"},
		"pending":    {"processing", "cancelled"},
		"processing": {"ready", "failed"},
	}
	seen := map[string]bool{}
	for _, tr := range trA {
		if !slices.Contains(allowed[tr.From], tr.To) {
			t.Fatalf("transition %s -> %s", tr.From, tr.To)
		}
		seen[tr.To] = true
	}
	for _, s := range []string{"processing", "ready", "failed", "cancelled"} {
		if !seen[s] {
			t.Errorf("30 steps never reached %s", s)
		}
	}
	if len(snapA) <= 20 {
		t.Errorf("no new export appeared in 30 steps")
	}
	other := newSim(simapi.Options{Seed: 43, Now: newClock().Now})
	other.AddN(20, plugchoice.StatusPending)
	if reflect.DeepEqual(uuids(other.Snapshot()), uuids(snapA[len(snapA)-20:])) {
		t.Error("different seeds give the same uuids")
	}
}

func TestRunStopsWithContext(t *testing.T) {
	sim := newSim(simapi.Options{})
	sim.AddN(5, plugchoice.StatusPending)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		sim.Run(ctx, time.Millisecond)
		close(done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(sim.Transitions()) == 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if len(sim.Transitions()) == 5 {
		t.Fatal("Run never stepped")
	}
}

// Deep pages of a large list are right: the page is cut from the sorted list, not
// re-sorted.
func TestLargeListDeepPages(t *testing.T) {
	sim := newSim(simapi.Options{Now: newClock().Now})
	ids := sim.AddN(100_000, plugchoice.StatusReady)
	for _, page := range []int{1, 2000, 4000} {
		p := getPage(t, sim, fmt.Sprintf("/exports?page=%d", page))
		want := reversed(ids[len(ids)-page*25 : len(ids)-(page-1)*25])
		if !reflect.DeepEqual(uuids(p.Data), want) {
			t.Fatalf("page %d wrong", page)
		}
		if (p.Links.Next == nil) != (page == 4000) {
			t.Fatalf("page %d next %v", page, p.Links.Next)
		}
	}
	p := getPage(t, sim, "/exports?filter[status][]=ready&filter[status][]=failed&page=3000")
	if len(p.Data) != 25 || p.Data[0].UUID != ids[len(ids)-1-2999*25] {
		t.Fatal("deep page of a multi-status filter wrong")
	}
}
