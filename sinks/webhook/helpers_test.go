package webhook_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// newKey returns a random signing key and its whsec_ form.
func newKey(t testing.TB) ([]byte, string) {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k, "whsec_" + base64.StdEncoding.EncodeToString(k)
}

// refVerifier builds a Standard Webhooks reference-library verifier from a whsec_ secret.
func refVerifier(t testing.TB, whsec string) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(whsec)
	if err != nil {
		t.Fatalf("reference library rejects secret: %v", err)
	}
	return wh
}

// testEvent builds a real export.ready event (encoded by the event package).
func testEvent(t testing.TB, n int) event.Event {
	t.Helper()
	completed := "2026-11-28T10:15:02Z"
	name := fmt.Sprintf("sessions-%d.csv", n)
	raw, err := json.Marshal(map[string]any{
		"uuid": fmt.Sprintf("6f1c2d7e-0000-4000-8000-%012d", n), "type": "charging_sessions",
		"status": "ready", "filename": name, "file_size": 12400000, "row_count": 1200,
		"requested_at": "2026-11-28T10:14:00Z", "completed_at": completed,
		"download_url": "https://files.example/x.csv?signature=abc",
	})
	if err != nil {
		t.Fatal(err)
	}
	var exp plugchoice.Export
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	ev, err := event.NewExport("https://app.plugchoice.com/api/v3/exports", "processing", &exp,
		time.Date(2026, 11, 28, 10, 15, 4, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// captured is one request as a receiver saw it.
type captured struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

// recorder is an httptest receiver that records requests and answers with a
// configurable status, headers and body.
type recorder struct {
	mu       sync.Mutex
	reqs     []captured
	status   int
	header   http.Header
	body     string
	newConns atomic.Int64
	closed   atomic.Int64
	srv      *httptest.Server
}

func newRecorder(t testing.TB, status int, body string) *recorder {
	t.Helper()
	rec := &recorder{status: status, body: body, header: http.Header{}}
	rec.srv = httptest.NewUnstartedServer(rec)
	rec.srv.Config.ConnState = rec.connState
	rec.srv.Start()
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		rec.newConns.Add(1)
	case http.StateClosed, http.StateHijacked:
		rec.closed.Add(1)
	}
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, captured{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: b})
	status, body := rec.status, rec.body
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	rec.mu.Unlock()
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (rec *recorder) requests() []captured {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]captured(nil), rec.reqs...)
}

func (rec *recorder) only(t testing.TB) captured {
	t.Helper()
	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want exactly 1", len(reqs))
	}
	return reqs[0]
}

func mustNew(t testing.TB, o webhook.Options) *webhook.Sink {
	t.Helper()
	s, err := webhook.NewSink(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// quietTLSServer is httptest.NewTLSServer without logging the handshake failures the
// tests provoke.
func quietTLSServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// waitFor polls cond until it holds or a generous timeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
