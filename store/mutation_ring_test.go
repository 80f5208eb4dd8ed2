package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/store"
)

// TestRecentEventsFollowWaitingAndDeadEventsAcrossARestart: the status page's ring keeps
// following an event that was waiting for a retry or dead-lettered before a restart: its
// later delivery or purge shows, not the state it had at the restart.
func TestRecentEventsFollowWaitingAndDeadEventsAcrossARestart(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, s *store.Store, r store.Record) // the outcome before the restart
		after  func(t *testing.T, s *store.Store, r store.Record) // the outcome after it
		want   string
	}{
		{"waiting, then delivered",
			func(t *testing.T, s *store.Store, r store.Record) {
				r.Attempts, r.LastError, r.NextAttemptAt = 1, "HTTP 503", time.Now().Add(time.Minute)
				if err := s.Settle("hook", store.Settlement{Attempts: []store.Record{r}}); err != nil {
					t.Fatal(err)
				}
			},
			func(t *testing.T, s *store.Store, r store.Record) {
				if err := s.Settle("hook", store.Settlement{Acks: []uint64{r.Seq}}); err != nil {
					t.Fatal(err)
				}
			}, "hook=delivered"},
		{"dead, then purged",
			func(t *testing.T, s *store.Store, r store.Record) {
				r.Attempts, r.LastError, r.DeadAt = 1, "HTTP 410", time.Now()
				if err := s.Settle("hook", store.Settlement{Dead: []store.Record{r}}); err != nil {
					t.Fatal(err)
				}
			},
			func(t *testing.T, s *store.Store, _ store.Record) {
				if n, err := s.Purge("hook", nil, true); err != nil || n != 1 {
					t.Fatalf("Purge = %d, %v", n, err)
				}
			}, "hook=purged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := store.Open(dir, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CommitCycle(cycle(1, "hook")); err != nil {
				t.Fatal(err)
			}
			r := pendingSeq(t, s, "hook", "ev-000")
			tt.before(t, s, r)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, dir)
			tt.after(t, s, r)
			if got := outcomes(t, s, "ev-000"); len(got) != 1 || !strings.HasPrefix(got[0], tt.want+"/") {
				t.Errorf("after the restart: outcomes %v, want %s", got, tt.want)
			}
		})
	}
}

// TestRecentEventShowsNextAttemptAndDeathTime: the status page shows when a waiting
// event is retried next, and when a dead-lettered one died.
func TestRecentEventShowsNextAttemptAndDeathTime(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.CommitCycle(cycle(2, "hook")); err != nil {
		t.Fatal(err)
	}
	next := time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC)
	died := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	w, d := pendingSeq(t, s, "hook", "ev-000"), pendingSeq(t, s, "hook", "ev-001")
	w.Attempts, w.LastError, w.NextAttemptAt = 1, "HTTP 503", next
	d.Attempts, d.LastError, d.DeadAt = 1, "HTTP 410", died
	if err := s.Settle("hook", store.Settlement{Attempts: []store.Record{w}, Dead: []store.Record{d}}); err != nil {
		t.Fatal(err)
	}
	recent, err := s.RecentEvents(0)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, re := range recent {
		if len(re.Sinks) != 1 {
			t.Fatalf("%s: outcomes %+v, want one (hook)", re.ID, re.Sinks)
		}
		o := re.Sinks[0]
		switch re.ID {
		case "ev-000":
			seen++
			if o.State != store.StateWaiting || !o.NextAttempt.Equal(next) || !o.At.IsZero() {
				t.Errorf("waiting event: %+v, want state waiting, next attempt %v, no time of death", o, next)
			}
		case "ev-001":
			seen++
			if o.State != store.StateDead || !o.At.Equal(died) || !o.NextAttempt.IsZero() {
				t.Errorf("dead event: %+v, want state dead at %v, no next attempt", o, died)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("found %d of the 2 events among %d recent ones", seen, len(recent))
	}
}

// TestSinkThatNeverDeliveredShowsNoLastSuccess: the status page's sink health shows a
// last success only once the sink delivered something; failures alone leave it empty.
func TestSinkThatNeverDeliveredShowsNoLastSuccess(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.CommitCycle(cycle(2, "hook")); err != nil {
		t.Fatal(err)
	}
	r := pendingSeq(t, s, "hook", "ev-000")
	r.Attempts, r.LastError, r.NextAttemptAt = 1, "HTTP 503", time.Now().Add(time.Minute)
	if err := s.Settle("hook", store.Settlement{Attempts: []store.Record{r}}); err != nil {
		t.Fatal(err)
	}
	h, err := s.SinkHealths()
	if err != nil {
		t.Fatal(err)
	}
	if hh := h["hook"]; !hh.LastSuccess.IsZero() || hh.LastError != "HTTP 503" {
		t.Errorf("hook health after one failure = %+v, want no last success and last error HTTP 503", hh)
	}
	if err := s.Settle("hook", store.Settlement{Acks: []uint64{pendingSeq(t, s, "hook", "ev-001").Seq}}); err != nil {
		t.Fatal(err)
	}
	if h, err = s.SinkHealths(); err != nil || h["hook"].LastSuccess.IsZero() {
		t.Errorf("hook health after a delivery = %+v, %v; want a last success", h["hook"], err)
	}
}

// TestStatusPageListsHonourTheirLimit: the status page's lists hold at most the number
// asked for (all with 0), oldest in-flight request first, with the full count beside.
func TestStatusPageListsHonourTheirLimit(t *testing.T) {
	s := open(t, t.TempDir())
	c := cycle(5, "hook")
	for uuid, e := range c.Upserts {
		e.Status = "processing"
		c.Upserts[uuid] = e
	}
	if err := s.CommitCycle(c); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ limit, want int }{{2, 2}, {5, 5}, {0, 5}} {
		recent, err := s.RecentEvents(tt.limit)
		if err != nil || len(recent) != tt.want {
			t.Errorf("RecentEvents(%d) = %d events, %v; want %d", tt.limit, len(recent), err, tt.want)
		}
		in, total, err := s.InFlight(tt.limit)
		if err != nil || len(in) != tt.want || total != 5 || in[0].UUID != "uuid-000" {
			t.Errorf("InFlight(%d) = %d exports (first %+v) of %d, %v; want %d of 5, uuid-000 first", tt.limit, len(in), in[:min(len(in), 1)], total, err, tt.want)
		}
	}
}

// TestRecentEventsOfOneLargeCycle: a cycle of more events than the ring holds leaves
// exactly the ring's capacity of its newest events there.
func TestRecentEventsOfOneLargeCycle(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.CommitCycle(cycle(150, "hook")); err != nil {
		t.Fatal(err)
	}
	recent, err := s.RecentEvents(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != store.DefaultRecent || recent[0].ID != "ev-149" || recent[len(recent)-1].ID != "ev-050" {
		t.Fatalf("ring holds %d events, want the last %d of the cycle (ev-149 .. ev-050)", len(recent), store.DefaultRecent)
	}
}

// TestRecentEventsFollowAReplayAfterAFailedOne: a replay that fails (one of its ids is not
// a dead letter) changes nothing, in the store and in what the status page shows; a
// replay of the same dead letter after it shows it queued again, then delivered: nothing
// of the failed transaction stays in the ring's in-memory index. (It does not reach
// recent.go's ringFailed: the index is revised only when a transaction's work succeeded,
// so only a failing bbolt commit, the chaos disk test, gets there.)
func TestRecentEventsFollowAReplayAfterAFailedOne(t *testing.T) {
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	e := ev("e-1", "u1")
	if err := s.CommitCycle(store.Cycle{Events: []store.Routed{{Event: e, Sinks: []string{"hook"}}}, Poll: store.PollInfo{At: time.Now(), OK: true}}); err != nil {
		t.Fatal(err)
	}
	recs := pending(t, s, "hook")
	if err := s.Settle("hook", store.Settlement{Dead: recs}); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		t.Helper()
		re, err := s.RecentEvents(1)
		if err != nil || len(re) != 1 || len(re[0].Sinks) != 1 {
			t.Fatalf("RecentEvents: %+v, %v", re, err)
		}
		return re[0].Sinks[0].State
	}
	if got := state(); got != store.StateDead {
		t.Fatalf("after dead-lettering: %s, want %s", got, store.StateDead)
	}
	if _, err := s.Replay("hook", []string{"e-1", "no-such-event"}, false); err == nil {
		t.Fatal("a replay naming a missing dead letter succeeded, want an error and nothing replayed")
	}
	if got := state(); got != store.StateDead {
		t.Fatalf("after the failed replay: %s, want still %s", got, store.StateDead)
	}
	if n, err := s.Replay("hook", []string{"e-1"}, false); err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	if got := state(); got != store.StateQueued {
		t.Errorf("after the replay: %s, want %s (the status page still shows the dead letter)", got, store.StateQueued)
	}
	again := pending(t, s, "hook")
	if err := s.Settle("hook", store.Settlement{Acks: []uint64{again[0].Seq}}); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != store.StateDelivered {
		t.Errorf("after delivery: %s, want %s", got, store.StateDelivered)
	}
}
