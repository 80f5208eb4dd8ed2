// Package sinks is the contract every destination implements: the Sink interface, its
// optional interfaces, the error classes a delivery can end with, and event filters.
// It imports neither the store nor any engine (the dispatcher lives in delivery/).
package sinks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/exportbridge/exportbridge/event"
)

// Sink delivers events to one destination. Deliver returns nil once the destination
// accepted the event. Any other error is retried, unless it is marked Permanent; a
// RetryAfter error asks for a server-given delay before the next attempt.
// Deliver must honour ctx: when it is cancelled the attempt is abandoned and the event
// stays queued.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, e event.Event) error
}

// Closer is implemented by sinks that hold connections.
type Closer interface {
	Close() error
}

// Checker is implemented by sinks that can verify their destination without sending a
// message (the `check` command). detail is a short human line ("connected to ...").
type Checker interface {
	Check(ctx context.Context) (detail string, err error)
}

// Waker is implemented by sinks that learn when their destination is back (a NATS
// reconnect). The dispatcher registers a function with OnRecover; calling it makes the
// events waiting for a retry go now instead of at their scheduled time.
type Waker interface {
	OnRecover(wake func())
}

// Error carries how a failed delivery is to be treated.
type Error struct {
	Err        error
	Permanent  bool          // never retried: dead-lettered at once
	RetryAfter time.Duration // server-given delay before the next attempt (0: use backoff)
	StatusCode int           // the destination's status code, when it has one (HTTP)
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, Permanent: true, StatusCode: StatusCode(err)}
}

// RetryAfter marks err as retryable after at least d.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, RetryAfter: d, StatusCode: StatusCode(err)}
}

// WithStatus attaches a destination status code to err, keeping its class.
func WithStatus(err error, code int) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		c := *se
		c.StatusCode = code
		return &c
	}
	return &Error{Err: err, StatusCode: code}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.Permanent
}

// RetryAfterOf returns the server-given delay carried by err, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var se *Error
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return se.RetryAfter, true
	}
	return 0, false
}

// StatusCode returns the destination status code carried by err, or 0.
func StatusCode(err error) int {
	var se *Error
	if errors.As(err, &se) {
		return se.StatusCode
	}
	return 0
}

// Errorf is fmt.Errorf returning a retryable *Error with a status code.
func Errorf(code int, format string, args ...any) error {
	return &Error{Err: fmt.Errorf(format, args...), StatusCode: code}
}
