package store

import (
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
)

// A record cut short anywhere, at a field boundary too, is corrupt: it never decodes as a
// record with its last fields zero.
func TestTruncatedRecordIsCorrupt(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 15, 4, 0, time.UTC)
	r := Record{
		Event: event.Event{ID: "id-1", Type: "export.ready", Subject: "uuid-1", Status: "ready", ExportType: "sessions",
			DetectedAt: now, Body: []byte(`{"id":"id-1"}`)},
		EnqueuedAt: now, Attempts: 3, FirstAttemptAt: now, NextAttemptAt: now.Add(time.Minute),
		LastError: "HTTP 503", LastStatus: 503, DeadAt: now.Add(time.Hour),
	}
	v := encodeRecord(nil, &r)
	got, err := decodeRecord("webhook", 7, v)
	if err != nil {
		t.Fatalf("whole record: %v", err)
	}
	if got.LastStatus != 503 || !got.DeadAt.Equal(r.DeadAt) || got.Attempts != 3 || got.LastError != "HTTP 503" {
		t.Fatalf("round trip: %+v", got)
	}
	for n := 1; n < len(v); n++ {
		if rec, err := decodeRecord("webhook", 7, v[:n]); err == nil {
			t.Errorf("record cut to %d of %d bytes decoded without error: %+v", n, len(v), rec)
		}
	}
}
