package lease_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/lease"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

func server(t *testing.T) string {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}

// bucket is the lease bucket on a connection of its own (a replica).
func bucket(t *testing.T, url string, ttl time.Duration) (jetstream.KeyValue, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := lease.OpenBucket(context.Background(), js, ttl, 1)
	if err != nil {
		t.Fatal(err)
	}
	return kv, nc
}

func TestLease(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		ttl  time.Duration
		run  func(t *testing.T, a, b jetstream.KeyValue, ttl time.Duration)
	}{
		{"a held lease cannot be taken by another replica", 2 * time.Second, func(t *testing.T, a, b jetstream.KeyValue, ttl time.Duration) {
			if _, err := lease.Acquire(ctx, a, "poller.default", "A"); err != nil {
				t.Fatal(err)
			}
			if _, err := lease.Acquire(ctx, b, "poller.default", "B"); !errors.Is(err, lease.ErrHeld) {
				t.Errorf("second Acquire: %v, want ErrHeld", err)
			}
			if _, err := lease.Acquire(ctx, b, "sink.webhook", "B"); err != nil {
				t.Errorf("another key: %v, want it free", err)
			}
		}},
		{"a lease that is not renewed expires; the next holder fences the old one", time.Second, func(t *testing.T, a, b jetstream.KeyValue, ttl time.Duration) {
			start := time.Now()
			la, err := lease.Acquire(ctx, a, "poller.default", "A")
			if err != nil {
				t.Fatal(err)
			}
			var lb *lease.Lease
			for lb == nil && time.Since(start) < 5*ttl {
				if lb, err = lease.Acquire(ctx, b, "poller.default", "B"); errors.Is(err, lease.ErrHeld) {
					time.Sleep(20 * time.Millisecond)
				} else if err != nil {
					t.Fatal(err)
				}
			}
			took := time.Since(start)
			t.Logf("takeover after %s with a TTL of %s", took, ttl)
			if lb == nil || took < ttl/2 || took > 3*ttl {
				t.Fatalf("B took the lease after %s (nil: %v), want between TTL/2 and 3 TTL", took, lb == nil)
			}
			if err := la.Check(ctx); !errors.Is(err, lease.ErrLost) {
				t.Errorf("old holder's Check: %v, want ErrLost", err)
			}
			if err := la.Renew(ctx); !errors.Is(err, lease.ErrLost) {
				t.Errorf("old holder's Renew: %v, want ErrLost", err)
			}
			if err := lb.Check(ctx); err != nil {
				t.Errorf("new holder's Check: %v", err)
			}
		}},
		{"renewals keep the lease past several TTLs", time.Second, func(t *testing.T, a, b jetstream.KeyValue, ttl time.Duration) {
			la, err := lease.Acquire(ctx, a, "poller.default", "A")
			if err != nil {
				t.Fatal(err)
			}
			for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(lease.RenewEvery(ttl)) {
				if err := la.Renew(ctx); err != nil {
					t.Fatalf("Renew: %v", err)
				}
				if _, err := lease.Acquire(ctx, b, "poller.default", "B"); !errors.Is(err, lease.ErrHeld) {
					t.Fatalf("B's Acquire while A renews: %v, want ErrHeld", err)
				}
			}
			if err := la.Check(ctx); err != nil {
				t.Errorf("Check after renewals: %v", err)
			}
		}},
		{"a holder is fenced by its own clock before the key expires", 2 * time.Second, func(t *testing.T, a, b jetstream.KeyValue, ttl time.Duration) {
			la, err := lease.Acquire(ctx, a, "poller.default", "A")
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(lease.StopAfter(ttl) + 50*time.Millisecond)
			if err := la.Check(ctx); !errors.Is(err, lease.ErrLost) {
				t.Errorf("Check past StopAfter: %v, want ErrLost", err)
			}
			if _, err := lease.Acquire(ctx, b, "poller.default", "B"); !errors.Is(err, lease.ErrHeld) {
				t.Errorf("B's Acquire before the TTL ran out: %v, want ErrHeld (the old holder stops first)", err)
			}
		}},
		{"a released lease is free at once", 10 * time.Second, func(t *testing.T, a, b jetstream.KeyValue, ttl time.Duration) {
			la, err := lease.Acquire(ctx, a, "sink.slack", "A")
			if err != nil {
				t.Fatal(err)
			}
			if err := la.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := lease.Acquire(ctx, b, "sink.slack", "B"); err != nil {
				t.Errorf("Acquire after Release: %v", err)
			}
			if err := la.Check(ctx); !errors.Is(err, lease.ErrLost) {
				t.Errorf("released holder's Check: %v, want ErrLost", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := server(t)
			a, _ := bucket(t, url, c.ttl)
			b, _ := bucket(t, url, c.ttl)
			c.run(t, a, b, c.ttl)
		})
	}
}

// spans records when each holder's work ran.
type spans struct {
	mu  sync.Mutex
	all [][2]time.Time
	who []string
}

func (s *spans) work(name string) func(ctx context.Context, l *lease.Lease) error {
	return func(ctx context.Context, l *lease.Lease) error {
		start := time.Now()
		<-ctx.Done()
		s.mu.Lock()
		s.all = append(s.all, [2]time.Time{start, time.Now()})
		s.who = append(s.who, name)
		s.mu.Unlock()
		return nil
	}
}

func TestHold(t *testing.T) {
	const ttl = time.Second
	t.Run("one holder at a time; a stopped holder hands over at once", func(t *testing.T) {
		url := server(t)
		a, _ := bucket(t, url, ttl)
		b, _ := bucket(t, url, ttl)
		var sp spans
		actx, stopA := context.WithCancel(context.Background())
		bctx, stopB := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { lease.Hold(actx, lease.HoldOptions{KV: a, Key: "poller.default", Holder: "A"}, sp.work("A")) })
		time.Sleep(200 * time.Millisecond) // A first
		wg.Go(func() { lease.Hold(bctx, lease.HoldOptions{KV: b, Key: "poller.default", Holder: "B"}, sp.work("B")) })
		time.Sleep(3 * ttl) // A renews; B stands by
		stopped := time.Now()
		stopA()
		time.Sleep(ttl)
		stopB()
		wg.Wait()
		if len(sp.all) != 2 || sp.who[0] != "A" || sp.who[1] != "B" {
			t.Fatalf("work ran %d times (%v), want A then B once each", len(sp.all), sp.who)
		}
		if sp.all[1][0].Before(sp.all[0][1]) {
			t.Errorf("B started at %v before A stopped at %v: two holders", sp.all[1][0], sp.all[0][1])
		}
		if d := sp.all[1][0].Sub(stopped); d > ttl/2 {
			t.Errorf("B took over %s after A stopped, want well under the TTL (released)", d)
		}
		t.Logf("handover after a clean stop: %s", sp.all[1][0].Sub(stopped))
	})
	t.Run("a holder that cannot renew stops before its TTL and the other takes over", func(t *testing.T) {
		url := server(t)
		a, anc := bucket(t, url, ttl)
		b, _ := bucket(t, url, ttl)
		var sp spans
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { lease.Hold(ctx, lease.HoldOptions{KV: a, Key: "sink.webhook", Holder: "A"}, sp.work("A")) })
		time.Sleep(200 * time.Millisecond)
		wg.Go(func() { lease.Hold(ctx, lease.HoldOptions{KV: b, Key: "sink.webhook", Holder: "B"}, sp.work("B")) })
		time.Sleep(ttl)
		cut := time.Now()
		anc.Close() // A's renewals fail from now on
		bridgetest.WaitFor(t, 5*ttl, "A stopped", func() bool { sp.mu.Lock(); defer sp.mu.Unlock(); return len(sp.all) >= 1 })
		time.Sleep(2 * ttl)
		stop()
		wg.Wait()
		if len(sp.all) != 2 || sp.who[0] != "A" || sp.who[1] != "B" {
			t.Fatalf("work ran %v, want A then B", sp.who)
		}
		aStop := sp.all[0][1].Sub(cut)
		bStart := sp.all[1][0].Sub(cut)
		t.Logf("A stopped %s after its renewals began to fail; B started after %s (TTL %s)", aStop, bStart, ttl)
		if aStop > ttl {
			t.Errorf("A stopped %s after its last chance to renew, want before the TTL (%s)", aStop, ttl)
		}
		if !sp.all[1][0].After(sp.all[0][1]) {
			t.Errorf("B started before A stopped: two holders")
		}
		if bStart > 3*ttl {
			t.Errorf("B took over after %s, want within a few TTLs", bStart)
		}
	})
}
