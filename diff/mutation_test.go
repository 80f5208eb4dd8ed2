package diff_test

import (
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/diff"
)

// TestFirstAbsenceRecordedAsOneMissedListing: an export a complete listing lacks for the
// first time is kept with one missed listing recorded (what the store keeps and the next
// listing counts on), not removed; present exports are left alone.
func TestFirstAbsenceRecordedAsOneMissedListing(t *testing.T) {
	prev := diff.Snapshot{
		"kept":   {Status: "ready", At: 1},
		"absent": {Status: "ready", At: 2},
	}
	res, err := diff.Removals(diff.RemovalInput{Prev: prev, Present: map[string]struct{}{"kept": {}},
		Source: "https://example.com/exports", ObservedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removes) != 0 || len(res.Events) != 0 {
		t.Errorf("removes %v, events %d after one absence, want none", res.Removes, len(res.Events))
	}
	want := diff.Entry{Status: "ready", At: 2, Missed: 1}
	if len(res.Upserts) != 1 || res.Upserts["absent"] != want {
		t.Errorf("upserts %+v, want only absent as %+v", res.Upserts, want)
	}
}
