package bridgetest

import (
	"syscall"
	"testing"
	"time"
)

// CPUPerOp reports the process's CPU time per operation (user + system, GC included) as
// "cpu-ns/op" beside ns/op when the returned function runs (defer it): on a machine
// shared with other work, wall time per op grows with the load, CPU time much less.
func CPUPerOp(b *testing.B) func() {
	start := cpuTime(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

// CPUTime is the process's CPU time so far (user + system, all threads), for figures
// measured around part of a benchmark (cpu-ns per event of a timed section).
func CPUTime(tb testing.TB) time.Duration { return cpuTime(tb) }

func cpuTime(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
