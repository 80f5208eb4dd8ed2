package bridgetest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// Delivery is one request a Hook accepted: its signature verified by the Standard
// Webhooks receiver (webhook.NewReceiver).
type Delivery struct {
	ID, Type, Subject string
	Body              []byte
	At                time.Time // when it arrived
	Observed          time.Time // its data.observed_at: when the bridge detected it
}

// Hook is the tests' webhook endpoint: a loopback HTTP server in front of
// webhook.NewReceiver with its own signing key. It records verified deliveries and can
// answer another status, be slow, hang, or go down (connection refused) and come back on
// the same port. It counts requests that carry its secret (a leak).
type Hook struct {
	URL    string // http://127.0.0.1:PORT/hooks/exports
	Secret string // whsec_...
	KeyB64 string // the base64 key inside Secret

	t    testing.TB
	addr string
	recv http.Handler

	mu       sync.Mutex
	srv      *http.Server
	got      []Delivery
	status   func(*http.Request) (code int, retryAfter string)
	hang     chan struct{}
	delay    func() time.Duration
	requests int
	rejected int
	leaks    int
}

// NewHook starts a Hook with a fresh signing key on a free loopback port; it stops at
// the end of the test.
func NewHook(t testing.TB) *Hook {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	return NewHookWithKey(t, key)
}

// NewHookWithKey is NewHook verifying with key (several endpoints behind one
// EXPORTBRIDGE_WEBHOOK_SECRET).
func NewHookWithKey(t testing.TB, key []byte) *Hook {
	t.Helper()
	h := &Hook{t: t, KeyB64: base64.StdEncoding.EncodeToString(key)}
	h.Secret = "whsec_" + h.KeyB64
	h.recv = webhook.NewReceiver([][]byte{key}, func(id string, ce *event.CloudEvent, body []byte) {
		d := Delivery{ID: id, Type: ce.Type, Subject: ce.Subject, Body: bytes.Clone(body), At: time.Now()}
		var od struct {
			ObservedAt string `json:"observed_at"`
		}
		if json.Unmarshal(ce.Data, &od) == nil {
			d.Observed, _ = time.Parse(time.RFC3339Nano, od.ObservedAt)
		}
		h.mu.Lock()
		h.got = append(h.got, d)
		h.mu.Unlock()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.URL = "http://" + h.addr + "/hooks/exports"
	h.serve(ln)
	t.Cleanup(func() {
		h.Unhang()
		h.Down()
	})
	return h
}

func (h *Hook) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(h.handle), ReadHeaderTimeout: 10 * time.Second}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (h *Hook) handle(w http.ResponseWriter, r *http.Request) {
	dump, _ := httputil.DumpRequest(r, true) // restores r.Body
	h.mu.Lock()
	h.requests++
	if bytes.Contains(dump, []byte(h.KeyB64)) || bytes.Contains(dump, []byte("whsec_")) {
		h.leaks++
	}
	status, hang, delay := h.status, h.hang, h.delay
	h.mu.Unlock()
	if delay != nil {
		time.Sleep(delay())
	}
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	if status != nil {
		if code, ra := status(r); code != 0 {
			h.mu.Lock()
			h.rejected++
			h.mu.Unlock()
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			http.Error(w, http.StatusText(code), code)
			return
		}
	}
	h.recv.ServeHTTP(w, r)
}

// Down closes the listener and every connection: new connections are refused.
func (h *Hook) Down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Up listens again on the same port.
func (h *Hook) Up() {
	h.t.Helper()
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", h.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("webhook receiver: listen again on %s: %v", h.addr, err)
	}
	h.serve(ln)
}

// Hang makes every request wait until Unhang (or the client gives up).
func (h *Hook) Hang() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hang == nil {
		h.hang = make(chan struct{})
	}
}

// Unhang releases the waiting requests.
func (h *Hook) Unhang() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hang != nil {
		close(h.hang)
		h.hang = nil
	}
}

// SetStatus makes every request answer code (with Retry-After when retryAfter is set)
// instead of being accepted; 0 accepts again.
func (h *Hook) SetStatus(code int, retryAfter string) {
	if code == 0 {
		h.SetStatusFunc(nil)
		return
	}
	h.SetStatusFunc(func(*http.Request) (int, string) { return code, retryAfter })
}

// SetStatusFunc decides per request: a non-zero code is answered (with Retry-After when
// given) instead of accepting the request. nil accepts every request.
func (h *Hook) SetStatusFunc(fn func(r *http.Request) (code int, retryAfter string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status = fn
}

// SetDelay makes every request wait fn() first; nil removes the delay.
func (h *Hook) SetDelay(fn func() time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delay = fn
}

// Deliveries returns the verified deliveries so far, in arrival order.
func (h *Hook) Deliveries() []Delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// Counts returns the requests received, those answered with a status instead of being
// accepted, and those that carried the secret.
func (h *Hook) Counts() (requests, rejected, leaks int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests, h.rejected, h.leaks
}
