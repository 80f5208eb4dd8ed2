package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/store"
)

const slackHook = "https://hooks.slack.com/services/T000/B000/SECRETxyz"

var deadAt = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

// seededStore opens a real store holding 3 exports, a failed last poll and three dead
// letters: ev1 and ev2 on webhook-1, ev3 on slack.
func seededStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.CommitCycle(store.Cycle{
		Upserts: map[string]diff.Entry{"u1": {Status: "ready"}, "u2": {Status: "failed"}, "u3": {Status: "pending"}},
		Poll: store.PollInfo{At: deadAt, OK: false, Requests: 3,
			Error: `Get "https://app.plugchoice.com/api/v3/exports?page=2&signature=abc": timeout`},
	})
	if err != nil {
		t.Fatalf("commit cycle: %v", err)
	}
	ev := func(id, typ, subject, exportType string) event.Event {
		return event.Event{ID: id, Type: typ, Subject: subject, ExportType: exportType, DetectedAt: deadAt, Body: []byte(`{"id":"` + id + `"}`)}
	}
	if err := st.Enqueue("webhook-1", ev("ev1", "export.ready", "u1", "sessions"), ev("ev2", "export.failed", "u2", "sessions")); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if err := st.Enqueue("slack", ev("ev3", "bridge.poll_failing", "", "")); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	fail := map[string]struct {
		attempts, status int
		msg              string
	}{
		"ev1": {9, 410, "410 Gone"},
		"ev2": {1, 400, "400 Bad Request"},
		"ev3": {30, 0, `Post "` + slackHook + `": dial tcp: i/o timeout`},
	}
	for _, sink := range []string{"webhook-1", "slack"} {
		recs, err := st.Pending(sink, 0, 0)
		if err != nil {
			t.Fatalf("pending %s: %v", sink, err)
		}
		for _, r := range recs {
			f := fail[r.Event.ID]
			r.Attempts, r.LastStatus, r.LastError = f.attempts, f.status, f.msg
			r.FirstAttemptAt, r.DeadAt = deadAt, deadAt.Add(time.Hour)
			if err := st.Settle(r.Sink, store.Settlement{Dead: []store.Record{r}}); err != nil {
				t.Fatalf("dead-letter %s: %v", r.Event.ID, err)
			}
		}
	}
	return st
}

func deadCount(t *testing.T, st *store.Store) int {
	t.Helper()
	recs, err := st.DeadLetters("")
	if err != nil {
		t.Fatalf("dead letters: %v", err)
	}
	return len(recs)
}

// The real store satisfies Admin.
var _ server.Admin = (*store.Store)(nil)

func TestAdminRoundTrip(t *testing.T) {
	backend := seededStore(t)
	var replays atomic.Int32
	srv := httptest.NewServer(server.AdminHandler(server.Options{
		Admin: backend, OnReplay: func() { replays.Add(1) }, Logger: quietLogger(),
	}))
	defer srv.Close()
	c := &server.AdminClient{BaseURL: srv.URL}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	all, err := c.DeadLetters(ctx, "")
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	if len(all) != 3 {
		t.Fatalf("DeadLetters(\"\") = %d letters, want 3", len(all))
	}
	// By sink name, then queue order: slack first.
	sl, w1 := all[0], all[1]
	if sl.Sink != "slack" || sl.EventID != "ev3" || sl.Type != "bridge.poll_failing" || sl.Subject != "" || sl.Attempts != 30 {
		t.Fatalf("slack dead letter did not round-trip: %+v", sl)
	}
	if strings.Contains(sl.LastError, "SECRETxyz") || !strings.Contains(sl.LastError, "https://hooks.slack.com/...") {
		t.Fatalf("slack webhook URL not redacted in last_error: %q", sl.LastError)
	}
	if w1.Sink != "webhook-1" || w1.Seq == 0 || w1.EventID != "ev1" || w1.Subject != "u1" || w1.Type != "export.ready" ||
		w1.ExportType != "sessions" || w1.Attempts != 9 || w1.LastStatus != 410 || w1.LastError != "410 Gone" ||
		!w1.DeadAt.Equal(deadAt.Add(time.Hour)) || w1.EnqueuedAt.IsZero() {
		t.Fatalf("webhook-1 dead letter did not round-trip: %+v", w1)
	}

	for sel, want := range map[string]int{"webhook-1": 2, "webhook": 2, "slack": 1, "nats": 0} {
		got, err := c.DeadLetters(ctx, sel)
		if err != nil || got == nil || len(got) != want {
			t.Fatalf("DeadLetters(%q) = %#v, %v; want %d", sel, got, err, want)
		}
	}

	st, err := c.State(ctx)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if st.Exports != 3 || !st.Initialized || st.DeadLetters["webhook-1"] != 2 || st.DeadLetters["slack"] != 1 ||
		st.LastPoll.Requests != 3 || st.LastPoll.OK || !st.LastPoll.At.Equal(deadAt) || st.FileBytes <= 0 {
		t.Fatalf("State = %+v", st)
	}
	if strings.Contains(st.LastPoll.Error, "signature") || !strings.Contains(st.LastPoll.Error, "https://app.plugchoice.com/...") {
		t.Fatalf("state leaks a URL query: %q", st.LastPoll.Error)
	}

	n, err := c.Replay(ctx, "webhook-1", []string{"ev1"}, false)
	if err != nil || n != 1 {
		t.Fatalf("Replay(ev1) = %d, %v; want 1", n, err)
	}
	if got := replays.Load(); got != 1 {
		t.Fatalf("OnReplay called %d times after a replay, want 1", got)
	}
	pend, err := backend.Pending("webhook-1", 0, 0)
	if err != nil || len(pend) != 1 || pend[0].Event.ID != "ev1" || string(pend[0].Event.Body) != `{"id":"ev1"}` {
		t.Fatalf("after replay, webhook-1 outbox = %+v, %v; want ev1 with its body", pend, err)
	}

	// An unknown id: 404 naming it, nothing moved, no wake-up.
	_, err = c.Replay(ctx, "", []string{"ev2", "nope"}, false)
	var se *server.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || !strings.Contains(se.Message, "nope") {
		t.Fatalf("Replay(unknown id) = %v; want a 404 naming the id", err)
	}
	if got := replays.Load(); got != 1 {
		t.Fatalf("OnReplay called after a failed replay (%d calls)", got)
	}
	if _, err = c.Purge(ctx, "slack", []string{"ev1"}, false); !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Fatalf("Purge(slack, ev1 of another sink) = %v; want 404", err)
	}

	n, err = c.Purge(ctx, "slack", nil, true)
	if err != nil || n != 1 {
		t.Fatalf("Purge(slack, all) = %d, %v; want 1", n, err)
	}
	st, err = c.State(ctx)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if st.Outbox["webhook-1"] != 1 || st.DeadLetters["webhook-1"] != 1 || st.DeadLetters["slack"] != 0 || st.Outbox["slack"] != 0 {
		t.Fatalf("after replay and purge: outbox %v, dead %v", st.Outbox, st.DeadLetters)
	}
	n, err = c.Replay(ctx, "", nil, true)
	if err != nil || n != 1 || replays.Load() != 2 {
		t.Fatalf("Replay(all) = %d, %v (OnReplay %d); want 1 and a second OnReplay", n, err, replays.Load())
	}
	n, err = c.Replay(ctx, "", nil, true)
	if err != nil || n != 0 || replays.Load() != 2 {
		t.Fatalf("Replay(all) of an empty DLQ = %d, %v (OnReplay %d); want 0 and no wake-up", n, err, replays.Load())
	}
}

func TestAdminAuthorization(t *testing.T) {
	const token = "s3cret-admin-token"
	tests := []struct {
		name     string
		token    string // server's AdminToken
		require  bool
		peer     string
		auth     string // Authorization header sent
		wantCode int
		wantMsg  string
	}{
		{"loopback, no token configured", "", false, "127.0.0.1:5000", "", 200, ""},
		{"ipv6 loopback, no token configured", "", false, "[::1]:5000", "", 200, ""},
		{"remote peer, no token configured", "", false, "203.0.113.7:5000", "", 403, "loopback only"},
		{"remote peer sending a token nobody configured", "", false, "203.0.113.7:5000", "Bearer x", 403, "loopback only"},
		{"beyond loopback, token required but not configured", "", true, "127.0.0.1:5000", "Bearer x", 401, "EXPORTBRIDGE_ADMIN_TOKEN is not set"},
		{"token required, none sent", token, true, "203.0.113.7:5000", "", 401, "admin token required"},
		{"token required, wrong token", token, true, "203.0.113.7:5000", "Bearer wrong", 401, "wrong admin token"},
		{"token required, prefix of the token", token, true, "203.0.113.7:5000", "Bearer s3cret", 401, "wrong admin token"},
		{"token required, basic scheme", token, true, "203.0.113.7:5000", "Basic " + token, 401, "admin token required"},
		{"token required, right token", token, true, "203.0.113.7:5000", "Bearer " + token, 200, ""},
		{"token configured, lower-case scheme", token, true, "203.0.113.7:5000", "bearer " + token, 200, ""},
		{"token configured on loopback is still required", token, false, "127.0.0.1:5000", "", 401, "admin token required"},
		{"token configured on loopback, right token", token, false, "127.0.0.1:5000", "Bearer " + token, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/dlq/replay", "/v1/dlq/purge"} {
				backend := seededStore(t)
				h := server.AdminHandler(server.Options{Admin: backend, AdminToken: tc.token,
					AdminRequireToken: tc.require, Logger: quietLogger()})
				req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"all":true}`))
				req.RemoteAddr = tc.peer
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				body := rec.Body.String()
				if rec.Code != tc.wantCode || !strings.Contains(body, tc.wantMsg) {
					t.Fatalf("%s = %d %q; want %d containing %q", path, rec.Code, body, tc.wantCode, tc.wantMsg)
				}
				if strings.Contains(body, token) {
					t.Fatalf("answer echoes the token: %q", body)
				}
				left := deadCount(t, backend)
				if tc.wantCode != 200 && left != 3 {
					t.Fatalf("refused call still changed the store: %d dead letters left", left)
				}
				if tc.wantCode == 200 && left != 0 {
					t.Fatalf("allowed call left %d dead letters", left)
				}
				if tc.wantCode == 401 && rec.Header().Get("WWW-Authenticate") == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
			}
		})
	}
}

func TestAdminReadsNeedNoToken(t *testing.T) {
	h := server.AdminHandler(server.Options{Admin: seededStore(t), AdminToken: "tok", AdminRequireToken: true, Logger: quietLogger()})
	for _, path := range []string{"/v1/state", "/v1/dlq", "/v1/dlq?sink=slack"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = "203.0.113.7:5000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("GET %s from a remote peer = %d %q, want 200", path, rec.Code, rec.Body)
		}
	}
}

func TestAdminClientToken(t *testing.T) {
	srv := httptest.NewServer(server.AdminHandler(server.Options{Admin: seededStore(t), AdminToken: "tok", AdminRequireToken: true, Logger: quietLogger()}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err := (&server.AdminClient{BaseURL: srv.URL}).Purge(ctx, "", nil, true)
	var se *server.StatusError
	if !errors.As(err, &se) || se.StatusCode != 401 || !strings.Contains(err.Error(), "admin token required") {
		t.Fatalf("Purge without token = %v, want a 401 StatusError", err)
	}
	_, err = (&server.AdminClient{BaseURL: srv.URL, Token: "bad"}).Replay(ctx, "", nil, true)
	if !errors.As(err, &se) || se.StatusCode != 401 || !strings.Contains(err.Error(), "wrong admin token") {
		t.Fatalf("Replay with a wrong token = %v, want a 401 StatusError", err)
	}
	n, err := (&server.AdminClient{BaseURL: srv.URL, Token: "tok"}).Purge(ctx, "", nil, true)
	if err != nil || n != 3 {
		t.Fatalf("Purge with the token = %d, %v; want 3", n, err)
	}
}

func TestAdminBadRequests(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		wantCode int
		wantMsg  string
	}{
		{"empty body", "POST", "/v1/dlq/replay", "", 400, "empty request body: expected JSON"},
		{"not JSON", "POST", "/v1/dlq/replay", "all", 400, "bad request body: expected JSON"},
		{"wrong type", "POST", "/v1/dlq/purge", `{"ids":"ev1"}`, 400, `bad request body: expected JSON {"sink":"","ids":["<event id>"],"all":false}`},
		{"unknown field", "POST", "/v1/dlq/purge", `{"al":true}`, 400, `unknown field "al"`},
		{"two objects", "POST", "/v1/dlq/purge", `{"all":true}{"all":true}`, 400, "found more data after it"},
		{"neither ids nor all", "POST", "/v1/dlq/replay", `{"sink":"slack"}`, 400, `name the dead letters in "ids" or set "all": true`},
		{"ids and all", "POST", "/v1/dlq/replay", `{"ids":["ev1"],"all":true}`, 400, "are exclusive"},
		{"blank id", "POST", "/v1/dlq/purge", `{"ids":["ev1"," "]}`, 400, "ids[1] is empty"},
		{"too large", "POST", "/v1/dlq/purge", `{"ids":["` + strings.Repeat("x", 2<<20) + `"]}`, 413, "request body larger than 1048576 bytes"},
		{"GET replay", "GET", "/v1/dlq/replay", "", 405, "method GET not allowed on /v1/dlq/replay (expected POST)"},
		{"POST state", "POST", "/v1/state", `{}`, 405, "expected GET"},
		{"unknown path", "GET", "/v1/nope", "", 404, "no endpoint /v1/nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			backend := seededStore(t)
			h := server.AdminHandler(server.Options{Admin: backend, Logger: quietLogger()})
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.RemoteAddr = "127.0.0.1:40000"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var er server.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil {
				t.Fatalf("error answer %q is not JSON: %v", rec.Body, err)
			}
			if rec.Code != tc.wantCode || !strings.Contains(er.Error, tc.wantMsg) {
				t.Fatalf("= %d %q; want %d containing %q", rec.Code, er.Error, tc.wantCode, tc.wantMsg)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("error answer Content-Type %q, want application/json", ct)
			}
			if left := deadCount(t, backend); left != 3 {
				t.Fatalf("bad request changed the store: %d dead letters left", left)
			}
		})
	}
}

func TestAdminBackendErrors(t *testing.T) {
	backend := seededStore(t)
	if err := backend.Close(); err != nil { // every call on a closed store fails
		t.Fatal(err)
	}
	var replays atomic.Int32
	srv := httptest.NewServer(server.AdminHandler(server.Options{Admin: backend, Logger: quietLogger(), OnReplay: func() { replays.Add(1) }}))
	defer srv.Close()
	c := &server.AdminClient{BaseURL: srv.URL}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	calls := []struct {
		name string
		call func() error
		want string
	}{
		{"state", func() error { _, err := c.State(ctx); return err }, "admin state: admin endpoint answered 500 Internal Server Error: read store state: stats: database not open"},
		{"list", func() error { _, err := c.DeadLetters(ctx, "slack"); return err }, "admin dlq list: admin endpoint answered 500 Internal Server Error: list dead letters: dead letters: database not open"},
		{"replay", func() error { _, err := c.Replay(ctx, "", nil, true); return err }, "admin dlq replay: admin endpoint answered 500 Internal Server Error: replay dead letters: replay: database not open"},
		{"purge", func() error { _, err := c.Purge(ctx, "", []string{"ev1"}, false); return err }, "admin dlq purge: admin endpoint answered 500 Internal Server Error: purge dead letters: purge: database not open"},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var se *server.StatusError
			if !errors.As(err, &se) || se.StatusCode != 500 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v; want a 500 StatusError containing %q", err, tc.want)
			}
		})
	}
	if replays.Load() != 0 {
		t.Fatal("OnReplay called after a failed replay")
	}
}

func TestAdminWithoutStore(t *testing.T) {
	srv := httptest.NewServer(server.AdminHandler(server.Options{Logger: quietLogger()}))
	defer srv.Close()
	c := &server.AdminClient{BaseURL: srv.URL}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, call := range map[string]func() error{
		"state":  func() error { _, err := c.State(ctx); return err },
		"list":   func() error { _, err := c.DeadLetters(ctx, ""); return err },
		"replay": func() error { _, err := c.Replay(ctx, "", nil, true); return err },
	} {
		var se *server.StatusError
		if err := call(); !errors.As(err, &se) || se.StatusCode != 503 || !strings.Contains(se.Message, "no store") {
			t.Fatalf("%s without a store = %v, want 503", name, err)
		}
	}
}

func TestAdminClientErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	textErr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream proxy broke", http.StatusBadGateway)
	}))
	defer textErr.Close()
	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>hello</html>"))
	}))
	defer notJSON.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name string
		base string
		want string
	}{
		{"empty base URL", "", `admin base URL "": expected http://host:port`},
		{"no scheme", "127.0.0.1:9091", `admin base URL "127.0.0.1:9091": expected http://host:port`},
		{"bad scheme", "ftp://127.0.0.1:9091", "expected http://host:port"},
		{"nothing listening", closedURL, "reach admin endpoint " + closedURL + "/v1/state"},
		{"non-JSON error answer", textErr.URL, "admin endpoint answered 502 Bad Gateway: upstream proxy broke"},
		{"non-JSON success answer", notJSON.URL, "decode answer of GET " + notJSON.URL + "/v1/state (expected JSON)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&server.AdminClient{BaseURL: tc.base, Token: "tok"}).State(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("State() error = %v; want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "tok\"") || strings.Contains(err.Error(), "Bearer") {
				t.Fatalf("error leaks the token: %v", err)
			}
		})
	}

	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	srv := httptest.NewServer(server.AdminHandler(server.Options{Admin: seededStore(t), Logger: quietLogger()}))
	defer srv.Close()
	if _, err := (&server.AdminClient{BaseURL: srv.URL}).DeadLetters(cctx, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("DeadLetters with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestAdminBaseURL(t *testing.T) {
	tests := []struct {
		addr, want, wantErr string
	}{
		{addr: "127.0.0.1:9091", want: "http://127.0.0.1:9091"},
		{addr: "localhost:9091", want: "http://localhost:9091"},
		{addr: "[::1]:9091", want: "http://[::1]:9091"},
		{addr: ":9091", want: "http://127.0.0.1:9091"},
		{addr: "0.0.0.0:9091", want: "http://127.0.0.1:9091"},
		{addr: "[::]:9091", want: "http://[::1]:9091"},
		{addr: "10.1.2.3:9091", want: "http://10.1.2.3:9091"},
		{addr: "9091", wantErr: `admin address "9091": expected host:port`},
		{addr: "127.0.0.1:", wantErr: "expected host:port"},
		{addr: "", wantErr: "expected host:port"},
	}
	for _, tc := range tests {
		got, err := server.AdminBaseURL(tc.addr)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("AdminBaseURL(%q) = %q, %v; want error %q", tc.addr, got, err, tc.wantErr)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("AdminBaseURL(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{`Post "` + slackHook + `": dial tcp: i/o timeout`, `Post "https://hooks.slack.com/...": dial tcp: i/o timeout`},
		{"get https://files.example.com/e.csv?X-Amz-Signature=abc failed", "get https://files.example.com/... failed"},
		{"https://user:pw@example.com/hook", "https://example.com/..."},
		{"nats://127.0.0.1:4222 refused", "nats://127.0.0.1:4222 refused"},
		{"https://example.com/", "https://example.com"},
		{"410 Gone", "410 Gone"},
		{"", ""},
	}
	for _, tc := range tests {
		if got := logging.RedactURLHosts(tc.in); got != tc.want {
			t.Errorf("RedactURLHosts(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
