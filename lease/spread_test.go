package lease_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/lease"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// working records which replica runs work under which lease, and fails the test when
// two run under one lease at once.
type working struct {
	t  *testing.T
	mu sync.Mutex
	by map[string]string // key -> replica
}

func (w *working) work(replica string) func(ctx context.Context, key string, l *lease.Lease) error {
	return func(ctx context.Context, key string, l *lease.Lease) error {
		w.mu.Lock()
		if other, ok := w.by[key]; ok {
			w.t.Errorf("%s works under %s while %s does", replica, key, other)
		}
		w.by[key] = replica
		w.mu.Unlock()
		<-ctx.Done()
		w.mu.Lock()
		delete(w.by, key)
		w.mu.Unlock()
		return nil
	}
}

// held counts the leases each replica works under.
func (w *working) held() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for _, r := range w.by {
		out[r]++
	}
	return out
}

func TestSpreadSharesTheLeasesBetweenLiveReplicas(t *testing.T) {
	url := server(t)
	const ttl = time.Second
	keys := []string{"poller.a", "poller.b", "poller.c", "poller.d", "poller.e"}
	w := &working{t: t, by: map[string]string{}}
	run := func(name string, kv jetstream.KeyValue) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			lease.Spread(ctx, lease.SpreadOptions{KV: kv, Keys: keys, Holder: name, Retry: 50 * time.Millisecond}, w.work(name))
		}()
		return func() { cancel(); <-done }
	}
	kvA, _ := bucket(t, url, ttl)
	kvB, _ := bucket(t, url, ttl)
	stopA := run("A", kvA)
	defer stopA()
	bridgetest.WaitFor(t, 5*time.Second, "replica A alone holds all 5 leases", func() bool { return w.held()["A"] == 5 })
	stopB := run("B", kvB)
	bridgetest.WaitFor(t, 5*time.Second, "A and B share the 5 leases 3 and 2", func() bool {
		h := w.held()
		return h["A"]+h["B"] == 5 && h["A"] <= 3 && h["B"] <= 3
	})
	// Steady: nobody flaps above its share.
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		if h := w.held(); h["A"] > 3 || h["B"] > 3 {
			t.Fatalf("held %v, want at most ceil(5/2) = 3 each", h)
		}
	}
	stopB()
	bridgetest.WaitFor(t, 3*ttl, "A takes B's leases back once B is gone", func() bool { return w.held()["A"] == 5 })
	if got := fmt.Sprint(lease.Share(10, 3), lease.Share(2, 2), lease.Share(1, 3), lease.Share(3, 0)); got != "4 1 1 3" {
		t.Errorf("Share = %s, want 4 1 1 3", got)
	}
}
