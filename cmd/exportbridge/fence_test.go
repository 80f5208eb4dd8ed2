package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/lease"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestPollerStopsWhenItsLeaseIsTakenOver (STORE=nats): another replica writes the poller
// lease. The replica that held it sends no further API request from its next commit's
// fence check on, long before its next renewal (LEASE_TTL 60s: every 15s), and when the
// lease is free again its new term starts from the stored state: a transition made
// meanwhile reaches the webhook.
func TestPollerStopsWhenItsLeaseIsTakenOver(t *testing.T) {
	const ttl = time.Minute
	srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	sim, apiURL := newSim(t, simToken)
	var mu sync.Mutex
	var requests []time.Time
	sim.SetOnRequest(func(*http.Request) {
		mu.Lock()
		requests = append(requests, time.Now())
		mu.Unlock()
	})
	requestsIn := func(from, to time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, at := range requests {
			if !at.Before(from) && at.Before(to) {
				n++
			}
		}
		return n
	}
	uuids := sim.AddN(3, "pending")
	h := newHook(t)
	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	env["EXPORTBRIDGE_STORE"] = "nats"
	env["EXPORTBRIDGE_STORE_NATS_URL"] = srv.ClientURL()
	env["EXPORTBRIDGE_LEASE_TTL"] = ttl.String()
	p := start(t, env, "run")
	p.WaitPolls(2, 30*time.Second)

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := lease.OpenBucket(ctx, js, ttl, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The takeover: another replica's write on the key (as after an expiry and a create).
	if _, err := kv.Put(ctx, "poller.default", []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	sim.SetStatus(uuids[0], "ready") // seen only by the next term
	time.Sleep(5 * time.Second)
	if n := requestsIn(taken.Add(2500*time.Millisecond), time.Now()); n > 0 {
		t.Errorf("%d API requests from 2.5s to 5s after another replica took the poller lease, want none (the term ends at the first refused commit)", n)
	}
	if out := p.Stderr.String(); !strings.Contains(out, `"msg":"lease given up","lease":"poller.default"`) || !strings.Contains(out, `held by \"intruder\"`) {
		t.Errorf("the replica did not log that it gave the poller lease up to the intruder:\n%s", bridgetest.Tail(out, 3000))
	}
	if got := h.deliveries(); len(got) > 0 {
		t.Fatalf("%d deliveries while no replica of ours held the poller lease, want none", len(got))
	}

	// The other replica is gone: the lease is free, and a new term polls from the stored
	// snapshot.
	if err := kv.Delete(ctx, "poller.default"); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 20*time.Second, "the transition made during the takeover at the webhook", func() bool { return len(h.deliveries()) >= 1 })
	if d := h.deliveries()[0]; d.Subject != uuids[0] || d.Type != "com.plugchoice.export.ready" {
		t.Errorf("delivered %s %s, want export.ready of %s", d.Type, d.Subject, uuids[0])
	}
}
