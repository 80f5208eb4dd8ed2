package delivery

import (
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
)

// BreakerThreshold is how many failed attempts in a row, across events, make a sink
// down (SPEC "Delivery health"). Permanent errors neither count nor break the row.
const BreakerThreshold = 5

// The breaker's own backoff between probes: from 1 s, doubling, +/- 50%, capped at 30 s
// (after the jitter), so a recovery is noticed within 30 s.
const (
	DefaultProbeInitial = time.Second
	DefaultProbeMax     = 30 * time.Second
)

// alertRetry is the pause before queuing a sink alert again after the Alerter failed.
const alertRetry = 10 * time.Second

// Alerter hears that a sink is down (bridge.sink_failing, once it has been down for
// AlertOptions.After) and that it delivers again (bridge.sink_recovered, on the first
// delivery after a sink_failing). It queues the event for the other sinks. It is called
// from the dispatcher's loop: it must not block for long (one store transaction).
type Alerter interface {
	SinkHealth(a Alert) error
}

// Alert is one change of a sink's health.
type Alert struct {
	Type        string // event.TypeSinkFailing or event.TypeSinkRecovered
	Sink        string
	Kind        string
	Destination string
	LastError   string
	Queued      int
	Failures    int       // failed attempts in a row (sink_failing), or in the whole outage (sink_recovered)
	Since       time.Time // when the breaker opened
	At          time.Time
}

// AlertOptions say what a dispatcher reports about its sink's health, and to whom.
type AlertOptions struct {
	// Kind (webhook, slack, nats, stdout) and Destination (stripped of secrets and
	// query) describe the sink in the alert.
	Kind, Destination string
	// After is how long the sink must be down before bridge.sink_failing
	// (SINK_FAILURE_ALERT); 0 sends no alerts.
	After   time.Duration
	Alerter Alerter
}

// breaker is a sink's health: closed (up) until BreakerThreshold attempts in a row fail,
// then open (down): one probe in flight at a time, on its own backoff, until a delivery
// succeeds. Only Run's goroutine touches it.
type breaker struct {
	failures int  // failed attempts in a row (permanent errors not counted)
	total    int  // failed attempts since the breaker opened
	open     bool // the sink is down
	since    time.Time
	probes   int       // failed probes since the breaker opened
	probeAt  time.Time // when the next probe may start
	lastErr  string
	alertAt  time.Time // when bridge.sink_failing is due (zero: not for this outage)
	alerted  bool      // bridge.sink_failing was queued for this outage
	probeKey *keyQueue // the key whose delivery is the probe in flight
}

// limit is how many Deliver (or DeliverBatch) calls may be in flight: the concurrency
// while the sink is up, shrinking with each failure in a row (batches are off then) so
// that no more than BreakerThreshold attempts fail before the breaker opens; one probe
// once it is open.
func (r *run) limit() int {
	b := &r.br
	if b.open {
		return 1
	}
	return max(min(r.d.o.Concurrency, BreakerThreshold-b.failures), 1)
}

// mayProbe reports whether the next probe of an open breaker may start now: nothing in
// flight (one probe at a time) and its backoff over.
func (r *run) mayProbe(now time.Time) bool {
	return r.inflight == 0 && !now.Before(r.br.probeAt)
}

// deliveredOK records a successful delivery: the row of failures ends, and an open
// breaker closes: every waiting event is due at once.
func (r *run) deliveredOK(now time.Time) {
	b := &r.br
	b.failures = 0
	if !b.open {
		return
	}
	d := r.d
	d.log.Info("sink is back: breaker closed", "down_for", now.Sub(b.since).Round(time.Millisecond).String(),
		"failed_attempts", b.total)
	d.o.Metrics.Up(d.name, true)
	d.down.Store(false)
	if b.alerted {
		r.alert(event.TypeSinkRecovered, now)
	}
	r.br = breaker{}
	r.retryWaiting(now)
}

// attemptFailed records a failed attempt (not a permanent error) of k's head, whose
// stored schedule was already updated.
func (r *run) attemptFailed(k *keyQueue, err error, lastErr string, now time.Time) {
	b := &r.br
	d := r.d
	b.failures++
	b.lastErr = lastErr
	if b.open {
		b.total++
		if b.probeKey == k {
			b.probeKey = nil
			b.probes++
			b.probeAt = now.Add(d.probeDelay(b.probes, err))
		}
		return
	}
	if b.failures < BreakerThreshold {
		return
	}
	r.openBreaker(now, err)
	d.log.Error("sink is down: breaker open; one probe attempt at a time until a delivery succeeds",
		"failed_attempts", b.failures, "next_probe", b.probeAt.UTC().Format(time.RFC3339Nano), "last_error", lastErr)
}

// openBreaker marks the sink down; err is the failure that opened it (nil on a restart).
func (r *run) openBreaker(now time.Time, err error) {
	b := &r.br
	d := r.d
	b.open, b.since, b.total, b.probes = true, now, b.failures, 0
	b.probeAt = now.Add(d.probeDelay(0, err))
	if d.o.Alert.Alerter != nil && d.o.Alert.After > 0 {
		b.alertAt = now.Add(d.o.Alert.After)
	}
	d.o.Metrics.Up(d.name, false)
	d.down.Store(true)
}

// probeDone frees the probe slot after an outcome that says nothing about the sink's
// health (a permanent error): the next probe may start at once.
func (r *run) probeDone(k *keyQueue) {
	if r.br.probeKey == k {
		r.br.probeKey = nil
	}
}

// resumeOutage opens the breaker at start when the queue shows the sink was failing
// before a restart: the last attempt of at least BreakerThreshold events failed (they are
// still queued, with attempts counted). The sink is then probed, not sent every event
// whose retry time has passed, and the first success makes every waiting event due, as
// in a run that saw the whole outage.
func (r *run) resumeOutage(now time.Time) {
	waiting := 0
	lastErr := ""
	for _, k := range r.ready {
		if h := &k.recs[0]; h.Attempts > 0 {
			waiting++
			lastErr = h.LastError
		}
	}
	if waiting < BreakerThreshold {
		return
	}
	b := &r.br
	b.failures = BreakerThreshold
	b.lastErr = lastErr
	r.openBreaker(now, nil)
	r.d.log.Warn("sink was failing before the restart: breaker open; probing", "waiting_events", waiting,
		"next_probe", b.probeAt.UTC().Format(time.RFC3339Nano), "last_error", lastErr)
}

// woken handles the sink's news that its destination is back (sinks.Waker, a NATS
// reconnect): an open breaker probes at once; a closed one retries every waiting event now.
func (r *run) woken(now time.Time) {
	if r.br.open {
		r.br.probeAt = now
		r.d.log.Info("sink reports its destination is back; probing now")
		return
	}
	r.retryWaiting(now)
}

// maybeAlert queues bridge.sink_failing once the breaker has been open for
// AlertOptions.After.
func (r *run) maybeAlert(now time.Time) {
	b := &r.br
	if !b.open || b.alerted || b.alertAt.IsZero() || now.Before(b.alertAt) {
		return
	}
	if r.alert(event.TypeSinkFailing, now) {
		b.alerted = true
		return
	}
	b.alertAt = now.Add(alertRetry)
}

// alert hands one health change to the Alerter; it reports whether it was taken.
func (r *run) alert(typ string, now time.Time) bool {
	d := r.d
	b := &r.br
	failures := b.failures
	if typ == event.TypeSinkRecovered {
		failures = b.total
	}
	a := Alert{Type: typ, Sink: d.name, Kind: d.o.Alert.Kind, Destination: d.o.Alert.Destination,
		LastError: b.lastErr, Queued: r.queuedNow(), Failures: failures, Since: b.since, At: now}
	if err := d.o.Alert.Alerter.SinkHealth(a); err != nil {
		d.log.Error("cannot queue the sink health alert", "type", typ, "error", err)
		return false
	}
	d.log.Warn("sink health alert queued for the other sinks", "type", typ, "since", b.since.UTC().Format(time.RFC3339Nano),
		"queued", a.Queued)
	return true
}

// breakerWake is the next time the breaker needs the loop: its next probe, or its alert.
func (r *run) breakerWake(now time.Time) (time.Time, bool) {
	b := &r.br
	var at time.Time
	ok := false
	if b.open && !r.stopping && r.inflight == 0 && r.ready.Len() > 0 {
		at, ok = b.probeAt, true
	}
	if b.open && !b.alerted && !b.alertAt.IsZero() && (!ok || b.alertAt.Before(at)) {
		at, ok = b.alertAt, true
	}
	return at, ok
}

// probeDelay is the wait before probe number probes+1: the breaker's own backoff, or the
// sink's Retry-After (capped) when it asks for longer.
func (d *Dispatcher) probeDelay(probes int, err error) time.Duration {
	wait := min(expBackoff(d.o.ProbeInitial, d.o.ProbeMax, probes+1), d.o.ProbeMax)
	if ra, ok := sinks.RetryAfterOf(err); ok {
		wait = max(wait, min(ra, d.o.MaxRetryAfter))
	}
	return wait
}
