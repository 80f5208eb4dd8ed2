package chaos

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestCatchUpAfterOutage (scenario 2b, issue 13): 1,000 events are queued for a webhook
// that answers 500 for 15 s (full: 1 min). The breaker keeps the attempts during the
// outage to a handful of probes, and once a probe succeeds every waiting event is due
// at once: the catch-up is the time to drain the queue, not the longest backoff.
func TestCatchUpAfterOutage(t *testing.T) {
	needChaos(t)
	const n = 1000
	outage := pick(15*time.Second, time.Minute)
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	uuids := sim.AddN(n, "processing")
	victim := newHook(t)
	env := baseEnv(apiURL, token, t.TempDir())
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = victim.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = victim.Secret
	env["EXPORTBRIDGE_PER_PAGE"] = "100"
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())

	victim.SetStatus(http.StatusInternalServerError, "")
	for _, u := range uuids {
		sim.SetStatus(u, "ready")
	}
	wants := expectedSince(sim, baseline, nil)
	bridgetest.WaitFor(t, 30*time.Second, "the first attempt against the outage", func() bool {
		_, rejected, _ := victim.Counts()
		return rejected > 0
	})
	time.Sleep(outage)
	_, attempts, _ := victim.Counts()
	victim.SetStatus(0, "")
	back := time.Now()

	bridgetest.WaitFor(t, 3*time.Minute, fmt.Sprintf("%d events at the webhook", n), func() bool {
		if p.Exited() {
			t.Fatalf("the bridge exited (code %d)", p.Code())
		}
		return hasAll(victim.Deliveries(), wants)
	})
	got := victim.Deliveries()
	firstOK, last := got[0].At, got[0].At
	for _, d := range got {
		if d.At.After(last) {
			last = d.At
		}
	}
	r := checkInvariant(t, "webhook-1", got, wants)
	report(t, "%d events queued, webhook answering 500 for %s: %d attempts during the outage; "+
		"first accepted %s after it ended; all %d in %s after that (%s after the outage ended); %s",
		n, outage, attempts, firstOK.Sub(back).Round(100*time.Millisecond), n,
		last.Sub(firstOK).Round(100*time.Millisecond), last.Sub(back).Round(100*time.Millisecond), r)

	// Before the breaker: every event retried on its own (129-133 attempts for 30 events
	// in 15 s), and 80-90 s of catch-up after a one-minute outage.
	if maxAttempts := 5 + int(outage/time.Second); attempts > maxAttempts {
		t.Errorf("%d attempts during the %s outage, want at most %d (5, then one probe at a time)", attempts, outage, maxAttempts)
	}
	// Healthy: the next probe within 30 s (the breaker's cap) of the endpoint's return.
	if d := firstOK.Sub(back); d > 35*time.Second {
		t.Errorf("first accepted delivery %s after the outage ended, want within 30s", d)
	}
	if d := last.Sub(firstOK); d > 10*time.Second {
		t.Errorf("catch-up of %d events took %s after the first accepted delivery, want at most 10s", n, d)
	}
}
