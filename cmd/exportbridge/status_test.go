package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

var updateDocs = flag.Bool("update-docs", false, "write the status page screenshot of TestStatusPageInBrowser to docs/status-page.png")

const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium for the test (the flags of the machine notes: no
// sandbox as root, no background networking on a closed network, an empty profile).
// Without the browser the test skips with how to install it, or fails when CI=true.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := fmt.Sprintf("no browser at %s (%v): install it with `apt-get update && apt-get install -y chromium`", chromiumPath, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser now, on the context without a timeout (it lives as long as it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// watch records the dialogs the page opens and the errors, warnings and exceptions of
// its console; check fails the test on any, but for console lines containing one of
// allowed (a refusal the test caused on purpose).
func watch(t *testing.T, ctx context.Context) (check func(allowed ...string)) {
	t.Helper()
	var mu sync.Mutex
	var dialogs, problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			mu.Lock()
			dialogs = append(dialogs, d.Message)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.Type == "assert" {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
				mu.Unlock()
			}
		}
	}()
	return func(allowed ...string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(dialogs) > 0 {
			t.Errorf("the page opened %d dialogs (%q): a hostile value ran as script", len(dialogs), dialogs)
		}
		var bad []string
	next:
		for _, p := range problems {
			for _, a := range allowed {
				if strings.Contains(p, a) {
					continue next
				}
			}
			bad = append(bad, p)
		}
		if len(bad) > 0 {
			t.Errorf("the browser console shows %d problems:\n%s", len(bad), strings.Join(bad, "\n"))
		}
	}
}

// step runs one browser step with a bound, failing the test on error.
func step[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// shot writes a full-page screenshot to the test's output dir (go test -artifacts). The
// page refreshes itself: a screenshot caught by a reload is taken again.
func shot(t *testing.T, ctx context.Context, name string) []byte {
	t.Helper()
	var png []byte
	for try := 0; ; try++ {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var err error
		png, err = chromedp.Run(sctx, chromedp.FullScreenshot(100))
		cancel()
		if err == nil {
			break
		}
		if try == 2 {
			t.Fatalf("browser: screenshot %s: %v", name, err)
		}
		time.Sleep(time.Second)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d KB)", path, len(png)/1024)
	return png
}

// waitPage waits until the browser shows the page loaded whose URL query holds query.
func waitPage(t *testing.T, ctx context.Context, what, query string) {
	t.Helper()
	js := fmt.Sprintf("location.search.includes(%q) && document.readyState === 'complete'", query)
	bridgetest.WaitFor(t, 30*time.Second, what, func() bool {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(sctx, chromedp.Evaluate[bool](js))
		return err == nil && ok
	})
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func deadLetters(t *testing.T, adminURL string) []server.DeadLetter {
	t.Helper()
	code, body := get(t, adminURL+"/v1/dlq")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/dlq: %d %s", code, body)
	}
	var r server.DeadLettersResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	return r.DeadLetters
}

// TestStatusPageInBrowser: a bridge against the simulated API with one healthy webhook
// and one answering 410, looked at in headless Chromium: every section shows the
// bridge's state, a hostile filename is text, a POST without the CSRF token changes
// nothing, Replay delivers the dead letter once, and the page fits a 390 px phone.
func TestStatusPageInBrowser(t *testing.T) {
	ctx := browser(t)
	checkBrowser := watch(t, ctx)

	sim, apiURL := newSim(t, simToken)
	sim.AddN(3, "ready")
	pending := sim.AddN(2, "pending")
	key := make([]byte, 32)
	rand.Read(key)
	good, gone := newHookKey(t, key), newHookKey(t, key)
	gone.setStatus(func(*http.Request) int { return http.StatusGone })
	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = good.URL + "?tenant=acme-secret-query," + gone.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = good.Secret
	env["EXPORTBRIDGE_ADMIN_ADDR"] = bridgetest.FreeAddr(t)
	env["EXPORTBRIDGE_LISTEN_ADDR"] = bridgetest.FreeAddr(t)
	p := start(t, env, "run")
	adminURL := "http://" + env["EXPORTBRIDGE_ADMIN_ADDR"]
	p.WaitPolls(1, 60*time.Second)

	// After the baseline: an export with a hostile filename and label becomes ready,
	// one in flight moves on, one new is requested.
	evil := "<script>alert('xss')</script>.csv"
	evilLabel := `Depot <img src=x onerror=alert(1)>`
	now := time.Now().UTC()
	completed := now.Format(time.RFC3339)
	dl := "https://downloads.example/exports/evil.csv"
	sim.Add(plugchoice.Export{UUID: "0badc0de-0000-4000-8000-000000000001", Type: "sessions", Status: "ready",
		Filename: &evil, RequestedAt: now.Add(-time.Minute).Format(time.RFC3339), CompletedAt: &completed,
		DownloadURL: &dl, Subject: &plugchoice.Subject{Type: "site", ID: 9, Label: evilLabel}})
	sim.SetStatus(pending[0], "processing")
	sim.AddN(1, "pending")

	var dead server.DeadLetter
	bridgetest.WaitFor(t, 60*time.Second, "the hostile export dead-lettered at webhook-2", func() bool {
		for _, d := range deadLetters(t, adminURL) {
			if d.Subject == "0badc0de-0000-4000-8000-000000000001" && d.Sink == "webhook-2" {
				dead = d
				return true
			}
		}
		return false
	})
	bridgetest.WaitFor(t, 30*time.Second, "webhook-1 to get the hostile export", func() bool {
		for _, d := range good.deliveries() {
			if d.ID == dead.EventID {
				return true
			}
		}
		return false
	})
	bridgetest.WaitFor(t, 30*time.Second, "both outboxes drained", func() bool {
		code, body := get(t, adminURL+"/v1/state")
		var st server.State
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("GET /v1/state: %d %s", code, body)
		}
		return st.Outbox["webhook-1"] == 0 && st.Outbox["webhook-2"] == 0
	})
	p.WaitPolls(p.Polls()+2, 60*time.Second)

	// The page, as a browser gets it.
	step(t, ctx, "open the status page", chromedp.Navigate(adminURL+"/"))
	text := func(sel string) string {
		t.Helper()
		return step(t, ctx, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
	}
	checks := []struct {
		section string
		wants   []string
	}{
		{"#bridge", []string{version, "bbolt", "default", "Uptime"}},
		{"#polling", []string{"full", "cheap", "ok", "Budget used"}},
		{"#in-flight", []string{"processing", "pending"}},
		{"#sinks", []string{"webhook-1", "webhook-2", "up", "down", "410", "Dead letters"}},
		{"#dead-letters", []string{"webhook-2", "export.ready", evil, "Replay", "Purge", "Replay all", "Purge all"}},
		{"#events", []string{"export.ready", "delivered", "dead", evil, "webhook-1", "webhook-2"}},
	}
	for _, c := range checks {
		got := text(c.section)
		for _, w := range c.wants {
			// innerText follows the CSS: headings are upper-cased.
			if !strings.Contains(strings.ToLower(got), strings.ToLower(w)) {
				t.Errorf("section %s lacks %q; it reads:\n%s", c.section, w, got)
			}
		}
	}
	if got := text("#sink-webhook-1 .badge"); got != "up" {
		t.Errorf("webhook-1 card says %q, want up", got)
	}
	if got := text("#sink-webhook-2 .badge"); got != "down" {
		t.Errorf("webhook-2 card says %q, want down", got)
	}
	scripts := step(t, ctx, "count script and img elements", chromedp.Evaluate[int]("document.querySelectorAll('script, img').length"))
	if scripts != 0 {
		t.Errorf("the page holds %d script or img elements: a hostile value became markup", scripts)
	}
	html := step(t, ctx, "page HTML", chromedp.OuterHTML(chromedp.CSS("html")))
	for _, secret := range []string{simToken, good.Secret, "acme-secret-query", "signature=", "expires="} {
		if strings.Contains(html, secret) {
			t.Errorf("the page HTML holds %q (a secret or a signed URL query)", secret)
		}
	}
	desktop := shot(t, ctx, "status.png")

	// 390 px: nothing wider than the screen but the tables' own scroll boxes.
	step(t, ctx, "390 px viewport", chromedp.EmulateViewport(390, 844))
	step(t, ctx, "reload", chromedp.Navigate(adminURL+"/"))
	overflow := step(t, ctx, "page width at 390 px", chromedp.Evaluate[int]("document.documentElement.scrollWidth"))
	if overflow > 392 {
		t.Errorf("at a 390 px viewport the page is %d px wide: it scrolls sideways", overflow)
	}
	if vis := step(t, ctx, "Replay button on a phone", chromedp.Evaluate[bool](
		`(() => { const b = document.querySelector('#dead-letters button.replay'); const r = b.getBoundingClientRect(); return r.width > 20 && r.height > 20; })()`)); !vis {
		t.Errorf("the Replay button has no usable size at 390 px")
	}
	shot(t, ctx, "status-390.png")
	step(t, ctx, "desktop viewport", chromedp.EmulateViewport(1280, 900))

	// A POST without the CSRF token is refused and delivers nothing.
	deadN := len(deadLetters(t, adminURL))
	before, _ := gone.counts()
	resp, err := http.PostForm(adminURL+"/status/replay", url.Values{"sink": {"webhook-2"}, "id": {dead.EventID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("replay without CSRF token: status %d, want 403", resp.StatusCode)
	}
	gone.setStatus(nil) // the endpoint is fixed: only a real replay may now deliver
	row := "#dl-webhook-2-" + dead.EventID
	step(t, ctx, "reload", chromedp.Navigate(adminURL+"/"))
	step(t, ctx, "forge the CSRF token of the Replay form", chromedp.SetAttributeValue(chromedp.CSS(row+` form[action="/status/replay"] input[name=csrf]`), "value", "forged"))
	step(t, ctx, "click Replay with a forged token", chromedp.Click(chromedp.CSS(row+" button.replay")))
	step(t, ctx, "refusal page", chromedp.WaitVisible(chromedp.CSS("#error")))
	if got := text("#error"); !strings.Contains(got, "403") || !strings.Contains(got, "CSRF") {
		t.Errorf("Replay with a forged CSRF token shows %q, want a 403 naming the CSRF token", got)
	}
	shot(t, ctx, "status-csrf-refused.png")
	time.Sleep(2 * time.Second)
	if after, _ := gone.counts(); after != before {
		t.Errorf("webhook-2 got %d requests after a replay without CSRF token, want none", after-before)
	}
	if n := len(deadLetters(t, adminURL)); n != deadN {
		t.Errorf("%d dead letters after a refused replay, want %d", n, deadN)
	}

	// The page and its forms are not on LISTEN_ADDR.
	listenURL := "http://" + env["EXPORTBRIDGE_LISTEN_ADDR"]
	if code, body := get(t, listenURL+"/"); code != http.StatusNotFound || strings.Contains(body, "<html") {
		t.Errorf("GET / on LISTEN_ADDR: %d %.80q, want a 404 without the page", code, body)
	}
	for _, path := range []string{"/status/replay", "/status/purge", "/login"} {
		resp, err := http.PostForm(listenURL+path, url.Values{"all": {"1"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s on LISTEN_ADDR: %d, want 404", path, resp.StatusCode)
		}
	}

	// Replay by clicking the button: delivered once.
	step(t, ctx, "back to the page", chromedp.Navigate(adminURL+"/"))
	step(t, ctx, "click Replay", chromedp.Click(chromedp.CSS(row+" button.replay")))
	waitPage(t, ctx, "the replay notice", "done=replay")
	if got := text("#done"); !strings.Contains(got, "Replayed 1 dead letter") {
		t.Errorf("after Replay the page says %q", got)
	}
	bridgetest.WaitFor(t, 30*time.Second, "the replayed event delivered to webhook-2", func() bool {
		for _, d := range gone.deliveries() {
			if d.ID == dead.EventID {
				return true
			}
		}
		return false
	})
	p.WaitPolls(p.Polls()+2, 60*time.Second)
	n := 0
	for _, d := range gone.deliveries() {
		if d.ID == dead.EventID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the replayed event reached webhook-2 %d times, want once", n)
	}
	step(t, ctx, "reload after replay", chromedp.Navigate(adminURL+"/"))
	if gone := step(t, ctx, "replayed row", chromedp.Evaluate[bool](fmt.Sprintf("document.querySelector(%q) === null", row))); !gone {
		t.Errorf("the replayed dead letter is still listed:\n%s", text("#dead-letters"))
	}
	if n := len(deadLetters(t, adminURL)); n != deadN-1 {
		t.Errorf("%d dead letters after replaying one of %d", n, deadN)
	}
	if got := text("#sink-webhook-2 .badge"); got != "up" {
		t.Errorf("webhook-2 card after the replay says %q, want up", got)
	}
	shot(t, ctx, "status-after-replay.png")

	// The forged Replay's 403 is the one console error the test caused.
	checkBrowser("status of 403 (Forbidden) (" + adminURL + "/status/replay:")

	if *updateDocs {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "status-page.png"), desktop, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if p.Exited() {
		t.Fatalf("the bridge exited (code %d)", p.Code())
	}
}

// TestStatusPageSignInInBrowser: with the admin endpoint beyond loopback, the page offers
// no Replay until the admin token is given once on its form; a POST without it changes
// nothing; after sign-in the session cookie (invisible to scripts) makes Replay all work.
func TestStatusPageSignInInBrowser(t *testing.T) {
	ctx := browser(t)
	checkBrowser := watch(t, ctx)
	sim, apiURL := newSim(t, simToken)
	pending := sim.AddN(1, "pending")
	h := newHook(t)
	h.setStatus(func(*http.Request) int { return http.StatusGone })
	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	_, port, _ := strings.Cut(bridgetest.FreeAddr(t), ":")
	const adminToken = "status-page-admin-token-1"
	env["EXPORTBRIDGE_ADMIN_ADDR"] = "0.0.0.0:" + port
	env["EXPORTBRIDGE_ADMIN_TOKEN"] = adminToken
	p := start(t, env, "run")
	adminURL := "http://127.0.0.1:" + port
	p.WaitPolls(1, 60*time.Second)
	sim.SetStatus(pending[0], "ready")
	bridgetest.WaitFor(t, 60*time.Second, "a dead letter", func() bool { return len(deadLetters(t, adminURL)) == 1 })
	eventID := deadLetters(t, adminURL)[0].EventID

	step(t, ctx, "open the status page", chromedp.Navigate(adminURL+"/"))
	if n := step(t, ctx, "count Replay buttons", chromedp.Evaluate[int]("document.querySelectorAll('#dead-letters button').length")); n != 0 {
		t.Errorf("signed out, the page offers %d Replay/Purge buttons, want none", n)
	}
	if got := step(t, ctx, "dead letters notice", chromedp.Text(chromedp.CSS("#dead-letters .notice"))); !strings.Contains(got, "admin token required") {
		t.Errorf("signed out, the dead letters say %q, want that the admin token is required", got)
	}

	// Without the token, a POST with a valid CSRF token (from the sign-in form) changes nothing.
	code, body := get(t, adminURL+"/login")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("GET /login: %d, no CSRF token", code)
	}
	h.setStatus(nil)
	before, _ := h.counts()
	for _, op := range []string{"replay", "purge"} {
		resp, err := http.PostForm(adminURL+"/status/"+op, url.Values{"csrf": {m[1]}, "all": {"1"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without the admin token: %d, want 401", op, resp.StatusCode)
		}
	}
	time.Sleep(2 * time.Second)
	if after, _ := h.counts(); after != before || len(deadLetters(t, adminURL)) != 1 {
		t.Fatalf("without the admin token: %d deliveries, %d dead letters; want none and 1", after-before, len(deadLetters(t, adminURL)))
	}

	step(t, ctx, "follow Sign in", chromedp.Click(chromedp.CSS("#sign-in")))
	step(t, ctx, "token field", chromedp.WaitVisible(chromedp.CSS("#token")))
	shot(t, ctx, "status-sign-in.png")
	step(t, ctx, "type the token", chromedp.SendKeys(chromedp.CSS("#token"), adminToken))
	step(t, ctx, "submit", chromedp.Click(chromedp.CSS("#login button[type=submit]")))
	waitPage(t, ctx, "the signed-in notice", "done=signed-in")
	if got := step(t, ctx, "document.cookie", chromedp.Evaluate[string]("document.cookie")); got != "" {
		t.Errorf("document.cookie = %q: the session cookie is readable by scripts", got)
	}
	step(t, ctx, "click Replay all", chromedp.Click(chromedp.CSS("#replay-all")))
	waitPage(t, ctx, "the replay notice", "done=replay")
	bridgetest.WaitFor(t, 30*time.Second, "the replayed event delivered", func() bool {
		for _, d := range h.deliveries() {
			if d.ID == eventID {
				return true
			}
		}
		return false
	})
	shot(t, ctx, "status-signed-in.png")
	checkBrowser()
}

// TestDemoPrintsStatusPage: `demo` tells where its status page is, and the page is there.
func TestDemoPrintsStatusPage(t *testing.T) {
	p := start(t, map[string]string{}, "demo", "--duration", "60s", "--poll", "1s")
	re := regexp.MustCompile(`status page at (http://127\.0\.0\.1:\d+/)`)
	var pageURL string
	bridgetest.WaitFor(t, 30*time.Second, "demo to print the status page URL", func() bool {
		if m := re.FindStringSubmatch(p.Stderr.String()); m != nil {
			pageURL = m[1]
			return true
		}
		return false
	})
	bridgetest.WaitFor(t, 30*time.Second, "the demo's status page with a poll", func() bool {
		resp, err := http.Get(pageURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(b), `id="polls"`)
	})
}
