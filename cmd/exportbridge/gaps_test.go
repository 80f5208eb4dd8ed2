package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// gate is a server of its own in front of a hook's receiver: it can hang every request
// (until the client gives up), and it records, for every delivery the receiver accepted,
// how long after its detection (data.observed_at) it arrived.
type gate struct {
	URL      string
	hang     atomic.Bool
	requests atomic.Int64

	mu    sync.Mutex
	delay map[string]time.Duration // event id -> arrival minus observed_at, first accepted
}

func newGate(t *testing.T, h *hook) *gate {
	t.Helper()
	g := &gate{delay: map[string]time.Duration{}}
	inner := h.srv.Config.Handler
	closed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		g.requests.Add(1)
		if g.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-closed:
			}
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		inner.ServeHTTP(rec, r)
		if rec.status >= 300 {
			return
		}
		ce, err := event.Decode(body)
		if err != nil {
			return
		}
		d, _, err := event.ExportOf(ce)
		if err != nil {
			return
		}
		observed, err := time.Parse(time.RFC3339Nano, d.ObservedAt)
		if err != nil {
			return
		}
		g.mu.Lock()
		if _, seen := g.delay[ce.ID]; !seen {
			g.delay[ce.ID] = arrived.Sub(observed)
		}
		g.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(closed) }) // runs first: no hanging handler outlives the test
	g.URL = srv.URL + "/hooks/exports"
	return g
}

// delays returns the detection-to-delivery delay of every accepted event.
func (g *gate) delays() map[string]time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]time.Duration, len(g.delay))
	for k, v := range g.delay {
		out[k] = v
	}
	return out
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// TestSIGTERMHonoursShutdownTimeout: SIGTERM while the only webhook endpoint hangs on
// every request and events are queued: the bridge exits within SHUTDOWN_TIMEOUT plus a
// margin (not when the webhook timeout, far longer, ends the deliveries, nor after
// draining the queue), and a restart delivers everything that was not delivered.
func TestSIGTERMHonoursShutdownTimeout(t *testing.T) {
	const (
		grace  = 2 * time.Second
		margin = 3 * time.Second // the healthy exit is about grace + 0.1 s
	)
	sim, apiURL := newSim(t, simToken)
	uuids := sim.AddN(8, "processing")
	h := newHook(t)
	g := newGate(t, h)
	g.hang.Store(true)
	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = g.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
	env["EXPORTBRIDGE_WEBHOOK_TIMEOUT"] = "30s" // only SHUTDOWN_TIMEOUT can end the hanging requests in time
	env["EXPORTBRIDGE_SHUTDOWN_TIMEOUT"] = grace.String()
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())
	for _, u := range uuids {
		sim.SetStatus(u, "ready")
	}
	wants := expectedSince(sim, baseline)
	bridgetest.WaitFor(t, 30*time.Second, "deliveries hanging at the endpoint", func() bool { return g.requests.Load() >= 1 })

	sent := time.Now()
	p.Signal(syscall.SIGTERM)
	code := p.Wait(60 * time.Second)
	took := time.Since(sent)
	t.Logf("exit %v after SIGTERM (SHUTDOWN_TIMEOUT %v)", took.Round(time.Millisecond), grace)
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if took > grace+margin {
		t.Fatalf("exited %v after SIGTERM, want within SHUTDOWN_TIMEOUT %v + %v", took.Round(time.Millisecond), grace, margin)
	}
	if n := distinctIDs(h.deliveries()); n != 0 {
		t.Fatalf("the hanging endpoint accepted %d events", n)
	}

	g.hang.Store(false)
	start(t, env, "run")
	bridgetest.WaitFor(t, 60*time.Second, "every queued event delivered after the restart", func() bool {
		return distinctIDs(h.deliveries()) >= len(wants)
	})
	if distinct, dups := checkDelivered(t, h.deliveries(), wants); distinct != len(wants) {
		t.Errorf("after the restart: %d distinct events (%d duplicates), want %d", distinct, dups, len(wants))
	}
}
