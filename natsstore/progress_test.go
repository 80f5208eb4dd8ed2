package natsstore_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/store"
)

// reports records what a store tells its Progress hook.
type reports struct {
	mu  sync.Mutex
	got [][2]int
}

func (r *reports) hook(done, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, [2]int{done, total})
}

// take returns the reports since the last take.
func (r *reports) take() [][2]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}

// check: the reports count up, one by one, to total of total.
func checkReports(t *testing.T, op string, got [][2]int, total int) {
	t.Helper()
	if len(got) != total {
		t.Fatalf("%s of %d records made %d progress reports, want one per record", op, total, len(got))
	}
	for i, r := range got {
		if r[0] != i+1 || r[1] != total {
			t.Fatalf("%s: report %d is %d of %d, want %d of %d", op, i, r[0], r[1], i+1, total)
		}
	}
}

// TestLongWorkReportsProgress: replaying, moving and purging thousands of records tell
// the Progress hook how far they have come, record by record, in both stores (the
// commands draw a bar or print a line every 10 s from it).
func TestLongWorkReportsProgress(t *testing.T) {
	const n = 1500
	for _, b := range []struct {
		name string
		open func(t *testing.T, progress func(done, total int)) stateStore
	}{
		{"bolt", func(t *testing.T, p func(int, int)) stateStore {
			s, err := store.Open(t.TempDir(), store.Options{Progress: p})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"nats", func(t *testing.T, p func(int, int)) stateStore {
			return openNATS(t, startServer(t).ClientURL(), natsstore.Options{Progress: p})
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			var r reports
			s := b.open(t, r.hook)
			evs := make([]store.Routed, n)
			for i := range evs {
				evs[i] = routed(ev(fmt.Sprintf("e%04d", i), fmt.Sprintf("u%04d", i)), "hook")
			}
			must(t, s.CommitCycle(cycle(evs...)))
			must(t, s.Settle("hook", store.Settlement{Dead: pending(t, s, "hook")}))
			if got := r.take(); len(got) != 0 {
				t.Fatalf("a cycle and a settle made %d progress reports, want none (only the long operations report)", len(got))
			}

			start := time.Now()
			if k, err := s.Replay("hook", nil, true); err != nil || k != n {
				t.Fatalf("Replay = %d, %v; want %d", k, err, n)
			}
			t.Logf("replay of %d dead letters: %s", n, time.Since(start).Round(time.Millisecond))
			checkReports(t, "replay", r.take(), n)

			start = time.Now()
			if q, d, err := s.MoveQueue("hook", "hook-new"); err != nil || q != n || d != 0 {
				t.Fatalf("MoveQueue = %d, %d, %v; want %d queued", q, d, err, n)
			}
			t.Logf("queue move of %d events: %s", n, time.Since(start).Round(time.Millisecond))
			checkReports(t, "queue move", r.take(), n)

			must(t, s.Settle("hook-new", store.Settlement{Dead: pending(t, s, "hook-new")}))
			start = time.Now()
			if k, err := s.Purge("hook-new", nil, true); err != nil || k != n {
				t.Fatalf("Purge = %d, %v; want %d", k, err, n)
			}
			t.Logf("purge of %d dead letters: %s", n, time.Since(start).Round(time.Millisecond))
			checkReports(t, "purge", r.take(), n)
		})
	}
}

// TestReplayOfThousandsOutlastsTheCallTimeout: replaying or purging every dead letter
// is one JetStream request per record, so it may take longer than the bound of one
// call (STORE_NATS Timeout); it is bounded per record instead, and completes.
func TestReplayOfThousandsOutlastsTheCallTimeout(t *testing.T) {
	const n = 1500
	url := startServer(t).ClientURL()
	setup := openNATS(t, url, natsstore.Options{})
	s := openNATS(t, url, natsstore.Options{Timeout: 200 * time.Millisecond})
	evs := make([]store.Routed, n)
	for i := range evs {
		evs[i] = routed(ev(fmt.Sprintf("e%04d", i), fmt.Sprintf("u%04d", i)), "hook")
	}
	must(t, setup.CommitCycle(cycle(evs...)))
	for _, op := range []struct {
		name string
		run  func() (int, error)
	}{
		{"replay", func() (int, error) { return s.Replay("hook", nil, true) }},
		{"purge", func() (int, error) { return s.Purge("hook", nil, true) }},
	} {
		must(t, setup.Settle("hook", store.Settlement{Dead: pending(t, setup, "hook")}))
		start := time.Now()
		k, err := op.run()
		if err != nil || k != n {
			t.Fatalf("%s of %d dead letters with a 200ms call timeout = %d, %v (after %s); want all %d", op.name, n, k, err, time.Since(start).Round(time.Millisecond), n)
		}
		t.Logf("%s of %d dead letters: %s (call timeout 200ms)", op.name, n, time.Since(start).Round(time.Millisecond))
	}
	if dl, err := s.DeadLetters("hook"); err != nil || len(dl) != 0 {
		t.Errorf("dead letters left: %d, %v", len(dl), err)
	}
}
