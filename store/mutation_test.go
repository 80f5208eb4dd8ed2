package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
)

var encoded []byte

// TestRecordsAndEntriesEncodedInOneAllocation: every record the outbox writes and every
// snapshot entry a cycle commits is encoded into one buffer sized up front, not grown
// field by field (100,000 exports or a backlog of thousands of events at each commit).
func TestRecordsAndEntriesEncodedInOneAllocation(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 15, 4, 0, time.UTC)
	long := func(c string, n int) string { return strings.Repeat(c, n) }
	records := []struct {
		name string
		r    Record
	}{
		{"fresh event", Record{Event: event.Event{ID: long("i", 64), Type: "export." + long("t", 40), Subject: long("s", 40),
			Status: long("r", 40), ExportType: long("e", 40), DetectedAt: now, Body: []byte(long("b", 600))}, EnqueuedAt: now}},
		{"retried event", Record{Event: event.Event{ID: long("i", 64), Type: "export." + long("t", 40), Subject: long("s", 40),
			Status: long("r", 40), ExportType: long("e", 40), DetectedAt: now, Body: []byte(long("b", 600))}, EnqueuedAt: now,
			Attempts: 300, FirstAttemptAt: now, NextAttemptAt: now.Add(time.Hour), LastError: long("x", 200), LastStatus: 503,
			DeadAt: now.Add(2 * time.Hour)}},
	}
	for _, tt := range records {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(20, func() { encoded = encodeRecord(nil, &tt.r) }); n != 1 {
				t.Errorf("encoding the record took %v allocations, want 1", n)
			}
			if got, err := decodeRecord("s", 1, encoded); err != nil || got.Event.ID != tt.r.Event.ID || got.LastError != tt.r.LastError {
				t.Errorf("round trip: %+v, %v", got, err)
			}
		})
	}
	entries := []struct {
		name string
		e    diff.Entry
	}{
		{"entry", diff.Entry{Status: "processing", At: now.UnixNano()}},
		{"entry awaiting its removal", diff.Entry{Status: "processing", At: now.UnixNano(), Missed: 1}},
	}
	for _, tt := range entries {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(20, func() { encoded = encodeEntry(nil, tt.e) }); n != 1 {
				t.Errorf("encoding the snapshot entry took %v allocations, want 1", n)
			}
			if got, err := decodeEntry(encoded, nil); err != nil || got != tt.e {
				t.Errorf("round trip: %+v, %v", got, err)
			}
		})
	}
}

// TestSnapshotEntryWithLeadingNULRoundTrips: a status that starts with a NUL byte (no
// API status does; a corrupt or hostile listing might) is stored so that it reads back
// as it was, not as a corrupt entry.
func TestSnapshotEntryWithLeadingNULRoundTrips(t *testing.T) {
	for _, e := range []diff.Entry{
		{Status: "\x00ready", At: 7},
		{Status: "\x00", At: 7, Missed: 1},
	} {
		if got, err := decodeEntry(encodeEntry(nil, e), nil); err != nil || got != e {
			t.Errorf("round trip of %q (missed %d): %q (missed %d), %v", e.Status, e.Missed, got.Status, got.Missed, err)
		}
	}
}

// TestPendingHoldsNoSpareRecords: Pending counts what it will return before decoding,
// so the slice a dispatcher keeps as its window is exactly as large as what it holds:
// no slack from growing it record by record (a 1,000-record read would hold 1,024), and
// never the size of the whole backlog when a limit is given.
func TestPendingHoldsNoSpareRecords(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	evs := make([]event.Event, 1000)
	for i := range evs {
		evs[i] = event.Event{ID: fmt.Sprintf("ev-%04d", i), Type: "export.ready",
			Subject: "u", Status: "ready", DetectedAt: time.Unix(1, 0), Body: []byte(`{}`)}
	}
	if err := s.Enqueue("hook", evs...); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		after    uint64
		limit    int
		wantLen  int
		wantSeq1 uint64
	}{
		{"everything", 0, 0, 1000, 1},
		{"a window of 10", 0, 10, 10, 1},
		{"a window of 10 after 500", 500, 10, 10, 501},
		{"the rest after 990", 990, 0, 10, 991},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := s.Pending("hook", tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tc.wantLen || recs[0].Seq != tc.wantSeq1 {
				t.Fatalf("Pending(hook, %d, %d) = %d records from seq %d, want %d from %d", tc.after, tc.limit, len(recs), recs[0].Seq, tc.wantLen, tc.wantSeq1)
			}
			if cap(recs) != len(recs) {
				t.Errorf("Pending(hook, %d, %d) holds room for %d records, for %d returned (want no spare room)", tc.after, tc.limit, cap(recs), len(recs))
			}
		})
	}
}

// TestQueueMoveReportsEveryRecord: queue move tells Options.Progress of each record it
// moves, queued events first, then dead letters, counting up to all of them (the
// command's bar on a terminal).
func TestQueueMoveReportsEveryRecord(t *testing.T) {
	var got [][2]int
	s, err := Open(t.TempDir(), Options{Progress: func(done, total int) { got = append(got, [2]int{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	evs := make([]event.Event, 10)
	for i := range evs {
		evs[i] = event.Event{ID: fmt.Sprintf("ev-%02d", i), Type: "export.ready", Subject: fmt.Sprintf("u%02d", i), Status: "ready", Body: []byte(`{}`)}
	}
	if err := s.Enqueue("old", evs...); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Pending("old", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Settle("old", Settlement{Dead: recs[:4]}); err != nil {
		t.Fatal(err)
	}
	if q, d, err := s.MoveQueue("old", "new"); err != nil || q != 6 || d != 4 {
		t.Fatalf("MoveQueue = %d, %d, %v; want 6 queued and 4 dead letters", q, d, err)
	}
	if len(got) != 10 {
		t.Fatalf("%d progress reports %v, want one per record (10)", len(got), got)
	}
	for i, r := range got {
		if r != [2]int{i + 1, 10} {
			t.Fatalf("report %d is %d of %d, want %d of 10 (all: %v)", i, r[0], r[1], i+1, got)
		}
	}
}
