package diff_test

import (
	"fmt"
	"testing"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/plugchoice"
)

// The safety valve's edges as the SPEC words them: "more than half of a snapshot of at
// least 20 exports".
func TestSafetyValveEdges(t *testing.T) {
	tests := []struct {
		name           string
		snapshot, gone int
		valve          bool
	}{
		{"20 exports, 11 gone: more than half", 20, 11, true},
		{"20 exports, exactly half gone", 20, 10, false},
		{"19 exports, all gone: below the minimum", 19, 19, false},
		{"21 exports, 11 gone", 21, 11, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := diff.Snapshot{}
			var cur []plugchoice.Export
			for i := 0; i < tt.snapshot; i++ {
				uuid := fmt.Sprintf("u%02d", i)
				prev[uuid] = diff.Entry{Status: "ready", Missed: 1} // absent from the previous complete listing too: this one confirms
				if i >= tt.gone {
					cur = append(cur, exp(uuid, "ready"))
				}
			}
			res, err := diff.Compute(diff.Input{Prev: prev, Current: cur, Complete: true, EmitRemoved: true, Source: source, ObservedAt: observed})
			if err != nil {
				t.Fatal(err)
			}
			if res.ValveTripped != tt.valve {
				t.Fatalf("valve tripped = %v, want %v", res.ValveTripped, tt.valve)
			}
			wantRemoved := tt.gone
			if tt.valve {
				wantRemoved = 0
			}
			if len(res.Removes) != wantRemoved || len(res.Events) != wantRemoved {
				t.Errorf("removes %d, events %d; want %d of each", len(res.Removes), len(res.Events), wantRemoved)
			}
			if res.Missing != tt.gone {
				t.Errorf("missing = %d, want %d", res.Missing, tt.gone)
			}
		})
	}
}

// Apply keeps every export the result does not touch.
func TestApplyKeepsUntouchedExports(t *testing.T) {
	prev := snap("a", "pending", "b", "ready", "c", "failed")
	res := diff.Result{Upserts: map[string]diff.Entry{"a": {Status: "ready"}, "d": {Status: "pending"}}, Removes: []string{"b"}}
	next := diff.Apply(prev, res)
	want := map[string]string{"a": "ready", "c": "failed", "d": "pending"}
	if len(next) != len(want) {
		t.Fatalf("next = %v, want %v", next, want)
	}
	for uuid, st := range want {
		if next[uuid].Status != st {
			t.Errorf("next[%s] = %q, want %q (next %v)", uuid, next[uuid].Status, st, next)
		}
	}
}

// The common cycle, a complete listing that holds every export of the snapshot
// unchanged, allocates nothing (no set of present uuids is built).
func TestUnchangedCompleteListingAllocatesNothing(t *testing.T) {
	prev := diff.Snapshot{}
	var cur []plugchoice.Export
	for i := 0; i < 200; i++ {
		uuid := fmt.Sprintf("u%03d", i)
		prev[uuid] = diff.Entry{Status: "ready"}
		cur = append(cur, exp(uuid, "ready"))
	}
	in := diff.Input{Prev: prev, Current: cur, Complete: true, Source: source, ObservedAt: observed}
	allocs := testing.AllocsPerRun(20, func() {
		res, err := diff.Compute(in)
		if err != nil || len(res.Events)+len(res.Upserts)+len(res.Removes) != 0 {
			t.Fatalf("unchanged listing changed something: %+v, %v", res, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Compute of an unchanged complete listing: %.0f allocations, want 0", allocs)
	}
}
