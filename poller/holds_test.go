package poller_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// The sequence a new user met, through the polling loop: a 503 with Retry-After, then a
// 429 with Retry-After on the page's last attempt. The cycle fails; neither the rest of
// it nor the next cycles may send a request before the 429's Retry-After has passed
// (before the fix the next cycle began 3.5 ms later).
func TestRetryAfterHoldsTheNextCycles(t *testing.T) {
	f := newFixture(t, 10, func(o *poller.Options) { o.Interval = 20 * time.Millisecond }) // 2 retries per page
	f.cycle()
	var mu sync.Mutex
	var at []time.Time
	f.sim.SetOnRequest(func(*http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	})
	f.sim.InjectFaults(simapi.Fault{Status: 503, RetryAfter: "1"},
		simapi.Fault{Status: 429, RetryAfter: "1", Count: 2, Body: `{"message":"Too Many Attempts."}`})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.p.Run(ctx)
	}()
	bridgetest.WaitFor(t, 20*time.Second, "cycles after the Retry-After", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(at) >= 6
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	// at[0] 503, at[1] 429, at[2] 429 (the page's last attempt: the cycle fails).
	for i := 1; i < 3; i++ {
		if gap := at[i].Sub(at[i-1]); gap < 900*time.Millisecond {
			t.Errorf("request %d came %v after a Retry-After: 1", i+1, gap)
		}
	}
	for i := 3; i < len(at); i++ {
		if gap := at[i].Sub(at[2]); gap < 900*time.Millisecond {
			t.Errorf("request %d (a later cycle) came %v after the last 429, before its Retry-After: 1", i+1, gap)
		}
	}
	f.health.mu.Lock()
	failed, ok := f.health.failed, f.health.ok
	f.health.mu.Unlock()
	if failed != 1 || ok < 2 {
		t.Errorf("cycles: %d failed, %d ok; want the rate-limited one failed and the next ones ok", failed, ok)
	}
}
