package plugchoice_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/plugchoice"
)

const token = "tok-s3cr3t-0123456789"

// recorded is one request seen by a fake API.
type recorded struct {
	At     time.Time
	URL    *url.URL
	Header http.Header
}

// fakeAPI is an httptest server whose handler the test writes; it records requests.
type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newFakeAPI(t *testing.T, h func(w http.ResponseWriter, r *http.Request, n int)) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{At: time.Now(), URL: r.URL, Header: r.Header.Clone()})
		n := len(f.reqs)
		f.mu.Unlock()
		h(w, r, n)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func (f *fakeAPI) count() int { return len(f.requests()) }

// newClient returns a client of f with fast retries; mod adjusts the options.
func newClient(t *testing.T, base string, mod func(*plugchoice.Options)) *plugchoice.Client {
	t.Helper()
	o := plugchoice.Options{
		BaseURL:      base + "/api/v3",
		Token:        token,
		RetryInitial: time.Millisecond,
		Timeout:      10 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	c, err := plugchoice.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pageOf builds a page body holding exports with the given uuids.
func pageOf(uuids []string, status string, next string) string {
	items := make([]string, len(uuids))
	for i, u := range uuids {
		items[i] = fmt.Sprintf(`{"uuid":%q,"type":"sessions","status":%q,"requested_at":"2026-11-28T10:00:00Z"}`, u, status)
	}
	n := "null"
	if next != "" {
		n = fmt.Sprintf("%q", next)
	}
	return fmt.Sprintf(`{"data":[%s],"links":{"first":null,"last":null,"prev":null,"next":%s},"meta":{"current_page":1,"per_page":25}}`,
		strings.Join(items, ","), n)
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

func uuidsOf(es []plugchoice.Export) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.UUID
	}
	return out
}

func TestNewValidatesOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       plugchoice.Options
		wantErr string
	}{
		{"ok", plugchoice.Options{BaseURL: "https://app.plugchoice.com/api/v3"}, ""},
		{"ok trailing slash", plugchoice.Options{BaseURL: "http://127.0.0.1:8080/api/v3/"}, ""},
		{"empty", plugchoice.Options{}, "base URL is empty"},
		{"relative", plugchoice.Options{BaseURL: "/api/v3"}, "not an absolute http or https URL"},
		{"no scheme", plugchoice.Options{BaseURL: "app.plugchoice.com/api/v3"}, "not an absolute http or https URL"},
		{"ftp", plugchoice.Options{BaseURL: "ftp://app.plugchoice.com/api/v3"}, "not an absolute http or https URL"},
		{"unparsable", plugchoice.Options{BaseURL: "http://[::1"}, "base URL"},
		{"query", plugchoice.Options{BaseURL: "https://app.plugchoice.com/api/v3?x=1"}, "must not have a query"},
		{"credentials", plugchoice.Options{BaseURL: "https://user:pw@app.plugchoice.com/api/v3"}, "must not contain user credentials"},
		{"negative timeout", plugchoice.Options{BaseURL: "https://a.b", Timeout: -1}, "negative"},
		{"negative max pages", plugchoice.Options{BaseURL: "https://a.b", MaxPages: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := plugchoice.New(tt.o)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if !strings.HasSuffix(c.Endpoint(), "/api/v3/exports") {
					t.Fatalf("endpoint %q", c.Endpoint())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

func TestListPageRequest(t *testing.T) {
	tests := []struct {
		name      string
		q         plugchoice.Query
		page      int
		want      url.Values
		wantQuery string // exact raw query
	}{
		{
			name: "no filters", page: 1,
			want: url.Values{"page": {"1"}}, wantQuery: "page=1",
		},
		{
			name: "repeated statuses", q: plugchoice.Query{Statuses: []string{"pending", "processing"}}, page: 3,
			want:      url.Values{"filter[status][]": {"pending", "processing"}, "page": {"3"}},
			wantQuery: "filter%5Bstatus%5D%5B%5D=pending&filter%5Bstatus%5D%5B%5D=processing&page=3",
		},
		{
			name: "all filters", page: 2,
			q: plugchoice.Query{Statuses: []string{"ready"}, Types: []string{"meter values", "invoices/monthly"},
				SubjectType: "site", SubjectID: "42", PerPage: 100},
			want: url.Values{"filter[status][]": {"ready"}, "filter[type][]": {"meter values", "invoices/monthly"},
				"filter[subject_type]": {"site"}, "filter[subject_id]": {"42"}, "per_page": {"100"}, "page": {"2"}},
		},
		{
			name: "values escaped", page: 1, q: plugchoice.Query{Types: []string{"a&b=c#d"}},
			want: url.Values{"filter[type][]": {"a&b=c#d"}, "page": {"1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, pageOf([]string{"u1"}, "ready", ""))
			})
			c := newClient(t, f.URL, func(o *plugchoice.Options) { o.UserAgent = "exportbridge-test/1" })
			p, err := c.ListPage(ctxT(t), tt.q, tt.page)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Data) != 1 {
				t.Fatalf("got %d exports", len(p.Data))
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.URL.Path != "/api/v3/exports" {
				t.Errorf("path %q", r.URL.Path)
			}
			if got := r.URL.Query(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("query %v, want %v", got, tt.want)
			}
			if tt.wantQuery != "" && r.URL.RawQuery != tt.wantQuery {
				t.Errorf("raw query %q, want %q", r.URL.RawQuery, tt.wantQuery)
			}
			if got := r.Header.Get("Authorization"); got != "Bearer "+token {
				t.Errorf("Authorization %q", got)
			}
			if got := r.Header.Get("Accept"); got != "application/json" {
				t.Errorf("Accept %q", got)
			}
			if got := r.Header.Get("User-Agent"); got != "exportbridge-test/1" {
				t.Errorf("User-Agent %q", got)
			}
		})
	}
}

func TestBadQueryOrPageSendsNothing(t *testing.T) {
	tests := []struct {
		name    string
		q       plugchoice.Query
		page    int
		wantErr string
	}{
		{"empty status", plugchoice.Query{Statuses: []string{"ready", " "}}, 1, "status filter 2 is empty"},
		{"empty type", plugchoice.Query{Types: []string{""}}, 1, "type filter 1 is empty"},
		{"subject id not integer", plugchoice.Query{SubjectID: "abc"}, 1, `subject id "abc" is not an integer`},
		{"negative per page", plugchoice.Query{PerPage: -5}, 1, "per page -5 is negative"},
		{"page zero", plugchoice.Query{}, 0, "page number 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, pageOf(nil, "", ""))
			})
			c := newClient(t, f.URL, nil)
			_, err := c.ListPage(ctxT(t), tt.q, tt.page)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if k := plugchoice.Kind(err); k != "client" {
				t.Errorf("Kind %q, want client", k)
			}
			if tt.page == 1 {
				l, err := c.List(ctxT(t), tt.q)
				if err == nil || l.Complete || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("List: %+v, %v", l, err)
				}
			}
			if n := f.count(); n != 0 {
				t.Fatalf("%d requests sent, want none", n)
			}
		})
	}
}

func TestListPaging(t *testing.T) {
	tests := []struct {
		name  string
		pages [][]string
		want  []string
	}{
		{"empty list", [][]string{{}}, []string{}},
		{"one page", [][]string{{"a", "b"}}, []string{"a", "b"}},
		{"three pages", [][]string{{"a", "b"}, {"c", "d"}, {"e"}}, []string{"a", "b", "c", "d", "e"}},
		{"empty last page", [][]string{{"a", "b"}, {}}, []string{"a", "b"}},
		// Items shifted by one between pages: b is read twice.
		{"shift duplicates", [][]string{{"a", "b"}, {"b", "c"}, {"c", "d"}}, []string{"a", "b", "c", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				var page int
				fmt.Sscan(r.URL.Query().Get("page"), &page)
				if page < 1 || page > len(tt.pages) {
					writeJSON(w, 404, `{"message":"no such page"}`)
					return
				}
				next := ""
				if page < len(tt.pages) {
					next = fmt.Sprintf("http://%s/api/v3/exports?page=%d", r.Host, page+1)
				}
				writeJSON(w, 200, pageOf(tt.pages[page-1], "ready", next))
			})
			c := newClient(t, f.URL, nil)
			l, err := c.List(ctxT(t), plugchoice.Query{})
			if err != nil {
				t.Fatal(err)
			}
			if !l.Complete || l.Pages != len(tt.pages) {
				t.Fatalf("Complete=%v Pages=%d, want true %d", l.Complete, l.Pages, len(tt.pages))
			}
			if got := uuidsOf(l.Exports); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("uuids %v, want %v", got, tt.want)
			}
			if c.Requests() != int64(len(tt.pages)) || f.count() != len(tt.pages) {
				t.Fatalf("Requests()=%d, server saw %d, want %d", c.Requests(), f.count(), len(tt.pages))
			}
		})
	}
}

func TestListDedupKeepsLaterObjectInFirstPosition(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch r.URL.Query().Get("page") {
		case "1":
			writeJSON(w, 200, pageOf([]string{"a", "b"}, "processing", "x"))
		default: // b finished while we paged, and shifted down
			writeJSON(w, 200, `{"data":[{"uuid":"b","status":"ready","requested_at":"2026-11-28T10:00:00Z"},{"uuid":"c","status":"pending"}],"links":{"next":null}}`)
		}
	})
	l, err := newClient(t, f.URL, nil).List(ctxT(t), plugchoice.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if got := uuidsOf(l.Exports); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("uuids %v", got)
	}
	if l.Exports[1].Status != "ready" || !strings.Contains(string(l.Exports[1].Raw), `"ready"`) {
		t.Fatalf("b kept as %+v (raw %s), want the later-read ready object", l.Exports[1], l.Exports[1].Raw)
	}
}

// The next page's URL is built from the query, never from links.next: a links.next
// without the filters and on another host must change nothing, and no request may go
// to that host.
func TestListBuildsURLsFromQuery(t *testing.T) {
	other := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, pageOf([]string{"evil"}, "ready", ""))
	})
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		page := r.URL.Query().Get("page")
		next := other.URL + "/api/v3/exports?page=" + page + "0" // wrong page, no filters, other host
		if page == "3" {
			next = ""
		}
		writeJSON(w, 200, pageOf([]string{"p" + page}, "pending", next))
	})
	c := newClient(t, f.URL, nil)
	q := plugchoice.Query{Statuses: []string{"pending", "processing"}, Types: []string{"sessions"}}
	l, err := c.List(ctxT(t), q)
	if err != nil {
		t.Fatal(err)
	}
	if got := uuidsOf(l.Exports); !reflect.DeepEqual(got, []string{"p1", "p2", "p3"}) {
		t.Fatalf("uuids %v", got)
	}
	if n := other.count(); n != 0 {
		t.Fatalf("%d requests went to the host of links.next", n)
	}
	for i, r := range f.requests() {
		want := "filter%5Bstatus%5D%5B%5D=pending&filter%5Bstatus%5D%5B%5D=processing&filter%5Btype%5D%5B%5D=sessions&page=" + fmt.Sprint(i+1)
		if r.URL.RawQuery != want {
			t.Fatalf("request %d query %q, want %q", i+1, r.URL.RawQuery, want)
		}
	}
}

func TestListStopsAtMaxPages(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		// An API that ignores page: always the same page with a next link.
		writeJSON(w, 200, pageOf([]string{"a"}, "ready", "http://x/exports?page=2"))
	})
	c := newClient(t, f.URL, func(o *plugchoice.Options) { o.MaxPages = 3 })
	l, err := c.List(ctxT(t), plugchoice.Query{})
	if err == nil || !strings.Contains(err.Error(), "after 3 pages") {
		t.Fatalf("error %v, want the page bound", err)
	}
	if l.Complete || l.Pages != 3 || f.count() != 3 {
		t.Fatalf("Complete=%v Pages=%d requests=%d", l.Complete, l.Pages, f.count())
	}
}

func TestListPartialOnFailure(t *testing.T) {
	tests := []struct {
		name     string
		page2    func(w http.ResponseWriter)
		wantErr  string
		wantKind string
		wantReqs int // requests for page 2
	}{
		{"401", func(w http.ResponseWriter) { writeJSON(w, 401, `{"message":"Unauthenticated."}`) },
			"list exports page 2: plugchoice API: 401 Unauthenticated.", "auth", 1},
		{"truncated", func(w http.ResponseWriter) { writeJSON(w, 200, pageOf([]string{"x", "y"}, "ready", "")[:30]) },
			"list exports page 2: decode: unexpected end of JSON input", "decode", 1},
		{"garbage", func(w http.ResponseWriter) { writeJSON(w, 200, "<html>oops</html>") },
			"list exports page 2: decode: invalid character '<'", "decode", 1},
		{"data null", func(w http.ResponseWriter) { writeJSON(w, 200, `{"data":null}`) },
			"list exports page 2: decode: data is null", "decode", 1},
		{"export without uuid", func(w http.ResponseWriter) { writeJSON(w, 200, `{"data":[{"status":"ready"}]}`) },
			"list exports page 2: data[0]: export without uuid", "decode", 1},
		{"503 forever", func(w http.ResponseWriter) { writeJSON(w, 503, `{"message":"Service Unavailable"}`) },
			"list exports page 2: after 3 attempts: plugchoice API: 503 Service Unavailable", "server", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if r.URL.Query().Get("page") == "1" {
					writeJSON(w, 200, pageOf([]string{"a", "b"}, "ready", "next"))
					return
				}
				tt.page2(w)
			})
			c := newClient(t, f.URL, func(o *plugchoice.Options) { o.MaxRetries = 2 })
			l, err := c.List(ctxT(t), plugchoice.Query{})
			if err == nil || err.Error() != tt.wantErr && !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if k := plugchoice.Kind(err); k != tt.wantKind {
				t.Fatalf("Kind %q, want %q", k, tt.wantKind)
			}
			if l == nil || l.Complete || l.Pages != 1 || !reflect.DeepEqual(uuidsOf(l.Exports), []string{"a", "b"}) {
				t.Fatalf("listing %+v, want page 1 only and incomplete", l)
			}
			if got := f.count() - 1; got != tt.wantReqs {
				t.Fatalf("%d requests for page 2, want %d", got, tt.wantReqs)
			}
		})
	}
}

func TestAPIErrorsAreTypedAndNotRetried(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name       string
		code       int
		body       string
		wantErr    string
		wantKind   string
		auth       bool
		wantErrors map[string][]string
	}{
		{name: "401", code: 401, body: `{"message":"Unauthenticated."}`,
			wantErr: "page 1: plugchoice API: 401 Unauthenticated.", wantKind: "auth", auth: true},
		{name: "403", code: 403, body: `{"message":"This action is unauthorized."}`,
			wantErr: "page 1: plugchoice API: 403 This action is unauthorized.", wantKind: "auth", auth: true},
		{name: "400", code: 400, body: `{"message":"Bad request."}`,
			wantErr: "page 1: plugchoice API: 400 Bad request.", wantKind: "client"},
		{name: "404", code: 404, body: `{"message":"Not Found"}`,
			wantErr: "page 1: plugchoice API: 404 Not Found", wantKind: "client"},
		{name: "422", code: 422,
			body:       `{"message":"The given data was invalid.","errors":{"filter.status.0":["The selected filter.status.0 is invalid."],"per_page":["The per page must be an integer.","The per page must be at least 1."]}}`,
			wantErr:    "page 1: plugchoice API: 422 The given data was invalid. (filter.status.0: The selected filter.status.0 is invalid.; per_page: The per page must be an integer. The per page must be at least 1.)",
			wantKind:   "client",
			wantErrors: map[string][]string{"filter.status.0": {"The selected filter.status.0 is invalid."}, "per_page": {"The per page must be an integer.", "The per page must be at least 1."}}},
		{name: "422 with field errors only", code: 422, body: `{"errors":{"per_page":["The per page must be at least 1."]}}`,
			wantErr:    "page 1: plugchoice API: 422 Unprocessable Entity (per_page: The per page must be at least 1.)",
			wantKind:   "client",
			wantErrors: map[string][]string{"per_page": {"The per page must be at least 1."}}},
		{name: "non-JSON body", code: 401, body: "<html><body>401 Authorization Required</body></html>",
			wantErr: `page 1: plugchoice API: 401 Unauthorized (non-JSON body: "<html><body>401 Authorization Required</body></html>")`, wantKind: "auth", auth: true},
		{name: "long non-JSON body cut at 200 bytes", code: 400, body: long,
			wantErr: `page 1: plugchoice API: 400 Bad Request (non-JSON body: "` + long[:200] + `...")`, wantKind: "client"},
		{name: "empty body", code: 410, body: "",
			wantErr: "page 1: plugchoice API: 410 Gone (empty body)", wantKind: "client"},
		{name: "token echoed in body is redacted", code: 400, body: "bad header: Bearer " + token,
			wantErr: `page 1: plugchoice API: 400 Bad Request (non-JSON body: "bad header: Bearer [redacted]")`, wantKind: "client"},
		{name: "token echoed in message is redacted", code: 403, body: `{"message":"token ` + token + ` lacks scope"}`,
			wantErr: `page 1: plugchoice API: 403 token [redacted] lacks scope`, wantKind: "auth", auth: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				w.WriteHeader(tt.code)
				_, _ = w.Write([]byte(tt.body))
			})
			c := newClient(t, f.URL, nil)
			_, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error\n %v\nwant\n %s", err, tt.wantErr)
			}
			var ae *plugchoice.APIError
			if !errors.As(err, &ae) || ae.StatusCode != tt.code {
				t.Fatalf("error %T is not an *APIError with code %d", err, tt.code)
			}
			if tt.wantErrors != nil && !reflect.DeepEqual(ae.Errors, tt.wantErrors) {
				t.Fatalf("Errors %v, want %v", ae.Errors, tt.wantErrors)
			}
			if k := plugchoice.Kind(err); k != tt.wantKind {
				t.Fatalf("Kind %q, want %q", k, tt.wantKind)
			}
			if plugchoice.IsAuth(err) != tt.auth || plugchoice.IsRetryable(err) {
				t.Fatalf("IsAuth=%v IsRetryable=%v", plugchoice.IsAuth(err), plugchoice.IsRetryable(err))
			}
			if f.count() != 1 || c.Requests() != 1 {
				t.Fatalf("%d requests (client counted %d), want 1: not retried", f.count(), c.Requests())
			}
		})
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name       string
		maxRetries int
		fail       int // the first fail requests answer with code
		code       int
		header     map[string]string
		wantReqs   int
		wantErr    string
		wantKind   string
	}{
		{name: "500 then success", fail: 1, code: 500, wantReqs: 2},
		{name: "502 503 504 then success", fail: 3, code: 503, wantReqs: 4},
		{name: "408 then success", fail: 1, code: 408, wantReqs: 2},
		{name: "429 without Retry-After uses backoff", fail: 2, code: 429, wantReqs: 3},
		{name: "429 Retry-After capped by MaxRetryWait", fail: 1, code: 429,
			header: map[string]string{"Retry-After": "120"}, wantReqs: 2},
		{name: "retries bounded", maxRetries: 2, fail: 100, code: 500, wantReqs: 3,
			wantErr: "page 1: after 3 attempts: plugchoice API: 500", wantKind: "server"},
		{name: "429 retries bounded", maxRetries: 1, fail: 100, code: 429, wantReqs: 2,
			wantErr: "page 1: after 2 attempts: plugchoice API: 429 Too Many Attempts.", wantKind: "rate_limited"},
		{name: "no retries", maxRetries: -1, fail: 100, code: 503, wantReqs: 1,
			wantErr: "page 1: plugchoice API: 503", wantKind: "server"},
		{name: "default is 4 retries", fail: 100, code: 502, wantReqs: 5,
			wantErr: "page 1: after 5 attempts: plugchoice API: 502", wantKind: "server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n <= tt.fail {
					for k, v := range tt.header {
						w.Header().Set(k, v)
					}
					msg := "Server Error"
					if tt.code == 429 {
						msg = "Too Many Attempts."
					}
					writeJSON(w, tt.code, fmt.Sprintf(`{"message":%q}`, msg))
					return
				}
				writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
			})
			c := newClient(t, f.URL, func(o *plugchoice.Options) {
				o.MaxRetries = tt.maxRetries
				o.MaxRetryWait = 5 * time.Millisecond
			})
			p, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1)
			if f.count() != tt.wantReqs || c.Requests() != int64(tt.wantReqs) {
				t.Fatalf("%d requests (client counted %d), want %d", f.count(), c.Requests(), tt.wantReqs)
			}
			if tt.wantErr == "" {
				if err != nil || len(p.Data) != 1 {
					t.Fatalf("page %+v, error %v", p, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want prefix %q", err, tt.wantErr)
			}
			if k := plugchoice.Kind(err); k != tt.wantKind || !plugchoice.IsRetryable(err) {
				t.Fatalf("Kind %q (want %q), IsRetryable %v", k, tt.wantKind, plugchoice.IsRetryable(err))
			}
		})
	}
}

// 429 with Retry-After: the retry waits the server-given time, not the (1 ms) backoff.
func TestRetryAfterHonoured(t *testing.T) {
	tests := []struct {
		name  string
		value func() string
	}{
		{"seconds", func() string { return "1" }},
		// An HTTP date 2 s ahead (1 s resolution): the wait is more than 1 s.
		{"HTTP date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					w.Header().Set("Retry-After", tt.value())
					writeJSON(w, 429, `{"message":"Too Many Attempts."}`)
					return
				}
				writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
			})
			c := newClient(t, f.URL, nil)
			if _, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1); err != nil {
				t.Fatal(err)
			}
			reqs := f.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			// A lower bound only: the retry did not come before the server allowed it.
			if gap := reqs[1].At.Sub(reqs[0].At); gap < 900*time.Millisecond {
				t.Fatalf("retry came %v after the 429, before Retry-After", gap)
			}
		})
	}
}

func TestContextCancelAborts(t *testing.T) {
	tests := []struct {
		name string
		// handler for the request; release is closed at test end.
		handler func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
	}{
		{"during a request", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}},
		{"during a Retry-After wait", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			w.Header().Set("Retry-After", "60")
			writeJSON(w, 429, `{"message":"Too Many Attempts."}`)
		}},
		{"during a backoff wait", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			writeJSON(w, 503, `{"message":"down"}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			arrived := make(chan struct{}, 10)
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				arrived <- struct{}{}
				tt.handler(w, r, release)
			})
			defer close(release)
			c := newClient(t, f.URL, func(o *plugchoice.Options) {
				o.RetryInitial = time.Minute
				o.Timeout = time.Minute
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := c.ListPage(ctx, plugchoice.Query{}, 1)
				done <- err
			}()
			<-arrived
			time.Sleep(20 * time.Millisecond) // let the client reach its wait
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("error %v, want context.Canceled", err)
				}
				if k := plugchoice.Kind(err); k != "canceled" || plugchoice.IsRetryable(err) {
					t.Fatalf("Kind %q IsRetryable %v", k, plugchoice.IsRetryable(err))
				}
			case <-time.After(20 * time.Second):
				t.Fatal("ListPage did not return after cancel")
			}
			if n := f.count(); n != 1 {
				t.Fatalf("%d requests, want 1", n)
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	tests := []struct {
		name     string
		slow     int // the first slow requests hang until the client gives up
		wantReqs int
		wantErr  bool
	}{
		{"one timeout then success", 1, 2, false},
		{"every attempt times out", 100, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n <= tt.slow {
					<-r.Context().Done()
					return
				}
				writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
			})
			c := newClient(t, f.URL, func(o *plugchoice.Options) {
				o.Timeout = 100 * time.Millisecond
				o.MaxRetries = 2
			})
			_, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1)
			if f.count() != tt.wantReqs {
				t.Fatalf("%d requests, want %d", f.count(), tt.wantReqs)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "timed out after 100ms") {
				t.Fatalf("error %v, want a timeout", err)
			}
			if k := plugchoice.Kind(err); k != "timeout" || !plugchoice.IsRetryable(err) {
				t.Fatalf("Kind %q IsRetryable %v", k, plugchoice.IsRetryable(err))
			}
		})
	}
}

func TestConnectionErrorRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there any more
	c := newClient(t, base, func(o *plugchoice.Options) { o.MaxRetries = 2 })
	_, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1)
	if err == nil || !strings.Contains(err.Error(), "request failed") {
		t.Fatalf("error %v, want a connection error", err)
	}
	if k := plugchoice.Kind(err); k != "network" || !plugchoice.IsRetryable(err) {
		t.Fatalf("Kind %q IsRetryable %v", k, plugchoice.IsRetryable(err))
	}
	if c.Requests() != 3 {
		t.Fatalf("Requests() = %d, want 3", c.Requests())
	}
}

// A connection cut in the middle of the body is a network error, retried; never a
// short page.
func TestBodyCutIsRetried(t *testing.T) {
	tests := []struct {
		name     string
		cuts     int
		wantReqs int
		wantKind string
	}{
		{"cut once", 1, 2, ""},
		{"cut every time", 100, 3, "network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := pageOf([]string{"a", "b", "c"}, "ready", "")
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n > tt.cuts {
					writeJSON(w, 200, body)
					return
				}
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2])
				buf.Flush()
				conn.Close()
			})
			c := newClient(t, f.URL, func(o *plugchoice.Options) { o.MaxRetries = 2 })
			p, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1)
			if f.count() != tt.wantReqs {
				t.Fatalf("%d requests, want %d", f.count(), tt.wantReqs)
			}
			if tt.wantKind == "" {
				if err != nil || len(p.Data) != 3 {
					t.Fatalf("page %+v, error %v", p, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "read response body") || plugchoice.Kind(err) != tt.wantKind {
				t.Fatalf("error %v (kind %q), want a %s error reading the body", err, plugchoice.Kind(err), tt.wantKind)
			}
		})
	}
}

func TestRedirectToOtherHostNotFollowed(t *testing.T) {
	other := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
	})
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		http.Redirect(w, r, other.URL+"/api/v3/exports?page=1&signature=abc", http.StatusFound)
	})
	_, err := newClient(t, f.URL, nil).ListPage(ctxT(t), plugchoice.Query{}, 1)
	if err == nil || !strings.Contains(err.Error(), "302 redirect to \""+other.URL+"\" not followed") || strings.Contains(err.Error(), "signature") {
		t.Fatalf("error %v, want a refused redirect naming %s without the location's query", err, other.URL)
	}
	if plugchoice.Kind(err) != "client" {
		t.Fatalf("Kind %q", plugchoice.Kind(err))
	}
	if other.count() != 0 {
		t.Fatalf("the redirect was followed")
	}
}

func TestRateLimitHeadersAndMetrics(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("X-RateLimit-Limit", "500")
		w.Header().Set("X-RateLimit-Remaining", fmt.Sprint(500-n))
		if n == 1 {
			writeJSON(w, 500, `{"message":"oops"}`)
			return
		}
		writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
	})
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	c := newClient(t, f.URL, func(o *plugchoice.Options) { o.Metrics = m })
	if _, _, ok := c.RateLimit(); ok {
		t.Fatal("RateLimit ok before any response")
	}
	if _, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1); err != nil {
		t.Fatal(err)
	}
	limit, remaining, ok := c.RateLimit()
	if !ok || limit != 500 || remaining != 498 {
		t.Fatalf("RateLimit() = %d, %d, %v; want 500, 498, true", limit, remaining, ok)
	}
	if got := testutil.ToFloat64(m.APIRateRemaining); got != 498 {
		t.Fatalf("remaining gauge %v", got)
	}
	if got := testutil.ToFloat64(m.APIRequests.WithLabelValues("5xx")); got != 1 {
		t.Fatalf("5xx requests %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.APIRequests.WithLabelValues("2xx")); got != 1 {
		t.Fatalf("2xx requests %v, want 1", got)
	}
}

// The client waits for its budget before every request, retries included.
func TestBudgetGatesRequests(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
	})
	b := plugchoice.NewBudget(1) // 1 per minute, burst 1
	c := newClient(t, f.URL, func(o *plugchoice.Options) { o.Budget = b })
	if _, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.ListPage(ctx, plugchoice.Query{}, 2)
	if err == nil || !strings.Contains(err.Error(), "wait for API budget") {
		t.Fatalf("error %v, want the budget wait to fail", err)
	}
	if plugchoice.Kind(err) != "timeout" {
		t.Fatalf("Kind %q", plugchoice.Kind(err))
	}
	if f.count() != 1 {
		t.Fatalf("%d requests, want 1", f.count())
	}
}

// Neither the token nor a signed URL's query appears in any log line or error, even at
// debug level through retries and failures.
func TestTokenNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 1:
			writeJSON(w, 503, `{"message":"down, token was `+token+`"}`)
		case 2:
			w.Header().Set("Retry-After", "0")
			writeJSON(w, 429, `{"message":"slow down"}`)
		case 3:
			writeJSON(w, 200, pageOf([]string{"a"}, "ready", "x"))
		default:
			writeJSON(w, 401, `{"message":"Unauthenticated. `+token+`"}`)
		}
	})
	c := newClient(t, f.URL, func(o *plugchoice.Options) { o.Logger = logger })
	_, err := c.List(ctxT(t), plugchoice.Query{})
	if err == nil {
		t.Fatal("want an error")
	}
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	if !strings.Contains(logs, "retrying") {
		t.Fatalf("no retry was logged:\n%s", logs)
	}
	if strings.Contains(logs, token) || strings.Contains(err.Error(), token) {
		t.Fatalf("token leaked:\nerror: %v\nlogs:\n%s", err, logs)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&plugchoice.APIError{StatusCode: 401}, "auth"},
		{&plugchoice.APIError{StatusCode: 403}, "auth"},
		{&plugchoice.APIError{StatusCode: 429}, "rate_limited"},
		{&plugchoice.APIError{StatusCode: 500}, "server"},
		{&plugchoice.APIError{StatusCode: 404}, "client"},
		{fmt.Errorf("x: %w", &plugchoice.DecodeError{Err: errors.New("bad")}), "decode"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("x: %w", context.Canceled), "canceled"},
		{errors.New("connection refused"), "network"},
	}
	for _, tt := range tests {
		if got := plugchoice.Kind(tt.err); got != tt.want {
			t.Errorf("Kind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
