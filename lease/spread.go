package lease

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PresencePrefix starts the presence keys of the lease bucket: "replica.<holder>", one
// per live replica that spreads leases (Spread).
const PresencePrefix = "replica."

// SpreadOptions configure Spread.
type SpreadOptions struct {
	KV jetstream.KeyValue
	// Keys are the leases to share out between the replicas ("poller.<account>").
	Keys   []string
	Holder string
	// Retry is how often the replica looks again (default TTL/10, between 100ms and 1s).
	Retry  time.Duration
	Logger *slog.Logger
}

// Spread shares Keys out between the replicas that run Spread on the same bucket: this
// replica holds at most ceil(len(Keys) / live replicas) of them, frees (releases) the
// leases above that, and takes free ones below it. For each lease it holds, work runs
// as under Hold: with a context cancelled before the lease could expire, when it is
// lost, or when the replica frees it. Spread returns when ctx is done and every work
// has returned, with its leases released and its presence key deleted.
//
// Live replicas are counted by presence: each replica Puts the key
// "replica.<holder>" every RenewEvery(TTL), and the bucket's TTL (LEASE_TTL) removes the
// key of a replica that stopped renewing it, as it removes that replica's leases. Every
// Retry the replica counts the presence keys (itself at least) and rebalances. Two
// replicas that start together may briefly hold more than their share (each counted
// itself alone); the next count corrects it. A replica that dies leaves its leases and
// its presence key to expire together, so the survivors' share grows as its leases
// become free: they are taken within about LEASE_TTL plus Retry.
func Spread(ctx context.Context, o SpreadOptions, work func(ctx context.Context, key string, l *Lease) error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	ttl := 15 * time.Second
	if st, err := o.KV.Status(ctx); err == nil {
		ttl = st.TTL()
	}
	retry := o.Retry
	if retry <= 0 {
		retry = min(max(ttl/10, 100*time.Millisecond), time.Second)
	}
	s := &spreader{o: o, log: log, ttl: ttl, runs: map[string]*spreadRun{}, work: work,
		presence: PresencePrefix + keyToken(o.Holder), order: preference(o.Keys, o.Holder)}
	defer s.stop()
	t := time.NewTicker(retry)
	defer t.Stop()
	for {
		s.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type spreader struct {
	o        SpreadOptions
	log      *slog.Logger
	ttl      time.Duration
	presence string
	order    []string // Keys in this replica's order of preference
	work     func(ctx context.Context, key string, l *Lease) error

	lastBeat   time.Time
	beatWarned bool
	live       int
	warned     bool
	runs       map[string]*spreadRun
	wg         sync.WaitGroup
}

// spreadRun is one lease this replica holds (or is releasing).
type spreadRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	freed  bool // cancelled to free the lease
}

// preference rotates keys by a hash of holder, so that replicas starting together try
// different leases first.
func preference(keys []string, holder string) []string {
	out := slices.Clone(keys)
	slices.Sort(out)
	if len(out) == 0 {
		return out
	}
	h := fnv.New32a()
	h.Write([]byte(holder))
	n := int(h.Sum32() % uint32(len(out)))
	return append(out[n:], out[:n]...)
}

// keyToken makes a holder id a KV key token.
func keyToken(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, s)
}

// Share is the most leases of n one of live replicas holds: ceil(n / live).
func Share(n, live int) int {
	live = max(live, 1)
	return (n + live - 1) / live
}

func (s *spreader) tick(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	for key, r := range s.runs {
		select {
		case <-r.done:
			delete(s.runs, key)
		default:
		}
	}
	if time.Since(s.lastBeat) >= RenewEvery(s.ttl) {
		cctx, cancel := context.WithTimeout(ctx, RenewEvery(s.ttl))
		if _, err := s.o.KV.Put(cctx, s.presence, []byte(s.o.Holder)); err != nil {
			if !s.beatWarned {
				s.log.Warn("cannot renew this replica's presence key; the others may count it gone", "key", s.presence, "error", err)
				s.beatWarned = true // once per run of failures
			}
		} else {
			s.lastBeat, s.beatWarned = time.Now(), false
		}
		cancel()
	}
	if n, err := s.count(ctx); err == nil {
		if n != s.live && s.live != 0 {
			s.log.Info("live replicas changed; sharing the leases again", "live", n, "was", s.live, "share", Share(len(s.order), n))
		}
		s.live = n
	}
	share := Share(len(s.order), s.live)
	held := 0
	for _, key := range s.order {
		if r := s.runs[key]; r != nil && !r.freed {
			held++
		}
	}
	// Above the share: free the leases last in this replica's order.
	for i := len(s.order) - 1; i >= 0 && held > share; i-- {
		if r := s.runs[s.order[i]]; r != nil && !r.freed {
			s.log.Info("freeing a lease above this replica's share", "lease", s.order[i], "share", share, "live", s.live)
			r.freed = true
			r.cancel()
			held--
		}
	}
	// Below it: take free leases, first in this replica's order.
	for _, key := range s.order {
		if held >= share || ctx.Err() != nil {
			break
		}
		if s.runs[key] != nil {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, RenewEvery(s.ttl))
		l, err := Acquire(actx, s.o.KV, key, s.o.Holder)
		cancel()
		if err != nil {
			if !errors.Is(err, ErrHeld) && ctx.Err() == nil && !s.warned {
				s.log.Warn("cannot take lease; retrying", "lease", key, "error", err)
				s.warned = true
			}
			continue
		}
		s.warned = false
		held++
		s.start(ctx, key, l)
	}
}

// count is the number of live replicas: the presence keys, this replica's included.
func (s *spreader) count(ctx context.Context) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, RenewEvery(s.ttl))
	defer cancel()
	kl, err := s.o.KV.ListKeysFiltered(cctx, PresencePrefix+">")
	if err != nil {
		return 0, fmt.Errorf("list presence keys: %w", err)
	}
	defer func() { _ = kl.Stop() }()
	n, self := 0, false
	for k := range kl.Keys() {
		n++
		self = self || k == s.presence
	}
	if !self {
		n++
	}
	return n, nil
}

func (s *spreader) start(ctx context.Context, key string, l *Lease) {
	rctx, cancel := context.WithCancel(ctx)
	r := &spreadRun{cancel: cancel, done: make(chan struct{})}
	s.runs[key] = r
	log := s.log.With("lease", key)
	log.Info("lease taken", "holder", s.o.Holder, "ttl", l.ttl.String())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		defer cancel()
		reason := holdWhile(rctx, l, log, func(ctx context.Context, l *Lease) error { return s.work(ctx, key, l) })
		if r.freed {
			reason = "freed for another replica"
		}
		relctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		if err := l.Release(relctx); err != nil {
			log.Debug("release lease", "error", err)
		}
		rcancel()
		log.Info("lease given up", "reason", reason)
	}()
}

// stop ends every run, waits for them, and deletes the presence key.
func (s *spreader) stop() {
	for _, r := range s.runs {
		r.cancel()
	}
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.o.KV.Delete(ctx, s.presence); err != nil {
		s.log.Debug("delete presence key", "error", err)
	}
}
