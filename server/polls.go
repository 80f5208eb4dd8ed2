package server

import (
	"sync"
	"time"

	"github.com/exportbridge/exportbridge/store"
)

// Polls kept by a PollRecorder, and the span of its per-minute counts.
const (
	RecentPolls   = 20
	ChartMinutes  = 60
	budgetMinutes = 1
)

// Poll is one poll cycle as the status page shows it.
type Poll struct {
	At            time.Time
	Full          bool
	OK            bool
	Error         string
	Requests      int
	Events        int
	RateRemaining int // -1: unknown
	// BudgetUsed is the share of API_BUDGET spent in the minute up to this poll
	// (requests of the last 60 s / API_BUDGET); 0 when no budget is known.
	BudgetUsed float64
}

// Minute is the count of API requests and events of one minute.
type Minute struct {
	Start    time.Time
	Requests int
	Events   int
}

// PollRecorder keeps, in memory, the last RecentPolls polls and per-minute counts of API
// requests and events for the last hour. Feed it with Observe (store.OnPoll). It is safe
// for concurrent use.
type PollRecorder struct {
	budget   func() int
	requests func() int64
	rate     func() (limit, remaining int, ok bool)

	mu      sync.Mutex
	polls   []Poll // ring of RecentPolls, next at polls[next%RecentPolls]
	next    int
	lastReq int64
	minutes [ChartMinutes]Minute // indexed by unix minute % ChartMinutes
}

// NewPollRecorder returns a recorder. budget returns the API requests per minute the
// bridge may use (API_BUDGET; nil or 0: unknown).
// requests returns the API client's request counter (the requests of a poll are the
// difference since the previous one; nil: the poll's own count); rate returns the last
// rate-limit headers (nil: the poll's own figure).
func NewPollRecorder(budget func() int, requests func() int64, rate func() (limit, remaining int, ok bool)) *PollRecorder {
	r := &PollRecorder{budget: budget, requests: requests, rate: rate}
	if requests != nil {
		r.lastReq = requests()
	}
	return r
}

// Observe records one poll's facts. A failed poll that queued bridge.poll_failing is
// committed twice with the same time: the second adds its event to the first.
func (r *PollRecorder) Observe(p store.PollInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs := p.Requests
	if r.requests != nil {
		n := r.requests()
		reqs = int(n - r.lastReq)
		r.lastReq = n
	}
	if last := r.last(); last != nil && !p.OK && !last.OK && last.At.Equal(p.At) {
		last.Events += p.Events
		last.Requests += reqs
		r.count(p.At, reqs, p.Events)
		return
	}
	rem := p.RateRemaining
	if !p.OK {
		rem = -1
	}
	if r.rate != nil {
		if _, remaining, ok := r.rate(); ok {
			rem = remaining
		}
	}
	r.count(p.At, reqs, p.Events)
	poll := Poll{At: p.At, Full: p.Full, OK: p.OK, Error: p.Error, Requests: reqs, Events: p.Events, RateRemaining: rem}
	if b := r.budgetNow(); b > 0 {
		used := 0
		for _, m := range r.window(p.At, budgetMinutes) {
			used += m.Requests
		}
		poll.BudgetUsed = float64(used) / float64(b)
	}
	if len(r.polls) < RecentPolls {
		r.polls = append(r.polls, poll)
	} else {
		r.polls[r.next%RecentPolls] = poll
	}
	r.next++
}

func (r *PollRecorder) budgetNow() int {
	if r.budget == nil {
		return 0
	}
	return r.budget()
}

func (r *PollRecorder) last() *Poll {
	if r.next == 0 {
		return nil
	}
	return &r.polls[(r.next-1)%RecentPolls]
}

func (r *PollRecorder) count(at time.Time, reqs, events int) {
	start := at.Truncate(time.Minute)
	m := &r.minutes[start.Unix()/60%ChartMinutes]
	if !m.Start.Equal(start) {
		*m = Minute{Start: start}
	}
	m.Requests += reqs
	m.Events += events
}

// window returns the n minutes up to the one of now, oldest first (missing minutes are
// zero).
func (r *PollRecorder) window(now time.Time, n int) []Minute {
	end := now.Truncate(time.Minute)
	out := make([]Minute, n)
	for i := range n {
		start := end.Add(-time.Duration(n-1-i) * time.Minute)
		m := r.minutes[start.Unix()/60%ChartMinutes]
		if !m.Start.Equal(start) {
			m = Minute{Start: start}
		}
		out[i] = m
	}
	return out
}

// Polls returns the recorded polls, newest first.
func (r *PollRecorder) Polls() []Poll {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Poll, 0, len(r.polls))
	for i := r.next - 1; i >= 0 && i >= r.next-len(r.polls); i-- {
		out = append(out, r.polls[i%RecentPolls])
	}
	return out
}

// Minutes returns the per-minute counts of the ChartMinutes minutes up to now, oldest
// first.
func (r *PollRecorder) Minutes(now time.Time) []Minute {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.window(now, ChartMinutes)
}
