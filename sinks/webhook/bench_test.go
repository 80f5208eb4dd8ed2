package webhook_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/webhook"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// benchReceiver answers 204 on loopback after reading the body.
func benchReceiver(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchEvents(b *testing.B) []event.Event {
	evs := make([]event.Event, 64)
	for i := range evs {
		evs[i] = testEvent(b, i)
	}
	return evs
}

// benchLoop runs post over the events, serially or from 4 goroutines, and reports
// events/s.
func benchLoop(b *testing.B, parallel bool, evs []event.Event, post func(event.Event) error) {
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		// Exactly 4 workers (the default webhook concurrency) share the b.N posts.
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(b.N) {
						return
					}
					if err := post(evs[i%int64(len(evs))]); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	} else {
		for i := 0; i < b.N; i++ {
			if err := post(evs[i%len(evs)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDeliver: the webhook sink (signed, one secret) to a loopback receiver.
func BenchmarkDeliver(b *testing.B) {
	for _, mode := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel4", true}} {
		b.Run(mode.name, func(b *testing.B) {
			srv := benchReceiver(b)
			evs := benchEvents(b)
			key, _ := newKey(b)
			s := mustNew(b, webhook.Options{URL: srv.URL + "/hook", Secrets: [][]byte{key}, Concurrency: 4, UserAgent: "exportbridge/bench"})
			ctx := context.Background()
			benchLoop(b, mode.parallel, evs, func(e event.Event) error { return s.Deliver(ctx, e) })
		})
	}
}

// BenchmarkPlainPost: the ceiling, a plain net/http POST of the same bodies to the same
// kind of receiver.
func BenchmarkPlainPost(b *testing.B) {
	for _, mode := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel4", true}} {
		b.Run(mode.name, func(b *testing.B) {
			srv := benchReceiver(b)
			evs := benchEvents(b)
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.MaxIdleConnsPerHost = 4
			b.Cleanup(tr.CloseIdleConnections)
			client := &http.Client{Transport: tr}
			url := srv.URL + "/hook"
			benchLoop(b, mode.parallel, evs, func(e event.Event) error {
				resp, err := client.Post(url, event.ContentType, bytes.NewReader(e.Body))
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				return resp.Body.Close()
			})
		})
	}
}

// BenchmarkTemplatedDeliver: the same sink (signed, 4 concurrent) sending the CloudEvent
// and sending the body of the Teams recipe (deploy/templates/teams.yaml) rendered per
// event, side by side in one run: the cost of a template on throughput.
func BenchmarkTemplatedDeliver(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "templates", "teams.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	var recipe struct {
		Sinks []struct {
			Webhook struct {
				Body any `yaml:"body"`
			} `yaml:"webhook"`
		} `yaml:"sinks"`
	}
	if err := yaml.Unmarshal(raw, &recipe); err != nil || len(recipe.Sinks) != 1 {
		b.Fatalf("teams recipe: %v", err)
	}
	_, whsec := newKey(b)
	for _, mode := range []struct {
		name string
		body any
	}{{"cloudevent", nil}, {"template", recipe.Sinks[0].Webhook.Body}} {
		b.Run(mode.name, func(b *testing.B) {
			srv := benchReceiver(b)
			evs := benchEvents(b)
			c := webhook.DefaultConfig()
			c.URL, c.Secret, c.Body = srv.URL+"/hook", []string{whsec}, mode.body
			s, err := webhook.New(c, sinks.Deps{Name: "teams", UserAgent: "exportbridge/bench"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			ctx := context.Background()
			defer bridgetest.CPUPerOp(b)()
			benchLoop(b, true, evs, func(e event.Event) error { return s.Deliver(ctx, e) })
		})
	}
}
