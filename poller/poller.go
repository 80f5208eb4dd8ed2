// Package poller runs the polling loop: it lists exports within the API budget, diffs
// the listing against the snapshot, and commits the new snapshot together with the
// cycle's events in one store transaction.
package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/store"
)

// Lister is the part of the API client the poller uses.
type Lister interface {
	List(ctx context.Context, q plugchoice.Query) (*plugchoice.Listing, error)
	Each(ctx context.Context, q plugchoice.Query, fn func(page int, exports []plugchoice.Export) error) (int, error)
	ListPage(ctx context.Context, q plugchoice.Query, page int) (*plugchoice.Page, error)
	Requests() int64
	RateLimit() (limit, remaining int, ok bool)
}

// Health receives the outcome of each cycle (readiness).
type Health interface {
	PollOK(at time.Time)
	PollFailed(at time.Time, kind, msg string, auth bool)
	StoreError(err error)
}

// Options configure a Poller.
type Options struct {
	Client Lister
	Store  *store.Store
	// Query holds the user's pass-through filters (types, subject); the poller adds the
	// status filter for in-flight queries.
	Query            plugchoice.Query
	Source           string // CloudEvents source: API base URL + "/exports"
	Interval         time.Duration
	FullSyncInterval time.Duration
	EmitExisting     bool
	EmitRemoved      bool
	FailureThreshold int
	// Route returns the names of the sinks whose filter wants e.
	Route func(e event.Event) []string
	// Notify is called after a commit that queued events.
	Notify  func()
	Health  Health
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	Now     func() time.Time
}

// Poller is the polling loop. Cycle must not be called concurrently.
type Poller struct {
	o           Options
	snap        diff.Snapshot
	inflight    map[string]int64 // uuid -> requested_at (unix ns) of exports in flight in snap
	initialized bool
	lastFull    time.Time

	failures     int
	failingSince time.Time
	failingSent  bool
	orderWarned  bool
}

// New loads the snapshot from the store.
func New(o Options) (*Poller, error) {
	if o.Client == nil || o.Store == nil {
		return nil, errors.New("poller: client and store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.FullSyncInterval < o.Interval {
		o.FullSyncInterval = o.Interval
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 5
	}
	if o.Route == nil {
		o.Route = func(event.Event) []string { return nil }
	}
	if o.Notify == nil {
		o.Notify = func() {}
	}
	snap, initialized, err := o.Store.LoadSnapshot()
	if err != nil {
		return nil, fmt.Errorf("load snapshot: %w", err)
	}
	if snap == nil {
		snap = diff.Snapshot{}
	}
	last, err := o.Store.LastPoll()
	if err != nil {
		return nil, fmt.Errorf("load last poll: %w", err)
	}
	o.Metrics.SetExports(len(snap))
	p := &Poller{o: o, snap: snap, inflight: map[string]int64{}, initialized: initialized, lastFull: last.LastFull}
	for uuid, e := range snap {
		p.track(uuid, e)
	}
	return p, nil
}

func inFlight(status string) bool {
	return status == plugchoice.StatusPending || status == plugchoice.StatusProcessing
}

// track keeps the in-flight index in step with one snapshot entry.
func (p *Poller) track(uuid string, e diff.Entry) {
	if inFlight(e.Status) {
		p.inflight[uuid] = e.At
	} else {
		delete(p.inflight, uuid)
	}
}

// Tracked returns the number of exports in the snapshot.
func (p *Poller) Tracked() int { return len(p.snap) }

// Run polls every Interval (plus up to 10% jitter) until ctx is done. The first cycle
// starts at once. The interval is counted from the start of the previous cycle, so a
// slow cycle does not add to the detection latency; a cycle longer than the interval
// is followed at once by the next.
func (p *Poller) Run(ctx context.Context) error {
	for {
		started := time.Now()
		if _, err := p.Cycle(ctx); err != nil && ctx.Err() != nil {
			return nil
		}
		wait := p.o.Interval + time.Duration(rand.Int64N(int64(p.o.Interval)/10+1)) - time.Since(started)
		if wait < 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Report describes one cycle.
type Report struct {
	Full     bool
	Complete bool
	Exports  int // exports observed
	Events   int
	Requests int
	Removed  int
	Duration time.Duration
}

// Cycle runs one poll cycle: list, diff, commit. A failed cycle changes nothing.
func (p *Poller) Cycle(ctx context.Context) (Report, error) {
	start := p.o.Now()
	reqs0 := p.o.Client.Requests()
	rep, err := p.cycle(ctx, start)
	rep.Requests = int(p.o.Client.Requests() - reqs0)
	rep.Duration = p.o.Now().Sub(start)
	_, remaining, _ := p.o.Client.RateLimit()
	m := p.o.Metrics
	if m != nil {
		m.PollDuration.Observe(rep.Duration.Seconds())
		m.APIRateRemaining.Set(float64(remaining))
	}
	if err != nil {
		if ctx.Err() != nil {
			return rep, err
		}
		m.Poll("error")
		p.failed(ctx, start, err, rep)
		return rep, err
	}
	m.Poll("ok")
	if m != nil {
		m.LastPollSuccess.Set(float64(p.o.Now().Unix()))
	}
	p.o.Logger.Info("poll cycle", "full", rep.Full, "exports_seen", rep.Exports, "events", rep.Events,
		"removed", rep.Removed, "requests", rep.Requests, "ratelimit_remaining", remaining,
		"tracked", len(p.snap), "duration_ms", rep.Duration.Milliseconds())
	return rep, nil
}

func (p *Poller) cycle(ctx context.Context, now time.Time) (Report, error) {
	full := !p.initialized || now.Sub(p.lastFull) >= p.o.FullSyncInterval
	var (
		res diff.Result
		rep Report
		err error
	)
	if !full {
		cur, ok, err := p.cheapListing(ctx)
		if err != nil {
			return rep, err
		}
		if ok {
			rep.Exports = len(cur)
			res, err = diff.Compute(diff.Input{Prev: p.snap, Current: cur, Source: p.o.Source, ObservedAt: p.o.Now()})
			if err != nil {
				return rep, fmt.Errorf("diff: %w", err)
			}
		} else {
			full = true
		}
	}
	if full {
		if res, rep.Exports, err = p.fullListing(ctx); err != nil {
			return rep, err
		}
		rep.Complete = true
	}
	rep.Full = full
	observed := p.o.Now()
	if res.ValveTripped {
		p.o.Logger.Warn("complete listing lacks more than half of the snapshot; no removal this cycle (safety valve)",
			"missing", res.Missing, "tracked", len(p.snap))
	}
	events := res.Events
	if p.failingSent {
		ev, err := p.bridgeEvent(event.TypePollRecovered, nil, observed)
		if err != nil {
			return rep, err
		}
		events = append(events, ev)
	}
	routed := make([]store.Routed, 0, len(events))
	for _, ev := range events {
		routed = append(routed, store.Routed{Event: ev, Sinks: p.o.Route(ev)})
	}
	lastFull := p.lastFull
	if full {
		lastFull = now
	}
	info := store.PollInfo{At: observed, OK: true, Full: full, Exports: rep.Exports, Events: len(events), LastFull: lastFull}
	if _, rem, ok := p.o.Client.RateLimit(); ok {
		info.RateRemaining = rem
	}
	if err := p.o.Store.CommitCycle(store.Cycle{Upserts: res.Upserts, Removes: res.Removes, Events: routed, Poll: info}); err != nil {
		if p.o.Health != nil {
			p.o.Health.StoreError(err)
		}
		return rep, fmt.Errorf("commit cycle: %w", err)
	}
	// Committed: only now does the in-memory snapshot move on.
	p.snap = diff.Apply(p.snap, res)
	for uuid, e := range res.Upserts {
		p.track(uuid, e)
	}
	for _, uuid := range res.Removes {
		delete(p.inflight, uuid)
	}
	p.initialized = true
	p.lastFull = lastFull
	if p.failingSent {
		p.o.Logger.Info("Plugchoice API polling recovered", "after_failures", p.failures)
	}
	p.failures, p.failingSent = 0, false
	p.failingSince = time.Time{}
	rep.Events, rep.Removed = len(events), len(res.Removes)
	p.o.Metrics.SetExports(len(p.snap))
	for _, ev := range events {
		p.o.Metrics.Event(ev.Type)
	}
	if p.o.Health != nil {
		p.o.Health.PollOK(observed)
	}
	if len(events) > 0 {
		p.o.Notify()
	}
	return rep, nil
}

// fullListing lists every export page by page and diffs each page as it arrives, so
// that a listing of 100,000 exports never holds more than one page in memory; then,
// the listing being complete, it finds the removals. It returns the merged result and
// the number of distinct exports listed. A failed listing returns an error and nothing
// else: no partial result is ever committed.
func (p *Poller) fullListing(ctx context.Context) (diff.Result, int, error) {
	baseline := !p.initialized && !p.o.EmitExisting
	present := make(map[string]struct{}, len(p.snap)+64)
	var (
		res   diff.Result
		fresh []plugchoice.Export
	)
	_, err := p.o.Client.Each(ctx, p.o.Query, func(_ int, exports []plugchoice.Export) error {
		fresh = fresh[:0]
		for i := range exports {
			// Items shift between pages while exports are created: an export read
			// twice is diffed once; a change between the two reads is seen next cycle.
			if _, dup := present[exports[i].UUID]; dup {
				continue
			}
			present[exports[i].UUID] = struct{}{}
			fresh = append(fresh, exports[i])
		}
		r, err := diff.Compute(diff.Input{Prev: p.snap, Current: fresh, Baseline: baseline, Source: p.o.Source, ObservedAt: p.o.Now()})
		if err != nil {
			return fmt.Errorf("diff: %w", err)
		}
		merge(&res, r)
		return nil
	})
	if err != nil {
		return diff.Result{}, 0, fmt.Errorf("full listing: %w", err)
	}
	rm, err := diff.Removals(diff.RemovalInput{Prev: p.snap, Present: present, EmitRemoved: p.o.EmitRemoved && !baseline,
		Source: p.o.Source, ObservedAt: p.o.Now()})
	if err != nil {
		return diff.Result{}, 0, fmt.Errorf("diff: %w", err)
	}
	merge(&res, rm)
	res.Missing, res.ValveTripped = rm.Missing, rm.ValveTripped
	return res, len(present), nil
}

func merge(dst *diff.Result, r diff.Result) {
	if len(r.Upserts) > 0 && dst.Upserts == nil {
		dst.Upserts = make(map[string]diff.Entry, len(r.Upserts))
	}
	for k, v := range r.Upserts {
		dst.Upserts[k] = v
	}
	dst.Events = append(dst.Events, r.Events...)
	dst.Removes = append(dst.Removes, r.Removes...)
}

// failed records a failed cycle and, past the threshold, queues bridge.poll_failing once.
func (p *Poller) failed(ctx context.Context, at time.Time, err error, rep Report) {
	p.failures++
	if p.failingSince.IsZero() {
		p.failingSince = at
	}
	kind := plugchoice.Kind(err)
	msg := err.Error()
	var apiErr *plugchoice.APIError
	if errors.As(err, &apiErr) {
		msg = apiErr.Message
	}
	auth := plugchoice.IsAuth(err)
	if p.o.Health != nil {
		p.o.Health.PollFailed(at, kind, msg, auth)
	}
	log := p.o.Logger.Warn
	if auth {
		log = p.o.Logger.Error
	}
	log("poll cycle failed", "error", err, "kind", kind, "consecutive_failures", p.failures,
		"requests", rep.Requests, "duration_ms", rep.Duration.Milliseconds())
	perr := p.o.Store.SavePoll(store.PollInfo{At: at, OK: false, Error: err.Error(), Full: rep.Full, Requests: rep.Requests, LastFull: p.lastFull})
	if perr != nil {
		p.o.Logger.Error("cannot record the failed poll in the store", "error", perr)
		if p.o.Health != nil {
			p.o.Health.StoreError(perr)
		}
		return
	}
	if p.failures < p.o.FailureThreshold || p.failingSent {
		return
	}
	ev, eerr := p.bridgeEvent(event.TypePollFailing, &event.BridgeData{ErrorKind: kind, Message: msg}, at)
	if eerr != nil {
		p.o.Logger.Error("cannot build bridge.poll_failing", "error", eerr)
		return
	}
	c := store.Cycle{Events: []store.Routed{{Event: ev, Sinks: p.o.Route(ev)}},
		Poll: store.PollInfo{At: at, OK: false, Error: err.Error(), Events: 1, LastFull: p.lastFull}}
	if cerr := p.o.Store.CommitCycle(c); cerr != nil {
		p.o.Logger.Error("cannot queue bridge.poll_failing", "error", cerr)
		return
	}
	p.failingSent = true
	p.o.Metrics.Event(ev.Type)
	p.o.Logger.Error("Plugchoice API polling failing; alert queued", "consecutive_failures", p.failures, "since", p.failingSince)
	p.o.Notify()
}

func (p *Poller) bridgeEvent(typ string, d *event.BridgeData, at time.Time) (event.Event, error) {
	data := event.BridgeData{Failures: p.failures}
	if d != nil {
		data.ErrorKind, data.Message = d.ErrorKind, d.Message
	}
	return event.NewBridge(p.o.Source, typ, data, p.failingSince, at)
}
