// Package delivery drains each sink's outbox queue: one Dispatcher per sink keeps
// per-export order, retries on a schedule kept in the queue, dead-letters what can
// never be delivered, and probes a down sink one attempt at a time (breaker.go). It
// depends on a small Queue interface, not on a store.
package delivery

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/store"
)

// Queue is the part of a store a dispatcher uses: its sink's outbox records in order,
// the depths of its outbox and dead-letter queue, and one transaction settling a batch
// of outcomes. *store.Store implements it.
type Queue interface {
	Pending(sink string, afterSeq uint64, limit int) ([]store.Record, error)
	Depths(sink string) (outbox, dead int, err error)
	Settle(sink string, s store.Settlement) error
}

// Dispatcher defaults.
const (
	DefaultConcurrency     = 1
	DefaultMaxElapsed      = 24 * time.Hour
	DefaultInitialInterval = time.Second
	DefaultMaxInterval     = 5 * time.Minute
	DefaultMaxRetryAfter   = time.Hour
	DefaultGrace           = 10 * time.Second
)

const (
	// window is how many outbox records a dispatcher holds in memory at most. Past it,
	// the rest of the queue is read as the window drains.
	window = 8192
	// rescanEvery is how often the outbox is re-read without a Notify (replays by another
	// component, missed notifications) and the depth gauges refreshed.
	rescanEvery = time.Second
	// maxErrorLen bounds the LastError kept per record.
	maxErrorLen = 1000
	// settleRetry is the pause after a failed settle transaction.
	settleRetry = time.Second
	// settleMax is how many outcomes one settle transaction takes at most before it is
	// written without waiting for settleEvery.
	settleMax = 4096
)

// settleEvery is how long outcomes may wait for more to join their settle transaction
// while deliveries are in flight (an idle dispatcher writes at once). Each transaction
// costs an fsync or two; under a burst this turns hundreds of small transactions a
// second into a few large ones. A delivered event is settled at most this much later,
// so at most this much more is delivered twice after a crash. A variable for tests.
var settleEvery = 20 * time.Millisecond

// afterCancel is how long a stopping dispatcher waits for deliveries that were cancelled
// after the grace period (a sink that ignores its context). A variable for tests.
var afterCancel = 5 * time.Second

// DispatcherOptions configure a Dispatcher.
type DispatcherOptions struct {
	Sink sinks.Sink
	// Concurrency is the maximum of deliveries in flight (default 1); never two for the
	// same Event.OrderKey.
	Concurrency int
	// MaxElapsed is the retry budget since an event's first attempt (RETRY_MAX_ELAPSED,
	// default 24h); past it the event is dead-lettered.
	MaxElapsed time.Duration
	// InitialInterval and MaxInterval shape the exponential backoff (defaults 1s and 5m;
	// multiplier 2, randomization 0.5).
	InitialInterval, MaxInterval time.Duration
	// MaxRetryAfter caps a sink's Retry-After (default 1h).
	MaxRetryAfter time.Duration
	// ProbeInitial and ProbeMax shape the breaker's backoff between probes while the sink
	// is down (defaults 1s and 30s; multiplier 2, randomization 0.5, capped at ProbeMax).
	ProbeInitial, ProbeMax time.Duration
	// Grace is how long in-flight deliveries may finish on stop (SHUTDOWN_TIMEOUT,
	// default 10s; negative: cancel them at once).
	Grace time.Duration
	// Alert describes the sink for bridge.sink_failing / sink_recovered and says who
	// queues them (nil Alerter or zero After: no alerts). See breaker.go.
	Alert   AlertOptions
	Logger  *slog.Logger
	Metrics *metrics.Metrics
}

// Dispatcher drains one sink's outbox queue: in order per export, concurrently across
// exports, with retries on a schedule kept in the store, and a breaker that stops a
// down sink from being hammered by every queued event's retry.
type Dispatcher struct {
	st   Queue
	o    DispatcherOptions
	name string
	log  *slog.Logger

	notify  chan struct{}
	wake    chan struct{} // the sink's destination is back: retry waiting events now
	queued  atomic.Int64
	running atomic.Bool
	down    atomic.Bool // the breaker is open

	mu      sync.Mutex
	settled chan struct{} // closed (and replaced) after each settle transaction
}

// NewDispatcher creates the dispatcher of o.Sink over st. Zero options take defaults.
func NewDispatcher(st Queue, o DispatcherOptions) *Dispatcher {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxElapsed <= 0 {
		o.MaxElapsed = DefaultMaxElapsed
	}
	if o.InitialInterval <= 0 {
		o.InitialInterval = DefaultInitialInterval
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = DefaultMaxInterval
	}
	if o.MaxInterval < o.InitialInterval {
		o.MaxInterval = o.InitialInterval
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.ProbeInitial <= 0 {
		o.ProbeInitial = DefaultProbeInitial
	}
	if o.ProbeMax <= 0 {
		o.ProbeMax = DefaultProbeMax
	}
	if o.ProbeMax < o.ProbeInitial {
		o.ProbeMax = o.ProbeInitial
	}
	switch {
	case o.Grace == 0:
		o.Grace = DefaultGrace
	case o.Grace < 0:
		o.Grace = 0
	}
	d := &Dispatcher{st: st, o: o, notify: make(chan struct{}, 1), wake: make(chan struct{}, 1), settled: make(chan struct{})}
	if o.Sink != nil {
		d.name = o.Sink.Name()
		if w, ok := o.Sink.(sinks.Waker); ok {
			w.OnRecover(d.retryNow)
		}
	}
	d.log = o.Logger
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("sink", d.name)
	return d
}

// Notify tells the dispatcher that new records were committed for its sink. It never
// blocks.
func (d *Dispatcher) Notify() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// retryNow asks the running dispatcher to attempt every waiting event at once (the
// sink's destination is back). It never blocks.
func (d *Dispatcher) retryNow() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Down reports whether the sink is down: its breaker is open (see Delivery health).
func (d *Dispatcher) Down() bool { return d.down.Load() }

// Queued returns the number of records in the outbox not yet delivered (as of the
// dispatcher's last look at the queue).
func (d *Dispatcher) Queued() int { return int(d.queued.Load()) }

// WaitIdle returns nil once the sink's outbox is empty (every record delivered or
// dead-lettered), or an error when ctx ends first.
func (d *Dispatcher) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		d.mu.Lock()
		settled := d.settled
		d.mu.Unlock()
		recs, err := d.st.Pending(d.name, 0, 1)
		if err != nil {
			return fmt.Errorf("wait for sink %s to drain: %w", d.name, err)
		}
		if len(recs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for sink %s to drain: %d events still queued: %w", d.name, d.Queued(), ctx.Err())
		case <-settled:
		case <-t.C:
		}
	}
}

func (d *Dispatcher) signalSettled() {
	d.mu.Lock()
	close(d.settled)
	d.settled = make(chan struct{})
	d.mu.Unlock()
}

// Run delivers until ctx is done, then stops gracefully: nothing new starts, in-flight
// deliveries get Grace to finish and are then cancelled; what was not delivered stays
// queued. It returns nil on a clean stop.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.o.Sink == nil || d.st == nil {
		return errors.New("dispatcher: no sink or no store given")
	}
	if !d.running.CompareAndSwap(false, true) {
		return fmt.Errorf("dispatcher %s is already running", d.name)
	}
	defer d.running.Store(false)

	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	r := &run{
		d:          d,
		keys:       map[string]*keyQueue{},
		workCtx:    workCtx,
		cancelWork: cancelWork,
		results:    make(chan result, d.o.Concurrency),
		jobs:       make(chan job, d.o.Concurrency),
		flushCh:    make(chan store.Settlement, 1),
		flushDone:  make(chan flushResult, 1),
	}
	ob, dead, err := d.st.Depths(d.name)
	if err != nil {
		return fmt.Errorf("dispatcher %s: %w", d.name, err)
	}
	r.storeDepth, r.dead = ob, dead
	if err := r.refill(); err != nil {
		return fmt.Errorf("dispatcher %s: %w", d.name, err)
	}
	go r.flusher()
	defer close(r.flushCh)
	for range d.o.Concurrency {
		go r.worker()
	}
	defer close(r.jobs)
	d.o.Metrics.Up(d.name, true)
	r.resumeOutage(time.Now())
	d.log.Debug("dispatcher started", "queued", r.inMem)

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	timerSet, timerAt := true, time.Now().Add(time.Hour)
	tick := time.NewTicker(rescanEvery)
	defer tick.Stop()
	for {
		now := time.Now()
		r.maybeAlert(now)
		r.dispatch(now)
		r.maybeFlush(now)
		r.publish()
		// The timer is set again only when the wake-up time changes (under a burst it
		// stays the settle deadline for many turns of the loop).
		if at, ok := r.nextWake(now); !ok {
			if timerSet {
				timer.Stop()
				timerSet = false
			}
		} else if !timerSet || !at.Equal(timerAt) {
			timer.Reset(max(at.Sub(now), 0))
			timerAt, timerSet = at, true
		}
		select {
		case <-ctx.Done():
			return r.stop()
		case res := <-r.results:
			r.handle(res)
			r.handleReady()
		case fr := <-r.flushDone:
			r.flushed(fr)
		case <-d.notify:
			r.tryRefill()
		case <-d.wake:
			r.woken(time.Now())
		case <-tick.C:
			r.tryRefill()
			r.refreshDepth()
		case <-timer.C:
			timerSet = false
		}
		if r.more && r.inMem < window/2 {
			r.tryRefill()
		}
	}
}

// keyQueue holds the queued records of one order key, oldest first.
type keyQueue struct {
	key      string
	recs     []store.Record
	inflight bool
	// at and seq are the head's NextAttemptAt (unix ns; math.MinInt64 when zero) and Seq,
	// copied when the key enters the ready heap, for its comparisons.
	at  int64
	seq uint64
}

// cacheHead copies the head's schedule into k (before it enters the ready heap).
func (k *keyQueue) cacheHead() {
	h := &k.recs[0]
	k.at, k.seq = math.MinInt64, h.Seq
	if !h.NextAttemptAt.IsZero() {
		k.at = h.NextAttemptAt.UnixNano()
	}
}

// readyHeap orders the idle keys by the next attempt time of their head record, then by
// its sequence number (queue order).
type readyHeap []*keyQueue

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}
func (h readyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)   { *h = append(*h, x.(*keyQueue)) }
func (h *readyHeap) Pop() any {
	old := *h
	k := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return k
}

type result struct {
	k    *keyQueue
	err  error
	last bool // the last result of its Deliver or DeliverBatch call
}

type flushResult struct {
	batch store.Settlement
	err   error
}

// run is the state of one Run; only Run's goroutine touches it.
type run struct {
	d          *Dispatcher
	keys       map[string]*keyQueue
	ready      readyHeap
	inflight   int    // records in flight
	calls      int    // Deliver and DeliverBatch calls in flight
	inMem      int    // records read and not yet settled (in-flight included)
	lastSeq    uint64 // highest seq read from the outbox
	more       bool   // the last read stopped at the window: more records wait in the store
	storeDepth int    // outbox depth at the last refresh, when more is set
	dead       int

	published          bool // pubQueued and pubDead were published
	pubQueued, pubDead int
	workCtx            context.Context
	cancelWork         context.CancelFunc
	results            chan result
	jobs               chan job // to the workers; never more than calls (< its capacity) queued
	stopping           bool

	br breaker

	pend         store.Settlement
	pendSince    time.Time // when the first outcome of pend was recorded
	flushing     bool
	flushRetryAt time.Time
	flushCh      chan store.Settlement
	flushDone    chan flushResult
}

// refill reads records past lastSeq into the key queues, up to the window.
func (r *run) refill() error {
	room := window - r.inMem
	if room <= 0 {
		r.more = true
		return nil
	}
	recs, err := r.d.st.Pending(r.d.name, r.lastSeq, room)
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	r.more = len(recs) == room
	for i := range recs {
		rec := &recs[i]
		r.lastSeq = rec.Seq
		r.inMem++
		key := rec.Event.OrderKey()
		k := r.keys[key]
		if k == nil {
			// A key's first record stays where the read put it (no copy); a second one
			// makes append move the key's records to a slice of their own.
			k = &keyQueue{key: key, recs: recs[i : i+1 : i+1]}
			r.keys[key] = k
		} else {
			if len(k.recs) == cap(k.recs) {
				grown := make([]store.Record, len(k.recs), 2*len(k.recs)+1)
				copy(grown, k.recs)
				clear(k.recs) // the old array (a read's) may outlive this key's use of it
				k.recs = grown
			}
			k.recs = append(k.recs, *rec)
			recs[i] = store.Record{}
		}
		if len(k.recs) == 1 && !k.inflight {
			k.cacheHead()
			heap.Push(&r.ready, k)
		}
	}
	return nil
}

func (r *run) tryRefill() {
	if err := r.refill(); err != nil {
		r.d.log.Error("dispatcher cannot read its outbox; retrying", "error", err)
	}
}

func (r *run) refreshDepth() {
	ob, dead, err := r.d.st.Depths(r.d.name)
	if err != nil {
		r.d.log.Error("dispatcher cannot count its queues", "error", err)
		return
	}
	r.storeDepth, r.dead = ob, dead
}

// queuedNow is the number of records not yet delivered or dead-lettered.
func (r *run) queuedNow() int {
	q := r.inMem
	if r.more {
		q = max(q, r.storeDepth-len(r.pend.Acks)-len(r.pend.Dead))
	}
	return q
}

// publish updates Queued and the depth gauges.
func (r *run) publish() {
	q := r.queuedNow()
	if r.published && q == r.pubQueued && r.dead == r.pubDead {
		return
	}
	r.published, r.pubQueued, r.pubDead = true, q, r.dead
	r.d.queued.Store(int64(q))
	r.d.o.Metrics.Depths(r.d.name, q, r.dead)
}

// dispatch starts deliveries of ready keys while there is capacity. While the breaker
// is open, the only delivery is the probe: the key next in line, whatever its own
// schedule, once the breaker's backoff allows. A healthy sinks.Batcher gets the heads of
// up to MaxBatch due keys in one call.
func (r *run) dispatch(now time.Time) {
	for !r.stopping && r.calls < r.limit() && r.ready.Len() > 0 {
		k := r.ready[0]
		probe := r.br.open
		if probe {
			if !r.mayProbe(now) {
				return
			}
		} else if k.recs[0].NextAttemptAt.After(now) {
			return
		}
		if b, ok := r.d.o.Sink.(sinks.Batcher); ok && !probe && r.br.failures == 0 {
			r.startBatch(b, now)
			continue
		}
		heap.Pop(&r.ready)
		if probe {
			r.br.probeKey = k
		}
		r.calls++
		r.jobs <- job{k: k, ev: r.start(k, now).Event}
	}
}

// start marks k's head in flight and returns it.
func (r *run) start(k *keyQueue, now time.Time) *store.Record {
	k.inflight = true
	r.inflight++
	rec := &k.recs[0]
	if rec.FirstAttemptAt.IsZero() {
		rec.FirstAttemptAt = now
	}
	return rec
}

// startBatch hands the heads of the due keys, up to MaxBatch (each key is in the ready
// heap once: one event per export), to the sink in one call.
func (r *run) startBatch(b sinks.Batcher, now time.Time) {
	var ks []*keyQueue
	var evs []event.Event
	for len(ks) < sinks.MaxBatch && r.ready.Len() > 0 && !r.ready[0].recs[0].NextAttemptAt.After(now) {
		k := heap.Pop(&r.ready).(*keyQueue)
		ks = append(ks, k)
		evs = append(evs, r.start(k, now).Event)
	}
	r.calls++
	r.jobs <- job{b: b, ks: ks, evs: evs}
}

// job is one Deliver call (k's head is ev) or one DeliverBatch call (ks[i]'s head is
// evs[i]) for a worker.
type job struct {
	k   *keyQueue
	ev  event.Event
	b   sinks.Batcher
	ks  []*keyQueue
	evs []event.Event
}

// worker makes the calls of the jobs it receives until Run closes the channel. There
// are Concurrency workers, long-lived, so a delivery starts no goroutine (whose stack
// would grow anew through the HTTP client's calls each time).
func (r *run) worker() {
	for j := range r.jobs {
		if j.b != nil {
			r.deliverBatch(j.b, j.ks, j.evs)
		} else {
			r.deliver(j.k, j.ev)
		}
	}
}

// deliver runs in a worker: it gets the event by value and touches no run state.
func (r *run) deliver(k *keyQueue, ev event.Event) {
	var err error
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sink %s panicked delivering event %s: %v", r.d.name, ev.ID, p)
		}
		r.results <- result{k: k, err: err, last: true}
	}()
	err = r.d.o.Sink.Deliver(r.workCtx, ev)
}

// deliverBatch is deliver for a batch: one result per event, each settled on its own.
func (r *run) deliverBatch(b sinks.Batcher, ks []*keyQueue, evs []event.Event) {
	errs := func() (errs []error) {
		defer func() {
			if p := recover(); p != nil {
				err := fmt.Errorf("sink %s panicked delivering a batch of %d events: %v", r.d.name, len(evs), p)
				errs = make([]error, len(evs))
				for i := range errs {
					errs[i] = err
				}
			}
		}()
		return b.DeliverBatch(r.workCtx, evs)
	}()
	for i, k := range ks {
		var err error
		if i < len(errs) {
			err = errs[i]
		} else {
			err = fmt.Errorf("sink %s answered %d of a batch of %d events", r.d.name, len(errs), len(evs))
		}
		r.results <- result{k: k, err: err, last: i == len(ks)-1}
	}
}

// retryWaiting moves the next attempt of every waiting key's head to now (the sink is
// back: its breaker closed, or it said so while the breaker was still closed). The stored
// schedule is rewritten by the outcome of that attempt; attempts keep counting.
func (r *run) retryWaiting(now time.Time) {
	n := 0
	for _, k := range r.ready {
		if k.recs[0].NextAttemptAt.After(now) {
			k.recs[0].NextAttemptAt = now
			k.cacheHead()
			n++
		}
	}
	if n > 0 {
		heap.Init(&r.ready)
		r.d.log.Info("sink is back; retrying waiting events now", "events", n)
	}
}

// nextWake is when the next key becomes ready (if one can start), the next probe, the
// sink alert or the settle of the pending outcomes is due.
func (r *run) nextWake(now time.Time) (time.Time, bool) {
	at, ok := r.breakerWake(now)
	if t, fok := r.flushAt(); fok && (!ok || t.Before(at)) {
		at, ok = t, true
	}
	if !r.br.open && !r.stopping && r.calls < r.limit() && r.ready.Len() > 0 {
		if t := r.ready[0].recs[0].NextAttemptAt; !ok || t.Before(at) {
			at, ok = t, true
		}
	}
	return at, ok
}

// handleReady handles the results that are already waiting, so that a busy sink's
// outcomes cost one turn of the loop (dispatch, settle, timers) between them, not one
// each.
func (r *run) handleReady() {
	for range cap(r.results) {
		select {
		case res := <-r.results:
			r.handle(res)
		default:
			return
		}
	}
}

// handle records the outcome of one delivery.
func (r *run) handle(res result) {
	d := r.d
	k := res.k
	k.inflight = false
	r.inflight--
	if res.last {
		r.calls--
	}
	rec := &k.recs[0]
	now := time.Now()
	if pendLen(&r.pend) == 0 {
		r.pendSince = now
	}
	lastErr := ""
	switch {
	case res.err == nil:
		r.pend.Acks = append(r.pend.Acks, rec.Seq)
		d.o.Metrics.Delivery(d.name, "delivered", now.Sub(rec.Event.DetectedAt))
		r.pop(k)
	case r.workCtx.Err() != nil:
		// Cancelled by a stop after the grace period: not an attempt; it stays queued.
		d.log.Info("delivery cancelled by shutdown; the event stays queued",
			"event_id", rec.Event.ID, "export", rec.Event.Subject)
		return
	default:
		rec.Attempts++
		rec.LastError = truncate(res.err.Error(), maxErrorLen)
		lastErr = rec.LastError
		rec.LastStatus = sinks.StatusCode(res.err)
		reason := ""
		switch {
		case sinks.IsPermanent(res.err):
			reason = "permanent error"
		case now.Sub(rec.FirstAttemptAt) >= d.o.MaxElapsed:
			reason = fmt.Sprintf("retry budget of %s spent", d.o.MaxElapsed)
		}
		if reason != "" {
			rec.DeadAt = now
			r.pend.Dead = append(r.pend.Dead, *rec)
			r.dead++
			d.o.Metrics.Delivery(d.name, "dead_letter", 0)
			d.log.Error("delivery failed; event moved to the dead-letter queue",
				"event_id", rec.Event.ID, "export", rec.Event.Subject, "type", rec.Event.Type,
				"attempt", rec.Attempts, "reason", reason, "status", rec.LastStatus, "error", res.err)
			r.pop(k)
			break
		}
		rec.NextAttemptAt = now.Add(d.delay(rec, res.err, now))
		r.pend.Attempts = append(r.pend.Attempts, *rec)
		d.o.Metrics.Delivery(d.name, "retry", 0)
		d.log.Warn("delivery failed; will retry",
			"event_id", rec.Event.ID, "export", rec.Event.Subject, "attempt", rec.Attempts,
			"next_attempt", rec.NextAttemptAt.UTC().Format(time.RFC3339Nano), "status", rec.LastStatus, "error", res.err)
	}
	if len(k.recs) > 0 {
		k.cacheHead()
		heap.Push(&r.ready, k)
	} else {
		delete(r.keys, k.key)
	}
	switch {
	case res.err == nil:
		r.deliveredOK(now)
	case sinks.IsPermanent(res.err):
		r.probeDone(k)
	default:
		r.attemptFailed(k, res.err, lastErr, now)
	}
}

func (r *run) pop(k *keyQueue) {
	k.recs[0] = store.Record{}
	k.recs = k.recs[1:]
	r.inMem--
}

// delay is the wait before the next attempt of rec, which just failed with err: the
// sink's Retry-After (capped) when it gave one, else the exponential backoff for the
// attempt count, never past the end of the retry budget.
func (d *Dispatcher) delay(rec *store.Record, err error, now time.Time) time.Duration {
	if ra, ok := sinks.RetryAfterOf(err); ok {
		return min(ra, d.o.MaxRetryAfter)
	}
	wait := d.Backoff(rec.Attempts)
	if deadline := rec.FirstAttemptAt.Add(d.o.MaxElapsed); now.Add(wait).After(deadline) {
		wait = max(deadline.Sub(now), 0)
	}
	return wait
}

// Backoff returns the randomized backoff before the retry that follows attempt number
// attempts (1 = the first attempt failed): InitialInterval * 2^(attempts-1), capped at
// MaxInterval, +/- 50%. The schedule continues from a stored attempt count.
func (d *Dispatcher) Backoff(attempts int) time.Duration {
	return expBackoff(d.o.InitialInterval, d.o.MaxInterval, attempts)
}

// expBackoff is initial * 2^(attempts-1), capped at maxInterval, +/- 50%.
func expBackoff(initial, maxInterval time.Duration, attempts int) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         maxInterval,
		MaxElapsedTime:      0, // the budget is ours: FirstAttemptAt is stored
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	next := b.NextBackOff()
	// Past about 64 doublings the interval is pinned at MaxInterval.
	for i := 1; i < min(attempts, 64); i++ {
		next = b.NextBackOff()
	}
	return next
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// ---- settling: acks, attempts and dead letters, batched into few transactions ----

func (r *run) flusher() {
	for b := range r.flushCh {
		r.flushDone <- flushResult{batch: b, err: r.d.st.Settle(r.d.name, b)}
	}
}

func pendLen(s *store.Settlement) int { return len(s.Acks) + len(s.Attempts) + len(s.Dead) }

// take hands over every pending outcome (at most about a window of records: one
// transaction of a few thousand small writes).
func (r *run) take() store.Settlement {
	b := r.pend
	r.pend = store.Settlement{}
	return b
}

// maybeFlush hands the pending outcomes to the flusher when it is idle and either no
// delivery is in flight, the oldest outcome has waited settleEvery, or settleMax have
// gathered: under load the batch grows while the previous transaction commits (group
// commit) and for settleEvery after it.
func (r *run) maybeFlush(now time.Time) {
	if r.flushing || pendLen(&r.pend) == 0 || now.Before(r.flushRetryAt) {
		return
	}
	if r.inflight > 0 && pendLen(&r.pend) < settleMax && now.Sub(r.pendSince) < settleEvery {
		return
	}
	r.flushing = true
	r.flushCh <- r.take()
}

// flushAt is when maybeFlush will write the pending outcomes while deliveries are in
// flight (ok false: nothing to wait for).
func (r *run) flushAt() (time.Time, bool) {
	if r.flushing || pendLen(&r.pend) == 0 || r.inflight == 0 {
		return time.Time{}, false
	}
	at := r.pendSince.Add(settleEvery)
	if r.flushRetryAt.After(at) {
		at = r.flushRetryAt
	}
	return at, true
}

func (r *run) flushed(fr flushResult) {
	r.flushing = false
	if fr.err != nil {
		// Put the batch back in front: it is retried, in order, after a pause.
		r.pend = store.Settlement{
			Acks:     append(fr.batch.Acks, r.pend.Acks...),
			Attempts: append(fr.batch.Attempts, r.pend.Attempts...),
			Dead:     append(fr.batch.Dead, r.pend.Dead...),
		}
		r.flushRetryAt = time.Now().Add(settleRetry)
		r.d.log.Error("cannot record delivery outcomes in the store; retrying (delivered events may be re-delivered after a crash)",
			"pending", pendLen(&r.pend), "error", fr.err)
		return
	}
	r.storeDepth -= len(fr.batch.Acks) + len(fr.batch.Dead)
	r.d.signalSettled()
}

// stop waits for in-flight deliveries (Grace, then cancels them) and writes every
// pending outcome.
func (r *run) stop() error {
	d := r.d
	r.stopping = true
	d.log.Info("dispatcher stopping", "in_flight", r.inflight, "grace", d.o.Grace)
	grace := time.NewTimer(d.o.Grace)
	defer grace.Stop()
	var hard <-chan time.Time
	for r.inflight > 0 {
		select {
		case res := <-r.results:
			r.handle(res)
		case fr := <-r.flushDone:
			r.flushed(fr)
		case <-grace.C:
			d.log.Warn("grace period over; cancelling in-flight deliveries", "in_flight", r.inflight)
			r.cancelWork()
			t := time.NewTimer(afterCancel)
			defer t.Stop()
			hard = t.C
		case <-hard:
			r.publish()
			err := fmt.Errorf("dispatcher %s: %d deliveries did not return %s after cancel", d.name, r.inflight, afterCancel)
			if ferr := r.finalFlush(); ferr != nil {
				err = errors.Join(err, ferr)
			}
			return err
		}
	}
	err := r.finalFlush()
	r.publish()
	return err
}

func (r *run) finalFlush() error {
	if r.flushing {
		r.flushed(<-r.flushDone)
	}
	for pendLen(&r.pend) > 0 {
		b := r.take()
		if err := r.d.st.Settle(r.d.name, b); err != nil {
			return fmt.Errorf("dispatcher %s: record delivery outcomes on stop (the delivered events will be re-delivered): %w", r.d.name, err)
		}
		r.storeDepth -= len(b.Acks) + len(b.Dead)
		r.d.signalSettled()
	}
	return nil
}
