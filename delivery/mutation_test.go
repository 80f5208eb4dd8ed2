package delivery_test

// Tests that kill mutants scripts/mutation.sh found alive in ./delivery (issue 17): the
// memory window over a large backlog, the queued count while the disk stalls, the
// breaker's probe schedule, an idle down sink, batching sinks, and the settle
// transactions' bounds (every 20 ms while deliveries are in flight, at most 4,096).

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/store"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// storeSpy is the real store seen through delivery.Queue: it counts what the
// dispatcher reads, and stalls every settle transaction while stall is open (a disk
// whose writes hang).
type storeSpy struct {
	*store.Store
	reads atomic.Int64 // Pending calls
	read  atomic.Int64 // records Pending returned
	stall chan struct{}
	fail  error // when set, every Settle fails with it

	mu      sync.Mutex
	settles []settleCall // every Settle call, as it began
}

// settleCall is one settle transaction as the dispatcher handed it over.
type settleCall struct {
	at                   time.Time
	acks, attempts, dead int
}

func (q *storeSpy) Pending(sink string, afterSeq uint64, limit int) ([]store.Record, error) {
	recs, err := q.Store.Pending(sink, afterSeq, limit)
	q.reads.Add(1)
	q.read.Add(int64(len(recs)))
	return recs, err
}

func (q *storeSpy) Settle(sink string, s store.Settlement) error {
	q.mu.Lock()
	q.settles = append(q.settles, settleCall{at: time.Now(), acks: len(s.Acks), attempts: len(s.Attempts), dead: len(s.Dead)})
	q.mu.Unlock()
	if q.stall != nil {
		<-q.stall
	}
	if q.fail != nil {
		return q.fail
	}
	return q.Store.Settle(sink, s)
}

// calls returns the Settle calls so far.
func (q *storeSpy) calls() []settleCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]settleCall(nil), q.settles...)
}

// stopThenRelease stops a dispatcher whose settle transaction hangs, and lets the
// transaction through only once the stop has begun (so that stop, not the running loop,
// writes what waited behind it); it returns Run's error.
func stopThenRelease(stop func() error, stall chan struct{}) error {
	errc := make(chan error, 1)
	go func() { errc <- stop() }()
	time.Sleep(100 * time.Millisecond) // Run is in stop, waiting for the hung transaction
	close(stall)
	return <-errc
}

// backlog enqueues n events over keys exports, ids "0".."n-1".
func backlog(t *testing.T, st *store.Store, n, keys int) {
	t.Helper()
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = evt(fmt.Sprint(i), fmt.Sprintf("export-%d", i%keys))
	}
	enqueue(t, st, evs...)
}

// TestBacklogPastTheWindowIsReadInWindowSizedBatches: a backlog of 10,000 records is
// held at most a window (8,192) at a time, even while the sink is stuck and the
// dispatcher is notified (a rescan reads the same way); it is read in a few large
// reads, not one per delivered event, and drains completely in per-export order.
func TestBacklogPastTheWindowIsReadInWindowSizedBatches(t *testing.T) {
	const n, keys = 10_000, 500
	q := &storeSpy{Store: newStore(t)}
	backlog(t, q.Store, n, keys)
	gate := make(chan struct{})
	var mu sync.Mutex
	last := map[string]int{}
	outOfOrder := 0
	fake := newFake(func(ctx context.Context, e event.Event, _ int) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		var i int
		fmt.Sscan(e.ID, &i)
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[e.Subject]; ok && prev >= i {
			outOfOrder++
		}
		last[e.Subject] = i
		return nil
	})
	d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: fake, Concurrency: 4})
	stop := start(t, d)
	waitFor(t, "4 deliveries in flight", func() bool { _, _, n, _, _ := fake.get(); return n == 4 })
	for range 3 {
		d.Notify()
		time.Sleep(30 * time.Millisecond)
	}
	if got := q.read.Load(); got > delivery.Window {
		t.Errorf("%d records read while the sink was stuck, want at most the window of %d", got, delivery.Window)
	}
	close(gate)
	waitFor(t, "the backlog delivered", func() bool { _, delivered, _, _, _ := fake.get(); return len(delivered) == n })
	reads := q.reads.Load()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads of the outbox for %d records", reads, n)
	// Healthy: the first read, one per Notify and rescan, and one each time the window
	// is half empty (under 20 in all); one read per delivery would be thousands.
	if reads > n/200 {
		t.Errorf("%d reads of the outbox for %d records, want at most %d", reads, n, n/200)
	}
	if outOfOrder != 0 {
		t.Errorf("%d events delivered out of per-export order", outOfOrder)
	}
	if left := len(pendingIDs(t, q.Store)); left != 0 {
		t.Errorf("%d records left in the outbox", left)
	}
}

// TestQueuedCountTruthfulWhileTheDiskStalls: while the store's writes hang, a
// dispatcher working through a backlog past its window reports as queued what is not
// yet delivered or dead-lettered: never more than was queued, never less than what is
// left; once it has stopped and the writes are through, exactly what is left. The
// outcomes stay fewer than the backlog past the window (n - done > Window), so the
// dispatcher never reads to the end of the outbox and counts from the store's depth
// and the outcomes not yet written; the first transaction (the one that hangs) holds
// one outcome, and the stop writes the rest.
func TestQueuedCountTruthfulWhileTheDiskStalls(t *testing.T) {
	const n, done = 10_000, 1_000
	if n-done <= delivery.Window {
		t.Fatalf("a backlog of %d with %d outcomes reads to its end (window %d)", n, done, delivery.Window)
	}
	tests := []struct {
		name    string
		outcome error
	}{
		{"delivered events", nil},
		{"dead-lettered events", sinks.Permanent(errors.New("HTTP 400 from fake"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &storeSpy{Store: newStore(t), stall: make(chan struct{})}
			backlog(t, q.Store, n, 1000)
			gate := make(chan struct{})
			var calls atomic.Int64
			fake := newFake(func(ctx context.Context, _ event.Event, _ int) error {
				c := calls.Add(1)
				if c == 2 {
					// Past the settle interval: the first outcome is written alone.
					time.Sleep(100 * time.Millisecond)
				}
				if c <= done {
					return tt.outcome
				}
				select {
				case <-gate:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: fake, Grace: -1})
			stop := start(t, d)
			defer close(gate)
			waitFor(t, fmt.Sprintf("%d outcomes", done), func() bool { return calls.Load() > done })
			time.Sleep(100 * time.Millisecond) // the loop publishes after starting the next delivery
			if got := d.Queued(); got < n-done || got > n {
				t.Errorf("Queued() = %d after %d outcomes with the disk stalled, want %d..%d", got, done, n-done, n)
			}
			// The delivery in flight is cancelled and stays queued.
			if err := stopThenRelease(stop, q.stall); err != nil {
				t.Fatal(err)
			}
			if got := d.Queued(); got != n-done {
				t.Errorf("Queued() = %d after stop, want the %d left", got, n-done)
			}
			if left := len(pendingIDs(t, q.Store)); left != n-done {
				t.Errorf("%d records left in the outbox, want %d", left, n-done)
			}
		})
	}
}

// TestDownSinkProbeSchedule: the breaker's probes follow their own backoff: with the
// defaults the first probe waits about a second (not at once), and the wait doubles
// from probe to probe up to the 30 s default cap, not capped at the first wait.
func TestDownSinkProbeSchedule(t *testing.T) {
	tests := []struct {
		name    string
		opts    delivery.DispatcherOptions
		probes  int           // probes to wait for (0: watch for quiet instead)
		quiet   time.Duration // with probes 0: no probe this long after the breaker opened
		atLeast time.Duration // with probes > 0: the probes take at least this long
	}{
		// First probe after 1 s +/- 50 %: nothing within 300 ms.
		{name: "defaults: no probe at once", quiet: 300 * time.Millisecond},
		// 1 ms doubling: ten probes wait 1 ms x (1 + 2 + ... + 512) = 1 s +/- 50 % (never
		// less than 511 ms); two doublings late at most 385 ms, capped at the first wait
		// 10 ms.
		{name: "waits double from probe to probe", opts: delivery.DispatcherOptions{ProbeInitial: time.Millisecond},
			probes: 10, atLeast: 450 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t)
			var evs []event.Event
			for i := range 8 {
				evs = append(evs, evt(fmt.Sprint(i), fmt.Sprintf("export-%d", i)))
			}
			enqueue(t, st, evs...)
			var mu sync.Mutex
			var starts []time.Time
			fake := newFake(func(context.Context, event.Event, int) error {
				mu.Lock()
				starts = append(starts, time.Now())
				mu.Unlock()
				return retryable(503)
			})
			count := func() int { mu.Lock(); defer mu.Unlock(); return len(starts) }
			o := tt.opts
			o.Sink, o.InitialInterval = fake, time.Hour
			d := delivery.NewDispatcher(st, o)
			stop := start(t, d)
			waitFor(t, "the sink down", func() bool { return count() >= delivery.BreakerThreshold && d.Down() })
			if tt.probes == 0 {
				time.Sleep(tt.quiet)
				if got := count() - delivery.BreakerThreshold; got != 0 {
					t.Errorf("%d probes within %v of the breaker opening, want none (first probe after about 1 s)", got, tt.quiet)
				}
				return
			}
			want := delivery.BreakerThreshold + tt.probes
			waitFor(t, fmt.Sprintf("%d probes", tt.probes), func() bool { return count() >= want })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			took := starts[want-1].Sub(starts[delivery.BreakerThreshold-1])
			mu.Unlock()
			t.Logf("%d probes took %v", tt.probes, took)
			if took < tt.atLeast {
				t.Errorf("%d probes took %v, want at least %v (the wait doubling from %v)", tt.probes, took, tt.atLeast, tt.opts.ProbeInitial)
			}
		})
	}
}

// TestDispatcherWaitingIsIdle: a dispatcher that has to wait does not spin while it
// waits: neither a down sink whose every queued event its probes dead-lettered (nothing
// left to probe with), nor a sink at its concurrency limit with more events due.
func TestDispatcherWaitingIsIdle(t *testing.T) {
	const window = 500 * time.Millisecond
	tests := []struct {
		name string
		// outcome of each call (call is per event); release unblocks a call that waits.
		outcome func(ctx context.Context, e event.Event, call int, release <-chan struct{}) error
		opts    delivery.DispatcherOptions
		ready   func(st *store.Store, d *delivery.Dispatcher) bool
	}{
		{
			name: "down sink with nothing left to send",
			outcome: func(_ context.Context, _ event.Event, call int, _ <-chan struct{}) error {
				if call == 1 {
					return retryable(503) // five open the breaker
				}
				return sinks.Permanent(errors.New("HTTP 410 from fake")) // each probe dead-letters
			},
			opts: delivery.DispatcherOptions{InitialInterval: time.Hour, ProbeInitial: time.Millisecond, ProbeMax: time.Millisecond},
			ready: func(st *store.Store, d *delivery.Dispatcher) bool {
				dl, err := st.DeadLetters(sinkName)
				return err == nil && len(dl) == delivery.BreakerThreshold && d.Down()
			},
		},
		{
			name: "sink at its concurrency limit with more events due",
			outcome: func(ctx context.Context, _ event.Event, _ int, release <-chan struct{}) error {
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			},
			opts:  delivery.DispatcherOptions{Concurrency: 1},
			ready: func(*store.Store, *delivery.Dispatcher) bool { return true },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t)
			backlog(t, st, delivery.BreakerThreshold, delivery.BreakerThreshold)
			release := make(chan struct{})
			fake := newFake(func(ctx context.Context, e event.Event, call int) error {
				return tt.outcome(ctx, e, call, release)
			})
			o := tt.opts
			o.Sink = fake
			d := delivery.NewDispatcher(st, o)
			stop := start(t, d)
			waitFor(t, "the dispatcher waiting", func() bool {
				calls, _, _, _, _ := fake.get()
				return len(calls) > 0 && tt.ready(st, d)
			})
			before := bridgetest.CPUTime(t)
			time.Sleep(window)
			used := bridgetest.CPUTime(t) - before
			close(release)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			t.Logf("CPU used in %v of waiting: %v", window, used)
			// Healthy: a few milliseconds (one rescan); spinning: most of a core.
			if used > window/4 {
				t.Errorf("the dispatcher used %v of CPU in %v of waiting, want well under %v", used, window, window/4)
			}
		})
	}
}

// TestSinkBackLogsTheEventsRetriedAtOnce: when a sink says its destination is back, the
// log tells how many waiting events are retried at once, and says nothing when none
// waited.
func TestSinkBackLogsTheEventsRetriedAtOnce(t *testing.T) {
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"), evt("B1", "B"))
	var down atomic.Bool
	down.Store(true)
	w := &wakingSink{fakeSink: newFake(func(context.Context, event.Event, int) error {
		if down.Load() {
			return retryable(503)
		}
		return nil
	})}
	log, logs := newLogger()
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: w, Concurrency: 2, InitialInterval: time.Hour, Logger: log})
	stop := start(t, d)
	waitFor(t, "A1 and B1 attempted", func() bool { return w.callsOf("A1") == 1 && w.callsOf("B1") == 1 })
	waitFor(t, "both waiting", func() bool { return d.Queued() == 2 && logs.find("will retry") != nil })
	time.Sleep(50 * time.Millisecond) // both outcomes handled
	down.Store(false)
	w.recovered()
	waitFor(t, "both delivered", func() bool { return w.isDelivered("A1", "B1") })
	waitIdle(t, d)
	w.recovered() // nothing waits now
	time.Sleep(100 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var retried []any
	for _, l := range logs.lines() {
		if l["msg"] == "sink is back; retrying waiting events now" {
			retried = append(retried, l["events"])
		}
	}
	if len(retried) != 1 || retried[0] != float64(2) {
		t.Errorf("retry-now logs with events %v, want one with 2", retried)
	}
}

// gatedBatcher is a batching sink (sinks.Batcher) that counts single and batch calls
// and batches in flight; a batch call waits for gate when it is set; answer shapes its
// answer (nil: every event delivered).
type gatedBatcher struct {
	gate   chan struct{}
	answer func(evs []event.Event, call int) []error

	mu                    sync.Mutex
	singles, batches      int
	inflight, maxInflight int
	delivered             map[string]int
}

func newGatedBatcher() *gatedBatcher { return &gatedBatcher{delivered: map[string]int{}} }

func (b *gatedBatcher) Name() string { return sinkName }

func (b *gatedBatcher) Deliver(_ context.Context, e event.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.singles++
	b.delivered[e.ID]++
	return nil
}

func (b *gatedBatcher) DeliverBatch(ctx context.Context, evs []event.Event) []error {
	b.mu.Lock()
	b.batches++
	call := b.batches
	b.inflight++
	b.maxInflight = max(b.maxInflight, b.inflight)
	b.mu.Unlock()
	defer func() { b.mu.Lock(); b.inflight--; b.mu.Unlock() }()
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-ctx.Done():
			errs := make([]error, len(evs))
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return errs
		}
	}
	errs := make([]error, len(evs))
	if b.answer != nil {
		errs = b.answer(evs, call)
	}
	b.mu.Lock()
	for i, e := range evs {
		if i < len(errs) && errs[i] == nil {
			b.delivered[e.ID]++
		}
	}
	b.mu.Unlock()
	return errs
}

func (b *gatedBatcher) counts() (singles, batches, maxInflight, delivered int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.singles, b.batches, b.maxInflight, len(b.delivered)
}

// TestBatchingSinkCalls: a healthy batching sink gets its events in batches from the
// first one on; it never has more calls in flight than the concurrency; and the events
// it leaves unanswered in a batch are retried, not lost.
func TestBatchingSinkCalls(t *testing.T) {
	t.Run("a healthy sink gets batches, not single events", func(t *testing.T) {
		st := newStore(t)
		backlog(t, st, 300, 300)
		b := newGatedBatcher()
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: b})
		stop := start(t, d)
		waitIdle(t, d)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		singles, batches, _, delivered := b.counts()
		// 300 due events, at most 256 a batch: 2 batches.
		if delivered != 300 || singles != 0 || batches > 3 {
			t.Errorf("%d delivered in %d batches and %d single calls, want 300 in 2-3 batches and no single call", delivered, batches, singles)
		}
	})
	t.Run("no more batches in flight than the concurrency", func(t *testing.T) {
		st := newStore(t)
		backlog(t, st, 10, 10)
		b := newGatedBatcher()
		b.gate = make(chan struct{})
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: b, Concurrency: 1})
		stop := start(t, d)
		waitFor(t, "the first batch in flight", func() bool { _, n, _, _ := b.counts(); return n == 1 })
		var more []event.Event
		for i := range 10 {
			more = append(more, evt(fmt.Sprintf("new-%d", i), fmt.Sprintf("new-export-%d", i)))
		}
		enqueue(t, st, more...)
		d.Notify()
		time.Sleep(200 * time.Millisecond) // room for a second batch to (wrongly) start
		_, batches, maxInflight, _ := b.counts()
		close(b.gate)
		waitIdle(t, d)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if batches != 1 || maxInflight != 1 {
			t.Errorf("%d batches started, %d in flight at once while the first was in flight, want 1 and 1 (CONCURRENCY 1)", batches, maxInflight)
		}
		if _, _, _, delivered := b.counts(); delivered != 20 {
			t.Errorf("%d delivered, want 20", delivered)
		}
	})
	t.Run("events a batch leaves unanswered are retried", func(t *testing.T) {
		st := newStore(t)
		backlog(t, st, 3, 3)
		b := newGatedBatcher()
		b.answer = func(evs []event.Event, call int) []error {
			if call == 1 {
				return make([]error, len(evs)-1) // answers all but the last
			}
			return make([]error, len(evs))
		}
		log, logs := newLogger()
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: b, InitialInterval: time.Millisecond, Logger: log})
		stop := start(t, d)
		waitIdle(t, d)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if _, _, _, delivered := b.counts(); delivered != 3 {
			t.Errorf("%d delivered, want 3", delivered)
		}
		if l := logs.find("will retry"); l == nil || !strings.Contains(fmt.Sprint(l["error"]), "answered 2 of a batch of 3") {
			t.Errorf("retry log = %v, want the unanswered event retried", l)
		}
	})
}

// TestOutcomesSettledWhileTheDiskStalledAreWrittenByStop: outcomes that pile up while a
// settle transaction hangs are all written by the stop that waits for it: a delivered
// event is not left to be re-delivered, a failed attempt or dead letter is not
// forgotten. A1 and B1 are delivered only once X1's ack is being written (alone), and
// the dispatcher is stopped before that write is through.
func TestOutcomesSettledWhileTheDiskStalledAreWrittenByStop(t *testing.T) {
	tests := []struct {
		name string
		b1   error // the outcome of B1, after A1 was delivered
		want func(t *testing.T, st *store.Store)
	}{
		{"a delivery and a retry", retryable(503), func(t *testing.T, st *store.Store) {
			if got := pendingIDs(t, st); len(got) != 1 || got[0] != "B1" {
				t.Fatalf("outbox = %v, want [B1] (X1, A1 delivered)", got)
			}
			if r := pendingRec(t, st, "B1"); r.Attempts != 1 || r.LastStatus != 503 {
				t.Errorf("B1 = %d attempts, status %d; want its failed attempt recorded", r.Attempts, r.LastStatus)
			}
		}},
		{"a delivery and a dead letter", sinks.Permanent(errors.New("HTTP 400 from fake")), func(t *testing.T, st *store.Store) {
			if got := pendingIDs(t, st); len(got) != 0 {
				t.Errorf("outbox = %v, want empty (X1, A1 delivered, B1 dead)", got)
			}
			if dl, err := st.DeadLetters(sinkName); err != nil || len(dl) != 1 || dl[0].Event.ID != "B1" {
				t.Errorf("dead letters = %+v, %v; want B1", dl, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &storeSpy{Store: newStore(t), stall: make(chan struct{})}
			enqueue(t, q.Store, evt("X1", "X"), evt("A1", "A"), evt("B1", "B"))
			fake := newFake(func(ctx context.Context, e event.Event, _ int) error {
				for e.ID != "X1" && len(q.calls()) == 0 && ctx.Err() == nil {
					time.Sleep(time.Millisecond) // until X1's ack is being written
				}
				if e.ID == "B1" {
					return tt.b1
				}
				return nil
			})
			log, logs := newLogger()
			d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: fake, InitialInterval: time.Hour, Logger: log})
			stop := start(t, d)
			// X1's ack is being written (stalled); A1's and B1's outcomes wait behind it.
			waitFor(t, "B1's outcome handled", func() bool {
				return logs.find("will retry") != nil || logs.find("dead-letter") != nil
			})
			if err := stopThenRelease(stop, q.stall); err != nil {
				t.Fatal(err)
			}
			if c := q.calls(); len(c) == 0 || c[0].acks != 1 || c[0].attempts+c[0].dead != 0 {
				t.Fatalf("settle transactions %+v, want X1's ack alone first", c)
			}
			tt.want(t, q.Store)
		})
	}
}

// TestErrorOfInvalidUTF8IsCutSafely: a sink error longer than the kept maximum and made
// of bytes that are not UTF-8 (a response body, say) is cut, not a crash.
func TestErrorOfInvalidUTF8IsCutSafely(t *testing.T) {
	if got := deadLetterAfter(t, sinks.Permanent(errors.New(strings.Repeat("\x80", 1500)))).LastError; len(got) > 1000+len("…") {
		t.Errorf("kept error of %d bytes, want at most about 1,000", len(got))
	}
}

// TestStopReportsBothAStuckSinkAndAFailedSettle: a stop that gives up on a delivery
// ignoring its cancellation and then cannot write the pending outcomes says both, so
// the operator knows delivered events will be re-delivered.
func TestStopReportsBothAStuckSinkAndAFailedSettle(t *testing.T) {
	defer delivery.SetAfterCancel(50 * time.Millisecond)()
	errDisk := errors.New("disk says no")
	q := &storeSpy{Store: newStore(t), fail: errDisk}
	enqueue(t, q.Store, evt("A1", "A"), evt("B1", "B"))
	release := make(chan struct{})
	defer close(release)
	fake := newFake(func(_ context.Context, e event.Event, _ int) error {
		if e.ID == "B1" {
			<-release // ignores its context
		}
		return nil
	})
	d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: fake, Concurrency: 2, Grace: -1})
	stop := start(t, d)
	waitFor(t, "A1 delivered and B1 in flight", func() bool { return fake.isDelivered("A1") && fake.callsOf("B1") == 1 })
	err := stop()
	if err == nil || !strings.Contains(err.Error(), "1 deliveries did not return") || !errors.Is(err, errDisk) {
		t.Errorf("Run = %v, want the stuck delivery and the failed settle", err)
	}
}

// TestOneExportsBacklogIsReadInLinearMemory: a backlog of one export (thousands of
// events in order behind each other) is read into memory at a cost in proportion to its
// size: the export's queue grows by doubling, not by a copy of the whole queue per event
// read (quadratic: gigabytes for a few thousand records).
func TestOneExportsBacklogIsReadInLinearMemory(t *testing.T) {
	const n = 2000
	st := newStore(t)
	backlog(t, st, n, 1)
	gate := make(chan struct{})
	defer close(gate)
	fake := newFake(func(ctx context.Context, _ event.Event, _ int) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	q := &storeSpy{Store: st}
	d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: fake, Grace: -1})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := start(t, d)
	// The dispatcher reads its outbox before its first delivery.
	waitFor(t, "the first delivery in flight", func() bool { _, _, n, _, _ := fake.get(); return n == 1 })
	runtime.ReadMemStats(&after)
	if got := q.read.Load(); got != n {
		t.Fatalf("%d records read, want the backlog of %d", got, n)
	}
	perRecord := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d bytes allocated per record read", perRecord)
	// Healthy: the record decoded and its share of the doubling queue, a few KB at most;
	// a copy of the queue per record: about n/2 records' worth (hundreds of KB) each.
	if perRecord > 32<<10 {
		t.Errorf("%d bytes allocated per record of a backlog of %d on one export, want at most 32 KiB", perRecord, n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSettleTransactionHoldsAtMostSettleMax: while deliveries are in flight and the
// settle interval has not passed, the outcomes are written as soon as SettleMax (4,096)
// have gathered, in a transaction of exactly that many, not one more.
func TestSettleTransactionHoldsAtMostSettleMax(t *testing.T) {
	t.Cleanup(delivery.SetSettleEvery(time.Hour)) // only the count, or an idle sink, writes; restored after the stop
	const n = delivery.SettleMax + 500
	q := &storeSpy{Store: newStore(t)}
	backlog(t, q.Store, n, 100)
	fake := newFake(func(context.Context, event.Event, int) error { return nil })
	// Concurrency 1: one outcome per turn of the dispatcher's loop, so the count is
	// checked after each one.
	d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: fake, Concurrency: 1})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	sum, largest := 0, 0
	for _, c := range q.calls() {
		sizes = append(sizes, c.acks)
		sum += c.acks
		largest = max(largest, c.acks)
	}
	t.Logf("settle transactions of %v acks", sizes)
	if sum != n {
		t.Fatalf("%d acks written, want %d", sum, n)
	}
	if largest != delivery.SettleMax {
		t.Errorf("largest settle transaction of %d outcomes, want exactly %d (written once that many gathered)", largest, delivery.SettleMax)
	}
}

// TestOutcomesOfABusySinkAreSettledEveryInterval: while a sink is kept busy (a delivery
// in flight all the time, outcomes arriving every few milliseconds), its outcomes are
// still written every settle interval, counted from the oldest one waiting, not
// postponed by each new outcome until the sink pauses.
func TestOutcomesOfABusySinkAreSettledEveryInterval(t *testing.T) {
	const every = 300 * time.Millisecond
	// Restored after the stop (cleanups run last first).
	t.Cleanup(delivery.SetSettleEvery(every))
	const n = 400 // 5 ms each: a busy spell of 2 s or more
	q := &storeSpy{Store: newStore(t)}
	backlog(t, q.Store, n, 20)
	var mu sync.Mutex
	var first, last time.Time
	fake := newFake(func(context.Context, event.Event, int) error {
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		last = time.Now()
		return nil
	})
	d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: fake, Concurrency: 1})
	stop := start(t, d)
	waitIdle(t, d)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	marks := []time.Time{first}
	for _, c := range q.calls() {
		if c.at.After(first) && c.at.Before(last) {
			marks = append(marks, c.at)
		}
	}
	marks = append(marks, last)
	mu.Unlock()
	var gap time.Duration
	for i := 1; i < len(marks); i++ {
		gap = max(gap, marks[i].Sub(marks[i-1]))
	}
	busy := last.Sub(first)
	t.Logf("busy for %v; %d settle transactions meanwhile, longest time without one %v", busy, len(marks)-2, gap)
	if busy < 4*every {
		t.Fatalf("the sink was busy for %v only, want at least %v", busy, 4*every)
	}
	// Healthy: the interval plus a transaction's time. Postponed by each outcome: the
	// whole busy spell.
	if gap > 5*every/2 {
		t.Errorf("%v without a settle transaction while the sink was busy for %v, want at most %v (settle interval %v)", gap, busy, 5*every/2, every)
	}
}

// TestOutcomeIsSettledWhileAnotherDeliveryHangs: a delivered event is settled within
// the settle interval (20 ms) even while another delivery stays in flight, not only at
// the next rescan of the outbox (1 s) or when that delivery returns.
func TestOutcomeIsSettledWhileAnotherDeliveryHangs(t *testing.T) {
	st := newStore(t)
	enqueue(t, st, evt("A1", "A"), evt("B1", "B"))
	gate := make(chan struct{})
	defer close(gate)
	fake := newFake(func(ctx context.Context, e event.Event, _ int) error {
		if e.ID != "B1" {
			return nil
		}
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: fake, Concurrency: 2, Grace: -1})
	stop := start(t, d)
	waitFor(t, "A1 delivered, B1 in flight", func() bool { return fake.isDelivered("A1") && fake.callsOf("B1") == 1 })
	t0 := time.Now()
	waitFor(t, "A1 settled", func() bool { ids := pendingIDs(t, st); return len(ids) == 1 && ids[0] == "B1" })
	took := time.Since(t0)
	t.Logf("A1 settled %v after its delivery was seen", took)
	// Healthy: 20 ms and a transaction; at the next rescan: up to 1 s.
	if took > 500*time.Millisecond {
		t.Errorf("A1 settled %v after its delivery while B1 was in flight, want well under the 1 s rescan", took)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
