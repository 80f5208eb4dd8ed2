package chaos

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestCrashLoop (scenario 1): exports move through their statuses while the bridge is
// SIGKILLed at random instants and restarted on the same store; a slow-ish webhook makes
// kills land mid-delivery. Every transition reaches the webhook (filter *) and NATS
// JetStream (filter ready,failed,cancelled) at least once, in per-export order, and
// duplicates are byte-identical.
func TestCrashLoop(t *testing.T) {
	needChaos(t)
	nExports, wantKills := pick(300, 1000), pick(10, 50)
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	live := sim.AddN(nExports, "pending")
	h := newHook(t)
	h.SetDelay(func() time.Duration { return 20*time.Millisecond + mrand.N(130*time.Millisecond) })
	nb := newNATS(t)
	env := baseEnv(apiURL, token, t.TempDir())
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
	env["EXPORTBRIDGE_PER_PAGE"] = "100"
	natsEnv(env, nb, "ready,failed,cancelled")

	var cur atomic.Pointer[proc]
	cur.Store(start(t, env, "run"))
	cur.Load().WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	killsDone := killLoop(ctx, t, env, &cur, wantKills, 1500*time.Millisecond, 2500*time.Millisecond)

	// Each step is held 5 s: longer than a kill interval plus a restart and a poll, so a
	// poll sees every state.
	d := newDriver(sim, live, 3)
	steps, kills := 0, 0
loop:
	for steps < 200 {
		d.step(0.35)
		steps++
		select {
		case kills = <-killsDone:
			break loop
		case <-time.After(5 * time.Second):
		}
	}
	cancel()
	if steps >= 200 {
		kills = <-killsDone
	}
	time.Sleep(5 * time.Second) // the last step is seen
	p := cur.Load()

	wantHook := expectedSince(sim, baseline, nil)
	wantNATS := expectedSince(sim, baseline, onlyStatuses("ready", "failed", "cancelled"))
	bridgetest.WaitFor(t, pick(120*time.Second, 300*time.Second), fmt.Sprintf("%d webhook and %d NATS events", len(wantHook), len(wantNATS)), func() bool {
		if p.Exited() {
			t.Fatalf("the last bridge exited (code %d)", p.Code())
		}
		return hasAll(h.Deliveries(), wantHook) && nb.count() >= len(wantNATS)
	})
	time.Sleep(2 * time.Second) // anything extra (wrong) would show now
	rh := checkInvariant(t, "webhook", h.Deliveries(), wantHook)
	rn := checkInvariant(t, "nats", nb.deliveries(), wantNATS)
	noSecretInRequests(t, h)
	if kills < wantKills {
		t.Errorf("only %d of %d kills happened", kills, wantKills)
	}
	report(t, "%d exports, %d steps, %d SIGKILLs; %s; %s", nExports, steps, kills, rh, rn)
}
