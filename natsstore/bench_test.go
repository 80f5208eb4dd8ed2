package natsstore_test

import (
	"fmt"
	"testing"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/store"
)

// The store operations of the hot paths, side by side on both stores (BENCHMARKS.md):
//
//	go test -run '^$' -bench . -benchtime 20x ./natsstore/

// benchCycle is a cycle of n new events for one sink and their n snapshot changes; round
// makes the ids distinct from every other round's (JetStream would drop repeats).
func benchCycle(round, n int) store.Cycle {
	c := store.Cycle{Upserts: make(map[string]diff.Entry, n)}
	for i := range n {
		uuid := fmt.Sprintf("u-%d-%d", round, i)
		c.Upserts[uuid] = diff.Entry{Status: "ready", At: int64(round)}
		c.Events = append(c.Events, routed(ev(fmt.Sprintf("e-%d-%d", round, i), uuid), "webhook"))
	}
	return c
}

func BenchmarkCommitCycle1000Events(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := be.open(b)
			round := 0
			for b.Loop() {
				b.StopTimer()
				c := benchCycle(round, 1000)
				round++
				b.StartTimer()
				if err := s.CommitCycle(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCommitCycle10Events: a busy poll cycle, where the ring of recent events costs
// the most beside the events.
func BenchmarkCommitCycle10Events(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := be.open(b)
			round := 0
			for b.Loop() {
				b.StopTimer()
				c := benchCycle(round, 10)
				round++
				b.StartTimer()
				if err := s.CommitCycle(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDrain1000: read 1,000 queued events and ack them in one settlement, as the
// dispatcher does.
func BenchmarkDrain1000(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := be.open(b)
			round := 0
			for b.Loop() {
				b.StopTimer()
				if err := s.CommitCycle(benchCycle(round, 1000)); err != nil {
					b.Fatal(err)
				}
				round++
				b.StartTimer()
				recs, err := s.Pending("webhook", 0, 0)
				if err != nil || len(recs) != 1000 {
					b.Fatalf("Pending = %d, %v", len(recs), err)
				}
				acks := make([]uint64, len(recs))
				for i, r := range recs {
					acks[i] = r.Seq
				}
				if err := s.Settle("webhook", store.Settlement{Acks: acks}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkLoadSnapshot10k(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := be.open(b)
			for r := range 10 {
				c := benchCycle(r, 1000)
				c.Events = nil
				if err := s.CommitCycle(c); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				snap, _, err := s.LoadSnapshot()
				if err != nil || len(snap) != 10_000 {
					b.Fatalf("LoadSnapshot = %d, %v", len(snap), err)
				}
			}
		})
	}
}
