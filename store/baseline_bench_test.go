package store_test

import (
	"testing"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/store"
)

// BenchmarkBaselineCommit100k commits one cycle of 100,000 upserts into an empty store:
// the first start's baseline at 100k exports (BENCHMARKS.md, finding B). CommitCycle puts
// the keys in sorted order; in map order bbolt moves half of a huge node on every Put.
func BenchmarkBaselineCommit100k(b *testing.B) {
	c := store.Cycle{Upserts: make(map[string]diff.Entry, 100_000)}
	for i := 0; i < 100_000; i++ {
		c.Upserts[uuid(i)] = diff.Entry{Status: "ready", At: 1_764_000_000_000_000_000 + int64(i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s, err := store.Open(b.TempDir(), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.CommitCycle(c); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
