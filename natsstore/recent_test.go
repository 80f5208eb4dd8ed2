package natsstore_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/store"
)

// recentOutcomes returns "sink=state/attempts" of every sink of the recent event id.
func recentOutcomes(t *testing.T, s *natsstore.Store, id string) []string {
	t.Helper()
	recent, err := s.RecentEvents(0)
	if err != nil {
		t.Fatalf("RecentEvents: %v", err)
	}
	for _, re := range recent {
		if re.ID != id {
			continue
		}
		var out []string
		for _, o := range re.Sinks {
			out = append(out, fmt.Sprintf("%s=%s/%d", o.Sink, o.State, o.Attempts))
		}
		return out
	}
	t.Fatalf("event %s is not among the %d recent events", id, len(recent))
	return nil
}

func queued(t *testing.T, s *natsstore.Store, sink, id string) store.Record {
	t.Helper()
	for _, r := range pending(t, s, sink) {
		if r.Event.ID == id {
			return r
		}
	}
	t.Fatalf("event %s not queued for %s", id, sink)
	return store.Record{}
}

// TestRecentEventsFollowEveryOutcome: the status page's last events, with STORE=nats,
// show each event's state at each sink as the queues hold it, from any replica.
func TestRecentEventsFollowEveryOutcome(t *testing.T) {
	url := startServer(t).ClientURL()
	s := openNATS(t, url, natsstore.Options{})
	cy := cycle(routed(ev("e0", "u0"), "hook", "chat"), routed(ev("e1", "u1"), "hook", "chat"), routed(ev("e2", "u2"), "hook", "chat"))
	must(t, s.CommitCycle(cy))
	want := func(id string, w ...string) {
		t.Helper()
		if got := recentOutcomes(t, s, id); !slices.Equal(got, w) {
			t.Errorf("%s: outcomes %v, want %v", id, got, w)
		}
	}
	want("e0", "chat=queued/0", "hook=queued/0")

	// hook: e0 fails once, then is delivered; e1 is dead-lettered.
	r0 := queued(t, s, "hook", "e0")
	r0.Attempts, r0.LastError, r0.NextAttemptAt = 1, "connection refused", time.Now().Add(time.Minute)
	r1 := queued(t, s, "hook", "e1")
	r1.Attempts, r1.LastError, r1.LastStatus = 1, "410 Gone", 410
	must(t, s.Settle("hook", store.Settlement{Attempts: []store.Record{r0}, Dead: []store.Record{r1}}))
	want("e0", "chat=queued/0", "hook=waiting/1")
	want("e1", "chat=queued/0", "hook=dead/1")
	must(t, s.Settle("hook", store.Settlement{Acks: []uint64{r0.Seq}}))
	want("e0", "chat=queued/0", "hook=delivered/0")

	// Replayed: queued again at a new seq, then delivered.
	if n, err := s.Replay("hook", []string{"e1"}, false); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	want("e1", "chat=queued/0", "hook=queued/0")
	must(t, s.Settle("hook", store.Settlement{Acks: []uint64{queued(t, s, "hook", "e1").Seq}}))
	want("e1", "chat=queued/0", "hook=delivered/0")

	// Purged.
	must(t, s.Settle("chat", store.Settlement{Dead: []store.Record{queued(t, s, "chat", "e2")}}))
	if n, err := s.Purge("chat", nil, true); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v", n, err)
	}
	want("e2", "chat=purged/0", "hook=queued/0")

	// Another replica sees the same ring, newest first; its repeat of the cycle (dropped
	// by the stream) adds no entry.
	other := openNATS(t, url, natsstore.Options{})
	must(t, other.CommitCycle(cy))
	recent, err := other.RecentEvents(0)
	if err != nil || len(recent) != 3 || recent[0].ID != "e2" || recent[2].ID != "e0" {
		t.Fatalf("another replica's recent events: %d (%v), %v; want e2, e1, e0", len(recent), recent, err)
	}
	if recent[0].ExportType != "sessions csv" || recent[0].Subject != "u2" {
		t.Errorf("recent event e2 = %+v, want its export type and subject", recent[0])
	}

	// queue move re-homes what hook holds; queue drop gives up what chat holds.
	if _, _, err := s.MoveQueue("hook", "hook2"); err != nil {
		t.Fatal(err)
	}
	want("e2", "chat=purged/0", "hook2=queued/0")
	want("e0", "chat=queued/0", "hook=delivered/0")
	if _, _, err := s.DropQueue("chat"); err != nil {
		t.Fatal(err)
	}
	want("e0", "chat=purged/0", "hook=delivered/0")
	want("e1", "chat=purged/0", "hook=delivered/0")
}

func TestRecentEventsAreCapped(t *testing.T) {
	s := openNATS(t, startServer(t).ClientURL(), natsstore.Options{})
	for i := range 3 {
		var evs []store.Routed
		for j := range 70 {
			evs = append(evs, routed(ev(fmt.Sprintf("c%d-%03d", i, j), fmt.Sprintf("u%d", j)), "hook"))
		}
		must(t, s.CommitCycle(cycle(evs...)))
	}
	recent, err := s.RecentEvents(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != store.DefaultRecent || recent[0].ID != "c2-069" || recent[len(recent)-1].ID != "c1-040" {
		t.Fatalf("ring holds %d events (%s .. %s), want the last %d (c2-069 .. c1-040)",
			len(recent), recent[0].ID, recent[len(recent)-1].ID, store.DefaultRecent)
	}
	if top, err := s.RecentEvents(5); err != nil || len(top) != 5 || top[0].ID != "c2-069" {
		t.Errorf("RecentEvents(5) = %d events, %v; want the newest 5", len(top), err)
	}
}

// TestRecentEventsOfSeveralAccounts: the pollers of two accounts commit at the same time
// (as two replicas would); the ring holds every event of both.
func TestRecentEventsOfSeveralAccounts(t *testing.T) {
	url := startServer(t).ClientURL()
	var wg sync.WaitGroup
	for _, acct := range []string{"acme", "globex"} {
		s := openNATS(t, url, natsstore.Options{Account: acct})
		wg.Go(func() {
			for i := range 20 {
				c := cycle(routed(ev(fmt.Sprintf("%s-%02d-a", acct, i), "u1"), "hook"), routed(ev(fmt.Sprintf("%s-%02d-b", acct, i), "u2"), "hook"))
				if err := s.CommitCycle(c); err != nil {
					t.Errorf("%s: CommitCycle: %v", acct, err)
					return
				}
			}
		})
	}
	wg.Wait()
	recent, err := openNATS(t, url, natsstore.Options{}).RecentEvents(0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, re := range recent {
		seen[re.ID] = true
	}
	if len(recent) != 80 || len(seen) != 80 {
		t.Errorf("ring holds %d events (%d distinct), want the 80 of both accounts", len(recent), len(seen))
	}
}
