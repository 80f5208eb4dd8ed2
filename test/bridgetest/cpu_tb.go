package bridgetest

import (
	"syscall"
	"testing"
	"time"
)

// ProcessCPU returns the CPU time (user + system) the test process has used so far: the
// difference of two readings shows whether something spun while the test slept.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
