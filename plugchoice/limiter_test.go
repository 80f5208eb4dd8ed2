package plugchoice_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

func TestBudgetRate(t *testing.T) {
	type obs struct{ limit, remaining int }
	tests := []struct {
		name      string
		perMinute int
		observe   []obs
		want      float64 // requests per minute after the observations
	}{
		{name: "derived before any header", want: 400},
		{name: "negative is derived", perMinute: -3, want: 400},
		{name: "derived 80% of the API limit", observe: []obs{{100, 90}}, want: 80},
		{name: "derived follows a larger limit", observe: []obs{{1000, 900}}, want: 800},
		{name: "missing header changes nothing", observe: []obs{{100, 90}, {0, 0}}, want: 80},
		{name: "low remaining slows to remaining per minute", observe: []obs{{500, 20}}, want: 20},
		{name: "nothing remaining: one per minute", observe: []obs{{500, 0}}, want: 1},
		{name: "negative remaining: one per minute", observe: []obs{{500, -4}}, want: 1},
		{name: "10% exactly is not low", observe: []obs{{500, 50}}, want: 400},
		{name: "recovers when the window refills", observe: []obs{{500, 3}, {500, 499}}, want: 400},
		{name: "explicit", perMinute: 120, observe: []obs{{500, 400}}, want: 120},
		{name: "explicit before any header", perMinute: 120, want: 120},
		{name: "explicit never above the API limit", perMinute: 1000, observe: []obs{{500, 400}}, want: 500},
		{name: "explicit slows when remaining is low", perMinute: 120, observe: []obs{{500, 10}}, want: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := plugchoice.NewBudget(tt.perMinute)
			for _, o := range tt.observe {
				b.Observe(o.limit, o.remaining)
			}
			if got := b.Limit(); got != tt.want {
				t.Fatalf("Limit() = %v, want %v", got, tt.want)
			}
		})
	}
}

// exhaust spends n requests of b without waiting (each must be granted at once).
func exhaust(t *testing.T, b *plugchoice.Budget, n int) {
	t.Helper()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.Wait(ctx)
		cancel()
		if err != nil {
			t.Fatalf("wait %d: %v", i+1, err)
		}
	}
}

// The burst is 10 (at most the rate); once spent, the next request is a whole interval
// away, so a wait with a short deadline fails at once instead of blocking.
func TestBudgetBurst(t *testing.T) {
	tests := []struct {
		name      string
		perMinute int
		observe   [2]int
		burst     int
	}{
		{"burst 10", 60, [2]int{}, 10},
		{"burst at most the rate", 3, [2]int{}, 3},
		{"burst 1 when remaining is low", 60, [2]int{500, 30}, 1},
		{"burst 1 when remaining is low, rate unchanged", 5, [2]int{500, 40}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := plugchoice.NewBudget(tt.perMinute)
			if tt.observe[0] > 0 {
				b.Observe(tt.observe[0], tt.observe[1])
			}
			exhaust(t, b, tt.burst)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err := b.Wait(ctx)
			if err == nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("wait past the burst: %v, want a deadline error", err)
			}
		})
	}
}

func TestBudgetWaitCancelled(t *testing.T) {
	b := plugchoice.NewBudget(1)
	exhaust(t, b, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after cancel")
	}
}

// The client feeds every response's headers to its budget.
func TestClientObservesBudget(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("X-RateLimit-Limit", "60")
		w.Header().Set("X-RateLimit-Remaining", fmt.Sprint(60-n))
		writeJSON(w, 200, pageOf([]string{"a"}, "ready", ""))
	})
	b := plugchoice.NewBudget(0)
	c := newClient(t, f.URL, func(o *plugchoice.Options) { o.Budget = b })
	if _, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1); err != nil {
		t.Fatal(err)
	}
	if got := b.Limit(); got != 48 {
		t.Fatalf("budget %v per minute after X-RateLimit-Limit 60, want 48", got)
	}
}
