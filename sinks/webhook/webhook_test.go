package webhook_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

func TestNewRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	const secretQuery = "token=QUERYSECRET"
	tests := []struct {
		name string
		opts webhook.Options
		want []string // substrings of the error
	}{
		{"empty URL", webhook.Options{}, []string{"webhook URL is empty", "http://"}},
		{"unparsable URL", webhook.Options{URL: "http://h/%zz?" + secretQuery}, []string{"cannot be parsed"}},
		{"ftp scheme", webhook.Options{URL: "ftp://example.com/x?" + secretQuery}, []string{`scheme "ftp"`, "ftp://example.com/x", "https://"}},
		{"relative URL", webhook.Options{URL: "/hooks"}, []string{`scheme ""`}},
		{"no host", webhook.Options{URL: "https:///hooks?" + secretQuery}, []string{"no host"}},
		{"bad port", webhook.Options{URL: "http://example.com:99999/x"}, []string{`port "99999"`, "1-65535"}},
		{"negative timeout", webhook.Options{URL: "https://example.com", Timeout: -time.Second}, []string{"timeout -1s is negative"}},
		{"negative concurrency", webhook.Options{URL: "https://example.com", Concurrency: -1}, []string{"concurrency -1 is negative"}},
		{"empty secret", webhook.Options{URL: "https://example.com", Secrets: [][]byte{[]byte("k"), {}}}, []string{"signing secret #2 is empty", "whsec_"}},
		{"missing CA file", webhook.Options{URL: "https://example.com", CAFile: filepath.Join(dir, "missing.pem")}, []string{"read webhook CA file", "missing.pem"}},
		{"CA file without PEM", webhook.Options{URL: "https://example.com", CAFile: notPEM}, []string{"no PEM certificate", "not.pem"}},
		{"header empty name", webhook.Options{URL: "https://example.com", Headers: [][2]string{{" ", "v"}}}, []string{"extra header #1 has an empty name"}},
		{"header bad name", webhook.Options{URL: "https://example.com", Headers: [][2]string{{"X-Ok", "1"}, {"Bad Name", "HDRSECRET"}}}, []string{`extra header #2 name "Bad Name"`}},
		{"header line break", webhook.Options{URL: "https://example.com", Headers: [][2]string{{"Authorization", "Bearer HDRSECRET\r\nX-Evil: 1"}}}, []string{`"Authorization"`, "line break"}},
		{"header reserved signature", webhook.Options{URL: "https://example.com", Headers: [][2]string{{"Webhook-Signature", "v1,x"}}}, []string{`"Webhook-Signature"`, "cannot be overridden"}},
		{"header reserved content type", webhook.Options{URL: "https://example.com", Headers: [][2]string{{"content-type", "text/plain"}}}, []string{`"content-type"`, "cannot be overridden"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Name = "webhook-3"
			s, err := webhook.NewSink(tt.opts)
			if err == nil {
				_ = s.Close()
				t.Fatalf("New accepted %+v", tt.opts)
			}
			msg := err.Error()
			want := append([]string{"webhook-3"}, tt.want...)
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			for _, secret := range []string{"QUERYSECRET", "HDRSECRET"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q leaks %q", msg, secret)
				}
			}
		})
	}
}

func TestNameDefault(t *testing.T) {
	for _, tt := range []struct{ in, want string }{{"", "webhook"}, {"webhook-2", "webhook-2"}} {
		s := mustNew(t, webhook.Options{Name: tt.in, URL: "http://127.0.0.1:1/"})
		if got := s.Name(); got != tt.want {
			t.Errorf("Name() = %q, want %q", got, tt.want)
		}
	}
}

// TestDeliverRequest checks method, URL, body and every header, and verifies each
// signature with the Standard Webhooks reference library.
func TestDeliverRequest(t *testing.T) {
	k1, w1 := newKey(t)
	k2, w2 := newKey(t)
	k3, w3 := newKey(t)
	tests := []struct {
		name    string
		keys    [][]byte
		whsecs  []string
		headers [][2]string
	}{
		{name: "unsigned"},
		{name: "one secret", keys: [][]byte{k1}, whsecs: []string{w1}},
		{name: "two secrets", keys: [][]byte{k1, k2}, whsecs: []string{w1, w2}},
		{name: "three secrets and extra headers", keys: [][]byte{k1, k2, k3}, whsecs: []string{w1, w2, w3},
			headers: [][2]string{{"Authorization", "Bearer abc"}, {"X-Tag", "one"}, {"X-Tag", "two"}, {"User-Agent", "custom/1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, http.StatusNoContent, "")
			ev := testEvent(t, 1)
			s := mustNew(t, webhook.Options{Name: "webhook", URL: rec.srv.URL + "/hooks/in?x=1",
				Secrets: tt.keys, Headers: tt.headers, UserAgent: "exportbridge/1.2.3"})
			before := time.Now().Unix()
			if err := s.Deliver(context.Background(), ev); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			after := time.Now().Unix()
			got := rec.only(t)

			if got.Method != http.MethodPost || got.Path != "/hooks/in" || got.Query != "x=1" {
				t.Errorf("request = %s %s?%s, want POST /hooks/in?x=1", got.Method, got.Path, got.Query)
			}
			if !bytes.Equal(got.Body, ev.Body) {
				t.Errorf("body differs from Event.Body:\n got %s\nwant %s", got.Body, ev.Body)
			}
			if ct := got.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if id := got.Header.Values("webhook-id"); len(id) != 1 || id[0] != ev.ID {
				t.Errorf("webhook-id = %q, want [%q]", id, ev.ID)
			}
			ts, err := strconv.ParseInt(got.Header.Get("webhook-timestamp"), 10, 64)
			if err != nil || ts < before || ts > after {
				t.Errorf("webhook-timestamp = %q, want unix seconds in [%d,%d]", got.Header.Get("webhook-timestamp"), before, after)
			}
			wantUA := "exportbridge/1.2.3"
			if len(tt.headers) > 0 {
				wantUA = "custom/1"
				if v := got.Header.Get("Authorization"); v != "Bearer abc" {
					t.Errorf("Authorization = %q", v)
				}
				if v := got.Header.Values("X-Tag"); len(v) != 2 || v[0] != "one" || v[1] != "two" {
					t.Errorf("X-Tag = %q, want [one two] in order", v)
				}
			}
			if ua := got.Header.Get("User-Agent"); ua != wantUA {
				t.Errorf("User-Agent = %q, want %q", ua, wantUA)
			}

			sigHeader := got.Header.Get("webhook-signature")
			if len(tt.keys) == 0 {
				if _, ok := got.Header["Webhook-Signature"]; ok {
					t.Errorf("unsigned sink sent webhook-signature %q", sigHeader)
				}
				return
			}
			sigs := strings.Split(sigHeader, " ")
			if len(sigs) != len(tt.keys) {
				t.Fatalf("webhook-signature has %d entries, want %d: %q", len(sigs), len(tt.keys), sigHeader)
			}
			for i, whsec := range tt.whsecs {
				wh := refVerifier(t, whsec)
				// The whole header verifies with each secret.
				if err := wh.Verify(got.Body, got.Header); err != nil {
					t.Errorf("reference Verify with secret #%d: %v", i+1, err)
				}
				// Each signature alone verifies with its own secret only.
				for j, sig := range sigs {
					h := got.Header.Clone()
					h.Set("webhook-signature", sig)
					err := wh.Verify(got.Body, h)
					if i == j && err != nil {
						t.Errorf("signature #%d alone does not verify with its secret: %v", j+1, err)
					}
					if i != j && err == nil {
						t.Errorf("signature #%d verifies with secret #%d", j+1, i+1)
					}
				}
				// A different body fails.
				if err := wh.Verify(append(bytes.Clone(got.Body), ' '), got.Header); err == nil {
					t.Errorf("reference Verify accepted a modified body with secret #%d", i+1)
				}
			}
		})
	}
}

// TestDeliverTimestampPerAttempt: each attempt carries its own timestamp and a signature
// over it, with the same webhook-id.
func TestDeliverTimestampPerAttempt(t *testing.T) {
	key, whsec := newKey(t)
	rec := newRecorder(t, http.StatusInternalServerError, "")
	base := time.Now().Add(-2 * time.Minute).Truncate(time.Second)
	var mu sync.Mutex
	now := base
	s := mustNew(t, webhook.Options{URL: rec.srv.URL, Secrets: [][]byte{key}, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}})
	ev := testEvent(t, 2)
	for i := 0; i < 3; i++ {
		mu.Lock()
		now = base.Add(time.Duration(i) * 37 * time.Second)
		mu.Unlock()
		if err := s.Deliver(context.Background(), ev); err == nil {
			t.Fatal("Deliver to a 500 receiver returned nil")
		}
	}
	reqs := rec.requests()
	if len(reqs) != 3 {
		t.Fatalf("got %d requests, want 3", len(reqs))
	}
	wh := refVerifier(t, whsec)
	seen := map[string]bool{}
	for i, r := range reqs {
		want := strconv.FormatInt(base.Add(time.Duration(i)*37*time.Second).Unix(), 10)
		if got := r.Header.Get("webhook-timestamp"); got != want {
			t.Errorf("attempt %d: webhook-timestamp = %s, want %s", i+1, got, want)
		}
		if got := r.Header.Get("webhook-id"); got != ev.ID {
			t.Errorf("attempt %d: webhook-id = %s, want %s", i+1, got, ev.ID)
		}
		if err := wh.Verify(r.Body, r.Header); err != nil {
			t.Errorf("attempt %d: reference Verify: %v", i+1, err)
		}
		sig := r.Header.Get("webhook-signature")
		if seen[sig] {
			t.Errorf("attempt %d reuses an earlier signature", i+1)
		}
		seen[sig] = true
	}
}

func TestDeliverStatusOutcomes(t *testing.T) {
	type class int
	const (
		delivered class = iota
		retryable
		permanent
	)
	tests := []struct {
		code int
		want class
	}{
		{200, delivered}, {201, delivered}, {202, delivered}, {204, delivered},
		{408, retryable}, {425, retryable}, {429, retryable},
		{500, retryable}, {502, retryable}, {503, retryable}, {504, retryable}, {507, retryable},
		{400, permanent}, {401, permanent}, {403, permanent}, {404, permanent}, {405, permanent},
		{409, permanent}, {410, permanent}, {413, permanent}, {422, permanent},
		// A 3xx is never a delivery, even one Go does not follow; 600 is not HTTP, so
		// "any other status" (SPEC).
		{300, permanent}, {599, retryable}, {600, permanent},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			reason := "reason-for-" + strconv.Itoa(tt.code)
			rec := newRecorder(t, tt.code, `{"error":"`+reason+`"}`)
			s := mustNew(t, webhook.Options{Name: "webhook-2", URL: rec.srv.URL})
			err := s.Deliver(context.Background(), testEvent(t, 3))
			rec.only(t) // exactly one attempt: no retry inside Deliver
			if tt.want == delivered {
				if err != nil {
					t.Fatalf("Deliver = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Deliver = nil for %d", tt.code)
			}
			if got := sinks.IsPermanent(err); got != (tt.want == permanent) {
				t.Errorf("IsPermanent = %v for %d: %v", got, tt.code, err)
			}
			if got := sinks.StatusCode(err); got != tt.code {
				t.Errorf("StatusCode = %d, want %d", got, tt.code)
			}
			if _, ok := sinks.RetryAfterOf(err); ok {
				t.Errorf("RetryAfterOf set without a Retry-After header: %v", err)
			}
			msg := err.Error()
			status := strings.TrimSpace("HTTP "+strconv.Itoa(tt.code)+" "+http.StatusText(tt.code)) + ":" // "HTTP 503 Service Unavailable:", "HTTP 600:"
			for _, w := range []string{"webhook-2", status, reason} {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestDeliverRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		code   int
		header string
		want   time.Duration // 0: no RetryAfter
	}{
		{"429 seconds", 429, "7", 7 * time.Second},
		{"503 seconds", 503, "120", 2 * time.Minute},
		{"429 HTTP date", 429, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"503 HTTP date", 503, now.Add(time.Hour).Format(http.TimeFormat), time.Hour},
		{"past HTTP date", 503, now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"zero seconds", 429, "0", 0},
		{"negative seconds", 429, "-5", 0},
		{"garbage", 429, "soon", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, tt.code, "slow down")
			rec.header.Set("Retry-After", tt.header)
			s := mustNew(t, webhook.Options{URL: rec.srv.URL, Now: func() time.Time { return now }})
			err := s.Deliver(context.Background(), testEvent(t, 4))
			if err == nil || sinks.IsPermanent(err) {
				t.Fatalf("Deliver = %v, want a retryable error", err)
			}
			if got := sinks.StatusCode(err); got != tt.code {
				t.Errorf("StatusCode = %d, want %d", got, tt.code)
			}
			got, ok := sinks.RetryAfterOf(err)
			if tt.want == 0 {
				if ok {
					t.Errorf("RetryAfterOf = %s, want none", got)
				}
				return
			}
			if !ok || got != tt.want {
				t.Errorf("RetryAfterOf = %s, %v; want %s", got, ok, tt.want)
			}
		})
	}
}

func TestDeliverErrorBodyExcerpt(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		contains []string
		excludes []string
	}{
		{"short body", "field export.uuid is invalid", []string{"field export.uuid is invalid"}, []string{"truncated"}},
		{"long body cut at 1 KiB", strings.Repeat("a", 1024) + "TAILMARK" + strings.Repeat("b", 4096),
			[]string{strings.Repeat("a", 1024), "truncated"}, []string{"TAILMARK", "bb"}},
		{"control characters flattened", "line1\nline2\r\n\tX", []string{"line1 line2"}, []string{"\n", "\r"}},
		{"multi-byte rune at the cut", strings.Repeat("a", 1023) + "é" + "rest", []string{strings.Repeat("a", 1023) + " …(truncated)"}, []string{"\uFFFD", "rest"}},
		{"multi-byte runes up to the cut", strings.Repeat("é", 600), []string{strings.Repeat("é", 512) + " …(truncated)"}, []string{"\uFFFD"}},
		{"three-byte rune cut after two bytes", strings.Repeat("a", 1022) + "€rest", []string{strings.Repeat("a", 1022) + " …(truncated)"}, []string{"\uFFFD", "rest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, http.StatusUnprocessableEntity, tt.body)
			s := mustNew(t, webhook.Options{URL: rec.srv.URL})
			err := s.Deliver(context.Background(), testEvent(t, 5))
			if err == nil {
				t.Fatal("Deliver = nil for 422")
			}
			msg := err.Error()
			for _, c := range tt.contains {
				if !strings.Contains(msg, c) {
					t.Errorf("error does not contain %q: %q", c, msg)
				}
			}
			for _, x := range tt.excludes {
				if strings.Contains(msg[strings.Index(msg, "body:"):], x) {
					t.Errorf("error body part contains %q: %q", x, msg)
				}
			}
		})
	}
}

func TestDeliverRedirectNotFollowed(t *testing.T) {
	target := newRecorder(t, http.StatusNoContent, "")
	tests := []struct {
		name     string
		code     int
		location string
		want     string
	}{
		{"301 absolute", 301, target.srv.URL + "/final?sig=LOCSECRET", target.srv.URL + "/final"},
		{"302 absolute with userinfo", 302, strings.Replace(target.srv.URL, "http://", "http://bob:LOCSECRET@", 1) + "/final", target.srv.URL + "/final"},
		{"303 relative", 303, "/moved/here?token=LOCSECRET#frag", "/moved/here"},
		{"307 absolute", 307, target.srv.URL + "/final", target.srv.URL + "/final"},
		{"308 absolute", 308, target.srv.URL + "/final?x=LOCSECRET", target.srv.URL + "/final"},
		{"302 without Location", 302, "", "(no Location header)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, tt.code, "moved")
			if tt.location != "" {
				rec.header.Set("Location", tt.location)
			}
			s := mustNew(t, webhook.Options{URL: rec.srv.URL + "/start"})
			err := s.Deliver(context.Background(), testEvent(t, 6))
			if err == nil {
				t.Fatal("Deliver = nil for a redirect")
			}
			if !sinks.IsPermanent(err) {
				t.Errorf("redirect error is not permanent: %v", err)
			}
			if got := sinks.StatusCode(err); got != tt.code {
				t.Errorf("StatusCode = %d, want %d", got, tt.code)
			}
			msg := err.Error()
			for _, w := range []string{"redirect to ", tt.want + " not followed", "configure the final URL"} {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "LOCSECRET") {
				t.Errorf("error leaks the Location's query or userinfo: %q", msg)
			}
			rec.only(t)
			if n := len(target.requests()); n != 0 {
				t.Errorf("redirect target received %d requests", n)
			}
		})
	}
}

func TestDeliverHangingReceiverTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	s := mustNew(t, webhook.Options{URL: srv.URL, Timeout: 200 * time.Millisecond})

	err := s.Deliver(context.Background(), testEvent(t, 7))
	if err == nil {
		t.Fatal("Deliver to a hanging receiver returned nil")
	}
	if sinks.IsPermanent(err) {
		t.Errorf("timeout is permanent: %v", err)
	}
	if !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Errorf("error does not say it timed out: %v", err)
	}
	if got := sinks.StatusCode(err); got != 0 {
		t.Errorf("StatusCode = %d, want 0", got)
	}
}

func TestDeliverConnectionRefused(t *testing.T) {
	s := mustNew(t, webhook.Options{URL: "http://" + freeAddr(t) + "/hook"})
	err := s.Deliver(context.Background(), testEvent(t, 8))
	if err == nil {
		t.Fatal("Deliver to a closed port returned nil")
	}
	if sinks.IsPermanent(err) {
		t.Errorf("connection refused is permanent: %v", err)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("error does not say the connection was refused: %v", err)
	}
}

func TestDeliverCancelledContext(t *testing.T) {
	rec := newRecorder(t, http.StatusNoContent, "")
	s := mustNew(t, webhook.Options{URL: rec.srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Deliver(ctx, testEvent(t, 9))
	if err == nil {
		t.Fatal("Deliver with a cancelled context returned nil")
	}
	if sinks.IsPermanent(err) {
		t.Errorf("cancellation is permanent (the event would be dead-lettered): %v", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error does not wrap context.Canceled: %v", err)
	}
}

func TestDeliverRejectsUnsendableEvent(t *testing.T) {
	rec := newRecorder(t, http.StatusNoContent, "")
	s := mustNew(t, webhook.Options{URL: rec.srv.URL})
	good := testEvent(t, 10)
	noBody, noID := good, good
	noBody.Body = nil
	noID.ID = ""
	for name, ev := range map[string]event.Event{"no body": noBody, "no id": noID} {
		t.Run(name, func(t *testing.T) {
			err := s.Deliver(context.Background(), ev)
			if err == nil || !sinks.IsPermanent(err) {
				t.Fatalf("Deliver = %v, want a permanent error", err)
			}
		})
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("receiver got %d requests for unsendable events", n)
	}
}

// writeCA writes the TLS test server's certificate as a PEM file.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSCustomCA(t *testing.T) {
	srv := quietTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	ca := writeCA(t, srv)
	tests := []struct {
		name   string
		caFile string
		ok     bool
	}{
		{"with the CA", ca, true},
		{"system roots only", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew(t, webhook.Options{URL: srv.URL + "/hook", CAFile: tt.caFile})
			err := s.Deliver(context.Background(), testEvent(t, 11))
			detail, cerr := s.Check(context.Background())
			if tt.ok {
				if err != nil {
					t.Errorf("Deliver: %v", err)
				}
				if cerr != nil || !strings.Contains(detail, "TLS 1.") {
					t.Errorf("Check = %q, %v; want a TLS handshake detail", detail, cerr)
				}
				return
			}
			if err == nil {
				t.Fatal("Deliver succeeded against an unknown CA")
			}
			if sinks.IsPermanent(err) {
				t.Errorf("TLS failure is permanent: %v", err)
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error does not mention the certificate: %v", err)
			}
			if cerr == nil || !strings.Contains(cerr.Error(), "TLS handshake") {
				t.Errorf("Check = %q, %v; want a TLS handshake error", detail, cerr)
			}
		})
	}
}

// TestErrorsNeverLeakSecrets drives every error path with a URL that has userinfo, a
// token in its path (as Discord's) and a query string, and signing keys, and checks no
// error string contains them.
func TestErrorsNeverLeakSecrets(t *testing.T) {
	key, whsec := newKey(t)
	secrets := []string{"USERSECRET", "PASSSECRET", "QUERYSECRET", "HEADERSECRET", "PATHT0KENSECRET", whsec,
		base64.StdEncoding.EncodeToString(key), string(key)}
	withSecrets := func(base string) string {
		return strings.Replace(base, "://", "://USERSECRET:PASSSECRET@", 1) + "/hook/PATHT0KENSECRETabcdef01?token=QUERYSECRET&x=QUERYSECRET"
	}
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-hang:
		}
	}))
	t.Cleanup(hanging.Close)
	t.Cleanup(func() { close(hang) })
	tlsSrv := quietTLSServer(t, http.NotFoundHandler())
	fail := newRecorder(t, http.StatusInternalServerError, "oops")
	gone := newRecorder(t, http.StatusGone, "gone")
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no route for "+r.URL.RequestURI()+" raw query "+r.URL.RawQuery, http.StatusNotFound)
	}))
	t.Cleanup(echo.Close)
	moved := newRecorder(t, http.StatusFound, "")
	moved.header.Set("Location", "/elsewhere?token=QUERYSECRET")

	cases := map[string]string{
		"refused":  withSecrets("http://" + freeAddr(t)),
		"timeout":  withSecrets(hanging.URL),
		"tls":      withSecrets(tlsSrv.URL),
		"500":      withSecrets(fail.srv.URL),
		"410":      withSecrets(gone.srv.URL),
		"redirect": withSecrets(moved.srv.URL),
		"echo 404": withSecrets(echo.URL),
	}
	for name, u := range cases {
		t.Run(name, func(t *testing.T) {
			s := mustNew(t, webhook.Options{URL: u, Secrets: [][]byte{key}, Timeout: 300 * time.Millisecond,
				Headers: [][2]string{{"Authorization", "Bearer HEADERSECRET"}}})
			err := s.Deliver(context.Background(), testEvent(t, 12))
			if err == nil {
				t.Fatal("Deliver = nil")
			}
			_, cerr := s.Check(context.Background())
			for _, e := range []error{err, cerr} {
				if e == nil {
					continue
				}
				for _, sec := range secrets {
					if strings.Contains(e.Error(), sec) {
						t.Errorf("error leaks %q: %q", sec, e.Error())
					}
				}
			}
		})
	}
	// Sanity: the secrets really were in the configuration.
	if !strings.Contains(cases["500"], "QUERYSECRET") || !strings.Contains(cases["500"], "PASSSECRET") {
		t.Fatal("test URL lost its secrets")
	}
	// And the receiver did get the query and the extra header.
	got := fail.only(t)
	if got.Query != "token=QUERYSECRET&x=QUERYSECRET" {
		t.Errorf("query not sent: %q", got.Query)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer HEADERSECRET" {
		t.Errorf("Authorization = %q, want the extra header", a)
	}
}

func TestDeliverReusesConnections(t *testing.T) {
	const workers, perWorker = 4, 25
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"204 empty", http.StatusNoContent, ""},
		{"200 with body", http.StatusOK, strings.Repeat("ok", 4096)},
		{"500 with long body", http.StatusInternalServerError, strings.Repeat("e", 8192)},
		{"404 with long body", http.StatusNotFound, strings.Repeat("n", 8192)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, tt.status, tt.body)
			s := mustNew(t, webhook.Options{URL: rec.srv.URL, Concurrency: workers})
			var wg sync.WaitGroup
			errs := make(chan error, workers*perWorker)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perWorker; i++ {
						errs <- s.Deliver(context.Background(), testEvent(t, w*perWorker+i))
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if (err == nil) != (tt.status < 300) {
					t.Fatalf("Deliver = %v for status %d", err, tt.status)
				}
			}
			if n := len(rec.requests()); n != workers*perWorker {
				t.Errorf("receiver got %d requests, want %d", n, workers*perWorker)
			}
			if n := rec.newConns.Load(); n > workers {
				t.Errorf("%d new connections for %d requests from %d workers, want at most %d", n, workers*perWorker, workers, workers)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	rec := newRecorder(t, http.StatusNoContent, "")
	tests := []struct {
		name    string
		url     string
		wantErr string
		want    string
	}{
		{"reachable http", rec.srv.URL + "/hook?token=abc", "", "connected to " + strings.TrimPrefix(rec.srv.URL, "http://")},
		{"refused", "http://" + freeAddr(t) + "/hook", "connect", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew(t, webhook.Options{Name: "webhook-1", URL: tt.url})
			detail, err := s.Check(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "webhook-1") {
					t.Fatalf("Check = %q, %v; want an error mentioning %q and the sink", detail, err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(detail, tt.want) {
				t.Fatalf("Check = %q, %v; want %q", detail, err, tt.want)
			}
		})
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("Check sent %d HTTP requests", n)
	}
}

func TestCloseClosesIdleConnections(t *testing.T) {
	rec := newRecorder(t, http.StatusNoContent, "")
	s := mustNew(t, webhook.Options{URL: rec.srv.URL})
	if err := s.Deliver(context.Background(), testEvent(t, 13)); err != nil {
		t.Fatal(err)
	}
	if n := rec.closed.Load(); n != 0 {
		t.Fatalf("connection closed before Close (%d)", n)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, "the idle connection to close", func() bool { return rec.closed.Load() == 1 })
}

// TestSignMatchesReference checks the exported Sign against the reference library's
// signer (deliveries themselves are verified with the reference Verify elsewhere).
func TestSignMatchesReference(t *testing.T) {
	key, whsec := newKey(t)
	wh := refVerifier(t, whsec)
	for _, tt := range []struct {
		id   string
		ts   int64
		body string
	}{
		{"msg_1", 1700000000, `{"a":1}`},
		{"0f8e", 0, ""},
		{"x.y.z", 1999999999, "body with . dots"},
	} {
		want, err := wh.Sign(tt.id, time.Unix(tt.ts, 0), []byte(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := webhook.Sign(key, tt.id, tt.ts, []byte(tt.body)); got != want {
			t.Errorf("Sign(%q, %d) = %s, reference %s", tt.id, tt.ts, got, want)
		}
	}
}
