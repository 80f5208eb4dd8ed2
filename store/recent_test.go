package store_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/store"
)

// outcomes returns "sink=state/attempts" of every sink of the recent event id.
func outcomes(t *testing.T, s *store.Store, id string) []string {
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

func pendingSeq(t *testing.T, s *store.Store, sink, id string) store.Record {
	t.Helper()
	recs, err := s.Pending(sink, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Event.ID == id {
			return r
		}
	}
	t.Fatalf("event %s not queued for %s", id, sink)
	return store.Record{}
}

func TestRecentEventsFollowEveryOutcome(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.CommitCycle(cycle(3, "hook", "chat")); err != nil {
		t.Fatal(err)
	}
	want := func(id string, w ...string) {
		t.Helper()
		if got := outcomes(t, s, id); !slices.Equal(got, w) {
			t.Errorf("%s: outcomes %v, want %v", id, got, w)
		}
	}
	want("ev-000", "chat=queued/0", "hook=queued/0")

	// hook: ev-000 fails once then is delivered; ev-001 is dead-lettered.
	r0 := pendingSeq(t, s, "hook", "ev-000")
	r0.Attempts, r0.LastError, r0.NextAttemptAt = 1, "connection refused", time.Now().Add(time.Minute)
	r1 := pendingSeq(t, s, "hook", "ev-001")
	r1.Attempts, r1.LastError, r1.LastStatus = 1, "410 Gone", 410
	if err := s.Settle("hook", store.Settlement{Attempts: []store.Record{r0}, Dead: []store.Record{r1}}); err != nil {
		t.Fatal(err)
	}
	want("ev-000", "chat=queued/0", "hook=waiting/1")
	want("ev-001", "chat=queued/0", "hook=dead/1")
	if err := s.Settle("hook", store.Settlement{Acks: []uint64{r0.Seq}}); err != nil {
		t.Fatal(err)
	}
	want("ev-000", "chat=queued/0", "hook=delivered/2")

	h, err := s.SinkHealths()
	if err != nil {
		t.Fatal(err)
	}
	if hh := h["hook"]; hh.LastSuccess.IsZero() || hh.LastError != "410 Gone" {
		t.Errorf("hook health = %+v, want a last success and last error 410 Gone", hh)
	}

	// Replayed: queued again, then delivered once.
	if n, err := s.Replay("hook", []string{"ev-001"}, false); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	want("ev-001", "chat=queued/0", "hook=queued/0")
	r1 = pendingSeq(t, s, "hook", "ev-001")
	if err := s.Settle("hook", store.Settlement{Acks: []uint64{r1.Seq}}); err != nil {
		t.Fatal(err)
	}
	want("ev-001", "chat=queued/0", "hook=delivered/1")

	// Purged.
	r2 := pendingSeq(t, s, "chat", "ev-002")
	if err := s.Settle("chat", store.Settlement{Dead: []store.Record{r2}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge("chat", nil, true); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v", n, err)
	}
	want("ev-002", "chat=purged/0", "hook=queued/0")

	// The ring survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	want("ev-001", "chat=queued/0", "hook=delivered/1")
	recent, err := s.RecentEvents(0)
	if err != nil || len(recent) != 3 || recent[0].ID != "ev-002" {
		t.Fatalf("after reopen: %d recent events (first %v), %v; want 3, newest first", len(recent), recent, err)
	}
	// ... and keeps following outcomes after it.
	if err := s.Settle("chat", store.Settlement{Acks: []uint64{pendingSeq(t, s, "chat", "ev-000").Seq}}); err != nil {
		t.Fatal(err)
	}
	want("ev-000", "chat=delivered/1", "hook=delivered/2")
}

func TestRecentEventsAreCapped(t *testing.T) {
	s := open(t, t.TempDir())
	for i := range 3 {
		c := cycle(70, "hook")
		for j := range c.Events {
			c.Events[j].Event.ID = fmt.Sprintf("c%d-%03d", i, j)
		}
		if err := s.CommitCycle(c); err != nil {
			t.Fatal(err)
		}
	}
	recent, err := s.RecentEvents(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != store.DefaultRecent || recent[0].ID != "c2-069" || recent[len(recent)-1].ID != "c1-040" {
		t.Fatalf("ring holds %d events (%s .. %s), want the last %d (c2-069 .. c1-040)",
			len(recent), recent[0].ID, recent[len(recent)-1].ID, store.DefaultRecent)
	}
	// Outcomes of evicted events are ignored; of kept ones recorded.
	var acks []uint64
	recs, _ := s.Pending("hook", 0, 0)
	for _, r := range recs {
		acks = append(acks, r.Seq)
	}
	if err := s.Settle("hook", store.Settlement{Acks: acks}); err != nil {
		t.Fatal(err)
	}
	recent, _ = s.RecentEvents(0)
	for _, re := range recent {
		if re.Sinks[0].State != store.StateDelivered {
			t.Fatalf("%s: %s, want delivered", re.ID, re.Sinks[0].State)
		}
	}
	// The in-memory index holds nothing of evicted or delivered events.
	if refs, entries := s.RingIndexLen(); refs != 0 || entries > store.DefaultRecent {
		t.Errorf("ring index: %d refs, %d entries; want 0 refs (all delivered), at most %d entries", refs, entries, store.DefaultRecent)
	}
}

func TestRecentEventsOffKeepsNone(t *testing.T) {
	s, err := store.Open(t.TempDir(), store.Options{Recent: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CommitCycle(cycle(5, "hook")); err != nil {
		t.Fatal(err)
	}
	if recent, err := s.RecentEvents(0); err != nil || len(recent) != 0 {
		t.Fatalf("ring off: %d recent events, %v; want none", len(recent), err)
	}
}

func TestRecentEventKeepsLabelAndFilename(t *testing.T) {
	s := open(t, t.TempDir())
	c := cycle(1, "hook")
	c.Events[0].Event.Body = []byte(`{"data":{"export":{"filename":"<script>x</script>.csv","subject":{"label":"Depot 7"}}}}`)
	if err := s.CommitCycle(c); err != nil {
		t.Fatal(err)
	}
	recent, err := s.RecentEvents(1)
	if err != nil || len(recent) != 1 {
		t.Fatal(recent, err)
	}
	if recent[0].Filename != "<script>x</script>.csv" || recent[0].Label != "Depot 7" {
		t.Errorf("filename %q label %q", recent[0].Filename, recent[0].Label)
	}
}

func TestOnPollSeesEachPoll(t *testing.T) {
	s := open(t, t.TempDir())
	var got []store.PollInfo
	s.OnPoll(func(p store.PollInfo) { got = append(got, p) })
	if err := s.CommitCycle(cycle(2, "hook")); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePoll(store.PollInfo{At: time.Now(), Error: "timeout", Requests: 1}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].OK || got[0].Events != 2 || got[1].OK || got[1].Error != "timeout" {
		t.Fatalf("OnPoll saw %+v, want the ok cycle then the failed poll", got)
	}
}

func TestInFlightListsPendingAndProcessing(t *testing.T) {
	s := open(t, t.TempDir())
	c := cycle(5)
	e := c.Upserts["uuid-003"]
	e.Status = "processing"
	c.Upserts["uuid-003"] = e
	e = c.Upserts["uuid-001"]
	e.Status = "pending"
	c.Upserts["uuid-001"] = e
	e = c.Upserts["uuid-004"]
	e.Status, e.Missed = "processing", 1 // absent from the last complete listing: still in flight
	c.Upserts["uuid-004"] = e
	if err := s.CommitCycle(c); err != nil {
		t.Fatal(err)
	}
	got, total, err := s.InFlight(10)
	if err == nil && total == 3 {
		got, total = slices.DeleteFunc(got, func(x store.InFlightExport) bool { return x.UUID == "uuid-004" }), 2
	} else {
		t.Fatalf("InFlight = %+v, %d, %v; want 3, one of them missed once", got, total, err)
	}
	if err != nil || total != 2 || len(got) != 2 || got[0].UUID != "uuid-001" || got[1].Status != "processing" {
		t.Fatalf("InFlight = %+v, %d, %v; want uuid-001 pending then uuid-003 processing", got, total, err)
	}
}

func TestRecentEventsFollowQueueMoveAndDrop(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.CommitCycle(cycle(2, "old")); err != nil {
		t.Fatal(err)
	}
	r := pendingSeq(t, s, "old", "ev-001")
	if err := s.Settle("old", store.Settlement{Dead: []store.Record{r}}); err != nil {
		t.Fatal(err)
	}
	if q, d, err := s.MoveQueue("old", "new"); err != nil || q != 1 || d != 1 {
		t.Fatalf("MoveQueue = %d, %d, %v", q, d, err)
	}
	if got := outcomes(t, s, "ev-000"); !slices.Equal(got, []string{"new=queued/0"}) {
		t.Errorf("moved queued event: %v, want new=queued/0", got)
	}
	if got := outcomes(t, s, "ev-001"); !slices.Equal(got, []string{"new=dead/0"}) {
		t.Errorf("moved dead letter: %v, want new=dead/0", got)
	}
	// The moved event is followed at its new home.
	if err := s.Settle("new", store.Settlement{Acks: []uint64{pendingSeq(t, s, "new", "ev-000").Seq}}); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(t, s, "ev-000"); !slices.Equal(got, []string{"new=delivered/1"}) {
		t.Errorf("moved event acked: %v, want new=delivered/1", got)
	}
	if _, _, err := s.DropQueue("new"); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(t, s, "ev-001"); !slices.Equal(got, []string{"new=purged/0"}) {
		t.Errorf("dropped dead letter: %v, want new=purged/0", got)
	}
}
