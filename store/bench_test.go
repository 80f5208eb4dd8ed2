package store_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/store"
)

func uuid(i int) string {
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", i*2654435761%(1<<32), i%0xffff, i%0xfff, (i*7)%0xfff, i*48271)
}

// fill commits n exports in cycles of 10k (as the first full listings would).
func fill(tb testing.TB, s *store.Store, n int) {
	tb.Helper()
	for start := 0; start < n; start += 10000 {
		c := store.Cycle{Upserts: map[string]diff.Entry{}}
		for i := start; i < min(start+10000, n); i++ {
			c.Upserts[uuid(i)] = diff.Entry{Status: "ready", At: 1_764_000_000_000_000_000 + int64(i)}
		}
		if err := s.CommitCycle(c); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestFileSizeAt100kExports checks the store stays compact (well under 50 MB) and that
// every entry loads back.
func TestFileSizeAt100kExports(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := open(t, t.TempDir())
	fill(t, s, 100_000)
	snap, _, err := s.LoadSnapshot()
	if err != nil || len(snap) != 100_000 {
		t.Fatalf("LoadSnapshot: %d, %v", len(snap), err)
	}
	if e := snap[uuid(42)]; e.Status != "ready" || e.At != 1_764_000_000_000_000_042 {
		t.Errorf("entry 42 = %+v", e)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store file with 100k exports: %d bytes (%.1f MB)", fi.Size(), float64(fi.Size())/1e6)
	if fi.Size() > 32<<20 {
		t.Errorf("store file with 100k exports is %d bytes, want well under 50 MB", fi.Size())
	}
}

func BenchmarkCommitCycle1000Events(b *testing.B) {
	s := open(b, b.TempDir())
	c := cycle(1000, "webhook-1")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.CommitCycle(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadSnapshot100k(b *testing.B) {
	s := open(b, b.TempDir())
	fill(b, s, 100_000)
	fi, err := os.Stat(s.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		snap, _, err := s.LoadSnapshot()
		if err != nil || len(snap) != 100_000 {
			b.Fatalf("LoadSnapshot: %d, %v", len(snap), err)
		}
	}
	b.ReportMetric(float64(fi.Size()), "file-bytes")
}
