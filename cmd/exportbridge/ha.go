package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/lease"
	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/store"
)

// bridgeStore is what the bridge asks of its store: *store.Store (STORE=bolt) and
// *natsstore.Store (STORE=nats) both implement it.
type bridgeStore interface {
	poller.Store
	delivery.Queue
	sinks.MetaStore
	server.Admin
	server.QueueAdmin
	server.StatusStore
	Destination(sink string) (string, error)
	SetDestination(sink, fingerprint string) error
	Enqueue(sink string, evs ...event.Event) error
	OnPoll(fn func(store.PollInfo))
	Path() string
	Close() error
}

var (
	_ bridgeStore = (*store.Store)(nil)
	_ bridgeStore = (*natsstore.Store)(nil)
)

// ha is the STORE=nats side of a bridge: the JetStream store, the lease bucket, and the
// lease each fenced writer (the poller, each dispatcher) currently holds.
type ha struct {
	st     *natsstore.Store
	kv     jetstream.KeyValue
	holder string
	poller *held
	sinks  map[string]*held
}

// held is the lease a writer holds now (nil between leases); check fences its commits.
type held struct{ cur atomic.Pointer[lease.Lease] }

var errNoLease = errors.New("this replica does not hold the lease")

func (h *held) check() error {
	l := h.cur.Load()
	if l == nil {
		return errNoLease
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(l.TTL()/4, 250*time.Millisecond))
	defer cancel()
	return l.Check(ctx)
}

// storeKind names the store on the status page.
func (b *bridge) storeKind() string {
	if b.ha != nil {
		return "JetStream"
	}
	return "bbolt"
}

// openStore opens the store STORE names. For bolt it is exactly store.Open on
// STATE_DIR; for nats it is the JetStream store and the lease bucket.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (bridgeStore, *ha, error) {
	if cfg.Store != config.StoreNATS {
		st, err := store.Open(cfg.StateDir, store.Options{})
		if err != nil {
			return nil, nil, err
		}
		return st, nil, nil
	}
	nopts, err := storeNATSOptions(cfg)
	if err != nil {
		return nil, nil, &exitError{code: 2, err: err}
	}
	st, err := retryStart(ctx, log, "the state on JetStream", func(ctx context.Context) (*natsstore.Store, error) {
		return natsstore.OpenURL(ctx, strings.Join(cfg.StoreNATSURL, ","), natsstore.Options{
			Replicas:   cfg.StoreNATSReplicas,
			Duplicates: duplicateWindow(cfg),
		}, append(nopts, nats.Timeout(startAttempt))...)
	})
	if err != nil {
		return nil, nil, err
	}
	kv, err := retryStart(ctx, log, "the lease bucket", func(ctx context.Context) (jetstream.KeyValue, error) {
		return lease.OpenBucket(ctx, st.JetStream(), cfg.LeaseTTL, cfg.StoreNATSReplicas)
	})
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	h := &ha{st: st, kv: kv, holder: lease.HolderID(), poller: &held{}, sinks: map[string]*held{}}
	log.Info("state on JetStream", "bucket", natsstore.Bucket, "outbox", natsstore.OutboxStream,
		"replicas", cfg.StoreNATSReplicas, "lease_ttl", cfg.LeaseTTL.String(), "holder", h.holder)
	return st, h, nil
}

// duplicateWindow covers LEASE_TTL plus a poll cycle (twice, for a slow one): a cycle
// re-detected by the next leader after a crash between outbox and snapshot is dropped.
func duplicateWindow(cfg *config.Config) time.Duration {
	return max(natsstore.DefaultDuplicates, cfg.LeaseTTL+2*cfg.PollInterval)
}

// storeNATSOptions are the connection options of the state's NATS connection: auth
// and TLS as the NATS_* settings, reconnecting forever.
func storeNATSOptions(cfg *config.Config) ([]nats.Option, error) {
	o := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if cfg.NATSToken != "" {
		o = append(o, nats.Token(cfg.NATSToken))
	}
	if cfg.NATSUser != "" {
		o = append(o, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword))
	}
	if cfg.NATSCreds != "" {
		o = append(o, nats.UserCredentials(cfg.NATSCreds))
	}
	if cfg.NATSNKey != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NATSNKey)
		if err != nil {
			return nil, fmt.Errorf("%sNATS_NKEY: %w", config.Prefix, err)
		}
		o = append(o, opt)
	}
	if cfg.NATSCA != "" {
		o = append(o, nats.RootCAs(cfg.NATSCA))
	}
	if cfg.NATSCert != "" {
		o = append(o, nats.ClientCert(cfg.NATSCert, cfg.NATSKey))
	}
	return o, nil
}

// queueFor is the queue sink's dispatcher works on: the store, fenced by the sink's
// lease with STORE=nats.
func (b *bridge) queueFor(sink string) delivery.Queue {
	if b.ha == nil {
		return b.st
	}
	return b.ha.st.Fenced(b.ha.heldFor(sink).check)
}

func (h *ha) heldFor(sink string) *held {
	if h.sinks[sink] == nil {
		h.sinks[sink] = &held{}
	}
	return h.sinks[sink]
}

// valid is the cheap fence of each delivery and API request: the lease is held and,
// by this process's clock, not past its deadline (a process resumed after SIGSTOP
// finds it past and stops before it sends anything).
func (h *held) valid() error {
	if l := h.cur.Load(); l == nil || !l.Valid() {
		return errNoLease
	}
	return nil
}

// fenceSink makes sink refuse deliveries while this replica does not hold its lease.
func (b *bridge) fenceSink(name string, s sinks.Sink) sinks.Sink {
	if b.ha == nil {
		return s
	}
	return fencedSink{Sink: s, h: b.ha.heldFor(name)}
}

type fencedSink struct {
	sinks.Sink
	h *held
}

func (f fencedSink) Deliver(ctx context.Context, e event.Event) error {
	if err := f.h.valid(); err != nil {
		return fmt.Errorf("sink %s: %w", f.Name(), err)
	}
	return f.Sink.Deliver(ctx, e)
}

// OnRecover passes the dispatcher's wake-up on to a sink that has one.
func (f fencedSink) OnRecover(wake func()) {
	if w, ok := f.Sink.(sinks.Waker); ok {
		w.OnRecover(wake)
	}
}

// fencedLister refuses API requests while this replica does not hold the account's
// lease: a poller resumed after a SIGSTOP past its lease sends nothing.
type fencedLister struct {
	poller.Lister
	h *held
}

func (f fencedLister) List(ctx context.Context, q plugchoice.Query) (*plugchoice.Listing, error) {
	if err := f.h.valid(); err != nil {
		return nil, err
	}
	return f.Lister.List(ctx, q)
}

func (f fencedLister) Each(ctx context.Context, q plugchoice.Query, fn func(page int, exports []plugchoice.Export) error) (int, error) {
	if err := f.h.valid(); err != nil {
		return 0, err
	}
	return f.Lister.Each(ctx, q, func(page int, exports []plugchoice.Export) error {
		if err := f.h.valid(); err != nil {
			return err
		}
		return fn(page, exports)
	})
}

func (f fencedLister) ListPage(ctx context.Context, q plugchoice.Query, page int) (*plugchoice.Page, error) {
	if err := f.h.valid(); err != nil {
		return nil, err
	}
	return f.Lister.ListPage(ctx, q, page)
}

// grace is how long a stopping dispatcher lets in-flight deliveries finish: with leases
// it must stop well before the lease could expire.
func (b *bridge) grace() time.Duration {
	if b.ha == nil {
		return b.cfg.ShutdownTimeout
	}
	return min(b.cfg.ShutdownTimeout, b.cfg.LeaseTTL/8)
}

// runPoller polls until ctx is done: at once with STORE=bolt; with STORE=nats only while
// this replica holds the account's lease, with a poller built afresh from the stored
// snapshot each time it takes the lease.
func (b *bridge) runPoller(ctx context.Context) {
	if b.ha == nil {
		_ = b.poller.Run(ctx)
		return
	}
	if len(b.accounts) > 0 {
		b.runAccounts(ctx) // the config file's accounts: spread between the replicas
		return
	}
	fctx, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() { defer close(followed); b.followPolls(fctx) }()
	defer func() { stopFollow(); <-followed }()
	log := b.log.With("account", natsstore.DefaultAccount)
	lease.Hold(ctx, lease.HoldOptions{KV: b.ha.kv, Key: leaseKeyOf(natsstore.DefaultAccount), Holder: b.ha.holder, Logger: b.log}, func(ctx context.Context, l *lease.Lease) error {
		return pollTerm(ctx, l, b.ha.poller, b.pollOpts, b.ha.st, log)
	})
}

// pollTerm polls one account for one lease term: l is held in h (which fences the
// account's store st and its API client), and the poller is built afresh from the
// stored snapshot, so a term starts from what the last holder committed.
func pollTerm(ctx context.Context, l *lease.Lease, h *held, o poller.Options, st *natsstore.Store, log *slog.Logger) error {
	h.cur.Store(l)
	defer h.cur.Store(nil)
	o.Store = st.Fenced(h.check)
	o.Client = fencedLister{Lister: o.Client, h: h}
	p, err := poller.New(o)
	if err != nil {
		return err
	}
	log.Info("polling: this replica holds the account lease", "tracked", p.Tracked())
	return p.Run(ctx)
}

// wakeSubject is a core NATS subject on which a replica that queued events (or replayed
// dead letters) wakes the active dispatchers of every replica.
const wakeSubject = "exportbridge.wake"

// wakeReplicas tells the other replicas' dispatchers that events were queued.
func (b *bridge) wakeReplicas() {
	if b.ha != nil {
		_ = b.ha.st.Conn().Publish(wakeSubject, nil)
	}
}

// followPolls feeds /readyz of a standby replica from the poll facts the active poller
// stores, so that a healthy standby is ready (a rolling update waits for readiness).
func (b *bridge) followPolls(ctx context.Context) {
	t := time.NewTicker(b.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if b.ha.poller.cur.Load() != nil {
			continue // this replica polls: its poller reports itself
		}
		p, err := b.st.LastPoll()
		switch {
		case err != nil:
			b.health.StoreError(err)
		case p.OK:
			b.health.PollOK(p.At)
		case !p.At.IsZero():
			b.health.PollFailed(p.At, "poll", p.Error, false)
		}
	}
}

// runDispatcher delivers sink's queue until ctx is done: at once with STORE=bolt; with
// STORE=nats only while this replica holds the sink's lease.
func (b *bridge) runDispatcher(ctx context.Context, d *delivery.Dispatcher, sink string) error {
	if b.ha == nil {
		return d.Run(ctx)
	}
	h := b.ha.sinks[sink]
	lease.Hold(ctx, lease.HoldOptions{KV: b.ha.kv, Key: "sink." + natsstore.Token(sink), Holder: b.ha.holder, Logger: b.log}, func(ctx context.Context, l *lease.Lease) error {
		h.cur.Store(l)
		defer h.cur.Store(nil)
		// The poller may run in another replica: its commits wake this dispatcher.
		if sub, err := b.ha.st.Conn().Subscribe(wakeSubject, func(*nats.Msg) { d.Notify() }); err != nil {
			b.log.Warn("cannot subscribe to wake-ups; new events wait for the next rescan (1s)", "sink", sink, "error", err)
		} else {
			defer func() { _ = sub.Unsubscribe() }()
		}
		b.log.Info("delivering: this replica holds the sink lease", "sink", sink)
		return d.Run(ctx)
	})
	return nil
}

// localStore is what localAdmin works on: either store.
type localStore interface {
	server.Admin
	server.QueueAdmin
}

// openNATSAdmin works straight on JetStream (STORE=nats): the state is shared, so this
// works whether or not replicas are running. A replay is delivered by the sink's active
// dispatcher at its next rescan.
func openNATSAdmin(cfg *config.Config, progress func(done, total int)) (admin, func(), error) {
	nopts, err := storeNATSOptions(cfg)
	if err != nil {
		return nil, nil, &exitError{code: 2, err: err}
	}
	st, err := natsstore.OpenURL(context.Background(), strings.Join(cfg.StoreNATSURL, ","), natsstore.Options{
		Replicas: cfg.StoreNATSReplicas, Duplicates: duplicateWindow(cfg), Progress: progress,
	}, nopts...)
	if err != nil {
		return nil, nil, err
	}
	return localAdmin{st}, func() { _ = st.Close() }, nil
}
