package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Start-up on JetStream (STORE=nats): each attempt to open the state or the lease bucket
// is bounded by startAttempt and retried with backoff for up to startWait. Replicas
// started together on a fresh cluster create the same buckets at the same moment, and a
// clustered JetStream can leave such concurrent creations unanswered: both requests run
// out their whole timeout, while the next attempt finds the bucket at once
// (TestHAClusterNodeLoss, seen in about one start in three with 2 replicas on 3 nodes).
const (
	startAttempt = 3 * time.Second
	startWait    = time.Minute
)

// retryStart runs open until it succeeds, ctx ends, startWait has passed, or the
// server answers with an error that another attempt would get again (a JetStream API
// error such as replicas the cluster cannot place, or refused credentials). Each failed
// attempt is logged; the last error is returned.
func retryStart[T any](ctx context.Context, log *slog.Logger, what string, open func(ctx context.Context) (T, error)) (T, error) {
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(250*time.Millisecond), backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(startWait)), ctx)
	attempt := 0
	return backoff.RetryNotifyWithData(func() (T, error) {
		attempt++
		actx, cancel := context.WithTimeout(ctx, startAttempt)
		defer cancel()
		v, err := open(actx)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) || errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, b, func(err error, wait time.Duration) {
		log.Warn("cannot open "+what+" yet; retrying", "attempt", attempt, "retry_in", wait.Round(time.Millisecond).String(), "error", err)
	})
}
