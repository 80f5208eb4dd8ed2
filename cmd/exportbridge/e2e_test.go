package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestBaselineAndTransitions: the first start takes the baseline silently (unless
// EMIT_EXISTING), later transitions arrive exactly once each with the right type on both
// stdout and the webhook, a new export already ready yields export.ready, and the
// download_url the API re-signs on every request yields nothing.
func TestBaselineAndTransitions(t *testing.T) {
	for _, emitExisting := range []bool{false, true} {
		t.Run(fmt.Sprintf("emit_existing=%v", emitExisting), func(t *testing.T) {
			sim, apiURL := newSim(t, simToken)
			sim.AddN(4, "ready")
			sim.AddN(2, "failed")
			pending := sim.AddN(3, "pending")
			baseline := len(sim.Transitions())
			h := newHook(t)
			env := withHook(baseEnv(apiURL, t.TempDir()), h)
			env["EXPORTBRIDGE_STDOUT"] = "true"
			env["EXPORTBRIDGE_EMIT_EXISTING"] = fmt.Sprint(emitExisting)
			p := start(t, env, "run")

			// Several polls with nothing changed but the re-signed download_urls.
			p.WaitPolls(4, 60*time.Second)
			var wants []want
			if emitExisting {
				wants = expectedSince(sim, 0)
				bridgetest.WaitFor(t, 30*time.Second, "existing exports delivered", func() bool {
					return distinctIDs(h.deliveries()) >= len(wants)
				})
			} else {
				time.Sleep(500 * time.Millisecond) // let any (wrong) delivery land
				if got := h.deliveries(); len(got) != 0 {
					t.Fatalf("baseline emitted %d webhook events, want none: first %s %s", len(got), got[0].Type, got[0].Subject)
				}
				if got := stdoutEvents(t, p); len(got) != 0 {
					t.Fatalf("baseline printed %d events on stdout, want none", len(got))
				}
			}

			// Transitions, each held for several polls.
			sim.SetStatus(pending[0], "processing")
			sim.SetStatus(pending[1], "cancelled")
			p.WaitPolls(p.Polls()+3, 60*time.Second)
			sim.SetStatus(pending[0], "ready")
			sim.SetStatus(pending[2], "failed")
			newReady := sim.AddN(1, "ready")[0]
			p.WaitPolls(p.Polls()+3, 60*time.Second)
			wants = append(wants, expectedSince(sim, baseline)...)

			bridgetest.WaitFor(t, 30*time.Second, fmt.Sprintf("%d events delivered", len(wants)), func() bool {
				return distinctIDs(h.deliveries()) >= len(wants) && len(stdoutEvents(t, p)) >= len(wants)
			})
			p.WaitPolls(p.Polls()+3, 60*time.Second) // more polls, more re-signed URLs: still nothing new
			got := h.deliveries()
			distinct, dups := checkDelivered(t, got, wants)
			if distinct != len(wants) || dups != 0 {
				t.Errorf("webhook: %d distinct events, %d duplicates; want %d and 0", distinct, dups, len(wants))
			}
			var stdoutGot []received
			for _, ce := range stdoutEvents(t, p) {
				stdoutGot = append(stdoutGot, received{ID: ce.ID, Type: ce.Type, Subject: ce.Subject})
			}
			if distinct, dups := checkDelivered(t, stdoutGot, wants); distinct != len(wants) || dups != 0 {
				t.Errorf("stdout: %d distinct events, %d duplicates; want %d and 0", distinct, dups, len(wants))
			}
			foundNew := false
			for _, d := range got {
				if d.Subject == newReady {
					foundNew = d.Type == "com.plugchoice.export.ready"
				}
			}
			if !foundNew {
				t.Errorf("a new export first seen ready did not yield export.ready")
			}
			p.Signal(syscall.SIGTERM)
			if code := p.Wait(60 * time.Second); code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}
		})
	}
}

// killer SIGKILLs the running bridge at random instants (every 1.5-4 s) and restarts it on
// the same STATE_DIR until stop is closed; it returns the number of kills.
func killer(t *testing.T, env map[string]string, cur *atomic.Pointer[proc], stop <-chan struct{}) <-chan int {
	done := make(chan int, 1)
	go func() {
		kills := 0
		defer func() { done <- kills }()
		for {
			d := 1500*time.Millisecond + rand.N(2500*time.Millisecond)
			select {
			case <-stop:
				return
			case <-time.After(d):
			}
			cur.Load().Kill()
			kills++
			cur.Store(startNoFatal(t, env))
		}
	}()
	return done
}

// startNoFatal is start for use off the test goroutine (start's Fatal is only the
// failure to exec the binary, which never happens once TestMain built it).
func startNoFatal(t *testing.T, env map[string]string) *proc {
	return start(t, env, "run")
}

// TestKillAndRestartLosesNothing moves 40+ exports through their statuses in phases while
// the bridge is SIGKILLed at random instants and restarted; the slow webhook receiver
// makes kills land mid-delivery. Every transition must arrive at least once, in per-export
// order, and duplicates must be byte-identical.
func TestKillAndRestartLosesNothing(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	uuids := sim.AddN(44, "pending")
	h := newHook(t)
	h.SetDelay(func() time.Duration { return 50*time.Millisecond + rand.N(150*time.Millisecond) })
	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	var cur atomic.Pointer[proc]
	cur.Store(start(t, env, "run"))
	cur.Load().WaitPolls(1, 60*time.Second) // the baseline is taken
	baseline := len(sim.Transitions())

	stop := make(chan struct{})
	kills := killer(t, env, &cur, stop)
	hold := func() { time.Sleep(5 * time.Second) } // at least 3 poll intervals
	first, second := uuids[:22], uuids[22:]
	final := func(i int) string {
		if i%4 == 3 {
			return "failed"
		}
		return "ready"
	}
	for _, u := range first {
		sim.SetStatus(u, "processing")
	}
	hold()
	for i, u := range first {
		sim.SetStatus(u, final(i))
	}
	for _, u := range second {
		sim.SetStatus(u, "processing")
	}
	sim.AddN(2, "pending")
	hold()
	for i, u := range second {
		sim.SetStatus(u, final(i))
	}
	sim.AddN(2, "ready")
	hold()
	close(stop)
	nKills := <-kills

	wants := expectedSince(sim, baseline)
	bridgetest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d events delivered", len(wants)), func() bool {
		return distinctIDs(h.deliveries()) >= len(wants)
	})
	time.Sleep(time.Second) // anything extra (wrong) would show now
	distinct, dups := checkDelivered(t, h.deliveries(), wants)
	t.Logf("kills %d: delivered %d distinct / expected %d, duplicates %d", nKills, distinct, len(wants), dups)
	if nKills < 3 {
		t.Errorf("only %d kills happened; the test did not test much", nKills)
	}
}

// TestKillDuringRetryLosesNothing: the receiver answers 503 for a while, the bridge is
// killed mid-retry (its breaker open: probing) and restarted, the receiver recovers:
// every event arrives.
func TestKillDuringRetryLosesNothing(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	uuids := sim.AddN(10, "processing")
	h := newHook(t)
	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())

	h.setStatus(func(*http.Request) int { return http.StatusServiceUnavailable })
	for i, u := range uuids {
		if i%3 == 0 {
			sim.SetStatus(u, "failed")
		} else {
			sim.SetStatus(u, "ready")
		}
	}
	// 5 failed attempts open the breaker, then probes from 1s doubling.
	bridgetest.WaitFor(t, 30*time.Second, "the bridge probing against 503", func() bool {
		_, rejected := h.counts()
		return rejected >= 7
	})
	p.Kill()
	_, before := h.counts()
	p = start(t, env, "run")
	bridgetest.WaitFor(t, 30*time.Second, "the restarted bridge probing against 503", func() bool {
		_, rejected := h.counts()
		return rejected >= before+2
	})
	if n := len(h.deliveries()); n != 0 {
		t.Fatalf("%d deliveries accepted while the receiver answered 503", n)
	}
	h.setStatus(nil)
	wants := expectedSince(sim, baseline)
	bridgetest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d events delivered", len(wants)), func() bool {
		return distinctIDs(h.deliveries()) >= len(wants)
	})
	distinct, dups := checkDelivered(t, h.deliveries(), wants)
	_, rejected := h.counts()
	t.Logf("503s %d: delivered %d distinct / expected %d, duplicates %d", rejected, distinct, len(wants), dups)
}

// TestOnceAndDeadLetters: once exits 0 when all is delivered and 1 when a webhook answers
// 410; dlq list shows the dead letter; dlq replay then once delivers it with the same id.
func TestOnceAndDeadLetters(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	sim.AddN(2, "ready")
	pending := sim.AddN(2, "pending")
	h := newHook(t)
	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	env["EXPORTBRIDGE_EMIT_EXISTING"] = "true"

	_, errOut, code := run(t, env, 90*time.Second, "once")
	if code != 0 {
		t.Fatalf("once: exit code %d, want 0; stderr:\n%s", code, errOut)
	}
	if n := distinctIDs(h.deliveries()); n != 4 {
		t.Fatalf("once delivered %d events, want 4 (EMIT_EXISTING)", n)
	}

	h.setStatus(func(*http.Request) int { return http.StatusGone })
	sim.SetStatus(pending[0], "ready")
	_, errOut, code = run(t, env, 90*time.Second, "once")
	if code != 1 {
		t.Fatalf("once with a 410 receiver: exit code %d, want 1; stderr:\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "dead-lettered") {
		t.Errorf("once's message does not mention the dead letter:\n%s", errOut)
	}

	out, errOut, code := run(t, env, 30*time.Second, "dlq", "list")
	if code != 0 {
		t.Fatalf("dlq list: exit code %d; stderr:\n%s", code, errOut)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 2 {
		t.Fatalf("dlq list: want a header and one row, got:\n%s", out)
	}
	f := strings.Fields(rows[1])
	if len(f) < 6 || f[0] != "webhook" || f[2] != pending[0] || f[3] != "export.ready" && f[3] != "com.plugchoice.export.ready" || f[4] != "1" || f[5] != "410" {
		t.Errorf("dlq list row = %q, want sink webhook, export %s, type export.ready, 1 attempt, status 410", rows[1], pending[0])
	}
	deadID := f[1]

	out, errOut, code = run(t, env, 30*time.Second, "dlq", "replay", "--all")
	if code != 0 || !strings.Contains(out, "replayed 1") {
		t.Fatalf("dlq replay --all: exit code %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	h.setStatus(nil)
	_, errOut, code = run(t, env, 90*time.Second, "once")
	if code != 0 {
		t.Fatalf("once after replay: exit code %d, want 0; stderr:\n%s", code, errOut)
	}
	found := false
	for _, d := range h.deliveries() {
		if d.ID == deadID {
			found = d.Subject == pending[0] && d.Type == "com.plugchoice.export.ready"
		}
	}
	if !found {
		t.Errorf("the replayed event %s was not delivered with the same webhook-id", deadID)
	}
	out, _, _ = run(t, env, 30*time.Second, "dlq", "list")
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 1 {
		t.Errorf("dlq list after replay and delivery shows rows:\n%s", out)
	}
	out, errOut, code = run(t, env, 30*time.Second, "state")
	if code != 0 {
		t.Fatalf("state on a store no bridge holds: exit code %d; stderr:\n%s", code, errOut)
	}
	for _, s := range []string{"4 tracked", "baseline taken: true", "webhook"} {
		if !strings.Contains(out, s) {
			t.Errorf("state output lacks %q:\n%s", s, out)
		}
	}
}

// TestAdminAgainstRunningBridge: with a bridge holding the store, state and dlq go through
// its admin endpoint, and a replay is delivered by the running bridge.
func TestAdminAgainstRunningBridge(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	pending := sim.AddN(2, "pending")
	h := newHook(t)
	h.setStatus(func(*http.Request) int { return http.StatusGone })
	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	env["EXPORTBRIDGE_ADMIN_ADDR"] = bridgetest.FreeAddr(t)
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	sim.SetStatus(pending[0], "failed")

	var deadID string
	bridgetest.WaitFor(t, 30*time.Second, "a dead letter listed through the admin endpoint", func() bool {
		out, errOut, code := run(t, env, 30*time.Second, "dlq", "list", "--sink", "webhook")
		if code != 0 {
			t.Fatalf("dlq list against a running bridge: exit code %d; stderr:\n%s", code, errOut)
		}
		rows := strings.Split(strings.TrimSpace(out), "\n")
		if len(rows) < 2 {
			return false
		}
		f := strings.Fields(rows[1])
		if len(f) < 6 || f[0] != "webhook" || f[2] != pending[0] || f[5] != "410" {
			t.Fatalf("dlq list row = %q, want webhook, export %s, status 410", rows[1], pending[0])
		}
		deadID = f[1]
		return true
	})
	out, errOut, code := run(t, env, 30*time.Second, "state")
	if code != 0 {
		t.Fatalf("state against a running bridge: exit code %d; stderr:\n%s", code, errOut)
	}
	for _, s := range []string{"2 tracked", "webhook", "SINK"} {
		if !strings.Contains(out, s) {
			t.Errorf("state output lacks %q:\n%s", s, out)
		}
	}
	h.setStatus(nil)
	out, errOut, code = run(t, env, 30*time.Second, "dlq", "replay", "--all")
	if code != 0 || !strings.Contains(out, "replayed 1") {
		t.Fatalf("dlq replay --all: exit code %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	bridgetest.WaitFor(t, 30*time.Second, "the running bridge to deliver the replayed event", func() bool {
		for _, d := range h.deliveries() {
			if d.ID == deadID {
				return true
			}
		}
		return false
	})
	if p.Exited() {
		t.Fatalf("the bridge exited (code %d)", p.Code())
	}
}

// TestGracefulShutdownLosesNothing: SIGTERM while a slow receiver holds deliveries exits 0
// and a restart delivers everything left. The receiver holds every delivery after the
// first until SIGTERM is sent (then takes 700 ms each), so events are reliably queued
// at SIGTERM whatever the machine's speed.
func TestGracefulShutdownLosesNothing(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	uuids := sim.AddN(12, "processing")
	h := newHook(t)
	sigterm := make(chan struct{})
	var closeOnce sync.Once
	sent := func() { closeOnce.Do(func() { close(sigterm) }) }
	t.Cleanup(sent) // runs before the hook's server closes: no handler stays held
	var calls atomic.Int32
	h.SetDelay(func() time.Duration {
		if calls.Add(1) == 1 {
			return 0
		}
		<-sigterm
		return 700 * time.Millisecond
	})
	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	env["EXPORTBRIDGE_SHUTDOWN_TIMEOUT"] = "1s"
	env["EXPORTBRIDGE_WEBHOOK_CONCURRENCY"] = "2"
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())
	for _, u := range uuids {
		sim.SetStatus(u, "ready")
	}
	wants := expectedSince(sim, baseline)
	bridgetest.WaitFor(t, 30*time.Second, "a first delivery", func() bool { return len(h.deliveries()) >= 1 })
	p.Signal(syscall.SIGTERM)
	sent()
	if code := p.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	before := distinctIDs(h.deliveries())
	if before >= len(wants) {
		t.Fatalf("all %d events were delivered by the stopping bridge: nothing was left queued at SIGTERM, so the restart checks nothing (or the shutdown drained every queue)", before)
	}
	h.SetDelay(nil)
	start(t, env, "run")
	bridgetest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d events delivered", len(wants)), func() bool {
		return distinctIDs(h.deliveries()) >= len(wants)
	})
	distinct, dups := checkDelivered(t, h.deliveries(), wants)
	t.Logf("before SIGTERM %d delivered; after restart %d distinct / expected %d, duplicates %d", before, distinct, len(wants), dups)
}

// TestSecretsNeverPrinted runs the commands with a distinctive value for every secret,
// debug logging, an API answering 401 then 500, and sinks that fail; no output may
// contain a secret or a signed download_url's query.
func TestSecretsNeverPrinted(t *testing.T) {
	const (
		apiToken   = "apitok-S3CRET-1111"
		adminToken = "admintok-S3CRET-2222"
		natsToken  = "natstok-S3CRET-3333"
		slackPath  = "/services/T000S3CRET/B000S3CRET/XXXXS3CRET4444"
		slackToken = "xoxb-S3CRET-5555"
	)
	sim, apiURL := newSim(t, "another-token") // 401 first
	uuids := sim.AddN(3, "processing")
	h := newHook(t)
	h.setStatus(func(*http.Request) int { return http.StatusBadRequest }) // permanent failure
	dead := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(dead.Close)
	// The long run uses a NATS server that accepts the token (it must still never be
	// printed); the commands after it use one that refuses it.
	ns, err := natsembed.Start(natsembed.Options{Token: natsToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nsOther, err := natsembed.Start(natsembed.Options{Token: "the-other-nats-token"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsOther.Shutdown(); nsOther.WaitForShutdown() })

	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	env["EXPORTBRIDGE_API_TOKEN"] = apiToken
	env["EXPORTBRIDGE_ADMIN_TOKEN"] = adminToken
	env["EXPORTBRIDGE_ADMIN_ADDR"] = bridgetest.FreeAddr(t)
	env["EXPORTBRIDGE_NATS_URL"] = ns.ClientURL()
	env["EXPORTBRIDGE_NATS_TOKEN"] = natsToken
	env["EXPORTBRIDGE_SLACK_WEBHOOK_URL"] = dead.URL + slackPath
	env["EXPORTBRIDGE_WEBHOOK_HEADERS"] = "X-Api-Key:hdr-S3CRET-6666"
	env["EXPORTBRIDGE_LOG_LEVEL"] = "debug"
	env["EXPORTBRIDGE_POLL_FAILURE_THRESHOLD"] = "2"
	env["EXPORTBRIDGE_EMIT_EXISTING"] = "true"
	secrets := []string{apiToken, adminToken, natsToken, slackPath, "T000S3CRET", "hdr-S3CRET-6666",
		h.Secret, strings.TrimPrefix(h.Secret, "whsec_"), "signature=", "expires="}

	var outputs []string
	p := start(t, env, "run")
	bridgetest.WaitFor(t, 60*time.Second, "failing polls (401)", func() bool {
		return strings.Count(p.Stderr.String(), "401") >= 3 || p.Exited()
	})
	sim.SetToken(apiToken)
	sim.SetDownAll(http.StatusInternalServerError)
	bridgetest.WaitFor(t, 60*time.Second, "failing polls (500)", func() bool {
		return strings.Count(p.Stderr.String(), "500") >= 3 || p.Exited()
	})
	sim.SetDownAll(0)
	p.WaitPolls(2, 60*time.Second)
	for _, u := range uuids {
		sim.SetStatus(u, "ready")
	}
	p.WaitPolls(p.Polls()+3, 60*time.Second)
	bridgetest.WaitFor(t, 30*time.Second, "webhook deliveries refused", func() bool {
		_, rejected := h.counts()
		return rejected >= 6
	})
	for _, args := range [][]string{{"state"}, {"dlq", "list"}, {"dlq", "purge", "--all"}} {
		o, e, _ := run(t, env, 30*time.Second, args...)
		outputs = append(outputs, o+e)
	}
	p.Signal(syscall.SIGTERM)
	p.Wait(60 * time.Second)
	outputs = append(outputs, p.Stdout.String()+p.Stderr.String())
	for _, args := range [][]string{{"check"}, {"send-test"}, {"once", "--timeout", "5s"}} {
		o, e, _ := run(t, env, 60*time.Second, args...)
		outputs = append(outputs, o+e)
	}
	env["EXPORTBRIDGE_NATS_URL"] = nsOther.ClientURL() // refuses NATS_TOKEN
	for _, args := range [][]string{{"run"}, {"check"}, {"send-test"}} {
		o, e, code := run(t, env, 60*time.Second, args...)
		if code == 0 {
			t.Errorf("%v with a refused NATS token: exit code 0", args)
		}
		outputs = append(outputs, o+e)
	}
	all := strings.Join(outputs, "\n")
	if !strings.Contains(all, `"level":"DEBUG"`) {
		t.Errorf("no debug log line seen: LOG_LEVEL=debug not in effect?")
	}
	for _, s := range secrets {
		if i := strings.Index(all, s); i >= 0 {
			t.Errorf("output shows the secret %q: …%s…", s, all[max(0, i-200):min(len(all), i+100)])
		}
	}
	t.Logf("%d bytes of output checked", len(all))
}

// TestCheckAndSendTest: check exits 0 with a table when every sink is reachable and 1 when
// one is not; send-test exits 1 naming the status a receiver answered, 0 when accepted.
func TestCheckAndSendTest(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	sim.AddN(3, "ready")
	ns, err := natsembed.Start(natsembed.Options{Token: "nats-good-token"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	good := newHook(t)
	deadSrv := httptest.NewServer(http.NotFoundHandler())
	deadURL := deadSrv.URL + "/hook"
	deadSrv.Close()

	checks := []struct {
		name     string
		webhook  string
		token    string
		wantCode int
		want     []string
	}{
		{"healthy", good.URL, "nats-good-token", 0, []string{"COMPONENT", "plugchoice api", "ok", "nats", "webhook"}},
		{"dead webhook", deadURL, "nats-good-token", 1, []string{"webhook", "FAILED"}},
		{"bad nats token", good.URL, "nats-bad-token", 1, []string{"nats", "FAILED"}},
	}
	for _, tc := range checks {
		t.Run("check "+tc.name, func(t *testing.T) {
			env := baseEnv(apiURL, t.TempDir())
			env["EXPORTBRIDGE_WEBHOOK_URLS"] = tc.webhook
			env["EXPORTBRIDGE_NATS_URL"] = ns.ClientURL()
			env["EXPORTBRIDGE_NATS_TOKEN"] = tc.token
			out, errOut, code := run(t, env, 90*time.Second, "check", "--timeout", "5s")
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.wantCode, out, errOut)
			}
			for _, s := range tc.want {
				if !strings.Contains(out, s) {
					t.Errorf("table lacks %q:\n%s", s, out)
				}
			}
		})
	}

	notFound := newHook(t)
	notFound.setStatus(func(*http.Request) int { return http.StatusNotFound })
	sends := []struct {
		name     string
		h        *hook
		wantCode int
		want     string
	}{
		{"404 receiver", notFound, 1, "404"},
		{"good receiver", good, 0, "sent"},
	}
	for _, tc := range sends {
		t.Run("send-test "+tc.name, func(t *testing.T) {
			env := withHook(baseEnv(apiURL, t.TempDir()), tc.h)
			before := len(tc.h.deliveries())
			_, errOut, code := run(t, env, 60*time.Second, "send-test", "--sink", "webhook")
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errOut)
			}
			if got := len(tc.h.deliveries()) - before; tc.wantCode == 0 && got != 1 {
				t.Errorf("receiver verified %d deliveries, want 1", got)
			}
		})
	}
}

// TestOnceFailures: once exits 1 when the poll fails and when an event is still queued at
// the end of --timeout (a receiver that keeps answering 503).
func TestOnceFailures(t *testing.T) {
	tests := []struct {
		name      string
		simToken  string
		hookCode  int
		wantInErr string
	}{
		{"API refuses the token", "another-token", 0, "poll"},
		{"receiver keeps answering 503", simToken, http.StatusServiceUnavailable, "still queued"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, apiURL := newSim(t, tc.simToken)
			sim.AddN(2, "ready")
			h := newHook(t)
			if tc.hookCode != 0 {
				h.setStatus(func(*http.Request) int { return tc.hookCode })
			}
			env := withHook(baseEnv(apiURL, t.TempDir()), h)
			env["EXPORTBRIDGE_EMIT_EXISTING"] = "true"
			_, errOut, code := run(t, env, 90*time.Second, "once", "--timeout", "3s")
			if code != 1 {
				t.Errorf("exit code %d, want 1; stderr:\n%s", code, errOut)
			}
			if !strings.Contains(errOut, tc.wantInErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantInErr, errOut)
			}
			if strings.Contains(errOut, simToken) {
				t.Errorf("stderr shows the API token")
			}
		})
	}
}
