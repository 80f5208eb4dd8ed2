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

// pages counts the page writes of the measured transactions (a machine-independent
// figure beside the noisy ns/op: each page is written, then the file synced).
type pages struct {
	s *store.Store
	n int64
}

func (p *pages) do(b *testing.B, f func() error) {
	w := p.s.PagesWritten()
	if err := f(); err != nil {
		b.Fatal(err)
	}
	p.n += p.s.PagesWritten() - w
}

// benchRing runs fn against a store with the ring of recent events (DefaultRecent) and
// without it (Recent: -1): the cost the status page adds to the hot paths.
func benchRing(b *testing.B, fn func(b *testing.B, s *store.Store, p *pages)) {
	for _, tc := range []struct {
		name   string
		recent int
	}{{"ring", 0}, {"noring", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := store.Open(b.TempDir(), store.Options{Recent: tc.recent})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			p := &pages{s: s}
			fn(b, s, p)
			b.ReportMetric(float64(p.n)/float64(b.N), "pages/op")
		})
	}
}

// BenchmarkRecentCommitCycle: one poll cycle queueing 10 events for 2 sinks (a busy
// account's cycle), with and without the ring.
func BenchmarkRecentCommitCycle(b *testing.B) {
	benchRing(b, func(b *testing.B, s *store.Store, p *pages) {
		c := cycle(10, "webhook", "slack")
		b.ReportAllocs()
		for b.Loop() {
			p.do(b, func() error { return s.CommitCycle(c) })
		}
	})
}

// BenchmarkRecentSettle: a dispatcher's settle transaction acking 10 delivered events,
// with and without the ring (the events were queued by a cycle, so the ring has them).
func BenchmarkRecentSettle(b *testing.B) {
	benchRing(b, func(b *testing.B, s *store.Store, p *pages) {
		c := cycle(10, "webhook")
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			if err := s.CommitCycle(c); err != nil {
				b.Fatal(err)
			}
			recs, err := s.Pending("webhook", 0, 0)
			if err != nil {
				b.Fatal(err)
			}
			acks := make([]uint64, len(recs))
			for i, r := range recs {
				acks[i] = r.Seq
			}
			b.StartTimer()
			p.do(b, func() error { return s.Settle("webhook", store.Settlement{Acks: acks}) })
		}
	})
}

// BenchmarkInFlight100k: what one render of the status page costs the store to find the
// exports in flight among 100k.
func BenchmarkInFlight100k(b *testing.B) {
	s := open(b, b.TempDir())
	fill(b, s, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, n, err := s.InFlight(50); err != nil || n != 0 {
			b.Fatalf("InFlight: %d, %v", n, err)
		}
	}
}

// BenchmarkRecentIdleCycle: a cheap cycle that found nothing new (the common case),
// with and without the ring.
func BenchmarkRecentIdleCycle(b *testing.B) {
	benchRing(b, func(b *testing.B, s *store.Store, p *pages) {
		c := cycle(0)
		b.ReportAllocs()
		for b.Loop() {
			p.do(b, func() error { return s.CommitCycle(c) })
		}
	})
}
