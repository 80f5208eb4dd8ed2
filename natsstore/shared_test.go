package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/store"
)

// stateStore is everything the bridge asks of a store; both stores must behave alike.
type stateStore interface {
	poller.Store
	delivery.Queue
	sinks.MetaStore
	server.Admin
	server.QueueAdmin
	Enqueue(sink string, evs ...event.Event) error
	Destination(sink string) (string, error)
	SetDestination(sink, fingerprint string) error
	Sinks() ([]string, error)
	SinkHealths() (map[string]store.SinkHealth, error)
	InFlight(limit int) ([]store.InFlightExport, int, error)
	Close() error
}

var (
	_ stateStore = (*store.Store)(nil)
	_ stateStore = (*natsstore.Store)(nil)
)

// backend opens a fresh store; reopen closes it and opens the same state again (a
// restart of the bridge).
type backend struct {
	name string
	open func(t testing.TB) (s stateStore, reopen func() stateStore)
}

func startServer(t testing.TB) *natsserver.Server {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func openNATS(t testing.TB, url string, o natsstore.Options) *natsstore.Store {
	t.Helper()
	s, err := natsstore.OpenURL(context.Background(), url, o)
	if err != nil {
		t.Fatalf("natsstore.OpenURL: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var backends = []backend{
	{"bolt", func(t testing.TB) (stateStore, func() stateStore) {
		dir := t.TempDir()
		open := func() *store.Store {
			s, err := store.Open(dir, store.Options{})
			if err != nil {
				t.Fatalf("store.Open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
		s := open()
		return s, func() stateStore {
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			s = open()
			return s
		}
	}},
	{"nats", func(t testing.TB) (stateStore, func() stateStore) {
		url := startServer(t).ClientURL()
		s := openNATS(t, url, natsstore.Options{})
		return s, func() stateStore {
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			s = openNATS(t, url, natsstore.Options{})
			return s
		}
	}},
}

func ev(id, subject string) event.Event {
	return event.Event{
		ID: id, Type: "export.ready", Subject: subject, Status: "ready", ExportType: "sessions csv",
		DetectedAt: time.Date(2026, 11, 28, 10, 15, 4, 123456789, time.UTC),
		Body:       fmt.Appendf(nil, `{"id":%q,"subject":%q}`, id, subject),
	}
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Event.ID
	}
	return out
}

func pending(t *testing.T, s stateStore, sink string) []store.Record {
	t.Helper()
	recs, err := s.Pending(sink, 0, 0)
	if err != nil {
		t.Fatalf("Pending(%s): %v", sink, err)
	}
	return recs
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func cycle(evs ...store.Routed) store.Cycle {
	return store.Cycle{
		Upserts: map[string]diff.Entry{"u1": {Status: "ready", At: 5}, "u2": {Status: "pending", At: 7, Missed: 1}},
		Events:  evs,
		Poll:    store.PollInfo{At: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), OK: true, Full: true, Exports: 2, Events: len(evs)},
	}
}

func routed(e event.Event, sinks ...string) store.Routed { return store.Routed{Event: e, Sinks: sinks} }

var cases = []struct {
	name string
	run  func(t *testing.T, s stateStore, reopen func() stateStore)
}{
	{"a committed cycle's snapshot, poll facts and queued events survive a restart", func(t *testing.T, s stateStore, reopen func() stateStore) {
		if _, init, err := s.LoadSnapshot(); err != nil || init {
			t.Fatalf("empty store: initialized=%v err=%v, want false, nil", init, err)
		}
		c := cycle(routed(ev("e1", "u1"), "webhook", "slack"), routed(ev("e2", "u2"), "webhook"))
		must(t, s.CommitCycle(c))
		s = reopen()
		snap, init, err := s.LoadSnapshot()
		must(t, err)
		if !init || len(snap) != 2 || snap["u1"] != c.Upserts["u1"] || snap["u2"] != c.Upserts["u2"] {
			t.Errorf("snapshot after restart = %v (initialized %v), want %v", snap, init, c.Upserts)
		}
		p, err := s.LastPoll()
		must(t, err)
		if !p.At.Equal(c.Poll.At) || !p.OK || p.Exports != 2 {
			t.Errorf("LastPoll = %+v, want %+v", p, c.Poll)
		}
		if got := ids(pending(t, s, "webhook")); !slices.Equal(got, []string{"e1", "e2"}) {
			t.Errorf("webhook queue = %v, want [e1 e2]", got)
		}
		recs := pending(t, s, "slack")
		if len(recs) != 1 || recs[0].Event.ID != "e1" || string(recs[0].Event.Body) != string(ev("e1", "u1").Body) ||
			!recs[0].Event.DetectedAt.Equal(ev("e1", "u1").DetectedAt) || recs[0].Event.ExportType != "sessions csv" || recs[0].Sink != "slack" {
			t.Errorf("slack queue = %+v, want e1 with its body and fields", recs)
		}
	}},
	{"a removed export leaves the snapshot", func(t *testing.T, s stateStore, _ func() stateStore) {
		must(t, s.CommitCycle(cycle()))
		must(t, s.CommitCycle(store.Cycle{Removes: []string{"u1"}}))
		snap, _, err := s.LoadSnapshot()
		must(t, err)
		if _, ok := snap["u1"]; ok || len(snap) != 1 {
			t.Errorf("snapshot = %v, want only u2", snap)
		}
		st, err := s.Stats()
		must(t, err)
		if st.Exports != 1 || !st.Initialized {
			t.Errorf("Stats = %+v, want 1 export, initialized", st)
		}
	}},
	{"queued events come out in order, after a sequence and up to a limit", func(t *testing.T, s stateStore, _ func() stateStore) {
		for i := range 5 {
			must(t, s.Enqueue("webhook", ev(fmt.Sprintf("e%d", i), "u1")))
		}
		must(t, s.Enqueue("slack", ev("other", "u9")))
		all := pending(t, s, "webhook")
		if got := ids(all); !slices.Equal(got, []string{"e0", "e1", "e2", "e3", "e4"}) {
			t.Fatalf("queue = %v, want e0..e4", got)
		}
		part, err := s.Pending("webhook", all[1].Seq, 2)
		must(t, err)
		if got := ids(part); !slices.Equal(got, []string{"e2", "e3"}) {
			t.Errorf("Pending(after e1, limit 2) = %v, want [e2 e3]", got)
		}
		if q, d, err := s.Depths("webhook"); err != nil || q != 5 || d != 0 {
			t.Errorf("Depths = %d, %d, %v; want 5, 0", q, d, err)
		}
		if recs := pending(t, s, "nobody"); len(recs) != 0 {
			t.Errorf("unknown sink's queue = %v, want empty", ids(recs))
		}
	}},
	{"an acked event leaves the queue; a failed one keeps its attempt state across a restart", func(t *testing.T, s stateStore, reopen func() stateStore) {
		must(t, s.Enqueue("webhook", ev("a", "u1"), ev("b", "u2")))
		recs := pending(t, s, "webhook")
		next := time.Now().Add(time.Minute).UTC().Truncate(time.Millisecond)
		failed := recs[1]
		failed.Attempts, failed.FirstAttemptAt, failed.NextAttemptAt = 3, next.Add(-time.Hour), next
		failed.LastError, failed.LastStatus = "HTTP 503: busy\nline two", 503
		must(t, s.Settle("webhook", store.Settlement{Acks: []uint64{recs[0].Seq}, Attempts: []store.Record{failed}}))
		s = reopen()
		got := pending(t, s, "webhook")
		if len(got) != 1 || got[0].Event.ID != "b" {
			t.Fatalf("queue after ack and restart = %v, want [b]", ids(got))
		}
		r := got[0]
		if r.Attempts != 3 || !r.NextAttemptAt.Equal(next) || !r.FirstAttemptAt.Equal(next.Add(-time.Hour)) ||
			r.LastError != failed.LastError || r.LastStatus != 503 {
			t.Errorf("attempt state after restart = %d %v %v %q %d, want 3 %v %v %q 503",
				r.Attempts, r.FirstAttemptAt, r.NextAttemptAt, r.LastError, r.LastStatus, next.Add(-time.Hour), next, failed.LastError)
		}
		// Acking twice and saving the attempt of a record no longer queued are no errors.
		must(t, s.Settle("webhook", store.Settlement{Acks: []uint64{recs[0].Seq, r.Seq}}))
		must(t, s.Settle("webhook", store.Settlement{Acks: []uint64{r.Seq}, Attempts: []store.Record{r}}))
		if got := pending(t, s, "webhook"); len(got) != 0 {
			t.Errorf("queue after acking all = %v, want empty", ids(got))
		}
	}},
	{"a dead letter is listed, replayed with the same id, and purged", func(t *testing.T, s stateStore, reopen func() stateStore) {
		must(t, s.Enqueue("webhook-2", ev("d1", "u1"), ev("d2", "u2")))
		recs := pending(t, s, "webhook-2")
		for i := range recs {
			recs[i].Attempts, recs[i].LastError, recs[i].LastStatus = 1, "HTTP 410: gone", 410
		}
		must(t, s.Settle("webhook-2", store.Settlement{Dead: recs}))
		s = reopen()
		dl, err := s.DeadLetters("webhook")
		must(t, err)
		if got := ids(dl); !slices.Equal(got, []string{"d1", "d2"}) {
			t.Fatalf("DeadLetters(webhook) = %v, want [d1 d2]", got)
		}
		if dl[0].Sink != "webhook-2" || dl[0].LastError != "HTTP 410: gone" || dl[0].Attempts != 1 || dl[0].DeadAt.IsZero() {
			t.Errorf("dead letter = %+v, want sink webhook-2, its error, attempts, DeadAt", dl[0])
		}
		if q, d, _ := s.Depths("webhook-2"); q != 0 || d != 2 {
			t.Errorf("Depths = %d, %d; want 0 queued, 2 dead", q, d)
		}
		if _, err := s.Replay("", []string{"d2", "nope"}, false); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Replay of an unknown id: %v, want ErrNotFound", err)
		}
		if n, err := s.Replay("webhook-2", []string{"d2"}, false); err != nil || n != 1 {
			t.Fatalf("Replay(d2) = %d, %v; want 1", n, err)
		}
		back := pending(t, s, "webhook-2")
		if len(back) != 1 || back[0].Event.ID != "d2" || back[0].Attempts != 0 || string(back[0].Event.Body) != string(ev("d2", "u2").Body) {
			t.Errorf("replayed = %+v, want d2 with attempts reset and the same body", back)
		}
		if n, err := s.Purge("", nil, true); err != nil || n != 1 {
			t.Errorf("Purge(all) = %d, %v; want 1", n, err)
		}
		if dl, _ := s.DeadLetters(""); len(dl) != 0 {
			t.Errorf("dead letters after purge = %v", ids(dl))
		}
	}},
	{"dead-lettering an event that is not queued writes nothing", func(t *testing.T, s stateStore, _ func() stateStore) {
		must(t, s.Enqueue("webhook", ev("x", "u1")))
		recs := pending(t, s, "webhook")
		ghost := recs[0]
		ghost.Seq += 100
		err := s.Settle("webhook", store.Settlement{Acks: []uint64{recs[0].Seq}, Dead: []store.Record{ghost}})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Settle with a ghost dead letter: %v, want ErrNotFound", err)
		}
		if got := pending(t, s, "webhook"); len(got) != 1 {
			t.Errorf("queue = %v, want x still queued", ids(got))
		}
	}},
	{"Slack message ids and destinations survive a restart", func(t *testing.T, s stateStore, reopen func() stateStore) {
		must(t, s.PutMeta("slack", "0b5e-uuid", []byte("1700000000.000100")))
		must(t, s.PutMeta("my sink.with dots", "key/with.dots", []byte("v")))
		must(t, s.SetDestination("webhook", "webhook https://example.com/hook"))
		s = reopen()
		if v, err := s.GetMeta("slack", "0b5e-uuid"); err != nil || string(v) != "1700000000.000100" {
			t.Errorf("GetMeta = %q, %v", v, err)
		}
		if v, err := s.GetMeta("my sink.with dots", "key/with.dots"); err != nil || string(v) != "v" {
			t.Errorf("GetMeta of odd names = %q, %v", v, err)
		}
		if v, err := s.GetMeta("slack", "absent"); err != nil || v != nil {
			t.Errorf("GetMeta(absent) = %q, %v; want nil, nil", v, err)
		}
		if d, err := s.Destination("webhook"); err != nil || d != "webhook https://example.com/hook" {
			t.Errorf("Destination = %q, %v", d, err)
		}
		names, err := s.Sinks()
		must(t, err)
		if !slices.Equal(names, []string{"my sink.with dots", "slack"}) {
			t.Errorf("Sinks = %q", names)
		}
	}},
	{"queue move keeps order, attempt state and dead letters; drop deletes everything", func(t *testing.T, s stateStore, _ func() stateStore) {
		must(t, s.Enqueue("old", ev("m1", "u1"), ev("m2", "u1"), ev("m3", "u2")))
		must(t, s.Enqueue("new", ev("n0", "u5")))
		recs := pending(t, s, "old")
		recs[1].Attempts, recs[1].LastError = 2, "timeout"
		must(t, s.Settle("old", store.Settlement{Attempts: []store.Record{recs[1]}, Dead: []store.Record{recs[2]}}))
		must(t, s.PutMeta("old", "u1", []byte("ts-old")))
		q, d, err := s.MoveQueue("old", "new")
		if err != nil || q != 2 || d != 1 {
			t.Fatalf("MoveQueue = %d, %d, %v; want 2, 1", q, d, err)
		}
		got := pending(t, s, "new")
		if !slices.Equal(ids(got), []string{"n0", "m1", "m2"}) || got[2].Attempts != 2 || got[2].LastError != "timeout" {
			t.Errorf("new queue = %v (m2 attempts %d), want [n0 m1 m2] with m2's 2 attempts", ids(got), got[len(got)-1].Attempts)
		}
		if dl, _ := s.DeadLetters("new"); !slices.Equal(ids(dl), []string{"m3"}) {
			t.Errorf("new dead letters = %v, want [m3]", ids(dl))
		}
		if v, _ := s.GetMeta("new", "u1"); string(v) != "ts-old" {
			t.Errorf("moved meta = %q, want ts-old", v)
		}
		if _, _, err := s.MoveQueue("old", "new"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second move: %v, want ErrNotFound", err)
		}
		q, d, err = s.DropQueue("new")
		if err != nil || q != 3 || d != 1 {
			t.Errorf("DropQueue = %d, %d, %v; want 3, 1", q, d, err)
		}
		if got := pending(t, s, "new"); len(got) != 0 {
			t.Errorf("queue after drop = %v", ids(got))
		}
		if v, _ := s.GetMeta("new", "u1"); v != nil {
			t.Errorf("meta after drop = %q, want none", v)
		}
		if _, _, err := s.DropQueue("new"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second drop: %v, want ErrNotFound", err)
		}
	}},
	{"stats count exports, queues and dead letters per sink", func(t *testing.T, s stateStore, _ func() stateStore) {
		must(t, s.CommitCycle(cycle(routed(ev("s1", "u1"), "webhook", "slack"), routed(ev("s2", "u2"), "webhook"))))
		recs := pending(t, s, "webhook")
		must(t, s.Settle("webhook", store.Settlement{Dead: recs[:1]}))
		st, err := s.Stats()
		must(t, err)
		if st.Exports != 2 || !st.Initialized || st.Outbox["webhook"] != 1 || st.Outbox["slack"] != 1 || st.DeadLetters["webhook"] != 1 || !st.LastPoll.OK {
			t.Errorf("Stats = %+v, want 2 exports, outbox webhook 1 slack 1, dead webhook 1", st)
		}
	}},
	{"the status page sees exports in flight and each sink's last success and failure", func(t *testing.T, s stateStore, _ func() stateStore) {
		c := cycle(routed(ev("h1", "u1"), "webhook"), routed(ev("h2", "u2"), "webhook"))
		c.Upserts["u2"] = diff.Entry{Status: "pending", At: 7} // (bolt's InFlight skips an entry with Missed > 0)
		must(t, s.CommitCycle(c))
		recs := pending(t, s, "webhook")
		recs[1].Attempts, recs[1].LastError = 1, "HTTP 503"
		must(t, s.Settle("webhook", store.Settlement{Acks: []uint64{recs[0].Seq}, Attempts: recs[1:]}))
		hs, err := s.SinkHealths()
		must(t, err)
		if h := hs["webhook"]; h.LastSuccess.IsZero() || h.LastError != "HTTP 503" || h.LastErrorAt.IsZero() {
			t.Errorf("SinkHealths = %+v, want webhook's last success and its HTTP 503", hs)
		}
		in, n, err := s.InFlight(10)
		must(t, err)
		if n != 1 || len(in) != 1 || in[0].UUID != "u2" || in[0].Status != "pending" {
			t.Errorf("InFlight = %+v (%d), want u2 pending", in, n)
		}
	}},
}

func TestStoresBehaveAlike(t *testing.T) {
	for _, b := range backends {
		for _, c := range cases {
			t.Run(b.name+"/"+c.name, func(t *testing.T) {
				s, reopen := b.open(t)
				c.run(t, s, reopen)
			})
		}
	}
}
