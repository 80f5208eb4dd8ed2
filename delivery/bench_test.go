package delivery_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks/stdout"
	"github.com/exportbridge/exportbridge/store"
)

// BenchmarkDispatchStdout drains 10,000 events (1,000 exports) from the outbox to the
// stdout sink writing to io.Discard, acks included.
func BenchmarkDispatchStdout(b *testing.B) {
	const n = 10_000
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	evs := make([]event.Event, n)
	for i := range evs {
		id := fmt.Sprintf("%032x", i)
		evs[i] = event.Event{ID: id, Type: "export.ready", Subject: fmt.Sprintf("export-%d", i%1000),
			Status: "ready", DetectedAt: time.Now(),
			Body: []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"https://app.plugchoice.com/api/v3/exports","type":"com.plugchoice.export.ready","subject":"export-%d","time":"2026-11-28T10:15:02Z","datacontenttype":"application/json","data":{"previous_status":"processing","status":"ready","observed_at":"2026-11-28T10:15:04Z","export":{"uuid":"export-%d","type":"sessions","status":"ready","filename":"sessions.csv","file_size":12400000,"row_count":1000}}}`, id, i%1000, i%1000))}
	}
	var total time.Duration
	iters := 0
	for b.Loop() {
		iters++
		b.StopTimer()
		if err := st.Enqueue("stdout", evs...); err != nil {
			b.Fatal(err)
		}
		d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: stdout.NewSink(io.Discard)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		t0 := time.Now()
		go func() { done <- d.Run(ctx) }()
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		if err := d.WaitIdle(wctx); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		b.StopTimer()
		wcancel()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*iters)/total.Seconds(), "events/s")
}
