package diff_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
)

const source = "https://app.plugchoice.com/api/v3/exports"

var observed = time.Date(2026, 11, 28, 10, 15, 4, 0, time.UTC)

func str(s string) *string { return &s }

func exp(uuid, status string) plugchoice.Export {
	e := plugchoice.Export{UUID: uuid, Type: "sessions", Status: status, RequestedAt: "2026-11-28T10:00:00Z"}
	switch status {
	case "ready":
		e.CompletedAt = str("2026-11-28T10:15:02Z")
		e.DownloadURL = str("https://files.example/x.csv?signature=abc")
	case "failed":
		e.FailedAt = str("2026-11-28T10:14:00Z")
		e.ErrorMessage = str("boom")
	}
	return e
}

func snap(kv ...string) diff.Snapshot {
	s := diff.Snapshot{}
	for i := 0; i < len(kv); i += 2 {
		s[kv[i]] = diff.Entry{Status: kv[i+1]}
	}
	return s
}

// missedOnce marks uuids of s as absent from the last complete listing.
func missedOnce(s diff.Snapshot, uuids ...string) diff.Snapshot {
	out := diff.Snapshot{}
	for k, v := range s {
		out[k] = v
	}
	for _, u := range uuids {
		e := out[u]
		e.Missed = 1
		out[u] = e
	}
	return out
}

func types(evs []event.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Subject+":"+e.Type)
	}
	return out
}

func TestCompute(t *testing.T) {
	many := diff.Snapshot{}
	for i := 0; i < 30; i++ {
		many[fmt.Sprintf("u%02d", i)] = diff.Entry{Status: "ready"}
	}
	tests := []struct {
		name        string
		prev        diff.Snapshot
		cur         []plugchoice.Export
		complete    bool
		baseline    bool
		emitRemoved bool
		want        []string
		wantUpserts int
		wantRemoves int
		valve       bool
	}{
		{name: "baseline emits nothing", prev: nil, cur: []plugchoice.Export{exp("a", "ready"), exp("b", "pending")},
			complete: true, baseline: true, wantUpserts: 2},
		{name: "emit existing: new exports yield their status", prev: nil, cur: []plugchoice.Export{exp("a", "ready"), exp("b", "pending")},
			complete: true, want: []string{"a:export.ready", "b:export.pending"}, wantUpserts: 2},
		{name: "unchanged yields nothing", prev: snap("a", "ready"), cur: []plugchoice.Export{exp("a", "ready")}, complete: true},
		{name: "download_url churn yields nothing", prev: snap("a", "ready"),
			cur: []plugchoice.Export{func() plugchoice.Export { e := exp("a", "ready"); e.DownloadURL = str("https://other?sig=2"); return e }()}},
		{name: "one transition", prev: snap("a", "processing"), cur: []plugchoice.Export{exp("a", "ready")},
			want: []string{"a:export.ready"}, wantUpserts: 1},
		{name: "skipped states are not invented", prev: snap("a", "pending"), cur: []plugchoice.Export{exp("a", "ready")},
			want: []string{"a:export.ready"}, wantUpserts: 1},
		{name: "new export already ready", prev: snap("a", "ready"), cur: []plugchoice.Export{exp("b", "ready"), exp("a", "ready")},
			want: []string{"b:export.ready"}, wantUpserts: 1},
		{name: "unknown status forwarded sanitised", prev: snap("a", "processing"), cur: []plugchoice.Export{exp("a", "Archived Now")},
			want: []string{"a:export.archived_now"}, wantUpserts: 1},
		{name: "absent from partial listing stays", prev: snap("a", "ready", "b", "ready"), cur: []plugchoice.Export{exp("a", "ready")},
			emitRemoved: true},
		{name: "absent from one complete listing: only awaiting confirmation", prev: snap("a", "ready", "b", "failed"), cur: []plugchoice.Export{exp("a", "ready")},
			complete: true, emitRemoved: true, wantUpserts: 1},
		{name: "absent from a second complete listing removed silently", prev: missedOnce(snap("a", "ready", "b", "ready"), "b"), cur: []plugchoice.Export{exp("a", "ready")},
			complete: true, wantRemoves: 1},
		{name: "absent from a second complete listing emits removed when asked", prev: missedOnce(snap("a", "ready", "b", "failed"), "b"), cur: []plugchoice.Export{exp("a", "ready")},
			complete: true, emitRemoved: true, want: []string{"b:export.removed"}, wantRemoves: 1},
		{name: "seen again after a missed listing: no longer awaiting removal", prev: missedOnce(snap("a", "ready", "b", "ready"), "b"),
			cur: []plugchoice.Export{exp("b", "ready")}, emitRemoved: true, wantUpserts: 1},
		{name: "safety valve on a second listing: empty list against 30 missed once", prev: missedOnce(many, "u00", "u01", "u02"), cur: nil, complete: true, emitRemoved: true, valve: true},
		{name: "safety valve: empty list against 30", prev: many, cur: nil, complete: true, emitRemoved: true, valve: true},
		{name: "duplicate in listing with same status counts once", prev: snap("a", "processing"),
			cur: []plugchoice.Export{exp("a", "ready"), exp("a", "ready")}, want: []string{"a:export.ready"}, wantUpserts: 1},
		{name: "duplicate in listing with newer status", prev: snap("a", "pending"),
			cur: []plugchoice.Export{exp("a", "processing"), exp("a", "ready")}, want: []string{"a:export.processing", "a:export.ready"}, wantUpserts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tt.prev)
			res, err := diff.Compute(diff.Input{Prev: tt.prev, Current: tt.cur, Complete: tt.complete, Baseline: tt.baseline,
				EmitRemoved: tt.emitRemoved, Source: source, ObservedAt: observed})
			if err != nil {
				t.Fatal(err)
			}
			if got := types(res.Events); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("events = %v, want %v", got, tt.want)
			}
			if len(res.Upserts) != tt.wantUpserts {
				t.Errorf("upserts = %d, want %d", len(res.Upserts), tt.wantUpserts)
			}
			if len(res.Removes) != tt.wantRemoves {
				t.Errorf("removes = %d, want %d", len(res.Removes), tt.wantRemoves)
			}
			if res.ValveTripped != tt.valve {
				t.Errorf("valve = %v, want %v", res.ValveTripped, tt.valve)
			}
			if len(tt.prev) != before {
				t.Errorf("Compute modified Prev")
			}
		})
	}
}

func TestEventEnvelope(t *testing.T) {
	e := exp("a", "ready")
	raw, _ := json.Marshal(e)
	e.Raw = append(raw[:len(raw)-1:len(raw)-1], []byte(`,"extra_field":42}`)...)
	res, err := diff.Compute(diff.Input{Prev: snap("a", "processing"), Current: []plugchoice.Export{e}, Source: source, ObservedAt: observed})
	if err != nil || len(res.Events) != 1 {
		t.Fatalf("events %v err %v", res.Events, err)
	}
	ev := res.Events[0]
	var ce struct {
		SpecVersion, ID, Source, Type, Subject, Time, DataContentType string
		Data                                                          struct {
			PreviousStatus *string         `json:"previous_status"`
			Status         string          `json:"status"`
			ObservedAt     string          `json:"observed_at"`
			Export         json.RawMessage `json:"export"`
		}
	}
	if err := json.Unmarshal(ev.Body, &ce); err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"specversion": {ce.SpecVersion, "1.0"},
		"id":          {ce.ID, ev.ID},
		"source":      {ce.Source, source},
		"type":        {ce.Type, "com.plugchoice.export.ready"},
		"subject":     {ce.Subject, "a"},
		"time":        {ce.Time, "2026-11-28T10:15:02Z"},
		"observed_at": {ce.Data.ObservedAt, "2026-11-28T10:15:04Z"},
		"status":      {ce.Data.Status, "ready"},
	}
	for k, v := range checks {
		if v[0] != v[1] {
			t.Errorf("%s = %q, want %q", k, v[0], v[1])
		}
	}
	if ce.Data.PreviousStatus == nil || *ce.Data.PreviousStatus != "processing" {
		t.Errorf("previous_status = %v", ce.Data.PreviousStatus)
	}
	if string(ce.Data.Export) != string(e.Raw) {
		t.Errorf("export not forwarded exactly:\n%s\n%s", ce.Data.Export, e.Raw)
	}
	// The id is stable: the same transition detected again (another observation time,
	// another download URL) has the same id.
	e2 := exp("a", "ready")
	e2.DownloadURL = str("https://files.example/x.csv?signature=zzz")
	res2, _ := diff.Compute(diff.Input{Prev: snap("a", "pending"), Current: []plugchoice.Export{e2}, Source: source, ObservedAt: observed.Add(time.Hour)})
	if res2.Events[0].ID != ev.ID {
		t.Errorf("id not stable: %s vs %s", res2.Events[0].ID, ev.ID)
	}
	// A new export has previous_status null.
	res3, _ := diff.Compute(diff.Input{Prev: snap(), Current: []plugchoice.Export{exp("n", "ready")}, Source: source, ObservedAt: observed})
	if !json.Valid(res3.Events[0].Body) || !contains(string(res3.Events[0].Body), `"previous_status":null`) {
		t.Errorf("new export body: %s", res3.Events[0].Body)
	}
}

func contains(s, sub string) bool { return len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0) }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestApply(t *testing.T) {
	prev := snap("a", "pending", "b", "ready")
	var next diff.Snapshot
	for i := 0; i < diff.ConfirmListings; i++ { // b is removed by the second listing without it
		res, _ := diff.Compute(diff.Input{Prev: prev, Current: []plugchoice.Export{exp("a", "ready")}, Complete: true, Source: source, ObservedAt: observed})
		next = diff.Apply(prev, res)
		prev = next
	}
	if len(next) != 1 || next["a"].Status != "ready" || next["a"].At == 0 {
		t.Fatalf("next = %v", next)
	}
	again, _ := diff.Compute(diff.Input{Prev: next, Current: []plugchoice.Export{exp("a", "ready")}, Complete: true, Source: source, ObservedAt: observed})
	if len(again.Events)+len(again.Upserts)+len(again.Removes) != 0 {
		t.Fatalf("second identical observation changed something: %+v", again)
	}
}

// An export is announced removed only by the second complete listing in a row that
// lacks it. One that a deletion shifted past the end of a listing (absent from one,
// present in the next) is never announced, however often that happens.
func TestRemovalConfirmedByTwoListings(t *testing.T) {
	listing := func(uuids ...string) []plugchoice.Export {
		var out []plugchoice.Export
		for _, u := range uuids {
			out = append(out, exp(u, "ready"))
		}
		return out
	}
	tests := []struct {
		name     string
		listings [][]plugchoice.Export
		want     []string // events of each listing, joined
	}{
		{name: "gone: removed by the second listing without it",
			listings: [][]plugchoice.Export{listing("a"), listing("a"), listing("a")},
			want:     []string{"[]", "[b:export.removed]", "[]"}},
		{name: "shifted: absent from one listing, present in the next",
			listings: [][]plugchoice.Export{listing("a"), listing("a", "b"), listing("a"), listing("a", "b"), listing("a", "b")},
			want:     []string{"[]", "[]", "[]", "[]", "[]"}},
		{name: "shifted then gone",
			listings: [][]plugchoice.Export{listing("a"), listing("a", "b"), listing("a"), listing("a")},
			want:     []string{"[]", "[]", "[]", "[b:export.removed]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := snap("a", "ready", "b", "ready")
			for i, cur := range tt.listings {
				res, err := diff.Compute(diff.Input{Prev: prev, Current: cur, Complete: true, EmitRemoved: true, Source: source, ObservedAt: observed})
				if err != nil {
					t.Fatal(err)
				}
				if got := fmt.Sprint(types(res.Events)); got != tt.want[i] {
					t.Fatalf("listing %d: events %s, want %s", i+1, got, tt.want[i])
				}
				prev = diff.Apply(prev, res)
			}
		})
	}
}

var statuses = []string{"pending", "processing", "ready", "failed", "cancelled", "weird"}

// FuzzCompute checks diff's invariants: every event's status is the export's current
// status, an unchanged observation yields nothing, and applying the result is a fixed point.
func FuzzCompute(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, []byte{1, 2, 3, 4}, true)
	f.Add([]byte{5, 5, 0}, []byte{}, false)
	f.Fuzz(func(t *testing.T, prevB, curB []byte, complete bool) {
		prev := diff.Snapshot{}
		for i, b := range prevB {
			prev[fmt.Sprintf("u%d", (int(b)>>3)+i%3)] = diff.Entry{Status: statuses[int(b)%len(statuses)]}
		}
		var cur []plugchoice.Export
		for i, b := range curB {
			cur = append(cur, exp(fmt.Sprintf("u%d", (int(b)>>3)+i%2), statuses[int(b)%len(statuses)]))
		}
		res, err := diff.Compute(diff.Input{Prev: prev, Current: cur, Complete: complete, EmitRemoved: true, Source: source, ObservedAt: observed})
		if err != nil {
			t.Fatal(err)
		}
		last := map[string]string{}
		flips := map[string]bool{} // the same uuid twice with different statuses
		for _, e := range cur {
			if l, ok := last[e.UUID]; ok && l != e.Status {
				flips[e.UUID] = true
			}
			last[e.UUID] = e.Status
		}
		for _, ev := range res.Events {
			if ev.Type == event.TypeRemoved {
				if _, ok := last[ev.Subject]; ok {
					t.Fatalf("removed event for present export %s", ev.Subject)
				}
				continue
			}
			found := false
			for _, e := range cur {
				if e.UUID == ev.Subject && event.SanitizeToken(e.Status) == ev.Status {
					found = true
				}
			}
			if !found {
				t.Fatalf("event %s %s does not match any current status", ev.Subject, ev.Status)
			}
		}
		next := diff.Apply(prev, res)
		for uuid, e := range next {
			if _, ok := last[uuid]; ok && e.Missed != 0 {
				t.Fatalf("present export %s still awaits removal: %+v", uuid, e)
			}
		}
		if !complete || !res.ValveTripped {
			res2, err := diff.Compute(diff.Input{Prev: next, Current: cur, Complete: complete, EmitRemoved: true, Source: source, ObservedAt: observed})
			if err != nil {
				t.Fatal(err)
			}
			// Re-observing the same listing emits nothing, except status flips within
			// one listing (the same uuid twice with different statuses), and, when
			// complete, the removal of exports absent from both (a removal is
			// confirmed by the second complete listing; a duplicate may also have
			// delayed one).
			for _, ev := range res2.Events {
				if ev.Type == event.TypeRemoved {
					if _, ok := last[ev.Subject]; ok || !complete {
						t.Fatalf("removed event for %s, present or from a partial listing", ev.Subject)
					}
					continue
				}
				if !flips[ev.Subject] {
					t.Fatalf("unchanged observation emitted %s %s", ev.Subject, ev.Type)
				}
			}
		}
	})
}

func benchListing(n int) (diff.Snapshot, []plugchoice.Export) {
	prev := make(diff.Snapshot, n)
	cur := make([]plugchoice.Export, n)
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("9b2f6c1e-%04x-4a5b-8c9d-%012x", i%65536, i)
		cur[i] = exp(u, "ready")
		prev[u] = diff.Entry{Status: "ready", At: 1}
	}
	return prev, cur
}

func benchmarkUnchanged(b *testing.B, n int) {
	prev, cur := benchListing(n)
	in := diff.Input{Prev: prev, Current: cur, Complete: true, Source: source, ObservedAt: observed}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := diff.Compute(in)
		if err != nil || len(res.Events) != 0 {
			b.Fatal(err, len(res.Events))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/export")
}

func BenchmarkUnchanged100k(b *testing.B) { benchmarkUnchanged(b, 100_000) }
func BenchmarkUnchanged1M(b *testing.B)   { benchmarkUnchanged(b, 1_000_000) }

// buildSnapshot builds a snapshot of n exports through Compute, as a baseline does, and
// drops the listing so only what the snapshot retains stays on the heap.
func buildSnapshot(n int) diff.Snapshot {
	_, cur := benchListing(n)
	res, err := diff.Compute(diff.Input{Current: cur, Baseline: true, Source: source, ObservedAt: observed})
	if err != nil {
		panic(err)
	}
	return diff.Apply(nil, res)
}

// BenchmarkSnapshotMemory reports the heap bytes a Snapshot of 100k exports holds.
func BenchmarkSnapshotMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		before := heapAlloc()
		s := buildSnapshot(100_000)
		after := heapAlloc()
		b.ReportMetric(float64(after-before)/float64(len(s)), "bytes/export")
		runtime.KeepAlive(s)
	}
}
