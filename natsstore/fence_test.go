package natsstore_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/exportbridge/exportbridge/natsstore"
)

// TestCommitFencedAfterTheOutbox: a lease lost between a cycle's outbox write and its
// snapshot write leaves the events queued and the snapshot as it was. The next leader
// starts from that snapshot, detects the same transitions again, and the stream drops
// the repeat: the events are in one place, never in neither, and never queued twice.
func TestCommitFencedAfterTheOutbox(t *testing.T) {
	url := startServer(t).ClientURL()
	s := openNATS(t, url, natsstore.Options{})
	lost := errors.New("lease lost")
	var checks atomic.Int32
	old := s.Fenced(func() error {
		if checks.Add(1) > 1 { // the check before the snapshot
			return lost
		}
		return nil
	})
	cy := cycle(routed(ev("e1", "u1"), "webhook"), routed(ev("e2", "u2"), "webhook"))
	err := old.CommitCycle(cy)
	if !errors.Is(err, natsstore.ErrFenced) || !errors.Is(err, lost) {
		t.Fatalf("commit fenced after the outbox: %v, want ErrFenced wrapping the lease's error", err)
	}
	if checks.Load() != 2 {
		t.Fatalf("the fence was checked %d times, want 2 (before the outbox, before the snapshot)", checks.Load())
	}
	if got := ids(pending(t, s, "webhook")); len(got) != 2 {
		t.Errorf("queue after the fenced commit = %v, want [e1 e2] (events first)", got)
	}
	if snap, init, _ := s.LoadSnapshot(); init || len(snap) != 0 {
		t.Errorf("snapshot after the fenced commit = %v (initialized %v), want it unwritten", snap, init)
	}

	next := openNATS(t, url, natsstore.Options{}).Fenced(func() error { return nil })
	if snap, _, _ := next.LoadSnapshot(); len(snap) != 0 {
		t.Fatalf("the next leader's snapshot = %v, want the stored (empty) one", snap)
	}
	must(t, next.CommitCycle(cy))
	if got := ids(pending(t, s, "webhook")); len(got) != 2 || got[0] != "e1" || got[1] != "e2" {
		t.Errorf("queue after the next leader's commit = %v, want [e1 e2] once each", got)
	}
	if snap, init, _ := s.LoadSnapshot(); !init || len(snap) != 2 {
		t.Errorf("snapshot after the next leader's commit = %v (initialized %v), want 2 exports", snap, init)
	}
}
