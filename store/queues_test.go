package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/store"
)

// TestRenamedSinkKeepsItsQueue: queue move re-homes queued events and dead letters with
// their ids, in order, after what the new sink holds, and carries the Slack message ids.
func TestRenamedSinkKeepsItsQueue(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Enqueue("new", ev("n1", "x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue("old", ev("o1", "a"), ev("o2", "b"), ev("o3", "a")); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Pending("old", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	recs[1].Attempts = 7
	if err := s.Settle("old", store.Settlement{Dead: []store.Record{recs[1]}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("old", "a", []byte("ts-a")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("new", "a", []byte("ts-new")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("old", "b", []byte("ts-b")); err != nil {
		t.Fatal(err)
	}

	queued, dead, err := s.MoveQueue("old", "new")
	if err != nil {
		t.Fatalf("MoveQueue: %v", err)
	}
	if queued != 2 || dead != 1 {
		t.Errorf("moved %d queued, %d dead; want 2 and 1", queued, dead)
	}
	got, err := s.Pending("new", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"n1", "o1", "o3"}; !slices.Equal(ids(got), want) {
		t.Errorf("new outbox %v, want %v", ids(got), want)
	}
	dl, err := s.DeadLetters("new")
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Event.ID != "o2" || dl[0].Attempts != 7 || dl[0].Sink != "new" {
		t.Errorf("new dead letters %+v, want o2 with 7 attempts", dl)
	}
	for key, want := range map[string]string{"a": "ts-new", "b": "ts-b"} {
		if v, _ := s.GetMeta("new", key); string(v) != want {
			t.Errorf("meta %s = %q, want %q", key, v, want)
		}
	}
	names, err := s.Sinks()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, "old") {
		t.Errorf("old is still stored: %v", names)
	}
	// A replayed dead letter lands after the moved ones: no key collision.
	if n, err := s.Replay("new", nil, true); err != nil || n != 1 {
		t.Fatalf("Replay: %d, %v", n, err)
	}
	got, _ = s.Pending("new", 0, 0)
	if want := []string{"n1", "o1", "o3", "o2"}; !slices.Equal(ids(got), want) {
		t.Errorf("after replay %v, want %v", ids(got), want)
	}
}

func TestQueueMoveAndDropRefuseNonsense(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Enqueue("a", ev("e1", "x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.MoveQueue("a", "a"); err == nil {
		t.Error("move a to a: no error")
	}
	if _, _, err := s.MoveQueue("nothing", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("move of an empty sink: %v, want ErrNotFound", err)
	}
	if _, _, err := s.DropQueue("nothing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("drop of an unknown sink: %v, want ErrNotFound", err)
	}
	q, d, err := s.DropQueue("a")
	if err != nil || q != 1 || d != 0 {
		t.Fatalf("DropQueue: %d %d %v", q, d, err)
	}
	if got, _ := s.Pending("a", 0, 0); len(got) != 0 {
		t.Errorf("dropped sink still has %d queued", len(got))
	}
}

func TestDestinationFingerprintIsKept(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if fp, err := s.Destination("webhook"); err != nil || fp != "" {
		t.Fatalf("fresh store: %q, %v", fp, err)
	}
	if err := s.SetDestination("webhook", "abc"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	if fp, err := s.Destination("webhook"); err != nil || fp != "abc" {
		t.Fatalf("after reopen: %q, %v", fp, err)
	}
}

// TestReadOnlyOpenCreatesNothing: state and dlq list in a directory where nothing ran
// must say so, not leave an empty store behind.
func TestReadOnlyOpenCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, err := store.Open(dir, store.Options{MustExist: true})
	if !errors.Is(err, store.ErrNoStore) {
		t.Fatalf("Open MustExist: %v, want ErrNoStore", err)
	}
	if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("the directory was created: %v", serr)
	}
	for _, want := range []string{dir, "EXPORTBRIDGE_STATE_DIR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
