// Package server serves the bridge's operational HTTP endpoints (/healthz, /readyz,
// /metrics), the admin endpoint that lets `dlq` and `state` work against a running
// bridge, and the client the CLI uses to reach that endpoint.
package server

import (
	"sync"
	"time"
)

// Readiness reasons reported by /readyz (the "reason" field).
const (
	ReasonReady           = "ready"            // 200: store open, recent successful poll
	ReasonStarting        = "starting"         // 503: no poll has succeeded yet, still within the grace period
	ReasonStoreClosed     = "store_closed"     // 503: the store is not open
	ReasonStoreError      = "store_error"      // 503: the last store commit failed
	ReasonAPIUnauthorized = "api_unauthorized" // 503: the API answered 401 or 403
	ReasonNoRecentPoll    = "no_recent_poll"   // 503: no successful poll within 3 poll intervals
	ReasonNotConfigured   = "not_configured"   // 503: the server was built without a Health
)

const (
	readyWindowIntervals   = 3
	defaultHealthPollEvery = 30 * time.Second
)

// Reason is the JSON body of /readyz.
type Reason struct {
	Reason   string     `json:"reason"`
	Detail   string     `json:"detail,omitempty"`
	LastPoll *time.Time `json:"last_successful_poll,omitempty"`
}

// Health tracks readiness. The poller and main call its setters; /readyz reads it.
// It is safe for concurrent use.
type Health struct {
	interval time.Duration
	now      func() time.Time
	start    time.Time

	mu        sync.Mutex
	storeOpen bool
	storeErr  string
	lastOK    time.Time
	authFail  bool
	lastFail  string // "kind: message" of the last failed poll since the last success
}

// NewHealth returns a Health for a bridge polling every pollInterval (a value <= 0 means
// the default 30s). now is the clock (nil: time.Now). The store starts closed: main calls
// StoreOpen(true) once it has opened it.
func NewHealth(pollInterval time.Duration, now func() time.Time) *Health {
	if pollInterval <= 0 {
		pollInterval = defaultHealthPollEvery
	}
	if now == nil {
		now = time.Now
	}
	return &Health{interval: pollInterval, now: now, start: now()}
}

// PollOK records a successful poll cycle (its listing was committed to the store). It
// clears an API authorisation failure and a store error.
func (h *Health) PollOK(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if at.After(h.lastOK) {
		h.lastOK = at
	}
	h.authFail = false
	h.storeErr = ""
	h.lastFail = ""
}

// PollFailed records a failed poll cycle. kind is a short error class ("timeout",
// "http_500"), msg the API's message; auth is true when the API answered 401 or 403,
// which makes the bridge not ready at once. Other failures make it not ready only when
// no poll has succeeded within 3 poll intervals. msg must not hold a secret.
func (h *Health) PollFailed(at time.Time, kind, msg string, auth bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastFail = joinNonEmpty(kind, msg)
	if auth {
		h.authFail = true
	}
}

// StoreOpen records whether the store is open.
func (h *Health) StoreOpen(open bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.storeOpen = open
}

// StoreError records a failed store commit (disk full, read-only file system): the bridge
// is not ready, with that reason, until the next PollOK. A nil err clears it.
func (h *Health) StoreError(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.storeErr = ""
		return
	}
	h.storeErr = err.Error()
}

// Ready reports whether the bridge is ready and why not. The checks, in order: store
// closed, store error, API unauthorised, then the age of the last successful poll (before
// the first one, "starting" during the first 3 intervals, then "no_recent_poll").
func (h *Health) Ready() (bool, Reason) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	var r Reason
	if !h.lastOK.IsZero() {
		t := h.lastOK
		r.LastPoll = &t
	}
	window := readyWindowIntervals * h.interval
	switch {
	case !h.storeOpen:
		r.Reason = ReasonStoreClosed
	case h.storeErr != "":
		r.Reason, r.Detail = ReasonStoreError, h.storeErr
	case h.authFail:
		r.Reason, r.Detail = ReasonAPIUnauthorized, h.lastFail
	case h.lastOK.IsZero() && now.Sub(h.start) <= window:
		r.Reason, r.Detail = ReasonStarting, h.lastFail
	case h.lastOK.IsZero():
		r.Reason = ReasonNoRecentPoll
		r.Detail = joinNonEmpty("no successful poll since start "+h.start.UTC().Format(time.RFC3339)+
			" (allowed: "+window.String()+")", h.lastFail)
	case now.Sub(h.lastOK) > window:
		r.Reason = ReasonNoRecentPoll
		r.Detail = joinNonEmpty("last successful poll "+now.Sub(h.lastOK).Round(time.Second).String()+
			" ago (allowed: "+window.String()+")", h.lastFail)
	default:
		r.Reason = ReasonReady
		return true, r
	}
	return false, r
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	default:
		return a + ": " + b
	}
}
