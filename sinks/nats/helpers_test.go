package nats_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/sinks"
	bnats "github.com/exportbridge/exportbridge/sinks/nats"
)

// wait is the generous bound for anything asynchronous (shared, noisy machine).
const wait = 20 * time.Second

func startServer(t testing.TB, o natsembed.Options) *server.Server {
	t.Helper()
	if o.JetStream && o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	s, err := natsembed.Start(o)
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() { stopServer(s) })
	return s
}

func stopServer(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

func portOf(t testing.TB, s *server.Server) int {
	t.Helper()
	a, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("server address %v is not TCP", s.Addr())
	}
	return a.Port
}

var quiet = slog.New(slog.DiscardHandler)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) count(s string) int { return strings.Count(b.String(), s) }

func newLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newSink(t testing.TB, o bnats.Options) *bnats.Sink {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	s, err := bnats.NewSink(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// connect is a plain client for observing what the sink published.
func connect(t testing.TB, url string, opts ...natsgo.Option) *natsgo.Conn {
	t.Helper()
	opts = append(opts, natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	nc, err := natsgo.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect observer: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func createStream(t testing.TB, nc *natsgo.Conn, name string, subjects ...string) jetstream.Stream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("create stream %s: %v", name, err)
	}
	return st
}

func streamMsgs(t testing.TB, st jetstream.Stream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

// ev builds an export event with a distinct id and a small CloudEvent-like body.
func ev(exportUUID, status, exportType string, seq int) event.Event {
	id := event.ID(exportUUID, status, fmt.Sprintf("seq-%d", seq))
	body, _ := json.Marshal(map[string]any{
		"specversion": "1.0", "id": id, "type": "com.plugchoice.export." + status,
		"subject": exportUUID, "data": map[string]any{"status": status, "seq": seq},
	})
	return event.Event{
		ID: id, Type: "export." + status, Subject: exportUUID, Status: status,
		ExportType: exportType, DetectedAt: time.Now(), Body: body,
	}
}

// deliverUntil retries Deliver until it succeeds, asserting every failure is retryable.
func deliverUntil(t testing.TB, s *bnats.Sink, e event.Event) (failures int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := s.Deliver(ctx, e)
		cancel()
		if err == nil {
			return failures
		}
		if sinks.IsPermanent(err) {
			t.Fatalf("Deliver %s: permanent error while retrying: %v", e.ID, err)
		}
		failures++
		if time.Now().After(deadline) {
			t.Fatalf("Deliver %s: still failing after %s: %v", e.ID, wait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
