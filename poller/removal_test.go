package poller_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
)

// A deletion during a full listing shifts the exports after it by one: the first of the
// next page moves onto the page already read, and that listing lacks it. It is present
// in the next listing and must never be announced as removed. The deleted export is
// announced once, by the second complete listing without it.
func TestShiftedExportNeverAnnouncedRemoved(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	f := newFixture(t, 0, func(o *poller.Options) {
		o.EmitRemoved = true
		o.FullSyncInterval = time.Minute
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	})
	full := func() {
		t.Helper()
		mu.Lock()
		clock = clock.Add(2 * time.Minute) // every cycle is a full listing
		mu.Unlock()
		if rep := f.cycle(); !rep.Full {
			t.Fatalf("not a full listing: %+v", rep)
		}
	}
	uuids := f.sim.AddN(60, plugchoice.StatusReady) // 3 pages of 25
	newest := uuids[len(uuids)-1]                   // first item of page 1
	full()                                          // baseline
	var deleted atomic.Bool
	f.sim.SetOnRequest(func(r *http.Request) {
		if strings.Contains(r.URL.RawQuery, "page=2") && !strings.Contains(r.URL.RawQuery, "filter") && deleted.CompareAndSwap(false, true) {
			f.sim.Remove(newest) // page 1 was read: its 26th item moves up onto it
		}
	})
	full()
	if !deleted.Load() {
		t.Fatal("the deletion during the listing did not happen: the test checks nothing")
	}
	f.sim.SetOnRequest(nil)
	snap, _, err := f.st.LoadSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var awaiting []string
	for uuid, e := range snap {
		if e.Missed > 0 {
			awaiting = append(awaiting, uuid)
		}
	}
	if len(awaiting) != 1 || awaiting[0] == newest {
		t.Fatalf("exports the shifted listing missed: %v, want one (not the deleted one, which it read)", awaiting)
	}
	if q := f.queued(); len(q) != 0 {
		t.Fatalf("queued %v after the shifted listing, want nothing", q)
	}
	full() // the shifted one is back; the deleted one is missed once
	if q := f.queued(); len(q) != 0 {
		t.Fatalf("queued %v after the listing that saw the shifted export again, want nothing", q)
	}
	full() // the deleted one is missed a second time
	full()
	if q := f.queued(); len(q) != 1 || q[0] != newest+":export.removed" {
		t.Fatalf("queued %v, want only %s:export.removed", q, newest)
	}
	if f.p.Tracked() != 59 {
		t.Fatalf("tracked %d, want 59", f.p.Tracked())
	}
}
