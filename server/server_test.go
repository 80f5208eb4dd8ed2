package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (int, http.Header, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestHandlerEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Polls.WithLabelValues("ok").Inc()
	m.Polls.WithLabelValues("ok").Inc()
	m.Deliveries.WithLabelValues("webhook-1", "delivered").Inc()
	m.LastPollSuccess.Set(1.7e9)
	m.Depths("slack", 4, 1)

	clk := bridgetest.NewClock(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC))
	h := server.NewHealth(10*time.Second, clk.Now)
	h.StoreOpen(true)

	srv := httptest.NewServer(server.Handler(server.Options{Health: h, Registry: reg, Logger: quietLogger()}))
	defer srv.Close()

	code, hdr, body := get(t, srv.URL+"/healthz")
	if code != http.StatusOK || !strings.Contains(body, `"ok"`) || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("/healthz = %d %q (%s)", code, body, hdr.Get("Content-Type"))
	}

	// Not ready yet: 503 with a JSON reason.
	code, _, body = get(t, srv.URL+"/readyz")
	var r server.Reason
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || r.Reason != server.ReasonStarting {
		t.Fatalf("/readyz before first poll = %d %q, want 503 starting", code, body)
	}

	h.PollOK(clk.Now())
	code, _, body = get(t, srv.URL+"/readyz")
	r = server.Reason{}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusOK || r.Reason != server.ReasonReady || r.LastPoll == nil || !r.LastPoll.Equal(clk.Now()) {
		t.Fatalf("/readyz after poll = %d %q, want 200 ready with last_successful_poll", code, body)
	}

	h.PollFailed(clk.Now(), "http_401", "Unauthenticated.", true)
	code, _, body = get(t, srv.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"reason":"api_unauthorized"`) || !strings.Contains(body, "Unauthenticated.") {
		t.Fatalf("/readyz after 401 = %d %q", code, body)
	}

	code, _, body = get(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`exportbridge_polls_total{account="default",outcome="ok"} 2`,
		`exportbridge_deliveries_total{outcome="delivered",sink="webhook-1"} 1`,
		`exportbridge_last_successful_poll_timestamp_seconds{account="default"} 1.7e+09`,
		`exportbridge_outbox_depth{sink="slack"} 4`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestHandlerErrors(t *testing.T) {
	tests := []struct {
		name       string
		opts       server.Options
		method     string
		path       string
		wantCode   int
		wantInBody string
	}{
		{"unknown path", server.Options{}, http.MethodGet, "/nope", 404, `"error":"no endpoint /nope"`},
		{"POST healthz", server.Options{}, http.MethodPost, "/healthz", 405, "method POST not allowed on /healthz"},
		{"HEAD healthz", server.Options{}, http.MethodHead, "/healthz", 200, ""},
		{"no registry: no metrics", server.Options{}, http.MethodGet, "/metrics", 404, "no endpoint /metrics"},
		{"no health: not ready", server.Options{}, http.MethodGet, "/readyz", 503, `"reason":"not_configured"`},
		{"DELETE readyz", server.Options{Health: server.NewHealth(time.Second, nil)}, http.MethodDelete, "/readyz", 405, "expected GET"},
		{"POST metrics", server.Options{Registry: prometheus.NewRegistry()}, http.MethodPost, "/metrics", 405, "expected GET"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Logger = quietLogger()
			srv := httptest.NewServer(server.Handler(tc.opts))
			defer srv.Close()
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			code, hdr, body := send(t, req)
			if code != tc.wantCode || !strings.Contains(body, tc.wantInBody) {
				t.Fatalf("%s %s = %d %q; want %d containing %q", tc.method, tc.path, code, body, tc.wantCode, tc.wantInBody)
			}
			if code == 405 && hdr.Get("Allow") != http.MethodGet {
				t.Fatalf("405 without Allow: GET (got %q)", hdr.Get("Allow"))
			}
		})
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, ln, server.Handler(server.Options{Logger: quietLogger()})) }()

	code, _, _ := get(t, "http://"+addr+"/healthz")
	if code != http.StatusOK {
		t.Fatalf("/healthz via Serve = %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepts after Serve returned")
	}
}

func TestServeListenerError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve cannot accept on a closed listener
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = server.Serve(ctx, ln, http.NotFoundHandler())
	if err == nil || !strings.Contains(err.Error(), "serve http on 127.0.0.1:") || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve on a closed listener = %v, want a wrapped net.ErrClosed naming the address", err)
	}
}

func TestServeAlreadyCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := server.Serve(ctx, ln, http.NotFoundHandler()); err != nil {
		t.Fatalf("Serve with a cancelled ctx = %v, want nil", err)
	}
}
