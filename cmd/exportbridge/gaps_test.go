package main

import (
	"syscall"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// delaysSinceDetection returns, per event id, how long after its detection
// (data.observed_at) its first accepted delivery arrived.
func delaysSinceDetection(ds []received) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, d := range ds {
		if _, seen := out[d.ID]; !seen && !d.Observed.IsZero() {
			out[d.ID] = d.At.Sub(d.Observed)
		}
	}
	return out
}

// TestSIGTERMHonoursShutdownTimeout: SIGTERM while the only webhook endpoint hangs on
// every request and events are queued: the bridge exits within SHUTDOWN_TIMEOUT plus a
// margin (not when the webhook timeout, far longer, ends the deliveries, nor after
// draining the queue), and a restart delivers everything that was not delivered.
func TestSIGTERMHonoursShutdownTimeout(t *testing.T) {
	const (
		grace  = 2 * time.Second
		margin = 3 * time.Second // the healthy exit is about grace + 0.1 s
	)
	sim, apiURL := newSim(t, simToken)
	uuids := sim.AddN(8, "processing")
	h := newHook(t)
	h.Hang()
	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
	env["EXPORTBRIDGE_WEBHOOK_TIMEOUT"] = "30s" // only SHUTDOWN_TIMEOUT can end the hanging requests in time
	env["EXPORTBRIDGE_SHUTDOWN_TIMEOUT"] = grace.String()
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())
	for _, u := range uuids {
		sim.SetStatus(u, "ready")
	}
	wants := expectedSince(sim, baseline)
	bridgetest.WaitFor(t, 30*time.Second, "deliveries hanging at the endpoint", func() bool { n, _ := h.counts(); return n >= 1 })

	sent := time.Now()
	p.Signal(syscall.SIGTERM)
	code := p.Wait(60 * time.Second)
	took := time.Since(sent)
	t.Logf("exit %v after SIGTERM (SHUTDOWN_TIMEOUT %v)", took.Round(time.Millisecond), grace)
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if took > grace+margin {
		t.Fatalf("exited %v after SIGTERM, want within SHUTDOWN_TIMEOUT %v + %v", took.Round(time.Millisecond), grace, margin)
	}
	if n := distinctIDs(h.deliveries()); n != 0 {
		t.Fatalf("the hanging endpoint accepted %d events", n)
	}

	h.Unhang()
	start(t, env, "run")
	bridgetest.WaitFor(t, 60*time.Second, "every queued event delivered after the restart", func() bool {
		return distinctIDs(h.deliveries()) >= len(wants)
	})
	if distinct, dups := checkDelivered(t, h.deliveries(), wants); distinct != len(wants) {
		t.Errorf("after the restart: %d distinct events (%d duplicates), want %d", distinct, dups, len(wants))
	}
}
