package slack_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/slack"
)

// TestBotPacesABurstToOneMessagePerSecond: 40 exports become ready at once. Slack sees
// at most the burst (10) plus one message per elapsed second, without a 429 having to
// push back; the messages still waiting when the bridge stops are not sent and their
// events are not failed (they stay in the outbox).
func TestBotPacesABurstToOneMessagePerSecond(t *testing.T) {
	const events = 40
	const watch = 4500 * time.Millisecond
	f := newFakeSlack(t)
	s, _ := newBot(t, f, newMeta(), "#exports")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	start := time.Now()
	errs := make(chan error, events)
	var wg sync.WaitGroup
	for i := range events {
		exp := readyExport()
		exp.UUID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		ev := exportEvent(t, "processing", exp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Deliver(ctx, ev)
		}()
	}

	worst := 0.0
	for time.Since(start) < watch {
		time.Sleep(50 * time.Millisecond)
		n := len(f.requests())
		elapsed := time.Since(start)
		// The limiter allows 10 + elapsed seconds; one extra for the time between its
		// decision and our count.
		if allowed := slack.PaceBurst + int(elapsed/slack.PaceEvery) + 1; n > allowed {
			t.Fatalf("after %s Slack has seen %d messages, want at most %d (burst %d + 1 per second)", elapsed.Round(time.Millisecond), n, allowed, slack.PaceBurst)
		}
		worst = max(worst, float64(n)/(float64(slack.PaceBurst)+elapsed.Seconds()))
	}
	sent := len(f.requests())
	elapsed := time.Since(start)
	// The pace keeps posting: the burst at once, then about one a second.
	if min := slack.PaceBurst + int(elapsed/slack.PaceEvery) - 2; sent < min {
		t.Errorf("after %s only %d messages were sent, want at least %d: the pace is slower than one per second", elapsed.Round(time.Millisecond), sent, min)
	}

	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("deliveries waiting for the pace did not return within 5 s of the shutdown")
	}
	close(errs)
	delivered, waiting := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			delivered++
		case errors.Is(err, context.Canceled) && !sinks.IsPermanent(err):
			waiting++
		default:
			t.Errorf("a delivery ended with %v, want success or a cancelled (still queued) wait", err)
		}
	}
	for _, r := range f.requests() {
		if r.Method != "chat.postMessage" {
			t.Errorf("unexpected %s", r.Method)
		}
	}
	if delivered != len(f.requests()) || delivered+waiting != events || waiting == 0 {
		t.Errorf("%d delivered, %d left waiting, %d requests reached Slack; want every request a delivery and the rest waiting", delivered, waiting, len(f.requests()))
	}
	t.Logf("%d of %d messages sent in %s (burst %d, then 1/s); peak %.2f of the allowance; %d left in the outbox at shutdown",
		sent, events, elapsed.Round(time.Millisecond), slack.PaceBurst, worst, waiting)
}

// TestSinksOfOneChannelShareItsPace: two sinks posting to the same channel take from one
// allowance, so two configured sinks cannot double the rate Slack sees.
func TestSinksOfOneChannelShareItsPace(t *testing.T) {
	f := newFakeSlack(t)
	a, _ := newBot(t, f, newMeta(), "#exports")
	b, _ := newBot(t, f, newMeta(), "#exports")
	other, _ := newBot(t, f, newMeta(), "#elsewhere")
	ctx := ctxT(t)
	deliver := func(s *slack.Sink, i int) time.Duration {
		exp := readyExport()
		exp.UUID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		t0 := time.Now()
		if err := s.Deliver(ctx, exportEvent(t, "processing", exp)); err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		return time.Since(t0)
	}
	for i := range slack.PaceBurst {
		if d := deliver(a, i); d > 500*time.Millisecond {
			t.Fatalf("message %d of the burst waited %s", i+1, d)
		}
	}
	if d := deliver(other, 100); d > 500*time.Millisecond {
		t.Errorf("another channel waited %s for the first channel's pace", d)
	}
	if d := deliver(b, 101); d < 500*time.Millisecond {
		t.Errorf("the second sink of the channel posted after %s, right after the first spent the burst: the pace is not shared", d)
	}
}
