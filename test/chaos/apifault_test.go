package chaos

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestAPIFaults (scenario 3): the API answers 500/502/503/504, 429 storms, malformed and
// truncated JSON, an empty list, slow responses past EXPORTBRIDGE_HTTP_TIMEOUT, shifting
// pages and an unsorted list, each between two transitions; then 401 for a while. No
// spurious event (removals are on: an empty list must not announce any), exactly one
// bridge.poll_failing and one bridge.poll_recovered, nothing lost after recovery.
func TestAPIFaults(t *testing.T) {
	needChaos(t)
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	sim.AddN(20, "ready")
	live := sim.AddN(30, "pending")
	h := newHook(t)
	listen := bridgetest.FreeAddr(t)
	env := baseEnv(apiURL, token, t.TempDir())
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
	env["EXPORTBRIDGE_EMIT_REMOVED"] = "true"
	env["EXPORTBRIDGE_POLL_FAILURE_THRESHOLD"] = "3"
	env["EXPORTBRIDGE_HTTP_TIMEOUT"] = "1s"
	env["EXPORTBRIDGE_PER_PAGE"] = "10"
	env["EXPORTBRIDGE_FULL_SYNC_INTERVAL"] = "5s"
	env["EXPORTBRIDGE_LISTEN_ADDR"] = listen
	env["EXPORTBRIDGE_LOG_LEVEL"] = "debug"
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())
	d := newDriver(sim, live, 1)
	settle := func() { p.WaitPolls(p.Polls()+2, 90*time.Second) }

	batches := []struct {
		name   string
		faults []simapi.Fault
	}{
		{"500", []simapi.Fault{{Status: 500}}},
		{"502", []simapi.Fault{{Status: 502}}},
		{"503", []simapi.Fault{{Status: 503, RetryAfter: "1"}}},
		{"504", []simapi.Fault{{Status: 504}}},
		{"5xx burst", []simapi.Fault{{Status: 500}, {Status: 502}, {Status: 503}, {Status: 504}}},
		{"429 storm", []simapi.Fault{{Status: 429, RetryAfter: "1", Body: `{"message":"Too Many Attempts."}`, Count: 5}}},
		{"malformed JSON (HTML error page)", []simapi.Fault{{Garbage: true}}},
		{"malformed JSON (200, not an object)", []simapi.Fault{{Body: `[1,2,`}}},
		{"truncated JSON", []simapi.Fault{{Truncate: true}}},
		{"empty list", []simapi.Fault{{Body: `{"data":[],"links":{"first":null,"last":null,"prev":null,"next":null},"meta":{"current_page":1,"per_page":10}}`, Count: 3}}},
		{"slow response past HTTP_TIMEOUT", []simapi.Fault{{Delay: 3 * time.Second, Count: 2}}},
	}
	for _, b := range batches {
		d.step(0.3)
		n := 0
		for _, f := range b.faults {
			n += max(f.Count, 1)
		}
		before := sim.Requests()
		sim.InjectFaults(b.faults...)
		bridgetest.WaitFor(t, 60*time.Second, "faults "+b.name+" consumed", func() bool { return sim.Requests() >= before+n+1 })
		settle()
	}
	d.step(0.3)
	sim.SetShiftOnPage(2)
	settle()
	d.step(0.3)
	settle()
	sim.SetShiftOnPage(0)
	sim.SetOrder(simapi.OrderShuffled)
	d.step(0.3)
	settle()
	sim.SetOrder(simapi.OrderNewestFirst)
	d.step(0.3)
	settle()

	// 401 for a while: poll_failing once, /readyz says why, then back.
	failingBefore := countType(h.Deliveries(), "com.plugchoice.bridge.poll_failing")
	sim.SetToken("revoked-" + token)
	bridgetest.WaitFor(t, 90*time.Second, "bridge.poll_failing delivered", func() bool {
		return countType(h.Deliveries(), "com.plugchoice.bridge.poll_failing") > failingBefore
	})
	code, body := readyz(listen)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "api_unauthorized") {
		t.Errorf("/readyz during the 401s = %d %s, want 503 api_unauthorized", code, body)
	}
	d.step(0.5) // changes during the outage: their final state must arrive after it
	time.Sleep(pick(3*time.Second, time.Minute))
	sim.SetToken(token)
	bridgetest.WaitFor(t, 120*time.Second, "bridge.poll_recovered delivered", func() bool {
		return countType(h.Deliveries(), "com.plugchoice.bridge.poll_recovered") > 0
	})
	settle()
	d.step(0.5)
	settle()

	want := expectedSince(sim, baseline, nil)
	bridgetest.WaitFor(t, 120*time.Second, fmt.Sprintf("%d events", len(want)), func() bool { return hasAll(h.Deliveries(), want) })
	time.Sleep(2 * time.Second)
	r := checkInvariant(t, "webhook", h.Deliveries(), want)
	noSecretInRequests(t, h)
	if r.bridge["bridge.poll_failing"] != 1 || r.bridge["bridge.poll_recovered"] != 1 {
		t.Errorf("bridge events %v, want exactly one bridge.poll_failing and one bridge.poll_recovered", r.bridge)
	}
	if code, body := readyz(listen); code != http.StatusOK {
		t.Errorf("/readyz after recovery = %d %s, want 200", code, body)
	}
	failedCycles := strings.Count(p.Stderr.String(), `"msg":"poll cycle failed"`)
	report(t, "%d fault batches + shifting pages + unsorted list + 401 window; %d failed poll cycles, %d API requests; %s; bridge events %v",
		len(batches), failedCycles, sim.Requests(), r, r.bridge)
}

func countType(ds []delivery, typ string) int {
	seen := map[string]bool{}
	for _, d := range ds {
		if d.Type == typ {
			seen[d.ID] = true
		}
	}
	return len(seen)
}
