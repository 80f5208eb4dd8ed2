package webhook

// Internal tests that kill mutants scripts/mutation.sh found alive in ./sinks/webhook
// (issue 17): what they set is not reachable from outside the package.

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCheckGoesThroughTheProxy: where the environment names a proxy for the URL, check
// connects to the proxy (the only way out of such a network), not to the endpoint.
// http.ProxyFromEnvironment reads the environment once per process, so the test sets
// the transport's Proxy to what it returns for HTTPS_PROXY=http://<listener>.
func TestCheckGoesThroughTheProxy(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()
	s, err := NewSink(Options{Name: "webhook-1", URL: "https://hooks.example.invalid/plugchoice", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.transport.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: l.Addr().String()})
	detail, err := s.Check(context.Background())
	if want := "proxy " + l.Addr().String() + " reachable"; err != nil || !strings.Contains(detail, want) {
		t.Fatalf("Check = %q, %v; want %q", detail, err, want)
	}
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy saw no connection")
	}
}

// TestReceiverToleranceIsInclusive: the receiver accepts a webhook-timestamp up to
// exactly ReceiverTolerance (5 minutes) either side of its clock, as the Standard
// Webhooks reference library does, and refuses one second more.
func TestReceiverToleranceIsInclusive(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tol := int64(ReceiverTolerance / time.Second)
	tests := []struct {
		name   string
		offset int64 // seconds from the receiver's clock
		want   int
	}{
		{"exactly 5 minutes old", -tol, http.StatusNoContent},
		{"exactly 5 minutes ahead", tol, http.StatusNoContent},
		{"one second too old", -tol - 1, http.StatusUnauthorized},
		{"one second too far ahead", tol + 1, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewReceiver([][]byte{key}, nil)
			h.(*receiver).now = func() time.Time { return now }
			const id = "evt-tolerance"
			body := []byte(`{"specversion":"1.0","id":"` + id + `","type":"com.plugchoice.export.ready","source":"test"}`)
			ts := now.Unix() + tt.offset
			r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
			r.Header.Set(HeaderID, id)
			r.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
			r.Header.Set(HeaderSignature, Sign(key, id, ts, body))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("timestamp %+d s: %d %s, want %d", tt.offset, w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
		})
	}
}

// TestCheckDialsTheSchemesDefaultPort: `check` connects to the port the webhook URL
// names, or to its scheme's default when it names none: 443 for https, 80 for http.
func TestCheckDialsTheSchemesDefaultPort(t *testing.T) {
	for _, tc := range []struct{ scheme, port, want string }{
		{"https", "", "hooks.example:443"},
		{"http", "", "hooks.example:80"},
		{"https", "8443", "hooks.example:8443"},
	} {
		if got := hostPort(tc.scheme, "hooks.example", tc.port); got != tc.want {
			t.Errorf("hostPort(%s, hooks.example, %q) = %s, want %s", tc.scheme, tc.port, got, tc.want)
		}
	}
}
