package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/store"
)

const (
	statusSecret = "tok-s3cr3t-value"
	evilFilename = "<script>alert(1)</script>.csv"
	signedURL    = "https://files.example/exports/x.csv?expires=1&signature=deadbeef"
)

type sinkList []server.StatusSink

func (l sinkList) StatusSinks() []server.StatusSink { return l }

// statusStore is a real store whose last cycle queued one export.ready (with a hostile
// filename) to "hook", dead-lettered there with an error quoting a signed URL.
func statusStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	body := `{"data":{"export":{"filename":"` + strings.ReplaceAll(evilFilename, `"`, `\"`) + `","download_url":"` + signedURL + `","subject":{"label":"Depot 1"}}}}`
	ev := event.Event{ID: "ev-1", Type: "export.ready", Subject: "u1", Status: "ready", ExportType: "sessions",
		DetectedAt: time.Now(), Body: []byte(body)}
	err = st.CommitCycle(store.Cycle{Upserts: map[string]diff.Entry{"u1": {Status: "ready"}, "u2": {Status: "pending", At: time.Now().UnixNano()}},
		Events: []store.Routed{{Event: ev, Sinks: []string{"hook"}}}, Poll: store.PollInfo{At: time.Now(), OK: true}})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.Pending("hook", 0, 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("pending: %v %v", recs, err)
	}
	r := recs[0]
	r.Attempts, r.LastStatus, r.LastError = 1, 410, `Get "`+signedURL+`": 410 Gone (token `+statusSecret+`)`
	if err := st.Settle("hook", store.Settlement{Dead: []store.Record{r}}); err != nil {
		t.Fatal(err)
	}
	return st
}

func statusOptions(st *store.Store) server.Options {
	return server.Options{
		Admin: st,
		Status: &server.Status{Version: "1.2.3", Started: time.Now().Add(-time.Hour), Store: st,
			Sinks: sinkList{{Name: "hook", Kind: "webhook", Filter: "*",
				Destination: "https://user:" + statusSecret + "@hooks.example/in?sig=" + statusSecret}},
			Polls:   server.NewPollRecorder(nil, nil, nil),
			Secrets: []string{statusSecret}},
	}
}

func do(h http.Handler, method, target, peer string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.RemoteAddr = peer
	for _, c := range cookies {
		req.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, h http.Handler, peer string, cookies ...*http.Cookie) string {
	t.Helper()
	w := do(h, http.MethodGet, "/login", peer, nil, cookies...) // the sign-in form always carries one
	m := csrfRE.FindStringSubmatch(w.Body.String())
	if w.Code != http.StatusOK || m == nil {
		t.Fatalf("GET /login: %d, no CSRF token in the page:\n%.400s", w.Code, w.Body.String())
	}
	return m[1]
}

const (
	loopback = "127.0.0.1:40000"
	remote   = "198.51.100.7:40000"
)

func TestStatusPageShowsStateAsTextWithoutSecrets(t *testing.T) {
	st := statusStore(t)
	h := server.AdminHandler(statusOptions(st))
	w := do(h, http.MethodGet, "/", loopback, nil)
	html := w.Body.String()
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	for _, want := range []string{"1.2.3", "Depot 1", "&lt;script&gt;alert(1)&lt;/script&gt;.csv", "https://hooks.example/in",
		`id="dead-letters"`, "Replay all", `http-equiv="refresh"`, "pending"} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, bad := range []string{statusSecret, "<script>", "signature=", "sig=", "user:"} {
		if strings.Contains(html, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q, want one that forbids scripts", csp)
	}
}

func TestStatusPageIsNotOnListenAddr(t *testing.T) {
	st := statusStore(t)
	h := server.Handler(statusOptions(st))
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/"}, {http.MethodGet, "/status.css"}, {http.MethodPost, "/status/replay"},
		{http.MethodPost, "/status/purge"}, {http.MethodPost, "/login"},
	} {
		w := do(h, c.method, c.path, loopback, url.Values{"all": {"1"}})
		if w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "<html") {
			t.Errorf("%s %s on LISTEN_ADDR's handler: %d, want 404", c.method, c.path, w.Code)
		}
	}
	if n := deadCount(t, st); n != 1 {
		t.Errorf("%d dead letters, want 1 untouched", n)
	}
}

func TestStatusFormsRefuseWithoutCSRFOrAuthority(t *testing.T) {
	for _, tc := range []struct {
		name        string
		token       string
		requireTok  bool
		peer        string
		csrf        bool
		wantCode    int
		wantMutated bool
	}{
		{"loopback, no token configured, with CSRF", "", false, loopback, true, http.StatusSeeOther, true},
		{"loopback, no CSRF token", "", false, loopback, false, http.StatusForbidden, false},
		{"beyond loopback, no token configured", "", true, loopback, true, http.StatusUnauthorized, false},
		{"remote peer, loopback-only endpoint", "", false, remote, true, http.StatusForbidden, false},
		{"token configured, not signed in", statusSecret, true, remote, true, http.StatusUnauthorized, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, op := range []string{"replay", "purge"} {
				st := statusStore(t)
				o := statusOptions(st)
				o.AdminToken, o.AdminRequireToken = tc.token, tc.requireTok
				h := server.AdminHandler(o)
				form := url.Values{"sink": {"hook"}, "id": {"ev-1"}}
				if tc.csrf {
					form.Set("csrf", csrfOf(t, h, tc.peer))
				}
				w := do(h, http.MethodPost, "/status/"+op, tc.peer, form)
				if w.Code != tc.wantCode {
					t.Errorf("%s: status %d, want %d; body:\n%.300s", op, w.Code, tc.wantCode, w.Body.String())
				}
				if mutated := deadCount(t, st) == 0; mutated != tc.wantMutated {
					t.Errorf("%s: dead letter taken = %v, want %v", op, mutated, tc.wantMutated)
				}
			}
		})
	}
}

func TestStatusSignInKeepsTokenInStrictCookie(t *testing.T) {
	st := statusStore(t)
	o := statusOptions(st)
	o.AdminToken, o.AdminRequireToken = statusSecret, true
	h := server.AdminHandler(o)

	w := do(h, http.MethodPost, "/login", remote, url.Values{"csrf": {csrfOf(t, h, remote)}, "token": {"wrong"}})
	if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Fatalf("sign-in with a wrong token: %d, cookies %v; want 401 and none", w.Code, w.Result().Cookies())
	}
	w = do(h, http.MethodPost, "/login", remote, url.Values{"token": {statusSecret}})
	if w.Code != http.StatusForbidden {
		t.Fatalf("sign-in without CSRF token: %d, want 403", w.Code)
	}
	w = do(h, http.MethodPost, "/login", remote, url.Values{"csrf": {csrfOf(t, h, remote)}, "token": {statusSecret}})
	cookies := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("sign-in: %d, cookies %v; want 303 and one cookie", w.Code, cookies)
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, statusSecret) {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, without the token itself", c)
	}
	// The CSRF token of the signed-out page is not valid for the session.
	stale := csrfOf(t, h, remote)
	if w := do(h, http.MethodPost, "/status/replay", remote, url.Values{"csrf": {stale}, "all": {"1"}}, c); w.Code != http.StatusForbidden {
		t.Errorf("replay with the signed-out page's CSRF token: %d, want 403", w.Code)
	}
	w = do(h, http.MethodPost, "/status/replay", remote, url.Values{"csrf": {csrfOf(t, h, remote, c)}, "all": {"1"}}, c)
	if w.Code != http.StatusSeeOther || deadCount(t, st) != 0 {
		t.Fatalf("replay all when signed in: %d, %d dead letters left; want 303 and none", w.Code, deadCount(t, st))
	}
	recent, err := st.RecentEvents(1)
	if err != nil || len(recent) != 1 || recent[0].Sinks[0].State != store.StateQueued {
		t.Errorf("the replayed event in the ring: %+v, %v; want queued again", recent, err)
	}
}

func TestPollRecorderKeepsLast20AndMinutes(t *testing.T) {
	var reqs int64
	r := server.NewPollRecorder(func(string) int { return 100 }, func(string) int64 { return reqs }, nil)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 30 {
		reqs += 2
		r.Observe(store.PollInfo{At: t0.Add(time.Duration(i) * 10 * time.Second), OK: true, Full: i == 0, Events: 1, RateRemaining: 500 - i})
	}
	// A failed poll committed twice (SavePoll, then bridge.poll_failing) is one row.
	at := t0.Add(301 * time.Second)
	reqs++
	r.Observe(store.PollInfo{At: at, Error: "timeout"})
	r.Observe(store.PollInfo{At: at, Error: "timeout", Events: 1})
	polls := r.Polls()
	if len(polls) != server.RecentPolls || polls[0].OK || polls[0].Events != 1 || polls[0].Requests != 1 || polls[1].RateRemaining != 471 {
		t.Fatalf("polls: %d, newest %+v, next %+v", len(polls), polls[0], polls[1])
	}
	if polls[1].BudgetUsed <= 0 || polls[1].BudgetUsed > 0.2 {
		t.Errorf("budget used of a poll: %.2f, want 12 requests of 100 in its minute", polls[1].BudgetUsed)
	}
	ms := r.Minutes(at)
	if len(ms) != server.ChartMinutes {
		t.Fatalf("%d minutes, want %d", len(ms), server.ChartMinutes)
	}
	total := 0
	for _, m := range ms {
		total += m.Requests
	}
	if total != 61 || ms[len(ms)-1].Requests != 1 || ms[len(ms)-2].Requests != 12 {
		t.Errorf("requests per minute: total %d (want 61), last two %d, %d (want 12, 1)", total, ms[len(ms)-2].Requests, ms[len(ms)-1].Requests)
	}
}

func TestStatusSinkCardsSayUpOrDown(t *testing.T) {
	st := statusStore(t) // "hook" dead-lettered its only event: its last outcome is an error
	for _, tc := range []struct {
		name  string
		sinks sinkList
		card  string // the card's id
		want  string // its badge
		extra string // also on the card
	}{
		{"last delivery failed", sinkList{{Name: "hook", Kind: "webhook"}}, "sink-hook", ">down<", "410"},
		{"sink reports itself down", sinkList{{Name: "hook"}, {Name: "bus", Kind: "nats", Down: "nats: no servers available"}}, "sink-bus", ">down<", "no servers available"},
		{"no delivery yet", sinkList{{Name: "hook"}, {Name: "new", Kind: "stdout"}}, "sink-new", ">no deliveries yet<", "stdout"},
		{"removed from the settings, dead letters left", sinkList{}, "sink-hook", ">not configured<", ">1<"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := statusOptions(st)
			o.Status.Sinks = tc.sinks
			html := do(server.AdminHandler(o), http.MethodGet, "/", loopback, nil).Body.String()
			i := strings.Index(html, `id="`+tc.card+`"`)
			if i < 0 {
				t.Fatalf("no card %s in the page", tc.card)
			}
			card, _, _ := strings.Cut(html[i:], "</article>")
			if !strings.Contains(card, tc.want) || !strings.Contains(card, tc.extra) {
				t.Errorf("card %s lacks %q or %q:\n%s", tc.card, tc.want, tc.extra, card)
			}
		})
	}
}

// TestStatusPageShowsTheListingInProgress: while a full listing runs, the Polling
// section shows the same progress line as the log; without one, no line.
func TestStatusPageShowsTheListingInProgress(t *testing.T) {
	const line = "baseline: 120 pages, 12000 exports read in 3m0s, 40 requests/min, rate limit 12 left"
	for _, tt := range []struct {
		name  string
		lines []string
	}{
		{"in progress", []string{line}},
		{"none", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := statusOptions(statusStore(t))
			o.Status.Progress = func() []string { return tt.lines }
			html := do(server.AdminHandler(o), http.MethodGet, "/", loopback, nil).Body.String()
			_, polling, _ := strings.Cut(html, `id="polling"`)
			polling, _, _ = strings.Cut(polling, "</section>")
			if got := strings.Contains(polling, `<p class="progress">`+line+`</p>`); got != (tt.lines != nil) {
				t.Errorf("progress line shown: %v, want %v; the Polling section:\n%s", got, tt.lines != nil, polling)
			}
		})
	}
}

// TestPollsOfEveryAccountAreTheirOwn: with an accounts: list the poll log names each
// poll's account, and counts its requests, rate limit and budget from that account's
// own client, not from another account's.
func TestPollsOfEveryAccountAreTheirOwn(t *testing.T) {
	reqs := map[string]int64{}
	budgets := map[string]int{"acme": 100, "globex": 10}
	r := server.NewPollRecorder(func(a string) int { return budgets[a] }, func(a string) int64 { return reqs[a] },
		func(a string) (int, int, bool) { return 0, 900 - int(reqs[a]), a != "" })
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	reqs["acme"] += 40 // acme's first poll: a full listing
	r.Observe(store.PollInfo{Account: "acme", At: t0, OK: true, Full: true})
	reqs["globex"] += 2
	r.Observe(store.PollInfo{Account: "globex", At: t0.Add(time.Second), OK: true})
	reqs["acme"] += 1
	r.Observe(store.PollInfo{Account: "acme", At: t0.Add(2 * time.Second), OK: true})
	reqs["globex"] += 3
	r.Observe(store.PollInfo{Account: "globex", At: t0.Add(3 * time.Second), OK: false, Error: "HTTP 429"})

	type row struct {
		account  string
		requests int
		rate     int
		budget   float64
	}
	var got []row
	for _, p := range r.Polls() {
		got = append(got, row{p.Account, p.Requests, p.RateRemaining, p.BudgetUsed})
	}
	want := []row{ // newest first
		{"globex", 3, 895, 0.5}, // 2 + 3 of globex's 10 in the minute
		{"acme", 1, 859, 0.41},  // 40 + 1 of acme's 100
		{"globex", 2, 898, 0.2},
		{"acme", 40, 860, 0.4},
	}
	if len(got) != len(want) {
		t.Fatalf("polls %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].account != want[i].account || got[i].requests != want[i].requests || got[i].rate != want[i].rate ||
			got[i].budget < want[i].budget-0.001 || got[i].budget > want[i].budget+0.001 {
			t.Errorf("poll %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	st := statusStore(t)
	o := statusOptions(st)
	o.Status.Polls = r
	html := do(server.AdminHandler(o), http.MethodGet, "/", loopback, nil).Body.String()
	if !strings.Contains(html, "<th>Account</th>") || !strings.Contains(html, "<td>globex</td>") {
		t.Errorf("the poll table has no account column:\n%s", html[strings.Index(html, `id="polls"`):][:600])
	}
	single := statusOptions(st)
	single.Status.Polls.Observe(store.PollInfo{At: t0, OK: true})
	if html := do(server.AdminHandler(single), http.MethodGet, "/", loopback, nil).Body.String(); strings.Contains(html, "<th>Account</th>") {
		t.Errorf("the poll table of the one account of API_TOKEN has an account column")
	}
}
