package slack_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/slack"
)

func templatedBot(t *testing.T, f *fakeSlack, text string, blocks any) *slack.Sink {
	t.Helper()
	lg, _ := newLogger()
	s, err := slack.NewSink(slack.Options{
		Token: testToken, Channel: "#exports", APIURL: f.srv.GetAPIURL(), Timeout: 20 * time.Second,
		Meta: newMeta(), Logger: lg, Text: text, Blocks: blocks,
	})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	return s
}

// TestSlackTemplatesAreTheMessageAndStayInjectionSafe: the sink's own text and blocks
// are what Slack receives, and a filename "<!channel>" reaches Slack escaped whatever
// the template does with it.
func TestSlackTemplatesAreTheMessageAndStayInjectionSafe(t *testing.T) {
	f := newFakeSlack(t)
	s := templatedBot(t, f, ":warning: {{ .Export.type }} for {{ .Export.subject.label }}: {{ .Event.status }}", []any{
		map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*{{ .Export.filename }}* {{ .Export.row_count }} rows", "verbatim": true}},
		map[string]any{"type": "context", "elements": []any{map[string]any{"type": "mrkdwn", "text": "{{ toJson .Export.subject }}"}}, "block_id": "ctx"},
	})
	exp := readyExport()
	exp.Filename = ptr("<!channel> report.csv")
	exp.Subject.Label = "<@U123> & co"
	if err := s.Deliver(ctxT(t), exportEvent(t, "processing", exp)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	msgs := f.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if want := ":warning: sessions for &lt;@U123&gt; &amp; co: ready"; m.Text != want {
		t.Errorf("text %q, want %q", m.Text, want)
	}
	var blocks []map[string]any
	if err := json.Unmarshal([]byte(m.Blocks), &blocks); err != nil {
		t.Fatalf("blocks %s: %v", m.Blocks, err)
	}
	if len(blocks) != 2 || blocks[1]["block_id"] != "ctx" {
		t.Fatalf("blocks %s, want the template's two", m.Blocks)
	}
	if got := blocks[0]["text"].(map[string]any)["text"]; got != "*&lt;!channel&gt; report.csv* 1234567 rows" {
		t.Errorf("section text %q", got)
	}
	for _, part := range []string{m.Text, m.Blocks} {
		for _, bad := range []string{"<!", "<@", `\u003c!`, `\u003c@`} {
			if strings.Contains(part, bad) {
				t.Errorf("Slack received %q, holding %q", part, bad)
			}
		}
	}
}

func TestSlackTextTemplateReplacesTheHeadlineOnly(t *testing.T) {
	f := newFakeSlack(t)
	s := templatedBot(t, f, "{{ .Export.type | upper }} is {{ .Event.status }}", nil)
	if err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport())); err != nil {
		t.Fatal(err)
	}
	m := f.messages()[0]
	if m.Text != "SESSIONS is ready" {
		t.Errorf("fallback text %q", m.Text)
	}
	texts, _, _ := walk(t, []byte(m.Blocks))
	var section, header bool
	for _, tx := range texts {
		if tx.Text == "SESSIONS is ready" && tx.Type == "mrkdwn" {
			section = true
		}
		if strings.Contains(tx.Text, "Export ready") && tx.Type == "plain_text" {
			header = true
		}
	}
	if !section || !header {
		t.Errorf("blocks %s: want the built-in header and the templated headline", m.Blocks)
	}
}

func TestSlackTemplateFailingOnAnEventIsPermanent(t *testing.T) {
	f := newFakeSlack(t)
	s := templatedBot(t, f, `{{ if eq .Export.type "odd" }}{{ index .Export.tags 2 }}{{ end }}ok`, nil)
	exp := readyExport()
	exp.Type = "odd"
	err := s.Deliver(ctxT(t), exportEvent(t, "processing", exp))
	if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "text: line 1, column 34: error calling index") {
		t.Errorf("Deliver: %v, want a permanent template error", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests for an event whose template failed", n)
	}
	if err := s.Deliver(context.Background(), exportEvent(t, "processing", readyExport())); err != nil {
		t.Errorf("another event: %v", err)
	}
}

func TestBadSlackTemplatesAreSettingsErrors(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		blocks any
		want   string
	}{
		{"text parse error", "a\n{{ .Export.type", nil, "text: line 2: unclosed action"},
		{"blocks not a list", "", map[string]any{"type": "section"}, "blocks: is a map[string]interface {} (expected a list"},
		{"a block without type", "", []any{map[string]any{"text": "x"}}, "blocks[0]: is not a block"},
		{"a leaf failing on a sample", "", []any{map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "x\n{{ index .Export.tags 0 }}"}}}, "blocks[0].text.text: line 2, column 4: error calling index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := slack.DefaultConfig()
			c.Token, c.Channel, c.Text, c.Blocks = "xoxb-1", "#x", tt.text, tt.blocks
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate: %v, want %q", err, tt.want)
			}
		})
	}
}
