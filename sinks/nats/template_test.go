package nats_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/sinks"
	bnats "github.com/exportbridge/exportbridge/sinks/nats"
)

func templatedSink(t *testing.T, url string, js bool, c bnats.Config) *bnats.Sink {
	t.Helper()
	cfg := bnats.DefaultConfig()
	cfg.URL, cfg.JetStream, cfg.Body, cfg.BodyText, cfg.ContentType = []string{url}, js, c.Body, c.BodyText, c.ContentType
	s, err := bnats.New(context.Background(), cfg, sinks.Deps{Name: "bus", Logger: quiet})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestTemplatedPayloadKeepsIdAndCarriesTheCloudEventInHeaders: a NATS sink with a body
// template publishes the rendered JSON; Nats-Msg-Id stays the event id (JetStream still
// removes a re-send) and the CloudEvent attributes are ce-* headers, which CloudEvents
// sdk-go's binary decoder reads (the NATS binding uses the HTTP binding's ce- names).
func TestTemplatedPayloadKeepsIdAndCarriesTheCloudEventInHeaders(t *testing.T) {
	srv := startServer(t, natsembed.Options{JetStream: true})
	obs := connect(t, srv.ClientURL())
	st := createStream(t, obs, "EXPORTS", "plugchoice.exports.>")
	s := templatedSink(t, srv.ClientURL(), true, bnats.Config{Body: map[string]any{
		"export": "{{ .Export.uuid }}", "status": "{{ .Event.status }}", "n": 1,
	}})
	e := exportEvent(t, "ready", "sessions")
	for range 2 {
		if err := s.Deliver(context.Background(), e); err != nil {
			t.Fatalf("Deliver: %v", err)
		}
	}
	if n := streamMsgs(t, st); n != 1 {
		t.Errorf("stream holds %d messages after a re-send, want 1 (Nats-Msg-Id is the event id)", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"export":"0b6f3c1e-readysessions","n":1,"status":"ready"}`; string(m.Data) != want {
		t.Errorf("payload %s, want %s", m.Data, want)
	}
	if m.Subject != "plugchoice.exports.ready.sessions" || m.Header.Get("Nats-Msg-Id") != e.ID || m.Header.Get("Content-Type") != "application/json" {
		t.Errorf("message %s %v", m.Subject, m.Header)
	}
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(m.Data))
	for k, vs := range m.Header { // NATS keeps the names as sent; HTTP canonicalises them
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	ce, err := binding.ToEvent(context.Background(), cehttp.NewMessageFromHttpRequest(req))
	if err != nil {
		t.Fatalf("sdk-go binary decoder: %v", err)
	}
	want, _ := event.Decode(e.Body)
	if ce.ID() != e.ID || ce.Type() != want.Type || ce.Source() != want.Source || ce.Subject() != want.Subject || !bytes.Equal(ce.Data(), m.Data) {
		t.Errorf("sdk-go read %s, want the attributes of %s", ce, e.Body)
	}
}

func TestNATSTemplateFailingOnAnEventIsPermanent(t *testing.T) {
	srv := startServer(t, natsembed.Options{})
	s := templatedSink(t, srv.ClientURL(), false, bnats.Config{BodyText: `{{ if eq .Export.type "odd" }}{{ index .Export.tags 3 }}{{ end }}`})
	err := s.Deliver(context.Background(), exportEvent(t, "ready", "odd"))
	if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "body_text: line 1, column 34: error calling index") {
		t.Errorf("Deliver: %v, want a permanent template error", err)
	}
	if err := s.Deliver(context.Background(), exportEvent(t, "ready", "sessions")); err != nil {
		t.Errorf("another event: %v", err)
	}
	c := bnats.DefaultConfig()
	c.URL, c.Body = []string{srv.ClientURL()}, map[string]any{"x": "{{ .Export.type | nope }}"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `body.x: line 1: function "nope" not defined`) {
		t.Errorf("Validate: %v, want the key and line", err)
	}
}
