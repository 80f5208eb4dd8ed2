package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

func templated(t *testing.T, c webhook.Config) *webhook.Sink {
	t.Helper()
	d := webhook.DefaultConfig()
	d.URL, d.Secret, d.Body, d.BodyText, d.ContentType, d.Vars = c.URL, c.Secret, c.Body, c.BodyText, c.ContentType, c.Vars
	s, err := webhook.New(d, sinks.Deps{Name: "teams"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestTemplatedBodyIsSignedAndCarriesTheCloudEventInHeaders: with a body template the
// receiver gets the rendered JSON, signed over exactly those bytes (verified by the
// Standard Webhooks library), webhook-id is still the event id, and the CloudEvent
// attributes travel as ce-* headers that CloudEvents sdk-go reads as a binary-mode event.
func TestTemplatedBodyIsSignedAndCarriesTheCloudEventInHeaders(t *testing.T) {
	_, whsec := newKey(t)
	rec := newRecorder(t, http.StatusOK, "")
	s := templated(t, webhook.Config{URL: rec.srv.URL, Secret: []string{whsec}, Body: map[string]any{
		"title": "Export {{ .Export.type }} {{ .Event.status }}",
		"rows":  "{{ .Export.row_count }}",
		"size":  "{{ .Export.file_size | humanBytes }}",
		"key":   "{{ .Vars.key }}",
	}, Vars: map[string]string{"key": "k-1"}})
	ev := testEvent(t, 1)
	if err := s.Deliver(context.Background(), ev); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	got := rec.only(t)
	if want := `{"key":"k-1","rows":"1200","size":"12 MB","title":"Export charging_sessions ready"}`; string(got.Body) != want {
		t.Errorf("body %s, want %s", got.Body, want)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if id := got.Header.Get("webhook-id"); id != ev.ID {
		t.Errorf("webhook-id %q, want the event id %q", id, ev.ID)
	}
	if err := refVerifier(t, whsec).Verify(got.Body, got.Header); err != nil {
		t.Errorf("the Standard Webhooks library rejects the signature of the templated body: %v", err)
	}

	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(got.Body))
	req.Header = got.Header
	msg := cehttp.NewMessageFromHttpRequest(req)
	if enc := msg.ReadEncoding(); enc != binding.EncodingBinary {
		t.Fatalf("sdk-go reads the request as %v, want binary mode", enc)
	}
	ce, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		t.Fatalf("sdk-go binary decoder: %v", err)
	}
	want, err := event.Decode(ev.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ce.SpecVersion() != "1.0" || ce.ID() != ev.ID || ce.Type() != want.Type || ce.Source() != want.Source ||
		ce.Subject() != want.Subject || ce.Time().Format(time.RFC3339Nano) != want.Time || ce.DataContentType() != "application/json" {
		t.Errorf("sdk-go read %s, want the attributes of %s", ce, ev.Body)
	}
	if !bytes.Equal(ce.Data(), got.Body) {
		t.Errorf("event data %s, want the body", ce.Data())
	}
}

func TestBodyTextIsSentAsRenderedWithItsContentType(t *testing.T) {
	rec := newRecorder(t, http.StatusNoContent, "")
	s := templated(t, webhook.Config{URL: rec.srv.URL, BodyText: "{{ .Event.status }} {{ .Export.uuid }}\n", ContentType: "text/plain"})
	ev := testEvent(t, 2)
	if err := s.Deliver(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := rec.only(t)
	if want := "ready 6f1c2d7e-0000-4000-8000-000000000002\n"; string(got.Body) != want {
		t.Errorf("body %q, want %q", got.Body, want)
	}
	if ct := got.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type %q", ct)
	}
	if got.Header.Get("Ce-Id") != ev.ID || got.Header.Get("Ce-Type") != "com.plugchoice.export.ready" {
		t.Errorf("ce headers %v", got.Header)
	}
	// Without a template nothing changes: the CloudEvent, structured mode, no ce-*.
	rec2 := newRecorder(t, http.StatusOK, "")
	plain := templated(t, webhook.Config{URL: rec2.srv.URL})
	if err := plain.Deliver(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if got := rec2.only(t); !bytes.Equal(got.Body, ev.Body) || got.Header.Get("Content-Type") != event.ContentType || got.Header.Get("Ce-Id") != "" {
		t.Errorf("untemplated delivery changed: %v %s", got.Header, got.Body)
	}
}

// TestATemplateThatFailsOnAnEventIsPermanent: an odd export (an index out of range) or a
// body over 1 MiB fails that event for good, with the template error, and sends nothing.
func TestATemplateThatFailsOnAnEventIsPermanent(t *testing.T) {
	rec := newRecorder(t, http.StatusOK, "")
	s := templated(t, webhook.Config{URL: rec.srv.URL, Body: map[string]any{
		// Every sample passes (their filename has no "-7"), an export named -7 does not.
		"part": `{{ if contains "-7." (.Export.filename | default "") }}{{ index (splitList "-" .Export.filename) 9 }}{{ end }}`,
		"big":  `{{ if contains "-8." (.Export.filename | default "") }}{{ repeat 1100000 "x" }}{{ end }}`,
	}})
	for _, tt := range []struct {
		n    int
		want string
	}{{7, "body.part: line 1, column 59: error calling index"}, {8, "exceeds 1048576 bytes"}} {
		err := s.Deliver(context.Background(), testEvent(t, tt.n))
		if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("export %d: %v, want a permanent error with %q", tt.n, err, tt.want)
		}
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("%d requests sent for events whose template failed", n)
	}
	if err := s.Deliver(context.Background(), testEvent(t, 1)); err != nil {
		t.Errorf("another event: %v", err)
	}
}

func TestBadTemplatesAreSettingsErrorsNamingKeyAndLine(t *testing.T) {
	tests := []struct {
		name string
		c    webhook.Config
		key  string
		msg  string
	}{
		{"parse error", webhook.Config{Body: map[string]any{"card": map[string]any{"text": "a\n{{ .Export.type "}}}, "body.card.text", "line 2: unclosed action"},
		{"fails on a sample", webhook.Config{BodyText: "x\n {{ index .Export.tags 0 }}"}, "body_text", "line 2, column 5: error calling index"},
		{"both", webhook.Config{Body: map[string]any{"a": "b"}, BodyText: "x"}, "body_text", "is set together with body"},
		{"content type alone", webhook.Config{ContentType: "text/plain"}, "content_type", "has no effect"},
		{"bad content type", webhook.Config{BodyText: "x", ContentType: "plain"}, "content_type", "not a media type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := webhook.DefaultConfig()
			c.URL, c.Body, c.BodyText, c.ContentType = "https://example.com/hook", tt.c.Body, tt.c.BodyText, tt.c.ContentType
			err := c.Validate()
			var fe sinks.FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("Validate: %v, want field errors", err)
			}
			for _, f := range fe {
				if f.Key == tt.key && strings.Contains(f.Msg, tt.msg) {
					return
				}
			}
			t.Errorf("Validate: %v, want %s: ...%s...", err, tt.key, tt.msg)
		})
	}
}
