package poller

import (
	"fmt"
	"time"
)

// DefaultProgressEvery is how often a long listing reports its progress (SPEC "Long work
// shows progress").
const DefaultProgressEvery = 10 * time.Second

// Progress is where a full listing (the baseline or a periodic full sync) stands. There
// is no total: the API does not promise one, so neither does the line.
type Progress struct {
	Listing   string // "baseline" or "full listing"
	Started   time.Time
	At        time.Time
	Pages     int     // pages read so far
	Exports   int     // distinct exports read so far
	PerMinute float64 // API requests per minute since the listing started (its cheap cycles included)
	// RateRemaining is the API's last X-RateLimit-Remaining; -1 when none was seen.
	RateRemaining int
	Done          bool // the listing ended (complete or failed); the line can go
}

// String is the progress line of the log and the status page.
func (g Progress) String() string {
	s := fmt.Sprintf("%s: %d pages, %d exports read in %s, %.0f requests/min", g.Listing, g.Pages, g.Exports,
		g.At.Sub(g.Started).Round(time.Second), g.PerMinute)
	if g.RateRemaining >= 0 {
		s += fmt.Sprintf(", rate limit %d left", g.RateRemaining)
	}
	return s
}

// progress follows one listing and reports it every ProgressEvery.
type progress struct {
	p     *Poller
	g     Progress
	reqs0 int64
	last  time.Time
}

func (p *Poller) startProgress(listing string) *progress {
	now := p.o.Now()
	return &progress{p: p, g: Progress{Listing: listing, Started: now}, reqs0: p.o.Client.Requests(), last: now}
}

// page counts one page of fresh exports and reports when ProgressEvery has passed.
func (t *progress) page(fresh int) {
	t.g.Pages++
	t.g.Exports += fresh
	if t.p.o.Now().Sub(t.last) >= t.p.o.ProgressEvery {
		t.report(false)
	}
}

// end reports the last state of a listing that reported at least once (a short listing
// says nothing).
func (t *progress) end() {
	if t.g.At.IsZero() {
		return
	}
	t.report(true)
}

func (t *progress) report(done bool) {
	now := t.p.o.Now()
	t.last = now
	t.g.At, t.g.Done = now, done
	if mins := now.Sub(t.g.Started).Minutes(); mins > 0 {
		t.g.PerMinute = float64(t.p.o.Client.Requests()-t.reqs0) / mins
	}
	t.g.RateRemaining = -1
	if _, rem, ok := t.p.o.Client.RateLimit(); ok {
		t.g.RateRemaining = rem
	}
	if !done {
		t.p.o.Logger.Info("listing in progress: "+t.g.String(), "listing", t.g.Listing, "pages", t.g.Pages,
			"exports_read", t.g.Exports, "requests_per_minute", int(t.g.PerMinute+0.5), "ratelimit_remaining", t.g.RateRemaining,
			"elapsed", t.g.At.Sub(t.g.Started).Round(time.Second).String())
	}
	if t.p.o.OnProgress != nil {
		t.p.o.OnProgress(t.g)
	}
}
