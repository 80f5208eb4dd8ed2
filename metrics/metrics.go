// Package metrics holds the bridge's Prometheus collectors. Every package that observes
// something takes a *Metrics; a nil *Metrics records nothing, so tests need no registry.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the bridge's collectors. Labels are bounded: sink name, outcome, event
// type, status code class. Never a uuid.
type Metrics struct {
	Polls              *prometheus.CounterVec   // outcome: ok, error
	APIRequests        *prometheus.CounterVec   // code: 2xx, 4xx, 429, 5xx, error
	APIRequestDuration prometheus.Histogram     //
	APIRateRemaining   prometheus.Gauge         //
	ExportsTracked     prometheus.Gauge         //
	EventsDetected     *prometheus.CounterVec   // type
	Deliveries         *prometheus.CounterVec   // sink, outcome: delivered, retry, dead_letter
	DeliveryLatency    *prometheus.HistogramVec // sink
	OutboxDepth        *prometheus.GaugeVec     // sink
	DeadLetterDepth    *prometheus.GaugeVec     // sink
	LastPollSuccess    prometheus.Gauge         // unix seconds
	PollDuration       prometheus.Histogram     //
	SinkConnected      *prometheus.GaugeVec     // sink (1 connected, 0 not)
	APIRetryAfterUntil prometheus.Gauge         // unix seconds; 0 until a Retry-After
	FilterErrors       *prometheus.CounterVec   // sink: `when` failed on an event
	OrphanedEvents     *prometheus.GaugeVec     // sink: stored, no longer configured
	SinkUp             *prometheus.GaugeVec     // sink (1 breaker closed, 0 open: the sink is down)

	// acct holds the vectors behind the account-labelled fields above (Polls,
	// APIRequests, APIRequestDuration, APIRateRemaining, ExportsTracked, LastPollSuccess,
	// PollDuration, APIRetryAfterUntil): those fields are this Metrics' account's
	// children (ForAccount).
	acct *accountVecs
}

// New creates the collectors and registers them, with the Go runtime and process
// collectors, on reg. A nil reg creates unregistered collectors.
func New(reg prometheus.Registerer) *Metrics {
	pa := newAccountVecs()
	m := &Metrics{
		acct: pa,
		EventsDetected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exportbridge_events_detected_total", Help: "Events detected, by short event type.",
		}, []string{"type"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exportbridge_deliveries_total", Help: "Delivery attempts by sink and outcome (delivered, retry, dead_letter).",
		}, []string{"sink", "outcome"}),
		DeliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "exportbridge_delivery_latency_seconds", Help: "Time from detection to delivery, by sink.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 60, 300, 3600},
		}, []string{"sink"}),
		OutboxDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exportbridge_outbox_depth", Help: "Events waiting in the outbox, by sink.",
		}, []string{"sink"}),
		DeadLetterDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exportbridge_dead_letter_depth", Help: "Events in the dead-letter queue, by sink.",
		}, []string{"sink"}),
		SinkConnected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exportbridge_sink_connected", Help: "1 when the sink's connection is up (NATS), else 0.",
		}, []string{"sink"}),
		SinkUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exportbridge_sink_up", Help: "0 while the sink's breaker is open (failed attempts in a row; one probe at a time), else 1.",
		}, []string{"sink"}),
	}
	m.FilterErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "exportbridge_filter_errors_total", Help: "Events a sink's when expression failed on (counted as no match), by sink.",
	}, []string{"sink"})
	m.OrphanedEvents = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "exportbridge_orphaned_events", Help: "Queued events and dead letters of a stored sink that is no longer configured, by sink.",
	}, []string{"sink"})
	m.setAccount(DefaultAccount)
	if reg != nil {
		reg.MustRegister(pa.retryAfterUntil)
		reg.MustRegister(m.FilterErrors, m.OrphanedEvents)
		reg.MustRegister(pa.polls, pa.apiRequests, pa.apiRequestDuration, pa.apiRateRemaining,
			pa.exportsTracked, m.EventsDetected, m.Deliveries, m.DeliveryLatency, m.OutboxDepth,
			m.DeadLetterDepth, pa.lastPollSuccess, pa.pollDuration, m.SinkConnected, m.SinkUp,
			collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// CodeClass maps an HTTP status code to a bounded label: "2xx", "429", "4xx", "5xx";
// 0 (no response) is "error".
func CodeClass(code int) string {
	switch {
	case code == 0:
		return "error"
	case code == 429:
		return "429"
	case code >= 100 && code < 600:
		return strconv.Itoa(code/100) + "xx"
	default:
		return "other"
	}
}

// APIRequest records one API request.
func (m *Metrics) APIRequest(code int, d time.Duration) {
	if m == nil {
		return
	}
	m.APIRequests.WithLabelValues(CodeClass(code)).Inc()
	m.APIRequestDuration.Observe(d.Seconds())
}

// Delivery records one delivery outcome for sink; latency is from detection, recorded
// for "delivered" only.
func (m *Metrics) Delivery(sink, outcome string, latency time.Duration) {
	if m == nil {
		return
	}
	m.Deliveries.WithLabelValues(sink, outcome).Inc()
	if outcome == "delivered" {
		m.DeliveryLatency.WithLabelValues(sink).Observe(latency.Seconds())
	}
}

// Depths sets the queue depths of sink.
func (m *Metrics) Depths(sink string, outbox, dead int) {
	if m == nil {
		return
	}
	m.OutboxDepth.WithLabelValues(sink).Set(float64(outbox))
	m.DeadLetterDepth.WithLabelValues(sink).Set(float64(dead))
}

// Connected sets the connection state gauge of sink.
func (m *Metrics) Connected(sink string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.SinkConnected.WithLabelValues(sink).Set(v)
}

// Up sets the breaker state gauge of sink: up is false while its breaker is open.
func (m *Metrics) Up(sink string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.SinkUp.WithLabelValues(sink).Set(v)
}

// Poll records one poll cycle outcome ("ok" or "error").
func (m *Metrics) Poll(outcome string) {
	if m == nil {
		return
	}
	m.Polls.WithLabelValues(outcome).Inc()
}

// SetExports sets the number of exports tracked.
func (m *Metrics) SetExports(n int) {
	if m == nil {
		return
	}
	m.ExportsTracked.Set(float64(n))
}

// Event records one detected event of short type typ. Unknown statuses are folded
// into "export.other" to keep the label bounded.
func (m *Metrics) Event(typ string) {
	if m == nil {
		return
	}
	switch typ {
	case "export.pending", "export.processing", "export.ready", "export.failed", "export.cancelled",
		"export.removed", "bridge.poll_failing", "bridge.poll_recovered",
		"bridge.sink_failing", "bridge.sink_recovered":
	default:
		typ = "export.other"
	}
	m.EventsDetected.WithLabelValues(typ).Inc()
}

// RetryAfterUntil records the time until which a Retry-After holds every API request.
func (m *Metrics) RetryAfterUntil(t time.Time) {
	if m == nil {
		return
	}
	m.APIRetryAfterUntil.Set(float64(t.UnixNano()) / 1e9)
}

// FilterError counts an event a sink's when expression failed on.
func (m *Metrics) FilterError(sink string) {
	if m == nil {
		return
	}
	m.FilterErrors.WithLabelValues(sink).Inc()
}

// Orphaned sets the count of queued events and dead letters of a stored sink that is no
// longer configured (0 removes the series).
func (m *Metrics) Orphaned(sink string, n int) {
	if m == nil {
		return
	}
	if n == 0 {
		m.OrphanedEvents.DeleteLabelValues(sink)
		return
	}
	m.OrphanedEvents.WithLabelValues(sink).Set(float64(n))
}
