package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// binPath is the exportbridge binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	bin, cleanup, err := bridgetest.Build(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binPath = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// --- subprocess ---------------------------------------------------------------------

type proc = bridgetest.Proc

// start runs the binary with args in the background; it is killed at the end of the test.
func start(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	return bridgetest.Start(t, binPath, env, args...)
}

// stdoutEvents decodes the complete JSON lines the stdout sink of p printed.
func stdoutEvents(t *testing.T, p *proc) []*event.CloudEvent {
	t.Helper()
	var out []*event.CloudEvent
	sc := bufio.NewScanner(strings.NewReader(p.Stdout.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		ce, err := event.Decode(line)
		if err != nil {
			t.Fatalf("stdout line is not a CloudEvent: %v: %q", err, line)
		}
		out = append(out, ce)
	}
	return out
}

// run runs the binary to completion (bounded by timeout) and returns its output and exit code.
func run(t *testing.T, env map[string]string, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = bridgetest.EnvList(env)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("exportbridge %v did not finish within %s; stderr:\n%s", args, timeout, bridgetest.Tail(e.String(), 3000))
	}
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("exportbridge %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// --- simulated API and webhook receiver ---------------------------------------------

const simToken = "sim-token-e2e"

// newSim serves a simulated Plugchoice API; it returns the API and its base URL.
func newSim(t *testing.T, token string) (*simapi.API, string) {
	t.Helper()
	sim := simapi.New(simapi.Options{Token: token, Seed: time.Now().UnixNano()})
	srv := httptest.NewServer(http.StripPrefix("/api/v3", sim))
	t.Cleanup(srv.Close)
	return sim, srv.URL + "/api/v3"
}

// baseEnv is the environment of a bridge against apiURL with state in stateDir: 1s polls,
// no health or admin server.
func baseEnv(apiURL, stateDir string) map[string]string {
	return map[string]string{
		"EXPORTBRIDGE_API_URL":       apiURL,
		"EXPORTBRIDGE_API_TOKEN":     simToken,
		"EXPORTBRIDGE_STATE_DIR":     stateDir,
		"EXPORTBRIDGE_POLL_INTERVAL": "1s",
		"EXPORTBRIDGE_LISTEN_ADDR":   "",
		"EXPORTBRIDGE_ADMIN_ADDR":    "",
		"EXPORTBRIDGE_LOG_LEVEL":     "info",
	}
}

// received is one request the receiver accepted (signature verified).
type received = bridgetest.Delivery

// hook is the shared webhook receiver (test/bridgetest) with the answer rule the cmd
// tests write: a function of the request returning a status, 503 with Retry-After: 1.
type hook struct{ *bridgetest.Hook }

func newHook(t *testing.T) *hook { return &hook{bridgetest.NewHook(t)} }

// newHookKey is newHook verifying with key: endpoints that share one secret.
func newHookKey(t *testing.T, key []byte) *hook { return &hook{bridgetest.NewHookWithKey(t, key)} }

// setStatus makes the receiver answer fn(r) instead of accepting when it is non-zero.
func (h *hook) setStatus(fn func(r *http.Request) int) {
	if fn == nil {
		h.SetStatusFunc(nil)
		return
	}
	h.SetStatusFunc(func(r *http.Request) (int, string) {
		if code := fn(r); code == http.StatusServiceUnavailable {
			return code, "1"
		} else {
			return code, ""
		}
	})
}

func (h *hook) deliveries() []received { return h.Deliveries() }

func (h *hook) counts() (requests, rejected int) {
	requests, rejected, _ = h.Counts()
	return requests, rejected
}

// withHook adds h as the single webhook sink to env.
func withHook(env map[string]string, h *hook) map[string]string {
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
	return env
}

// want is an expected event: export uuid and short type.
type want struct{ uuid, typ string }

// expectedSince lists the events the transitions after index from should yield, in order.
func expectedSince(sim *simapi.API, from int) []want {
	var out []want
	for _, tr := range sim.Transitions()[from:] {
		if tr.To == "" {
			continue
		}
		out = append(out, want{tr.UUID, "com.plugchoice.export." + tr.To})
	}
	return out
}

// checkDelivered checks that the deliveries hold every wanted event at least once, in
// per-export order (by first arrival of each id), nothing else, and that duplicates of an id
// carry identical bodies. It returns the number of distinct events and of duplicates.
func checkDelivered(t *testing.T, got []received, wants []want) (distinct, dups int) {
	t.Helper()
	first := map[string]received{}
	var order []received
	for _, d := range got {
		if prev, ok := first[d.ID]; ok {
			dups++
			if !bytes.Equal(prev.Body, d.Body) {
				t.Errorf("event %s delivered twice with different bodies:\n%s\n%s", d.ID, prev.Body, d.Body)
			}
			continue
		}
		first[d.ID] = d
		order = append(order, d)
	}
	perGot := map[string][]string{}
	for _, d := range order {
		perGot[d.Subject] = append(perGot[d.Subject], d.Type)
	}
	perWant := map[string][]string{}
	for _, w := range wants {
		perWant[w.uuid] = append(perWant[w.uuid], w.typ)
	}
	for uuid, ws := range perWant {
		if g := perGot[uuid]; strings.Join(g, " ") != strings.Join(ws, " ") {
			t.Errorf("export %s: got events %v, want %v (in this order)", uuid, g, ws)
		}
	}
	for uuid, g := range perGot {
		if _, ok := perWant[uuid]; !ok {
			t.Errorf("export %s: unexpected events %v", uuid, g)
		}
	}
	return len(order), dups
}

// distinctIDs counts the distinct event ids delivered.
func distinctIDs(ds []received) int {
	m := map[string]bool{}
	for _, d := range ds {
		m[d.ID] = true
	}
	return len(m)
}

// --- simple commands ----------------------------------------------------------------

func TestCommands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{"version", []string{"version"}, 0, []string{"exportbridge ", "commit ", "go1."}, nil},
		{"unknown command", []string{"frobnicate"}, 2, nil, []string{`unknown command "frobnicate"`}},
		{"help flag", []string{"--help"}, 0, []string{"Usage: exportbridge", "dlq replay"}, nil},
		{"-h flag", []string{"-h"}, 0, []string{"Usage: exportbridge", "healthcheck"}, nil},
		{"help command", []string{"help"}, 0, []string{"Usage: exportbridge"}, nil},
		{"run --help", []string{"run", "--help"}, 0, nil, []string{"EXPORTBRIDGE_POLL_INTERVAL"}},
		{"once bad flag", []string{"once", "--bogus"}, 2, nil, []string{"bogus"}},
		{"dlq without subcommand", []string{"dlq"}, 2, nil, []string{"list, replay or purge"}},
		{"dlq unknown subcommand", []string{"dlq", "eat"}, 2, nil, []string{`"eat"`}},
		{"dlq replay without ids", []string{"dlq", "replay"}, 2, nil, []string{"needs event ids or --all"}},
		{"dlq purge ids and all", []string{"dlq", "purge", "abc", "--all"}, 2, nil, []string{"not both"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"EXPORTBRIDGE_STATE_DIR": t.TempDir()}
			out, errOut, code := run(t, env, 30*time.Second, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.wantCode, errOut)
			}
			for _, s := range tc.wantStdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
		})
	}
}

func TestBadSettings(t *testing.T) {
	const secretToken = "tok-SECRET-e2e-7f3a9"
	badSecret := "notwhsec-SECRET-b64value-91c2"
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantVars []string // each named on its own line
		secrets  []string
	}{
		{
			name:     "missing token",
			args:     []string{"run"},
			env:      map[string]string{},
			wantVars: []string{"EXPORTBRIDGE_API_TOKEN"},
		},
		{
			name: "several problems with a token set",
			args: []string{"run"},
			env: map[string]string{
				"EXPORTBRIDGE_API_TOKEN":           secretToken,
				"EXPORTBRIDGE_POLL_INTERVAL":       "soon",
				"EXPORTBRIDGE_WEBHOOK_URLS":        "https://example.com/hook",
				"EXPORTBRIDGE_WEBHOOK_CONCURRENCY": "0",
				"EXPORTBRIDGE_LOG_LEVEL":           "chatty",
			},
			wantVars: []string{"EXPORTBRIDGE_POLL_INTERVAL", "EXPORTBRIDGE_WEBHOOK_CONCURRENCY", "EXPORTBRIDGE_LOG_LEVEL"},
			secrets:  []string{secretToken},
		},
		{
			name: "bad webhook secret",
			args: []string{"once"},
			env: map[string]string{
				"EXPORTBRIDGE_API_TOKEN":      secretToken,
				"EXPORTBRIDGE_WEBHOOK_URLS":   "http://127.0.0.1:1/hook",
				"EXPORTBRIDGE_WEBHOOK_SECRET": badSecret,
				"EXPORTBRIDGE_API_URL":        "ftp://example.com",
			},
			wantVars: []string{"EXPORTBRIDGE_WEBHOOK_SECRET", "EXPORTBRIDGE_API_URL"},
			secrets:  []string{secretToken, badSecret},
		},
		{
			name: "bad settings for check",
			args: []string{"check"},
			env: map[string]string{
				"EXPORTBRIDGE_API_TOKEN":     secretToken,
				"EXPORTBRIDGE_POLL_INTERVAL": "10ms",
				"EXPORTBRIDGE_HTTP_TIMEOUT":  "-",
			},
			wantVars: []string{"EXPORTBRIDGE_POLL_INTERVAL", "EXPORTBRIDGE_HTTP_TIMEOUT"},
			secrets:  []string{secretToken},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["EXPORTBRIDGE_STATE_DIR"] = t.TempDir()
			tc.env["EXPORTBRIDGE_LISTEN_ADDR"] = ""
			tc.env["EXPORTBRIDGE_ADMIN_ADDR"] = ""
			out, errOut, code := run(t, tc.env, 30*time.Second, tc.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, errOut)
			}
			lines := strings.Split(errOut, "\n")
			for _, v := range tc.wantVars {
				n := 0
				for _, l := range lines {
					if strings.HasPrefix(l, v+": ") && len(l) > len(v)+10 {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%d lines of the form %q, want exactly 1:\n%s", n, v+": <problem>", errOut)
				}
			}
			for _, s := range tc.secrets {
				if strings.Contains(out+errOut, s) {
					t.Errorf("output shows the secret %q:\n%s%s", s, out, errOut)
				}
			}
			if _, err := os.Stat(filepath.Join(tc.env["EXPORTBRIDGE_STATE_DIR"], "exportbridge.db")); err == nil {
				t.Errorf("bad settings created a store")
			}
		})
	}
}

func TestSecondRunOnSameStateDirFails(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	sim.AddN(3, "ready")
	dir := t.TempDir()
	first := start(t, baseEnv(apiURL, dir), "run")
	first.WaitPolls(1, 60*time.Second)

	began := time.Now()
	second := start(t, baseEnv(apiURL, dir), "run")
	code := second.Wait(30 * time.Second)
	elapsed := time.Since(began)
	if code == 0 {
		t.Fatalf("second run exited 0; stderr:\n%s", second.Stderr.String())
	}
	// The SPEC: a second process on the same STATE_DIR fails at once; the bound is 2 s
	// (lock timeout 1 s plus the process start), not the 30 s the wait above allows.
	if elapsed > 2*time.Second {
		t.Errorf("second run took %v to fail on a locked STATE_DIR, want at most 2s", elapsed)
	}
	if !strings.Contains(second.Stderr.String(), dir) {
		t.Errorf("second run's message does not name %s:\n%s", dir, second.Stderr.String())
	}
	if first.Exited() {
		t.Errorf("first run exited (code %d)", first.Code())
	}
	first.Signal(syscall.SIGTERM)
	if code := first.Wait(60 * time.Second); code != 0 {
		t.Errorf("first run: exit code %d after SIGTERM, want 0", code)
	}
}

// jsonLines decodes JSON log lines, skipping anything else.
func jsonLines(s string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(s, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func TestHealthcheck(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	sim.AddN(2, "ready")
	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_LISTEN_ADDR"] = bridgetest.FreeAddr(t)

	// Nothing listens yet: unhealthy.
	if _, errOut, code := run(t, env, 30*time.Second, "healthcheck"); code != 1 {
		t.Errorf("healthcheck with no bridge: exit code %d, want 1; stderr:\n%s", code, errOut)
	}
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	out, errOut, code := run(t, env, 30*time.Second, "healthcheck")
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Errorf("healthcheck against a running bridge: exit code %d, stdout %q; stderr:\n%s", code, out, errOut)
	}
	env["EXPORTBRIDGE_LISTEN_ADDR"] = ""
	if _, errOut, code := run(t, env, 30*time.Second, "healthcheck"); code != 2 || !strings.Contains(errOut, "EXPORTBRIDGE_LISTEN_ADDR") {
		t.Errorf("healthcheck with no LISTEN_ADDR: exit code %d, want 2 naming the variable; stderr:\n%s", code, errOut)
	}
}
