package main

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestRetryAfterHoldsTheNextCycle, through the binary: the sequence a new user met
// (a 503 with Retry-After: 3, then 429s with Retry-After: 3 until the page's retries are
// spent). After the last 429 no request of any query or cycle may go before its
// Retry-After has passed; before the fix the next cycle began 3.5 ms later.
func TestRetryAfterHoldsTheNextCycle(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	sim.AddN(3, "processing")
	var mu sync.Mutex
	var at []time.Time
	armed := false
	sim.SetOnRequest(func(*http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if armed {
			at = append(at, time.Now())
		}
	})
	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_STDOUT"] = "true"
	p := start(t, env, "run")
	p.WaitPolls(1, 30*time.Second)

	mu.Lock()
	armed = true
	mu.Unlock()
	// One attempt and 4 retries of one page: the 503, then four 429s.
	sim.InjectFaults(simapi.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "3"},
		simapi.Fault{Status: http.StatusTooManyRequests, RetryAfter: "3", Count: 4})
	bridgetest.WaitFor(t, 60*time.Second, "a request after the last 429", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(at) >= 6
	})
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < 5; i++ {
		if gap := at[i].Sub(at[i-1]); gap < 2500*time.Millisecond {
			t.Errorf("retry %d came %s after the previous answer's Retry-After: 3", i, gap)
		}
	}
	if gap := at[5].Sub(at[4]); gap < 2500*time.Millisecond {
		t.Errorf("the next request came %s after the last 429 (Retry-After: 3): the hold was forgotten at the end of the cycle", gap)
	}
}
