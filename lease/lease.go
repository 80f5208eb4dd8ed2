// Package lease gives one holder at a time a named lease in a JetStream KeyValue bucket:
// one poller per account and one active dispatcher per sink among N bridge replicas
// (SPEC "Scale-out").
//
// A lease is a key of the bucket exportbridge_leases, whose bucket-wide TTL is LEASE_TTL
// (a per-key TTL would be dropped by the first Update). A replica takes a lease with
// Create (which fails while another holds it), and renews it with Update at the
// revision it last wrote (which fails once another has taken it). A holder whose
// renewals fail stops before the TTL runs out: Hold cancels the holder's work at
// StopAfter past the last successful renewal, and Check, called before each commit,
// refuses once that deadline has passed or the key's revision is not the holder's own
// (fencing). A Check or a renewal that finds another holder's write (or an expired key)
// marks the lease lost: Valid turns false and Hold ends the work at once, without
// waiting for the next renewal. The holder's own writes are never taken for another's: a
// Check waits for a renewal in flight, and a key at a later revision that holds the
// holder's own value (a renewal written although its answer timed out) is still the
// holder's, since no other replica writes that value. The others take over when the key
// has expired.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KeyValue bucket of the leases.
const Bucket = "exportbridge_leases"

// ErrHeld is returned by Acquire when another holder has the lease.
var ErrHeld = errors.New("lease held by another replica")

// ErrLost is wrapped by Renew's and Check's errors when the lease is no longer held.
var ErrLost = errors.New("lease lost")

// OpenBucket creates or updates the lease bucket with a bucket-wide TTL of ttl.
func OpenBucket(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	if ttl < 100*time.Millisecond {
		return nil, fmt.Errorf("lease bucket: LEASE_TTL is %s (expected at least 100ms, 15s is the default)", ttl)
	}
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "exportbridge leases: one poller per account, one dispatcher per sink",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// HolderID names this process: host, pid and a random part (a restarted process with
// the same pid is another holder).
func HolderID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Lease is a held lease.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	ttl    time.Duration

	// io is held by a Renew's write and a Check's read of the key, so that a Check never
	// reads the revision of a renewal whose answer this holder has not seen yet (which
	// would look like another holder's write).
	io chan struct{}
	// gone is closed when the lease is found lost for good: Hold ends the work at once.
	gone chan struct{}

	mu      sync.Mutex
	rev     uint64
	validTo time.Time // the last successful write's start + StopAfter(ttl)
	lost    error
}

func newLease(kv jetstream.KeyValue, key, holder string, ttl time.Duration, rev uint64, validTo time.Time) *Lease {
	return &Lease{kv: kv, key: key, holder: holder, ttl: ttl, rev: rev, validTo: validTo,
		io: make(chan struct{}, 1), gone: make(chan struct{})}
}

// lock takes l.io, or fails when ctx ends first.
func (l *Lease) lock(ctx context.Context) error {
	select {
	case l.io <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("lease %s: wait for a renewal in flight: %w", l.key, ctx.Err())
	}
}

func (l *Lease) unlock() { <-l.io }

// markLost records that the lease is lost for good (the first reason stays) and returns
// the error to report.
func (l *Lease) markLost(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	l.lost = err
	close(l.gone)
	return err
}

// Lost is closed once the lease is known to be lost for good: a renewal or a Check found
// another holder or an expired key, or it was released.
func (l *Lease) Lost() <-chan struct{} { return l.gone }

// StopAfter is how long after the start of its last successful write a holder keeps
// working: three quarters of the TTL, so that it has stopped before the key expires
// and another replica can take it.
func StopAfter(ttl time.Duration) time.Duration { return ttl * 3 / 4 }

// RenewEvery is the renewal period: a quarter of the TTL, so that two renewals can fail
// before the holder stops.
func RenewEvery(ttl time.Duration) time.Duration { return ttl / 4 }

// Acquire takes the lease key for holder, or fails with ErrHeld.
func Acquire(ctx context.Context, kv jetstream.KeyValue, key, holder string) (*Lease, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease %s: bucket status: %w", key, err)
	}
	start := time.Now()
	rev, err := kv.Create(ctx, key, []byte(holder))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("lease %s: %w", key, ErrHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("lease %s: create: %w", key, err)
	}
	return newLease(kv, key, holder, st.TTL(), rev, start.Add(StopAfter(st.TTL()))), nil
}

// Key is the lease's key.
func (l *Lease) Key() string { return l.key }

// TTL is the bucket's TTL.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Renew updates the key at the last revision; a failure that shows another holder (or
// an expired key) marks the lease lost for good.
func (l *Lease) Renew(ctx context.Context) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	l.mu.Lock()
	rev, lost := l.rev, l.lost
	l.mu.Unlock()
	if lost != nil {
		return lost
	}
	start := time.Now()
	nrev, err := l.kv.Update(ctx, l.key, []byte(l.holder), rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// A renewal that timed out here may have been written all the same: the key then
		// holds this holder's own value at a later revision, and the lease is still ours.
		if own, ok := l.ownRevision(ctx); ok {
			rev, start = own, time.Now()
			nrev, err = l.kv.Update(ctx, l.key, []byte(l.holder), rev)
		}
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyExists) {
			return l.markLost(fmt.Errorf("lease %s: renew at revision %d: %w: %w", l.key, rev, ErrLost, err))
		}
		return fmt.Errorf("lease %s: renew: %w", l.key, err)
	}
	l.mu.Lock()
	l.rev, l.validTo = nrev, start.Add(StopAfter(l.ttl))
	l.mu.Unlock()
	return nil
}

// ownRevision returns the key's revision when the key holds this holder's value (its
// last write was this holder's own).
func (l *Lease) ownRevision(ctx context.Context) (uint64, bool) {
	e, err := l.kv.Get(ctx, l.key)
	if err != nil || string(e.Value()) != l.holder {
		return 0, false
	}
	return e.Revision(), true
}

// Valid reports whether the holder may still work by its own clock.
func (l *Lease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost == nil && time.Now().Before(l.validTo)
}

func (l *Lease) lostErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// ValidUntil is when the holder must have stopped without a further renewal.
func (l *Lease) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validTo
}

// Check is the fence before a commit: it fails, wrapping ErrLost, once the lease is lost,
// past its local deadline, or when the key's revision is not the holder's last write.
// A key that another holder has written, or that has expired, marks the lease lost for
// good (Lost is closed, Valid is false): the holder's term ends at once.
func (l *Lease) Check(ctx context.Context) error {
	if err := l.lock(ctx); err != nil {
		return fmt.Errorf("lease %s: check: %w", l.key, err)
	}
	defer l.unlock()
	l.mu.Lock()
	rev, lost, validTo := l.rev, l.lost, l.validTo
	l.mu.Unlock()
	if lost != nil {
		return lost
	}
	if !time.Now().Before(validTo) {
		return fmt.Errorf("lease %s: not renewed in time (deadline %s): %w", l.key, validTo.Format(time.RFC3339Nano), ErrLost)
	}
	e, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return l.markLost(fmt.Errorf("lease %s: expired: %w", l.key, ErrLost))
	}
	if err != nil {
		return fmt.Errorf("lease %s: check: %w", l.key, err)
	}
	if e.Revision() != rev && string(e.Value()) == l.holder {
		// The holder's own renewal, written although its answer never came (a timeout):
		// only this holder writes its value, so no other replica has written since.
		l.mu.Lock()
		l.rev = e.Revision()
		l.mu.Unlock()
		return nil
	}
	if e.Revision() != rev {
		return l.markLost(fmt.Errorf("lease %s: revision %d is not ours (%d), held by %q: %w", l.key, e.Revision(), rev, e.Value(), ErrLost))
	}
	return nil
}

// Release deletes the key if it is still the holder's, so another replica can take the
// lease at once instead of after the TTL.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	rev, lost := l.rev, l.lost
	l.mu.Unlock()
	if lost != nil {
		return nil
	}
	l.markLost(fmt.Errorf("lease %s: released: %w", l.key, ErrLost))
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("lease %s: release: %w", l.key, err)
	}
	return nil
}

// HoldOptions configure Hold.
type HoldOptions struct {
	KV     jetstream.KeyValue
	Key    string
	Holder string
	// Retry is how often a standby tries to take the lease (default TTL/10, between
	// 100ms and 1s).
	Retry  time.Duration
	Logger *slog.Logger
}

// Hold runs until ctx is done: it takes the lease whenever it is free and, while it
// holds it, runs work with a context that is cancelled before the lease could expire
// (renewals failing for StopAfter) or as soon as it is found lost (by a renewal or a
// Check). When work returns, or the lease is lost, Hold waits for work to return and
// goes back to standby. On ctx's end it releases the lease. work's error is logged, not
// returned.
func Hold(ctx context.Context, o HoldOptions, work func(ctx context.Context, l *Lease) error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("lease", o.Key)
	retry := o.Retry
	if retry <= 0 {
		retry = time.Second
		if st, err := o.KV.Status(ctx); err == nil {
			retry = min(max(st.TTL()/10, 100*time.Millisecond), time.Second)
		}
	}
	warned := false // one warning per run of failures, not one per retry
	for ctx.Err() == nil {
		l, err := Acquire(ctx, o.KV, o.Key, o.Holder)
		if err != nil {
			if !errors.Is(err, ErrHeld) && ctx.Err() == nil && !warned {
				log.Warn("cannot take lease; retrying", "error", err, "every", retry.String())
				warned = true
			} else if errors.Is(err, ErrHeld) {
				warned = false
			}
			if !sleep(ctx, retry) {
				return
			}
			continue
		}
		warned = false
		log.Info("lease taken", "holder", o.Holder, "ttl", l.ttl.String())
		reason := holdWhile(ctx, l, log, work)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		if err := l.Release(rctx); err != nil {
			log.Debug("release lease", "error", err)
		}
		cancel()
		log.Info("lease given up", "reason", reason)
	}
}

// holdWhile runs work while l is held and returns why it stopped.
func holdWhile(ctx context.Context, l *Lease, log *slog.Logger, work func(context.Context, *Lease) error) string {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- work(wctx, l) }()
	renew := time.NewTicker(RenewEvery(l.ttl))
	defer renew.Stop()
	deadline := time.NewTimer(time.Until(l.ValidUntil()))
	defer deadline.Stop()
	var reason string
	for reason == "" {
		select {
		case <-ctx.Done():
			reason = "stopping"
		case err := <-done:
			if err != nil {
				log.Error("work under lease stopped", "error", err)
			}
			return "work returned"
		case <-deadline.C:
			reason = "not renewed before the deadline"
		case <-l.Lost():
			reason = l.lostErr().Error()
		case <-renew.C:
			rctx, cancel := context.WithTimeout(ctx, RenewEvery(l.ttl))
			err := l.Renew(rctx)
			cancel()
			switch {
			case errors.Is(err, ErrLost):
				reason = err.Error()
			case err != nil:
				log.Warn("lease renewal failed; stopping at the deadline unless a renewal succeeds", "error", err, "deadline", l.ValidUntil())
			default:
				deadline.Reset(time.Until(l.ValidUntil()))
			}
		}
	}
	stop()
	<-done
	return reason
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
