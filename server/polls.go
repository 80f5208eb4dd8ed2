package server

import (
	"sync"
	"time"

	"github.com/exportbridge/exportbridge/store"
)

// Polls kept by a PollRecorder, and the span of its per-minute counts.
const (
	RecentPolls  = 20
	ChartMinutes = 60
)

// Poll is one poll cycle as the status page shows it.
type Poll struct {
	Account       string // the accounts: entry polled; empty for the one account of API_TOKEN
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
// for concurrent use. With an accounts: list the polls of every account are recorded
// together, each with its own requests, rate limit and budget.
type PollRecorder struct {
	budget   func(account string) int
	requests func(account string) int64
	rate     func(account string) (limit, remaining int, ok bool)

	mu      sync.Mutex
	polls   []Poll // ring of RecentPolls, next at polls[next%RecentPolls]
	next    int
	lastReq map[string]int64     // each account's request counter at its last poll
	minutes [ChartMinutes]Minute // every account's, indexed by unix minute % ChartMinutes
	current map[string]Minute    // each account's requests in the minute of its last poll
}

// NewPollRecorder returns a recorder; each function is asked about the account of a
// poll ("" for the one account of API_TOKEN). budget returns the API requests per minute
// the account may use (API_BUDGET; nil or 0: unknown). requests returns the account's
// API client request counter (the requests of a poll are the difference since that
// account's previous poll; nil: the poll's own count); rate returns its last rate-limit
// headers (nil: the poll's own figure).
func NewPollRecorder(budget func(account string) int, requests func(account string) int64, rate func(account string) (limit, remaining int, ok bool)) *PollRecorder {
	r := &PollRecorder{budget: budget, requests: requests, rate: rate, lastReq: map[string]int64{}, current: map[string]Minute{}}
	if requests != nil {
		r.lastReq[""] = requests("")
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
		n := r.requests(p.Account)
		reqs = int(n - r.lastReq[p.Account]) // a named account's counter starts at 0 with its client
		r.lastReq[p.Account] = n
	}
	if last := r.last(p.Account); last != nil && !p.OK && !last.OK && last.At.Equal(p.At) {
		last.Events += p.Events
		last.Requests += reqs
		r.count(p.Account, p.At, reqs, p.Events)
		return
	}
	rem := p.RateRemaining
	if !p.OK {
		rem = -1
	}
	if r.rate != nil {
		if _, remaining, ok := r.rate(p.Account); ok {
			rem = remaining
		}
	}
	r.count(p.Account, p.At, reqs, p.Events)
	poll := Poll{Account: p.Account, At: p.At, Full: p.Full, OK: p.OK, Error: p.Error, Requests: reqs, Events: p.Events, RateRemaining: rem}
	if b := r.budgetOf(p.Account); b > 0 {
		poll.BudgetUsed = float64(r.current[p.Account].Requests) / float64(b)
	}
	if len(r.polls) < RecentPolls {
		r.polls = append(r.polls, poll)
	} else {
		r.polls[r.next%RecentPolls] = poll
	}
	r.next++
}

func (r *PollRecorder) budgetOf(account string) int {
	if r.budget == nil {
		return 0
	}
	return r.budget(account)
}

// last is the newest poll of account, if it is the newest of all.
func (r *PollRecorder) last(account string) *Poll {
	if r.next == 0 {
		return nil
	}
	if p := &r.polls[(r.next-1)%RecentPolls]; p.Account == account {
		return p
	}
	return nil
}

func (r *PollRecorder) count(account string, at time.Time, reqs, events int) {
	start := at.Truncate(time.Minute)
	m := &r.minutes[start.Unix()/60%ChartMinutes]
	if !m.Start.Equal(start) {
		*m = Minute{Start: start}
	}
	m.Requests += reqs
	m.Events += events
	c := r.current[account]
	if !c.Start.Equal(start) {
		c = Minute{Start: start}
	}
	c.Requests += reqs
	c.Events += events
	r.current[account] = c
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
