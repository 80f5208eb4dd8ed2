package chaos

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

func ptr[T any](v T) *T { return &v }

// TestSlackMrkdwnInjection (scenario 7): every string field the API gives (type,
// filename, subject label, error message) carries Slack control sequences; the fake Slack
// receives them only escaped.
func TestSlackMrkdwnInjection(t *testing.T) {
	needChaos(t)
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	sim.AddN(2, "pending")
	sl := newFakeSlack(t)
	env := baseEnv(apiURL, token, t.TempDir())
	env["EXPORTBRIDGE_SLACK_WEBHOOK_URL"] = sl.URL
	env["EXPORTBRIDGE_LOG_LEVEL"] = "debug"
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)

	const evil = "<!channel> <!here> <@U0ADMIN> <https://evil.example|click> & co"
	now := time.Now().UTC()
	ts := func(d time.Duration) *string { return ptr(now.Add(d).Format(time.RFC3339)) }
	exports := []plugchoice.Export{
		{Type: evil, Status: "ready", RequestedAt: now.Add(-time.Minute).Format(time.RFC3339), Filename: ptr(evil + ".csv"),
			FileSize: ptr(int64(1234)), RowCount: ptr(int64(5)), CompletedAt: ts(0),
			Subject: &plugchoice.Subject{Type: "site", ID: 1, Label: evil}},
		{Type: "sessions", Status: "failed", RequestedAt: now.Add(-2 * time.Minute).Format(time.RFC3339), ErrorMessage: ptr(evil),
			FailedAt: ts(0), Subject: &plugchoice.Subject{Type: evil, ID: 2, Label: "Depot " + evil}},
	}
	for _, e := range exports {
		sim.Add(e)
	}
	bridgetest.WaitFor(t, 60*time.Second, "2 Slack messages", func() bool { return len(sl.messages()) >= 2 })
	checked := 0
	for _, m := range sl.messages() {
		for _, s := range m.all {
			checked++
			for _, bad := range []string{"<!channel>", "<!here>", "<@U0ADMIN>", "<https://evil.example"} {
				if strings.Contains(s, bad) {
					t.Errorf("Slack received %q unescaped in %q", bad, s)
				}
			}
		}
		if !strings.Contains(string(m.raw), "&lt;!channel&gt;") && !strings.Contains(string(m.raw), `\u0026lt;!channel\u0026gt;`) {
			t.Errorf("Slack message lacks the escaped &lt;!channel&gt;: %s", m.raw)
		}
	}
	report(t, "%d Slack messages, %d strings checked: no unescaped control sequence", len(sl.messages()), checked)
}

// TestForeignNextLink (scenario 7): the API's links.next points at another host; the
// bridge never follows it (a second server counts requests and tokens) and still lists
// every page.
func TestForeignNextLink(t *testing.T) {
	needChaos(t)
	var mu sync.Mutex
	foreign, tokens := 0, 0
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		foreign++
		if r.Header.Get("Authorization") != "" {
			tokens++
		}
		mu.Unlock()
		http.Error(w, "not here", http.StatusTeapot)
	}))
	t.Cleanup(other.Close)
	rewritten := 0
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.String()
			nb := strings.ReplaceAll(body, `"next":"http://`+r.Host, `"next":"`+other.URL)
			if nb != body {
				mu.Lock()
				rewritten++
				mu.Unlock()
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(nb)))
			w.WriteHeader(rec.Code)
			_, _ = w.Write([]byte(nb))
		})
	}
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, wrap)
	live := sim.AddN(23, "pending")
	h := newHook(t)
	env := baseEnv(apiURL, token, t.TempDir())
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
	env["EXPORTBRIDGE_PER_PAGE"] = "5"
	env["EXPORTBRIDGE_FULL_SYNC_INTERVAL"] = "2s"
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())
	d := newDriver(sim, live, 1)
	for range 3 {
		d.step(0.5)
		p.WaitPolls(p.Polls()+3, 60*time.Second)
	}
	want := expectedSince(sim, baseline, nil)
	bridgetest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d events", len(want)), func() bool { return hasAll(h.Deliveries(), want) })
	r := checkInvariant(t, "webhook", h.Deliveries(), want)
	noSecretInRequests(t, h)
	mu.Lock()
	defer mu.Unlock()
	if foreign != 0 || tokens != 0 {
		t.Errorf("the foreign host got %d requests, %d with a token; want none", foreign, tokens)
	}
	if rewritten == 0 {
		t.Errorf("no page had a links.next to rewrite: the test did not test")
	}
	report(t, "%d pages pointed links.next at another host: it got %d requests (%d with the token); %s", rewritten, foreign, tokens, r)
}

// TestContainerNonRoot (scenario 7): the image's final stage runs as a non-root user.
func TestContainerNonRoot(t *testing.T) {
	needChaos(t)
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var user string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "FROM ") {
			user = "" // each stage starts as root again
		}
		if rest, ok := strings.CutPrefix(l, "USER "); ok {
			user = strings.TrimSpace(rest)
		}
	}
	name := strings.SplitN(user, ":", 2)[0]
	if name == "" || name == "root" || name == "0" {
		t.Errorf("the final stage runs as %q, want a non-root USER", user)
	}
	report(t, "Dockerfile final stage: USER %s", user)
}
