package store

import (
	"encoding/binary"
	"testing"

	"github.com/exportbridge/exportbridge/diff"
)

// Snapshot entries round-trip, Missed included, and entries stored before Missed
// existed (varint(At) then the status) still read, as Missed 0.
func TestSnapshotEntryCodec(t *testing.T) {
	for _, e := range []diff.Entry{
		{Status: "ready", At: 1_764_000_000_000_000_000},
		{Status: "processing", At: 0, Missed: 1},
		{Status: "", At: -5, Missed: 1},
		{Status: "odd\x00status", At: 7},
		{Status: "odd\x00status", At: 7, Missed: 1},
	} {
		got, err := decodeEntry(encodeEntry(nil, e), map[string]string{})
		if err != nil || got != e {
			t.Errorf("round trip of %+v: %+v, %v", e, got, err)
		}
	}
	old := append(binary.AppendVarint(nil, 42), "failed"...) // the format before Missed
	got, err := decodeEntry(old, nil)
	if err != nil || got != (diff.Entry{Status: "failed", At: 42}) {
		t.Fatalf("entry in the old format: %+v, %v", got, err)
	}
	if n := len(encodeEntry(nil, diff.Entry{Status: "failed", At: 42})); n != len(old) {
		t.Errorf("an entry not awaiting removal is %d bytes, want the old %d", n, len(old))
	}
	bad := append(binary.AppendVarint(nil, 1), "x\x00"...)
	if _, err := decodeEntry(bad, nil); err == nil {
		t.Errorf("truncated missed-listings suffix decoded without error")
	}
}
