package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRenamedSinkKeepsItsQueue: events queued for a sink that is then renamed are
// reported (start-up warning, state), not sent under the new name, and after queue move
// delivered once each with their original ids.
func TestRenamedSinkKeepsItsQueue(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	sim.AddN(3, "ready")
	h := newHook(t)
	var mu sync.Mutex
	var refused []string
	h.setStatus(func(r *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(refused, r.Header.Get("webhook-id")) {
			refused = append(refused, r.Header.Get("webhook-id"))
		}
		return http.StatusServiceUnavailable
	})
	config := func(name string) string {
		return writeConfig(t, fmt.Sprintf("sinks:\n  - name: %s\n    kind: webhook\n    webhook: {url: %q, secret: %q}\n", name, h.URL, h.Secret))
	}
	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_EMIT_EXISTING"] = "true"
	env["EXPORTBRIDGE_CONFIG_FILE"] = config("warehouse")
	if _, stderr, code := run(t, env, 60*time.Second, "once", "--timeout", "3s"); code != 1 {
		t.Fatalf("once against a 503 endpoint: exit %d, want 1\n%s", code, bridgetestTail(stderr))
	}
	mu.Lock()
	queuedIDs := slices.Clone(refused)
	mu.Unlock()
	if len(queuedIDs) != 3 {
		t.Fatalf("%d distinct events attempted, want 3", len(queuedIDs))
	}

	h.setStatus(nil)
	env["EXPORTBRIDGE_CONFIG_FILE"] = config("lake")
	stdout, stderr, code := run(t, env, 30*time.Second, "state")
	if code != 0 || !regexpLine(stdout, `warehouse\s+3\s+0\s+NO`) {
		t.Fatalf("state: exit %d, want warehouse with 3 queued, not configured:\n%s\n%s", code, stdout, stderr)
	}
	_, stderr, code = run(t, env, 60*time.Second, "once", "--timeout", "3s")
	if code != 0 {
		t.Fatalf("once under the new name: exit %d\n%s", code, bridgetestTail(stderr))
	}
	if !strings.Contains(stderr, "a stored sink is not configured but holds events") || !strings.Contains(stderr, `"sink":"warehouse","queued":3`) {
		t.Errorf("start-up did not report the orphaned queue with its count:\n%s", bridgetestTail(stderr))
	}
	if got := h.deliveries(); len(got) != 0 {
		t.Fatalf("%d events were sent under the new name before queue move", len(got))
	}

	if _, _, code := run(t, env, 30*time.Second, "queue", "move", "--from", "warehouse", "--to", "nowhere"); code != 2 {
		t.Errorf("queue move to an unconfigured sink: exit %d, want 2", code)
	}
	stdout, stderr, code = run(t, env, 30*time.Second, "queue", "move", "--from", "warehouse", "--to", "lake")
	if code != 0 || !strings.Contains(stdout, "moved 3 queued events and 0 dead letters from warehouse to lake") {
		t.Fatalf("queue move: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, stderr, code := run(t, env, 60*time.Second, "once", "--timeout", "20s"); code != 0 {
		t.Fatalf("once after queue move: exit %d\n%s", code, bridgetestTail(stderr))
	}
	var got []string
	for _, d := range h.deliveries() {
		got = append(got, d.ID)
	}
	slices.Sort(got)
	slices.Sort(queuedIDs)
	if !slices.Equal(got, queuedIDs) {
		t.Errorf("delivered ids %v, want the original ids %v, once each", got, queuedIDs)
	}
	stdout, _, _ = run(t, env, 30*time.Second, "state")
	if strings.Contains(stdout, "warehouse") {
		t.Errorf("state still lists warehouse after the move:\n%s", stdout)
	}
}

// TestReorderedWebhookURLsAreWarned: webhook-1 with queued events now points at another
// endpoint: start-up says so, naming the sink and the count.
func TestReorderedWebhookURLsAreWarned(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	sim.AddN(2, "ready")
	a, b := newHook(t), newHook(t)
	a.setStatus(func(*http.Request) int { return http.StatusServiceUnavailable })
	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_EMIT_EXISTING"] = "true"
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = a.URL + "," + b.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = a.Secret + "," + b.Secret // each receiver finds its own
	if _, stderr, code := run(t, env, 60*time.Second, "once", "--timeout", "3s"); code != 1 {
		t.Fatalf("once: exit %d, want 1 (webhook-1 answers 503)\n%s", code, bridgetestTail(stderr))
	}
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = b.URL + "," + a.URL
	_, stderr, _ := run(t, env, 60*time.Second, "once", "--timeout", "2s")
	if !regexpLine(stderr, `sink now points at another destination.*"sink":"webhook-1".*"queued":2`) {
		t.Errorf("no warning naming webhook-1 and its 2 queued events:\n%s", bridgetestTail(stderr))
	}
	if regexpLine(stderr, `another destination.*"sink":"webhook-2"`) {
		t.Errorf("webhook-2 has nothing queued but was warned about:\n%s", bridgetestTail(stderr))
	}
}

// TestReadOnlyCommandsCreateNoStore: state and dlq list where nothing has run say so
// and exit 1, leaving no store behind.
func TestReadOnlyCommandsCreateNoStore(t *testing.T) {
	for _, args := range [][]string{{"state"}, {"dlq", "list"}} {
		dir := filepath.Join(t.TempDir(), "data")
		env := baseEnv("https://api.example/api/v3", dir)
		_, stderr, code := run(t, env, 20*time.Second, args...)
		if code != 1 || !strings.Contains(stderr, "there is no store at") || !strings.Contains(stderr, "EXPORTBRIDGE_STATE_DIR") {
			t.Errorf("%v: exit %d, want 1 saying there is no store and naming EXPORTBRIDGE_STATE_DIR:\n%s", args, code, stderr)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%v created %s (stat: %v)", args, dir, err)
		}
	}
}
