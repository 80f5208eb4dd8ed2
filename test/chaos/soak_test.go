package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/test/bridgetest"
)

type sample struct {
	at         time.Duration
	rssKB, fds int
	goroutines float64
	storeBytes int64
	tracked    int
}

func (s sample) String() string {
	return fmt.Sprintf("t=%s RSS %d kB, fds %d, goroutines %.0f, store %d B, exports %d",
		s.at.Round(time.Second), s.rssKB, s.fds, s.goroutines, s.storeBytes, s.tracked)
}

// TestSoak (scenario 5): POLL_INTERVAL 1s with a steady stream of transitions for 2
// minutes (full: 30). RSS, open fds, goroutines and the store file are sampled; none may
// grow without bound, and everything is delivered.
func TestSoak(t *testing.T) {
	needChaos(t)
	dur, every := pick(2*time.Minute, 30*time.Minute), pick(10*time.Second, time.Minute)
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	live := sim.AddN(50, "pending")
	h := newHook(t)
	nb := newNATS(t)
	listen := bridgetest.FreeAddr(t)
	state := t.TempDir()
	env := baseEnv(apiURL, token, state)
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
	env["EXPORTBRIDGE_LISTEN_ADDR"] = listen
	env["EXPORTBRIDGE_PER_PAGE"] = "100"
	natsEnv(env, nb, "")
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a step every 2.5 s: every state is held past two polls
		defer wg.Done()
		d := newDriver(sim, live, 1)
		for sleepCtx(ctx, 2500*time.Millisecond) {
			d.step(0.3)
		}
	}()
	begin := time.Now()
	take := func() sample {
		g, _ := metric(listen, "go_goroutines")
		return sample{at: time.Since(begin), rssKB: rssKB(p.PID()), fds: openFDs(p.PID()), goroutines: g,
			storeBytes: fileSize(filepath.Join(state, "exportbridge.db")), tracked: sim.Len()}
	}
	var samples []sample
	sleepCtx(ctx, 15*time.Second) // warm-up
	samples = append(samples, take())
	for sleepCtx(ctx, every) {
		samples = append(samples, take())
		if p.Exited() {
			t.Fatalf("the bridge exited (code %d)", p.Code())
		}
	}
	wg.Wait()
	samples = append(samples, take())
	first, last := samples[0], samples[len(samples)-1]
	for _, s := range samples {
		t.Logf("sample %s", s)
	}
	transitions := len(sim.Transitions()) - baseline

	want := expectedSince(sim, baseline, nil)
	bridgetest.WaitFor(t, 120*time.Second, fmt.Sprintf("%d events", len(want)), func() bool {
		return hasAll(h.Deliveries(), want) && nb.count() >= len(want)
	})
	rh := checkInvariant(t, "webhook", h.Deliveries(), want)
	noSecretInRequests(t, h)
	rn := checkInvariant(t, "nats", nb.deliveries(), want)

	// Generous bounds: flat means no growth proportional to time.
	if last.rssKB > 2*first.rssKB+32*1024 {
		t.Errorf("RSS grew from %d kB to %d kB", first.rssKB, last.rssKB)
	}
	if last.fds > first.fds+16 {
		t.Errorf("open fds grew from %d to %d", first.fds, last.fds)
	}
	if last.goroutines > first.goroutines+32 {
		t.Errorf("goroutines grew from %.0f to %.0f", first.goroutines, last.goroutines)
	}
	// The store holds the snapshot (every export ever seen, as the API keeps them) and
	// the queues: allow 8 KiB per export plus 1 MiB.
	if limit := int64(last.tracked)*8192 + 1<<20; last.storeBytes > limit {
		t.Errorf("store file %d bytes for %d exports (limit %d)", last.storeBytes, last.tracked, limit)
	}
	report(t, "%s soak, %d transitions: first %s; last %s; %s; %s", dur, transitions, first, last, rh, rn)
}
