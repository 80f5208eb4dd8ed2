package slack

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Slack asks apps to post at most about one message per second to a channel, with short
// bursts allowed, and may disable an app that keeps posting past its limits. The sink
// paces itself so that it rarely sees a 429: every message it sends to a channel (a
// post, an update, a thread reply, an incoming-webhook message) first takes a token.
const (
	PaceEvery = time.Second // on average one message per interval per channel
	PaceBurst = 10          // messages that may go at once after a quiet spell
)

// pacers holds one limiter per channel, shared by every sink of this process that posts
// there (two sinks with the same channel share its pace). The key is the destination:
// the API URL and channel in bot mode, the webhook URL in webhook mode (an incoming
// webhook posts to one channel). Kept in memory only; a restart starts with a full burst.
var pacers = struct {
	sync.Mutex
	m map[string]*rate.Limiter
}{m: map[string]*rate.Limiter{}}

func pacerFor(key string) *rate.Limiter {
	pacers.Lock()
	defer pacers.Unlock()
	l, ok := pacers.m[key]
	if !ok {
		l = rate.NewLimiter(rate.Every(PaceEvery), PaceBurst)
		pacers.m[key] = l
	}
	return l
}

// pace waits for the channel's next token. The wait honours ctx: a shutdown ends it, the
// message is not sent and the event stays in the outbox.
func (s *Sink) pace(ctx context.Context) error {
	if s.pacer == nil {
		return nil
	}
	if err := s.pacer.Wait(ctx); err != nil {
		return fmt.Errorf("slack: waiting for the channel's pace (%d messages at once, then one per %s): %w", PaceBurst, PaceEvery, err)
	}
	return nil
}
