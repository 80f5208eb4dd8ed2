package poller_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/poller"
)

// stepClock is a clock that moves on by step at each reading: a listing of a few pages
// then looks as long as one of thousands under the rate limit.
type stepClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

// TestLongListingReportsProgress: a full listing that takes longer than ProgressEvery
// logs a progress line (pages, exports read, requests per minute, rate limit left) and
// hands it to OnProgress, and says when it is done; a short one says nothing.
func TestLongListingReportsProgress(t *testing.T) {
	tests := []struct {
		name     string
		step     time.Duration // clock step per reading
		reported bool
	}{
		{"long listing", 3 * time.Second, true},
		{"short listing", time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			var mu sync.Mutex
			var got []poller.Progress
			clock := &stepClock{now: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC), step: tt.step}
			f := newFixture(t, 1000, func(o *poller.Options) {
				o.Now = clock.Now
				o.ProgressEvery = 10 * time.Second
				o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				o.OnProgress = func(g poller.Progress) { mu.Lock(); got = append(got, g); mu.Unlock() }
			})
			rep := f.cycle()
			if !rep.Full || rep.Exports != 1000 {
				t.Fatalf("baseline %+v, want a full listing of 1000 exports", rep)
			}
			mu.Lock()
			defer mu.Unlock()
			if !tt.reported {
				if len(got) != 0 || strings.Contains(logs.String(), "listing in progress") {
					t.Fatalf("a short listing reported %v\n%s", got, logs.String())
				}
				return
			}
			if len(got) < 2 {
				t.Fatalf("got %d progress reports, want some during the listing and one at its end\n%s", len(got), logs.String())
			}
			for i, g := range got[:len(got)-1] {
				if g.Done || g.Listing != "baseline" || g.Pages < 1 || g.Exports > 1000 || g.PerMinute <= 0 {
					t.Errorf("report %d during the listing: %+v", i, g)
				}
				if i > 0 && g.Pages <= got[i-1].Pages {
					t.Errorf("report %d: %d pages after %d", i, g.Pages, got[i-1].Pages)
				}
			}
			last := got[len(got)-1]
			if !last.Done || last.Exports != 1000 || last.Pages != rep.Requests {
				t.Errorf("last report %+v, want done with 1000 exports in %d pages", last, rep.Requests)
			}
			if !strings.Contains(logs.String(), "listing in progress: baseline: ") || !strings.Contains(logs.String(), "requests/min") {
				t.Errorf("no progress line in the log:\n%s", logs.String())
			}
		})
	}
}
