package delivery_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks/webhook"
	"github.com/exportbridge/exportbridge/store"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// burstEvents is a burst of n transitions of n different exports (one event each), as a
// cycle that sees n exports become ready queues them.
func burstEvents(n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		id := fmt.Sprintf("%032x", i)
		u := fmt.Sprintf("6f1c2d7e-0000-4000-8000-%012d", i)
		evs[i] = event.Event{ID: id, Type: "export.ready", Subject: u, Status: "ready", DetectedAt: time.Now(),
			Body: []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"https://app.plugchoice.com/api/v3/exports","type":"com.plugchoice.export.ready","subject":%q,"time":"2026-11-28T10:15:02Z","datacontenttype":"application/json","data":{"previous_status":"processing","status":"ready","observed_at":"2026-11-28T10:15:04Z","export":{"uuid":%q,"type":"charging_sessions","status":"ready","filename":"sessions-%d.csv","file_size":12400000,"row_count":1200,"requested_at":"2026-11-28T10:14:00Z","completed_at":"2026-11-28T10:15:02Z","download_url":"https://files.example/x.csv?signature=abc"}}}`, id, u, u, i))}
	}
	return evs
}

// BenchmarkWebhookBurst drains a burst of 10,000 events (10,000 exports) from the outbox
// to a signed webhook sink (4 concurrent) on a loopback receiver, settles included
// ("dispatcher"), next to a plain net/http loop of 4 goroutines POSTing the same bodies
// to the same receiver ("plain"): the comparison of cmd/benchbridge throughput, without
// the poller. Compare events/s of the two in one run.
func BenchmarkWebhookBurst(b *testing.B) {
	const n = 10_000
	evs := burstEvents(n)
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	b.Run("dispatcher", func(b *testing.B) {
		st, err := store.Open(b.TempDir(), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		s, err := webhook.NewSink(webhook.Options{URL: srv.URL + "/hook", Secrets: [][]byte{[]byte("benchbridge-throughput-secret!!!")}, Concurrency: 4})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		q := &countingQueue{Queue: st}
		b.ReportAllocs()
		var total, cpu time.Duration
		iters := 0
		for b.Loop() {
			iters++
			b.StopTimer()
			if err := st.Enqueue(s.Name(), evs...); err != nil {
				b.Fatal(err)
			}
			d := delivery.NewDispatcher(q, delivery.DispatcherOptions{Sink: s, Concurrency: 4})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			b.StartTimer()
			t0, c0 := time.Now(), bridgetest.CPUTime(b)
			go func() { done <- d.Run(ctx) }()
			wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
			if err := d.WaitIdle(wctx); err != nil {
				b.Fatal(err)
			}
			total += time.Since(t0)
			cpu += bridgetest.CPUTime(b) - c0
			b.StopTimer()
			wcancel()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(n*iters)/total.Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n*iters), "cpu-ns/event")
		b.ReportMetric(float64(q.settles.Load())/float64(iters), "settles/op")
	})

	b.Run("plain", func(b *testing.B) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 4
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		b.ReportAllocs()
		var total, cpu time.Duration
		iters := 0
		for b.Loop() {
			iters++
			t0, c0 := time.Now(), bridgetest.CPUTime(b)
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= n {
							return
						}
						req, err := http.NewRequest(http.MethodPost, srv.URL+"/hook", bytes.NewReader(evs[i].Body))
						if err != nil {
							b.Error(err)
							return
						}
						req.Header.Set("Content-Type", event.ContentType)
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			total += time.Since(t0)
			cpu += bridgetest.CPUTime(b) - c0
		}
		b.ReportMetric(float64(n*iters)/total.Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n*iters), "cpu-ns/event")
	})
}
