package store_test

import (
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/store"
)

// The limits on names are inclusive: a sink name of 200 bytes and a metadata key of
// bbolt's maximum key size are accepted, one byte more is refused.
func TestNameLimitsAreInclusive(t *testing.T) {
	s := open(t, t.TempDir())
	ev := event.Event{ID: "e1", Type: "export.ready", Subject: "u1", Body: []byte("{}")}
	if err := s.Enqueue(strings.Repeat("s", 200), ev); err != nil {
		t.Errorf("sink name of 200 bytes: %.120v", err)
	}
	if err := s.Enqueue(strings.Repeat("s", 201), ev); err == nil {
		t.Error("sink name of 201 bytes accepted")
	}
	if err := s.PutMeta("slack", strings.Repeat("k", bolt.MaxKeySize), []byte("ts")); err != nil {
		t.Errorf("metadata key of %d bytes: %.120v", bolt.MaxKeySize, err)
	}
	if err := s.PutMeta("slack", strings.Repeat("k", bolt.MaxKeySize+1), []byte("ts")); err == nil {
		t.Errorf("metadata key of %d bytes accepted", bolt.MaxKeySize+1)
	}
}

// Loading the snapshot shares one string per status among all entries (memory per
// tracked export): about one allocation per export (its uuid), not two.
func TestLoadSnapshotSharesStatusStrings(t *testing.T) {
	const n = 2000
	s := open(t, t.TempDir())
	c := store.Cycle{Upserts: map[string]diff.Entry{}}
	for i := 0; i < n; i++ {
		c.Upserts[uuid(i)] = diff.Entry{Status: "ready", At: int64(i)}
	}
	if err := s.CommitCycle(c); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(3, func() {
		snap, _, err := s.LoadSnapshot()
		if err != nil || len(snap) != n {
			t.Fatalf("LoadSnapshot: %d, %v", len(snap), err)
		}
	})
	if per := allocs / n; per > 1.5 {
		t.Errorf("LoadSnapshot: %.2f allocations per export, want about 1 (statuses shared)", per)
	} else {
		t.Logf("LoadSnapshot: %.2f allocations per export", per)
	}
}
