package slack_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSlackTemplatesApplyToTheFailedThreadReply: the thread reply a failed export adds
// in bot mode is the sink's message too: the `text` template is its headline and
// fallback text (the error block stays), the `blocks` template its blocks, and a
// filename "<!channel>" reaches the thread escaped.
func TestSlackTemplatesApplyToTheFailedThreadReply(t *testing.T) {
	const text = ":rotating_light: {{ .Export.type }} {{ .Event.status }}: {{ .Export.filename }}"
	blocks := []any{
		map[string]any{"type": "section", "block_id": "mine", "text": map[string]any{"type": "mrkdwn", "text": "*{{ .Export.filename }}*: {{ .Export.error_message }}", "verbatim": true}},
	}
	exp := failedExport()
	exp.Filename = ptr("<!channel> sessions.csv")
	const wantText = ":rotating_light: sessions failed: &lt;!channel&gt; sessions.csv"
	for _, tc := range []struct {
		name   string
		blocks any
		check  func(t *testing.T, replyBlocks []map[string]any, raw string)
	}{
		{"text only", nil, func(t *testing.T, rb []map[string]any, raw string) {
			if len(rb) < 2 {
				t.Fatalf("reply has %d blocks, want the headline and the error: %s", len(rb), raw)
			}
			if got := rb[0]["text"].(map[string]any)["text"]; got != wantText {
				t.Errorf("reply headline %q, want the text template's %q", got, wantText)
			}
			if !strings.Contains(raw, "2006 MySQL server has gone away") || !strings.Contains(raw, "```") {
				t.Errorf("reply lost the error code block: %s", raw)
			}
		}},
		{"text and blocks", blocks, func(t *testing.T, rb []map[string]any, raw string) {
			if len(rb) != 1 || rb[0]["block_id"] != "mine" {
				t.Fatalf("reply blocks %s, want the blocks template's one", raw)
			}
			want := "*&lt;!channel&gt; sessions.csv*: SQLSTATE[HY000]: General error: 2006 MySQL server has gone away"
			if got := rb[0]["text"].(map[string]any)["text"]; got != want {
				t.Errorf("reply section %q, want %q", got, want)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSlack(t)
			s := templatedBot(t, f, text, tc.blocks)
			ctx := ctxT(t)
			if err := s.Deliver(ctx, exportEvent(t, "processing", exp)); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			msgs := f.messages()
			if len(msgs) != 1 || len(msgs[0].Replies) != 1 {
				t.Fatalf("%d messages (%+v), want 1 with 1 thread reply", len(msgs), msgs)
			}
			r := msgs[0].Replies[0]
			if r.Text != wantText {
				t.Errorf("reply text %q, want the text template's %q", r.Text, wantText)
			}
			var rb []map[string]any
			if err := json.Unmarshal([]byte(r.Blocks), &rb); err != nil {
				t.Fatalf("reply blocks %s: %v", r.Blocks, err)
			}
			tc.check(t, rb, r.Blocks)
			for _, part := range []string{r.Text, r.Blocks} {
				for _, bad := range []string{"<!", `\u003c!`} {
					if strings.Contains(part, bad) {
						t.Errorf("the thread reply holds %q: %s", bad, part)
					}
				}
			}
		})
	}
}
