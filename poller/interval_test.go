package poller_test

import (
	"context"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
)

// While an export is pending or processing the loop polls every ActiveInterval, and
// when nothing is in flight every Interval: it switches both ways, at the first cycle
// that sees the change. The waits are recorded, not waited.
func TestActiveAndIdleIntervalsSwitch(t *testing.T) {
	const active, idle = time.Second, time.Hour
	var waits []time.Duration
	var steps []func(f *fixture)
	var f *fixture
	f = newFixture(t, 20, func(o *poller.Options) {
		o.Interval, o.ActiveInterval = idle, active
		o.Wait = func(ctx context.Context, d time.Duration) bool {
			waits = append(waits, d)
			if len(waits) > len(steps) {
				return false // stop Run
			}
			steps[len(waits)-1](f)
			return true
		}
	})
	running := f.sim.AddN(1, plugchoice.StatusProcessing)
	steps = []func(f *fixture){
		func(f *fixture) { f.sim.SetStatus(running[0], plugchoice.StatusReady) }, // active -> idle
		func(f *fixture) { f.sim.AddN(1, plugchoice.StatusPending) },             // idle -> active
	}
	if err := f.p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		what   string
		lo, hi time.Duration
	}{
		{"export processing", active / 2, active + active/10},
		{"nothing in flight", idle / 2, idle + idle/10},
		{"new export pending", active / 2, active + active/10},
	}
	if len(waits) != len(want) {
		t.Fatalf("%d waits %v, want %d", len(waits), waits, len(want))
	}
	for i, w := range want {
		if waits[i] < w.lo || waits[i] > w.hi {
			t.Errorf("wait %d (%s) = %v, want between %v and %v", i+1, w.what, waits[i], w.lo, w.hi)
		}
	}
}

// An ActiveInterval longer than Interval (or none) never slows the loop down.
func TestActiveIntervalNeverLongerThanInterval(t *testing.T) {
	for _, act := range []time.Duration{0, time.Hour} {
		var waits []time.Duration
		f := newFixture(t, 5, func(o *poller.Options) {
			o.Interval, o.ActiveInterval = time.Second, act
			o.Wait = func(ctx context.Context, d time.Duration) bool { waits = append(waits, d); return false }
		})
		f.sim.AddN(1, plugchoice.StatusProcessing)
		if err := f.p.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(waits) != 1 || waits[0] > time.Second+time.Second/10 {
			t.Errorf("ActiveInterval %v: waits %v, want one of about 1s", act, waits)
		}
	}
}
