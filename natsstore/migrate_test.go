package natsstore_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/store"
)

// boltWithState is a bolt store with a snapshot, two queues (one record with attempt
// state), a dead letter, a Slack message id and a destination.
func boltWithState(t *testing.T) *store.Store {
	t.Helper()
	b, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	must(t, b.CommitCycle(cycle(routed(ev("e1", "u1"), "webhook", "slack"), routed(ev("e2", "u2"), "webhook"), routed(ev("e3", "u2"), "webhook"))))
	recs := pending(t, b, "webhook")
	recs[1].Attempts, recs[1].LastError = 4, "HTTP 502"
	must(t, b.Settle("webhook", store.Settlement{Attempts: recs[1:2], Dead: recs[2:3]}))
	must(t, b.PutMeta("slack", "u1", []byte("1700000000.000100")))
	must(t, b.SetDestination("webhook", "webhook https://example.com/h"))
	return b
}

func TestMigrate(t *testing.T) {
	t.Run("a bolt store moves with its snapshot, queues, attempt state, dead letters and Slack ids", func(t *testing.T) {
		from := boltWithState(t)
		to := openNATS(t, startServer(t).ClientURL(), natsstore.Options{})
		m, err := natsstore.Migrate(from, to, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Already || m.Exports != 2 || m.Queued != 3 || m.Dead != 1 || m.Meta != 1 {
			t.Errorf("Migrate = %+v, want 2 exports, 3 queued, 1 dead, 1 meta", m)
		}
		snap, init, err := to.LoadSnapshot()
		must(t, err)
		want, _, _ := from.LoadSnapshot()
		if !init || len(snap) != len(want) || snap["u2"] != want["u2"] {
			t.Errorf("snapshot = %v (initialized %v), want %v", snap, init, want)
		}
		wh := pending(t, to, "webhook")
		if !slices.Equal(ids(wh), []string{"e1", "e2"}) || wh[1].Attempts != 4 || wh[1].LastError != "HTTP 502" {
			t.Errorf("webhook queue = %v (e2 attempts %d), want [e1 e2] with e2's 4 attempts", ids(wh), wh[len(wh)-1].Attempts)
		}
		if got := ids(pending(t, to, "slack")); !slices.Equal(got, []string{"e1"}) {
			t.Errorf("slack queue = %v", got)
		}
		if dl, _ := to.DeadLetters(""); !slices.Equal(ids(dl), []string{"e3"}) {
			t.Errorf("dead letters = %v, want [e3]", ids(dl))
		}
		if v, _ := to.GetMeta("slack", "u1"); string(v) != "1700000000.000100" {
			t.Errorf("Slack message id = %q", v)
		}
		if d, _ := to.Destination("webhook"); d != "webhook https://example.com/h" {
			t.Errorf("destination = %q", d)
		}
		again, err := natsstore.Migrate(from, to, nil)
		if err != nil || !again.Already {
			t.Errorf("second Migrate = %+v, %v; want Already", again, err)
		}
		if q, d, _ := to.Depths("webhook"); q != 2 || d != 1 {
			t.Errorf("after a second run: %d queued, %d dead; want 2, 1 (nothing copied twice)", q, d)
		}
	})
	t.Run("a JetStream store a bridge already uses is refused", func(t *testing.T) {
		from := boltWithState(t)
		to := openNATS(t, startServer(t).ClientURL(), natsstore.Options{})
		must(t, to.CommitCycle(cycle()))
		if _, err := natsstore.Migrate(from, to, nil); !errors.Is(err, natsstore.ErrNotEmpty) {
			t.Errorf("Migrate into a used store: %v, want ErrNotEmpty", err)
		}
		if q, _, _ := to.Depths("webhook"); q != 0 {
			t.Errorf("%d events copied into a used store, want none", q)
		}
	})
}
