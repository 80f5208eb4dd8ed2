package lease_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/lease"
)

// TestFence: the fence before each commit (Check) refuses exactly when another replica
// has written the key, and a refusal ends the holder's work at once.
func TestFence(t *testing.T) {
	ctx := context.Background()

	t.Run("a holder's own renewals never fence its commits", func(t *testing.T) {
		// A Check that read the revision of a renewal whose answer the holder had not
		// seen yet refused the commit as "held by" the holder itself (issue 16).
		url := server(t)
		a, _ := bucket(t, url, 2*time.Second)
		l, err := lease.Acquire(ctx, a, "poller.default", "A")
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var renewals atomic.Int64
		wg.Go(func() {
			for rctx.Err() == nil {
				if err := l.Renew(rctx); err != nil && rctx.Err() == nil {
					t.Errorf("Renew: %v", err)
					return
				}
				renewals.Add(1)
			}
		})
		checks, refused := 0, 0
		var first error
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); checks++ {
			if err := l.Check(ctx); err != nil {
				refused++
				if first == nil {
					first = err
				}
			}
		}
		stop()
		wg.Wait()
		t.Logf("%d checks beside %d renewals", checks, renewals.Load())
		if checks < 100 || renewals.Load() < 100 {
			t.Fatalf("%d checks and %d renewals: too few to have raced", checks, renewals.Load())
		}
		if refused > 0 {
			t.Errorf("%d of %d checks refused the holder's own commits; first: %v", refused, checks, first)
		}
	})

	t.Run("a renewal written although its answer was lost keeps the lease", func(t *testing.T) {
		// On a starved machine a renewal can time out here and be written all the same:
		// the holder then took its own write for another's, gave the lease up and could
		// not take it back until the key expired (a TTL with no poller; issue 16).
		url := server(t)
		a, _ := bucket(t, url, 2*time.Second)
		for _, next := range []string{"Check", "Renew"} {
			key := "poller." + next
			l, err := lease.Acquire(ctx, a, key, "A")
			if err != nil {
				t.Fatal(err)
			}
			e, err := a.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Update(ctx, key, []byte("A"), e.Revision()); err != nil { // the lost answer
				t.Fatal(err)
			}
			if next == "Check" {
				if err := l.Check(ctx); err != nil {
					t.Errorf("Check after the holder's own unanswered renewal: %v, want the lease still held", err)
				}
			}
			if err := l.Renew(ctx); err != nil {
				t.Errorf("Renew after the holder's own unanswered renewal (%s first): %v, want it renewed", next, err)
			}
			if err := l.Check(ctx); err != nil || !l.Valid() {
				t.Errorf("after the renewal: Check %v, Valid %v, want the lease held", err, l.Valid())
			}
		}
	})

	t.Run("a holder whose key another replica wrote stops at once", func(t *testing.T) {
		// With a TTL of 20s the next renewal is 5s away: the term must end at the first
		// Check that sees the other holder, not at that renewal.
		const ttl = 20 * time.Second
		url := server(t)
		a, _ := bucket(t, url, ttl)
		b, _ := bucket(t, url, ttl)
		hctx, stopHold := context.WithCancel(ctx)
		defer stopHold()
		taken := make(chan time.Time, 1)
		type outcome struct {
			ended           time.Time
			checkErr        error
			validAfterCheck bool
		}
		done := make(chan outcome, 1)
		var wg sync.WaitGroup
		wg.Go(func() {
			lease.Hold(hctx, lease.HoldOptions{KV: a, Key: "poller.default", Holder: "A"}, func(ctx context.Context, l *lease.Lease) error {
				var o outcome
				go func() {
					time.Sleep(200 * time.Millisecond)
					if _, err := b.Put(context.Background(), "poller.default", []byte("B")); err != nil {
						t.Errorf("B's write: %v", err)
					}
					taken <- time.Now()
				}()
				for ctx.Err() == nil {
					if err := l.Check(ctx); err != nil && o.checkErr == nil && ctx.Err() == nil {
						o.checkErr, o.validAfterCheck = err, l.Valid()
					}
					time.Sleep(20 * time.Millisecond)
				}
				o.ended = time.Now()
				done <- o
				stopHold()
				return nil
			})
		})
		var o outcome
		select {
		case o = <-done:
		case <-time.After(ttl):
			t.Fatal("the holder's work did not end within the TTL after another replica took the key")
		}
		wg.Wait()
		at := <-taken
		if !errors.Is(o.checkErr, lease.ErrLost) {
			t.Errorf("Check after the other replica's write: %v, want ErrLost", o.checkErr)
		}
		if o.validAfterCheck {
			t.Error("Valid is still true after Check found another holder: API requests and deliveries would go on")
		}
		took := o.ended.Sub(at)
		t.Logf("work ended %s after the other replica's write (next renewal due after %s)", took, lease.RenewEvery(ttl))
		if took > 2*time.Second {
			t.Errorf("work ended %s after another replica took the key, want well before the next renewal (%s)", took, lease.RenewEvery(ttl))
		}
	})
}
