package slack_test

// Tests written for the survivors of a mutation run (gremlins v0.6.0, RELIABILITY.md
// "Mutation testing"): each pins a behaviour that a mutant changed without any other
// test noticing.

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/slack"
)

// TestConfigChecksOnlyTheURLsThatAreSet: a bot config without webhook_url, or with
// api_url left empty, is valid; a bad webhook_url or api_url is reported under its key.
func TestConfigChecksOnlyTheURLsThatAreSet(t *testing.T) {
	bot := func(api string) slack.Config {
		c := slack.DefaultConfig()
		c.Token, c.Channel, c.APIURL = testToken, "#exports", api
		return c
	}
	hook := func(u string) slack.Config {
		c := slack.DefaultConfig()
		c.WebhookURL = u
		return c
	}
	tests := []struct {
		name string
		c    slack.Config
		want string // "" valid; else the key the error is under
	}{
		{"bot with the default api_url", bot(slack.DefaultAPIURL), ""},
		{"bot with an empty api_url", bot(""), ""},
		{"bot with a relative api_url", bot("slack.local/api"), "api_url"},
		{"webhook", hook("https://hooks.slack.com/services/T0/B0/SECRETPART"), ""},
		{"webhook with an ftp URL", hook("ftp://hooks.slack.com/services/T0/B0/SECRETPART"), "webhook_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			var fe sinks.FieldErrors
			if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Key != tt.want {
				t.Fatalf("Validate: %v, want one error under %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRETPART") {
				t.Errorf("error shows the webhook URL: %v", err)
			}
		})
	}
}

// TestAPIURLErrorShowsTheURLWithoutSecrets: a refused api_url is shown as scheme, host
// and path, so the user sees which URL is meant, never its credentials or query.
func TestAPIURLErrorShowsTheURLWithoutSecrets(t *testing.T) {
	c := slack.DefaultConfig()
	c.Token, c.Channel, c.APIURL = testToken, "#exports", "https://bot:SECRETPART@slack.local/api/?sig=SECRETPART"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), `"https://slack.local/api/" has credentials, a query or a fragment`) || strings.Contains(err.Error(), "SECRETPART") {
		t.Errorf("Validate: %v, want the api_url shown as https://slack.local/api/, without its credentials and query", err)
	}
}

// TestTemplateErrorIsUnderItsOwnKey: a broken text template is reported under "text"
// (with the line), not lumped under "blocks".
func TestTemplateErrorIsUnderItsOwnKey(t *testing.T) {
	c := slack.DefaultConfig()
	c.Token, c.Channel, c.Text = testToken, "#exports", "a\n{{ .Export.type"
	err := c.Validate()
	var fe sinks.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 {
		t.Fatalf("Validate: %v, want one field error", err)
	}
	if fe[0].Key != "text" || !strings.HasPrefix(fe[0].Msg, "line 2: unclosed action") {
		t.Errorf("error under %q: %q, want under \"text\": \"line 2: unclosed action…\"", fe[0].Key, fe[0].Msg)
	}
}

// TestBlocksTemplateMayHoldSlacksMaximum: 50 blocks (Slack's limit) are accepted, 51 are
// not.
func TestBlocksTemplateMayHoldSlacksMaximum(t *testing.T) {
	for _, n := range []int{slack.MaxBlocks, slack.MaxBlocks + 1} {
		blocks := make([]any, n)
		for i := range blocks {
			blocks[i] = map[string]any{"type": "divider"}
		}
		c := slack.DefaultConfig()
		c.Token, c.Channel, c.Blocks = testToken, "#exports", blocks
		err := c.Validate()
		if ok := n <= slack.MaxBlocks; ok != (err == nil) {
			t.Errorf("%d blocks: Validate = %v", n, err)
		}
	}
}

// TestBotAcceptsTheHTTPSAPIURL: the default API URL, https://slack.com/api/, is a valid
// bot-mode setting, and an ftp URL is not.
func TestBotAcceptsTheHTTPSAPIURL(t *testing.T) {
	for _, api := range []string{slack.DefaultAPIURL, "https://slack.example.com/api"} {
		if _, err := slack.NewSink(slack.Options{Token: testToken, Channel: "#exports", Meta: newMeta(), APIURL: api}); err != nil {
			t.Errorf("API URL %s: %v", api, err)
		}
	}
	if _, err := slack.NewSink(slack.Options{Token: testToken, Channel: "#exports", Meta: newMeta(), APIURL: "ftp://slack.example.com/api"}); err == nil {
		t.Errorf("an ftp API URL was accepted")
	}
}

// TestTimeoutSettingBoundsARequest: a configured timeout, not the 10 s default, ends a
// request Slack does not answer.
func TestTimeoutSettingBoundsARequest(t *testing.T) {
	release := make(chan struct{})
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	t.Cleanup(func() { close(release) }) // runs before Stop
	s, err := slack.NewSink(slack.Options{Token: testToken, Channel: "#x", APIURL: srv.GetAPIURL(), Timeout: 200 * time.Millisecond, Meta: newMeta()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
	took := time.Since(start)
	t.Logf("timed out after %v (timeout 200ms)", took)
	if err == nil || sinks.IsPermanent(err) {
		t.Errorf("timed-out request: %v, want a retryable error", err)
	}
	// Healthy: about 0.2 s; with the default timeout instead: 10 s.
	if took > 5*time.Second {
		t.Errorf("Deliver took %v with a 200ms timeout", took)
	}
}

// TestMissingScopeNamesTheScopeNeeded: Slack's "needed" scope is in the error.
func TestMissingScopeNamesTheScopeNeeded(t *testing.T) {
	f := newFakeSlack(t)
	s, _ := newBot(t, f, newMeta(), "#exports")
	f.fail("chat.postMessage", http.StatusOK, nil, `{"ok":false,"error":"missing_scope","needed":"chat:write.public","provided":"incoming-webhook"}`, 0)
	err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
	if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "(needed: chat:write.public)") {
		t.Errorf("Deliver: %v, want a permanent error saying \"(needed: chat:write.public)\"", err)
	}
}

// TestForbiddenNamesTheSettingToFix: a 401/403 without an error code names the webhook
// URL in webhook mode and the token in bot mode.
func TestForbiddenNamesTheSettingToFix(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		h := newHookServer(t, hookReply{status, nil, "<html>Forbidden</html>"})
		s, _ := newHookSink(t, h, 0)
		err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
		if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "create a new incoming webhook and set it in slack.webhook_url") || strings.Contains(err.Error(), "token") {
			t.Errorf("webhook, HTTP %d: %v, want a permanent error naming slack.webhook_url", status, err)
		}

		f := newFakeSlack(t)
		b, _ := newBot(t, f, newMeta(), "#exports")
		f.fail("chat.postMessage", status, nil, "", 0)
		err = b.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
		if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "check slack.token") || strings.Contains(err.Error(), "webhook") {
			t.Errorf("bot, HTTP %d: %v, want a permanent error naming slack.token", status, err)
		}
	}
}

// renderTexts renders an export event and returns its text objects (and, with reply, those of
// the thread reply).
func renderTexts(t *testing.T, ev event.Event, reply bool) (slack.Message, []textObj) {
	t.Helper()
	m, err := slack.Render(decode(t, ev))
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	checkMessage(t, m)
	blocks := m.Blocks
	if reply {
		if m.Reply == nil {
			t.Fatalf("no thread reply")
		}
		blocks = m.Reply.Blocks
	}
	b, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	texts, _, _ := walk(t, b)
	return m, texts
}

// TestLongErrorFillsTheSectionExactly: an error message is shown whole when it just
// fits Slack's 3,000-character section, and cut to exactly the limit when it does not.
func TestLongErrorFillsTheSectionExactly(t *testing.T) {
	const head = "*Error*\n```"
	budget := slack.MaxSectionText - len(head) - len("```") // all ASCII
	for _, n := range []int{budget, budget + 1, 5000} {
		exp := failedExport()
		exp.ErrorMessage = ptr(strings.Repeat("a", n))
		_, texts := renderTexts(t, exportEvent(t, "processing", exp), false)
		var code string
		for _, x := range texts {
			if strings.HasPrefix(x.Text, head) {
				code = x.Text
			}
		}
		if code == "" {
			t.Fatalf("error of %d characters: no error block", n)
		}
		cut := strings.Contains(code, slack.Ellipsis)
		if cut != (n > budget) || u16(code) != slack.MaxSectionText {
			t.Errorf("error of %d characters: block of %d units (limit %d), cut %v", n, u16(code), slack.MaxSectionText, cut)
		}
	}
}

// TestTextTemplateOfSlacksLimitIsSentWhole: a text template rendering exactly 3,000
// characters is the fallback text and headline as written, with no ellipsis.
func TestTextTemplateOfSlacksLimitIsSentWhole(t *testing.T) {
	want := strings.Repeat("a", slack.MaxFallback)
	f := newFakeSlack(t)
	s := templatedBot(t, f, want, nil)
	if err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport())); err != nil {
		t.Fatal(err)
	}
	m := f.messages()[0]
	if m.Text != want {
		t.Errorf("fallback text of %d units ends %q, want %d a's", u16(m.Text), m.Text[max(0, len(m.Text)-8):], len(want))
	}
}

// TestTextTemplateKeepsTheOtherBlocks: a text template replaces the headline's text and
// leaves every other block of the built-in message in place, none repeated.
func TestTextTemplateKeepsTheOtherBlocks(t *testing.T) {
	f := newFakeSlack(t)
	s := templatedBot(t, f, "{{ .Export.type }} is {{ .Event.status }}", nil)
	ev := exportEvent(t, "processing", readyExport())
	if err := s.Deliver(ctxT(t), ev); err != nil {
		t.Fatal(err)
	}
	builtin, err := slack.Render(decode(t, ev))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, b := range builtin.Blocks {
		want = append(want, string(b.BlockType()))
	}
	_, _, blocks := walk(t, []byte(f.messages()[0].Blocks))
	var got []string
	for _, b := range blocks {
		typ, _ := b["type"].(string)
		got = append(got, typ)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("blocks %v, want the built-in %v", got, want)
	}
}

// TestExportFieldsShownAsWritten: an empty file's size, and a subject with only a label
// or only a type and id.
func TestExportFieldsShownAsWritten(t *testing.T) {
	tests := []struct {
		name  string
		set   func(*plugchoice.Export)
		field string // the field's whole text
		text  string // the fallback text's end
	}{
		{"empty file", func(e *plugchoice.Export) { e.FileSize = ptr(int64(0)) }, "*Size*\n0 B", " · 0 B"},
		{"subject with a label only", func(e *plugchoice.Export) { e.Subject = &plugchoice.Subject{Label: "Acme Depot"} }, "*Subject*\nAcme Depot", ""},
		{"subject without a label", func(e *plugchoice.Export) { e.Subject = &plugchoice.Subject{Type: "site", ID: 12} }, "*Subject*\n(site #12)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := readyExport()
			tt.set(&exp)
			m, texts := renderTexts(t, exportEvent(t, "processing", exp), false)
			var fields []string
			found := false
			for _, x := range texts {
				if x.Where == "field" {
					fields = append(fields, x.Text)
					found = found || x.Text == tt.field
				}
			}
			if !found {
				t.Errorf("fields %q, want %q", fields, tt.field)
			}
			if !strings.HasSuffix(m.Text, tt.text) {
				t.Errorf("fallback text %q, want it to end %q", m.Text, tt.text)
			}
		})
	}
}

// TestFailedReplyNamesTheFile: the thread reply of a failed export names its file.
func TestFailedReplyNamesTheFile(t *testing.T) {
	exp := failedExport()
	exp.Filename = ptr("sessions-2026-11.csv")
	_, texts := renderTexts(t, exportEvent(t, "processing", exp), true)
	if len(texts) == 0 || texts[0].Text != ":x: Export failed: `sessions-2026-11.csv`" {
		t.Errorf("reply texts %+v, want the first \":x: Export failed: `sessions-2026-11.csv`\"", texts)
	}
}

// TestDownloadButtonForEveryValidURL: a URL of exactly Slack's 3,000-character limit,
// or holding "!" or "~" (printable ASCII at the ends of the allowed range), gets its
// button.
func TestDownloadButtonForEveryValidURL(t *testing.T) {
	base := "https://x.test/"
	for _, u := range []string{
		base + strings.Repeat("a", slack.MaxButtonURL-len(base)),
		base + "report!.csv",
		base + "~ops/report.csv",
	} {
		exp := readyExport()
		exp.DownloadURL = ptr(u)
		m, err := slack.Render(decode(t, exportEvent(t, "processing", exp)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m.Blocks)
		_, _, blocks := walk(t, b)
		got := ""
		for _, blk := range blocks {
			if blk["type"] == "actions" {
				els, _ := blk["elements"].([]any)
				if len(els) == 1 {
					btn, _ := els[0].(map[string]any)
					got, _ = btn["url"].(string)
				}
			}
		}
		if got != u {
			t.Errorf("download_url %q (%d bytes): button url %q", u[:min(len(u), 40)], len(u), got[:min(len(got), 40)])
		}
	}
}
