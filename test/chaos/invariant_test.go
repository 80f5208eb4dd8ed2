package chaos

import (
	"fmt"
	"strings"
	"testing"
)

// recorder collects the errors checkInvariant reports.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckInvariantCatchesViolations runs without the chaos switch: it proves the
// invariant check used by every scenario fails on a loss, a reordering, a spurious event
// and a duplicate with different bytes, and passes on at-least-once delivery.
func TestCheckInvariantCatchesViolations(t *testing.T) {
	const pre = "com.plugchoice.export."
	d := func(id, uuid, status, body string) delivery {
		return delivery{ID: id, Subject: uuid, Type: pre + status, Body: []byte(body)}
	}
	wants := []want{{"a", pre + "processing"}, {"a", pre + "ready"}, {"b", pre + "failed"}}
	tests := []struct {
		name        string
		got         []delivery
		wantErr     string // "" means no error
		wantDups    int
		wantMissing int
	}{
		{"all once", []delivery{d("1", "a", "processing", "x"), d("2", "a", "ready", "y"), d("3", "b", "failed", "z")}, "", 0, 0},
		{"duplicate with same bytes", []delivery{d("1", "a", "processing", "x"), d("2", "a", "ready", "y"), d("1", "a", "processing", "x"), d("3", "b", "failed", "z")}, "", 1, 0},
		{"lost event", []delivery{d("1", "a", "processing", "x"), d("3", "b", "failed", "z")}, "want [export.processing export.ready]", 0, 1},
		{"out of order", []delivery{d("2", "a", "ready", "y"), d("1", "a", "processing", "x"), d("3", "b", "failed", "z")}, "in this order", 0, 0},
		{"duplicate with other bytes", []delivery{d("1", "a", "processing", "x"), d("1", "a", "processing", "X"), d("2", "a", "ready", "y"), d("3", "b", "failed", "z")}, "different bytes", 1, 0},
		{"spurious event", []delivery{d("1", "a", "processing", "x"), d("2", "a", "ready", "y"), d("3", "b", "failed", "z"), d("4", "c", "removed", "w")}, "unexpected events", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			r := checkInvariant(&rec, "sink", tc.got, wants)
			all := strings.Join(rec.errs, "\n")
			switch {
			case tc.wantErr == "" && len(rec.errs) > 0:
				t.Errorf("unexpected errors:\n%s", all)
			case tc.wantErr != "" && !strings.Contains(all, tc.wantErr):
				t.Errorf("errors %q do not mention %q", all, tc.wantErr)
			}
			if r.dups != tc.wantDups || r.missing != tc.wantMissing {
				t.Errorf("dups %d, missing %d; want %d and %d", r.dups, r.missing, tc.wantDups, tc.wantMissing)
			}
		})
	}
}
