package plugchoice

import (
	"context"
	"fmt"
	"math"
	"sync"

	"golang.org/x/time/rate"
)

// DefaultAPILimit is the documented API limit (requests per minute per user), assumed
// until the API's X-RateLimit-Limit header says otherwise.
const DefaultAPILimit = 500

const (
	budgetShare = 0.8 // share of the API's limit a derived budget uses
	lowShare    = 0.1 // remaining below this share of the limit: slow down further
	maxBurst    = 10
)

// Budget paces API requests so the bridge stays under the API's rate limit and never
// needs a 429. It wraps a golang.org/x/time/rate token bucket; the client calls Wait
// before every request (retries included) and Observe with the X-RateLimit-Limit and
// X-RateLimit-Remaining headers of every response.
//
// The rate (requests per minute) is:
//   - explicit (NewBudget(n) with n > 0): n, but never more than the API's limit;
//   - derived (NewBudget(0)): 80% of the API's X-RateLimit-Limit, and 80% of the
//     documented 500 (400) until a response has told the limit;
//   - in either case, while X-RateLimit-Remaining is below 10% of the limit (other
//     clients of the same token are using it up, or the window is nearly spent), at most
//     `remaining` per minute (at least 1), with a burst of 1, so the remaining requests
//     last until the API's one-minute window resets. The normal rate comes back as soon
//     as a response shows the window refilled.
//
// The burst is 10 (at most the per-minute rate). A Budget is safe for concurrent use and
// may be shared by several clients of the same token.
type Budget struct {
	lim *rate.Limiter

	mu       sync.Mutex
	explicit float64 // requests per minute set by the user; 0 = derived
	perMin   float64 // current rate, requests per minute
}

// NewBudget returns a budget of perMinute requests per minute; 0 (or less) derives the
// rate from the API's headers as described on Budget.
func NewBudget(perMinute int) *Budget {
	b := &Budget{}
	if perMinute > 0 {
		b.explicit = float64(perMinute)
	}
	r, burst := b.rateFor(DefaultAPILimit, DefaultAPILimit)
	b.perMin = r
	b.lim = rate.NewLimiter(perMinuteLimit(r), burst)
	return b
}

// rateFor computes the per-minute rate and the burst for an API limit and remaining count.
func (b *Budget) rateFor(limit, remaining int) (float64, int) {
	r := budgetShare * float64(limit)
	if b.explicit > 0 {
		r = math.Min(b.explicit, float64(limit))
	}
	burst := int(math.Min(maxBurst, math.Max(1, math.Floor(r))))
	if float64(remaining) < lowShare*float64(limit) {
		r = math.Min(r, math.Max(1, float64(remaining)))
		burst = 1
	}
	return r, burst
}

func perMinuteLimit(perMin float64) rate.Limit { return rate.Limit(perMin / 60) }

// Wait blocks until the budget allows one request, or ctx is done.
func (b *Budget) Wait(ctx context.Context) error {
	if err := b.lim.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("wait for API budget: %w", ctx.Err())
		}
		// The wait would outlast ctx's deadline: report it as such.
		return fmt.Errorf("wait for API budget (%.0f requests/minute): %v: %w", b.Limit(), err, context.DeadlineExceeded)
	}
	return nil
}

// Observe adjusts the rate to the API's X-RateLimit-Limit and X-RateLimit-Remaining.
// A limit of 0 or less (header missing) changes nothing.
func (b *Budget) Observe(limit, remaining int) {
	if limit <= 0 {
		return
	}
	remaining = max(0, min(remaining, limit))
	b.mu.Lock()
	defer b.mu.Unlock()
	r, burst := b.rateFor(limit, remaining)
	if r != b.perMin || burst != b.lim.Burst() {
		b.perMin = r
		b.lim.SetLimit(perMinuteLimit(r))
		b.lim.SetBurst(burst)
	}
}

// Limit returns the current rate in requests per minute (for logs).
func (b *Budget) Limit() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.perMin
}
