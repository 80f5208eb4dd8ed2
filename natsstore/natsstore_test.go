package natsstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/store"
)

func TestRepeatedDetection(t *testing.T) {
	cases := []struct {
		name string
		// between runs between the first commit and the repeated one.
		between func(t *testing.T, s *natsstore.Store)
	}{
		{"a cycle committed again (crash before the snapshot) queues nothing twice", func(*testing.T, *natsstore.Store) {}},
		{"a cycle committed again after its events were delivered queues nothing again", func(t *testing.T, s *natsstore.Store) {
			for _, sink := range []string{"webhook", "slack"} {
				recs := pending(t, s, sink)
				var acks []uint64
				for _, r := range recs {
					acks = append(acks, r.Seq)
				}
				must(t, s.Settle(sink, store.Settlement{Acks: acks}))
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := startServer(t).ClientURL()
			s := openNATS(t, url, natsstore.Options{})
			cy := cycle(routed(ev("e1", "u1"), "webhook", "slack"), routed(ev("e2", "u2"), "webhook"))
			must(t, s.CommitCycle(cy))
			want := map[string]int{"webhook": 2, "slack": 1}
			for sink, n := range want {
				if q, _, _ := s.Depths(sink); q != n {
					t.Fatalf("%s queue after the first commit = %d, want %d (one message per sink of each event)", sink, q, n)
				}
			}
			c.between(t, s)
			before := map[string]int{}
			for sink := range want {
				before[sink], _, _ = s.Depths(sink)
			}
			// A new leader (another connection) detects the same transitions again.
			other := openNATS(t, url, natsstore.Options{})
			must(t, other.CommitCycle(cy))
			for sink := range want {
				if q, _, _ := s.Depths(sink); q != before[sink] {
					t.Errorf("%s queue after the repeat = %d, want %d (repeats dropped)", sink, q, before[sink])
				}
			}
		})
	}
}

func TestFencedWritesAreRefused(t *testing.T) {
	s := openNATS(t, startServer(t).ClientURL(), natsstore.Options{})
	must(t, s.Enqueue("webhook", ev("q", "u1")))
	lost := errors.New("lease lost")
	f := s.Fenced(func() error { return lost })
	recs := pending(t, s, "webhook")
	writes := []struct {
		name string
		do   func() error
	}{
		{"CommitCycle", func() error { return f.CommitCycle(cycle(routed(ev("n", "u2"), "webhook"))) }},
		{"SavePoll", func() error { return f.SavePoll(store.PollInfo{At: time.Now()}) }},
		{"Settle", func() error { return f.Settle("webhook", store.Settlement{Acks: []uint64{recs[0].Seq}}) }},
		{"Enqueue", func() error { return f.Enqueue("webhook", ev("z", "u3")) }},
	}
	for _, w := range writes {
		if err := w.do(); !errors.Is(err, natsstore.ErrFenced) || !errors.Is(err, lost) {
			t.Errorf("%s on a fenced store: %v, want ErrFenced wrapping the lease's error", w.name, err)
		}
	}
	if got := ids(pending(t, s, "webhook")); len(got) != 1 || got[0] != "q" {
		t.Errorf("queue after fenced writes = %v, want [q] only", got)
	}
	if _, init, _ := s.LoadSnapshot(); init {
		t.Error("a fenced CommitCycle initialized the snapshot")
	}
	ok := s.Fenced(func() error { return nil })
	must(t, ok.Settle("webhook", store.Settlement{Acks: []uint64{recs[0].Seq}}))
}

func TestOpenCreatesAndUpgradesItsState(t *testing.T) {
	url := startServer(t).ClientURL()
	openNATS(t, url, natsstore.Options{})
	openNATS(t, url, natsstore.Options{Duplicates: 5 * time.Minute})
	nc, err := nats.Connect(url)
	must(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	must(t, err)
	ctx := context.Background()
	for _, name := range []string{natsstore.OutboxStream, natsstore.DLQStream} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if d := st.CachedInfo().Config.Duplicates; d != 5*time.Minute {
			t.Errorf("stream %s duplicate window = %v, want 5m (upgraded on open)", name, d)
		}
	}
	if _, err := js.KeyValue(ctx, natsstore.Bucket); err != nil {
		t.Errorf("bucket %s: %v", natsstore.Bucket, err)
	}
}

func TestOpenRefusesBadSettings(t *testing.T) {
	url := startServer(t).ClientURL()
	cases := []struct {
		name string
		url  string
		o    natsstore.Options
		want string
	}{
		{"replicas out of range", url, natsstore.Options{Replicas: 7}, "STORE_NATS_REPLICAS is 7 (expected 1 to 5)"},
		{"three replicas on a single server", url, natsstore.Options{Replicas: 3}, "create or update bucket"},
		{"no URL", "", natsstore.Options{}, "STORE_NATS_URL is empty"},
		{"password not shown", "nats://bob:hunter2@127.0.0.1:1", natsstore.Options{}, "nats://***@127.0.0.1:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := natsstore.OpenURL(context.Background(), c.url, c.o, nats.Timeout(2*time.Second))
			if err == nil {
				_ = s.Close()
				t.Fatalf("OpenURL succeeded, want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error = %q, want it to contain %q and no password", err, c.want)
			}
		})
	}
}

func TestAccountsHaveTheirOwnSnapshot(t *testing.T) {
	url := startServer(t).ClientURL()
	a := openNATS(t, url, natsstore.Options{Account: "acme"})
	b := openNATS(t, url, natsstore.Options{Account: "globex"})
	must(t, a.CommitCycle(cycle()))
	if snap, init, err := b.LoadSnapshot(); err != nil || init || len(snap) != 0 {
		t.Errorf("other account's snapshot = %v (initialized %v, %v), want empty", snap, init, err)
	}
	if snap, init, _ := a.LoadSnapshot(); !init || len(snap) != 2 {
		t.Errorf("own snapshot = %v (initialized %v), want 2 exports", snap, init)
	}
}

// ForAccount views one connection's store as another account: its own snapshot, the
// shared outbox.
func TestForAccountIsAnotherAccountsSnapshot(t *testing.T) {
	url := startServer(t).ClientURL()
	s := openNATS(t, url, natsstore.Options{})
	acme, globex := s.ForAccount("acme"), s.ForAccount("globex")
	must(t, acme.CommitCycle(cycle(routed(ev("e1", "u1"), "webhook"))))
	if snap, init, err := globex.LoadSnapshot(); err != nil || init || len(snap) != 0 {
		t.Errorf("globex's snapshot = %v (initialized %v, %v), want empty", snap, init, err)
	}
	if snap, init, _ := s.LoadSnapshot(); init || len(snap) != 0 {
		t.Errorf("default's snapshot = %v (initialized %v), want empty", snap, init)
	}
	if snap, init, _ := openNATS(t, url, natsstore.Options{Account: "acme"}).LoadSnapshot(); !init || len(snap) != 2 {
		t.Errorf("acme's snapshot from another connection = %v (initialized %v), want 2 exports", snap, init)
	}
	if q, _, _ := globex.Depths("webhook"); q != 1 {
		t.Errorf("the outbox seen from globex holds %d events, want acme's 1 (one outbox for all accounts)", q)
	}
}
