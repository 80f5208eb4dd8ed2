package slack_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks/slack"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current renderer")

func goldenJSON(t *testing.T, m slack.Message) []byte {
	t.Helper()
	type out struct {
		Text        string `json:"text"`
		Blocks      any    `json:"blocks"`
		ThreadReply any    `json:"thread_reply,omitempty"`
	}
	o := out{Text: m.Text, Blocks: m.Blocks}
	if m.Reply != nil {
		o.ThreadReply = out{Text: m.Reply.Text, Blocks: m.Reply.Blocks}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(o); err != nil {
		t.Fatalf("encode: %v", err)
	}
	// Readable goldens: json.Marshal inside slack-go escapes & in URLs as \u0026.
	return bytes.ReplaceAll(buf.Bytes(), []byte(`\u0026`), []byte("&"))
}

func TestRenderGolden(t *testing.T) {
	removed, err := event.NewRemoved(source, exportID, plugchoice.StatusReady, 0, observed)
	if err != nil {
		t.Fatal(err)
	}
	unknown := baseExport("Archived (cold storage)")
	cases := []struct {
		name string
		ev   event.Event
	}{
		{"pending", exportEvent(t, "", baseExport(plugchoice.StatusPending))},
		{"processing", exportEvent(t, plugchoice.StatusPending, baseExport(plugchoice.StatusProcessing))},
		{"ready", exportEvent(t, plugchoice.StatusProcessing, readyExport())},
		{"failed", exportEvent(t, plugchoice.StatusProcessing, failedExport())},
		{"cancelled", exportEvent(t, plugchoice.StatusPending, baseExport(plugchoice.StatusCancelled))},
		{"removed", removed},
		{"unknown_status", exportEvent(t, plugchoice.StatusProcessing, unknown)},
		{"poll_failing", bridgeEvent(t, event.TypePollFailing, event.BridgeData{ErrorKind: "http_401", Message: "Unauthenticated.", Failures: 5})},
		{"poll_recovered", bridgeEvent(t, event.TypePollRecovered, event.BridgeData{Failures: 7})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := slack.Render(decode(t, tc.ev))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			checkMessage(t, m)
			got := goldenJSON(t, m)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run go test -run TestRenderGolden -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered message differs from %s (run with -update after checking the change)\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

func TestRenderContent(t *testing.T) {
	cases := []struct {
		name     string
		ev       event.Event
		inBlocks []string
		inText   []string
		notIn    []string
	}{
		{
			name:     "ready shows rows, size, duration, button",
			ev:       exportEvent(t, plugchoice.StatusProcessing, readyExport()),
			inBlocks: []string{"1,234,567", "3.2 MB", "4m 12s", "`sessions-2026-11.csv`", "Acme Depot Rotterdam (site #12)", `"url":"https://app.plugchoice.com/api/v3/exports/`, "*Ready* (was processing)"},
			inText:   []string{"Export ready: sessions-2026-11.csv", "1,234,567 rows", "3.2 MB"},
		},
		{
			name:     "failed shows error in a code block",
			ev:       exportEvent(t, plugchoice.StatusProcessing, failedExport()),
			inBlocks: []string{"*Error*\\n```SQLSTATE[HY000]: General error: 2006 MySQL server has gone away```", "1m 30s"},
			inText:   []string{"Export failed", "error: SQLSTATE[HY000]"},
			notIn:    []string{`"actions"`},
		},
		{
			name:     "poll failing names kind, message, cycles and since",
			ev:       bridgeEvent(t, event.TypePollFailing, event.BridgeData{ErrorKind: "timeout", Message: "deadline exceeded", Failures: 5}),
			inBlocks: []string{":rotating_light: Plugchoice polling failing: timeout: deadline exceeded (5 failed cycles since 2026-11-28 10:12 UTC)"},
			inText:   []string{":rotating_light: Plugchoice polling failing: timeout: deadline exceeded"},
		},
		{
			name:     "poll recovered",
			ev:       bridgeEvent(t, event.TypePollRecovered, event.BridgeData{Failures: 1}),
			inBlocks: []string{":white_check_mark: Plugchoice polling recovered (after 1 failed cycle, failing since 2026-11-28 10:12 UTC)"},
			inText:   []string{"recovered"},
		},
		{
			name: "sink failing names the sink, its destination, the error and the queue",
			ev: bridgeEvent(t, event.TypeSinkFailing, event.BridgeData{Sink: "warehouse", Kind: "webhook",
				Destination: "https://wh.example/hook", LastError: "HTTP 500 <html>", Queued: ptr(12), Failures: 5}),
			inBlocks: []string{":rotating_light: Sink *warehouse* (webhook, https://wh.example/hook) is down since 2026-11-28 10:12 UTC: HTTP 500 &lt;html&gt; (12 events queued)"},
			inText:   []string{"Sink *warehouse*", "is down"},
		},
		{
			name: "sink recovered",
			ev: bridgeEvent(t, event.TypeSinkRecovered, event.BridgeData{Sink: "warehouse", Kind: "webhook",
				Destination: "https://wh.example/hook", Queued: ptr(0), Failures: 9}),
			inBlocks: []string{":white_check_mark: Sink *warehouse* (webhook, https://wh.example/hook) delivers again (down since 2026-11-28 10:12 UTC; 0 events queued, catching up)"},
			inText:   []string{"delivers again"},
		},
		{
			name: "no optional fields",
			ev: exportEvent(t, "", plugchoice.Export{UUID: exportID, Status: plugchoice.StatusReady,
				CompletedAt: ptr("not a time")}),
			inText: []string{"Export ready: " + exportID},
			notIn:  []string{"*Rows*", "*Size*", "*Duration*", "*Type*", "completed"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := slack.Render(decode(t, tc.ev))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			checkMessage(t, m)
			b, _ := json.Marshal(m.Blocks)
			blocks := strings.ReplaceAll(string(b), `\u0026`, "&")
			for _, s := range tc.inBlocks {
				if !strings.Contains(blocks, s) {
					t.Errorf("blocks lack %q:\n%s", s, blocks)
				}
			}
			for _, s := range tc.inText {
				if !strings.Contains(m.Text, s) {
					t.Errorf("fallback text %q lacks %q", m.Text, s)
				}
			}
			for _, s := range tc.notIn {
				if strings.Contains(blocks, s) {
					t.Errorf("blocks contain %q:\n%s", s, blocks)
				}
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{42 * time.Second, "42s"},
		{4*time.Minute + 12*time.Second, "4m 12s"},
		{time.Hour, "1h 0m"},
		{2*time.Hour + 3*time.Minute + 59*time.Second, "2h 3m"},
		{26 * time.Hour, "1d 2h"},
		{-5 * time.Second, "5s"},
		{1499 * time.Millisecond, "1s"},
	}
	for _, tc := range cases {
		if got := slack.FormatDuration(tc.d); got != tc.want {
			t.Errorf("FormatDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestEscape(t *testing.T) {
	cases := map[string]string{
		"":                      "",
		"plain":                 "plain",
		"<!channel>":            "&lt;!channel&gt;",
		"<@U123>":               "&lt;@U123&gt;",
		"<https://evil|click>":  "&lt;https://evil|click&gt;",
		"a & b":                 "a &amp; b",
		"&lt; already escaped":  "&amp;lt; already escaped",
		"ünï <cödé> & 日本":       "ünï &lt;cödé&gt; &amp; 日本",
		"@channel @here #gen *": "@channel @here #gen *",
	}
	for in, want := range cases {
		if got := slack.Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// injections are values that would ping or link if they reached Slack unescaped.
var injections = []string{"<!channel>", "<@U123>", "<https://evil|click>", "&", "<!here|here> & <#C123>", "```<!channel>```", "@channel"}

func TestRenderEscapesEveryAPIField(t *testing.T) {
	fields := map[string]func(e *plugchoice.Export, v string){
		"type":          func(e *plugchoice.Export, v string) { e.Type = v },
		"filename":      func(e *plugchoice.Export, v string) { e.Filename = &v },
		"label":         func(e *plugchoice.Export, v string) { e.Subject.Label = v },
		"subject_type":  func(e *plugchoice.Export, v string) { e.Subject.Type = v },
		"error_message": func(e *plugchoice.Export, v string) { e.ErrorMessage = &v },
		"status":        func(e *plugchoice.Export, v string) { e.Status = v },
		"uuid":          func(e *plugchoice.Export, v string) { e.UUID = v },
		"download_url":  func(e *plugchoice.Export, v string) { e.DownloadURL = ptr("https://x.test/" + v) },
	}
	for name, set := range fields {
		for _, inj := range injections {
			t.Run(name+"/"+inj, func(t *testing.T) {
				exp := failedExport()
				exp.Filename = ptr("f.csv")
				set(&exp, inj)
				m, err := slack.Render(decode(t, exportEvent(t, "processing", exp)))
				if err != nil {
					t.Fatalf("Render: %v", err)
				}
				checkMessage(t, m) // no < or > anywhere, plain_text fixed, mrkdwn verbatim
				b, _ := json.Marshal(m.Blocks)
				texts, _, _ := walk(t, b)
				want := slack.Escape(inj)
				found := strings.Contains(m.Text, want)
				for _, x := range texts {
					if x.Type == "mrkdwn" && strings.Contains(strings.ReplaceAll(x.Text, "`\u200b", "`"), want) {
						found = true
					}
				}
				if name != "download_url" && name != "status" && !found {
					t.Errorf("escaped value %q not found in any mrkdwn text or the fallback", want)
				}
				if name == "status" && !strings.Contains(m.Text, want) && !strings.Contains(string(b), "grey_question") {
					t.Errorf("unknown status %q not shown", want)
				}
			})
		}
	}
}

func TestRenderTruncatesAtLimits(t *testing.T) {
	huge := strings.Repeat("<!channel> & ü日本 `x` ", 5000) // ~100k characters
	cases := map[string]func(e *plugchoice.Export){
		"error_message": func(e *plugchoice.Export) { e.ErrorMessage = &huge },
		"filename":      func(e *plugchoice.Export) { e.Filename = &huge },
		"label":         func(e *plugchoice.Export) { e.Subject.Label = huge },
		"type":          func(e *plugchoice.Export) { e.Type = huge },
		"status":        func(e *plugchoice.Export) { e.Status = huge },
		"uuid":          func(e *plugchoice.Export) { e.UUID = huge },
		"all": func(e *plugchoice.Export) {
			e.ErrorMessage, e.Filename, e.Subject.Label, e.Subject.Type, e.Type = &huge, &huge, huge, huge, huge
		},
	}
	for name, set := range cases {
		t.Run(name, func(t *testing.T) {
			exp := failedExport()
			set(&exp)
			m, err := slack.Render(decode(t, exportEvent(t, "processing", exp)))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			checkMessage(t, m)
			b, _ := json.Marshal(m.Blocks)
			if !strings.Contains(string(b), slack.Ellipsis) && !strings.Contains(m.Text, slack.Ellipsis) {
				t.Errorf("nothing was marked as truncated")
			}
			if name == "error_message" {
				texts, _, _ := walk(t, b)
				var code string
				for _, x := range texts {
					if strings.HasPrefix(x.Text, "*Error*") {
						code = x.Text
					}
				}
				if !strings.HasSuffix(code, slack.Ellipsis+"```") {
					t.Errorf("error code block does not end with the ellipsis and the closing fence: …%q", code[max(0, len(code)-20):])
				}
				if u16(code) < slack.MaxSectionText-10 {
					t.Errorf("error block is %d units: truncated more than needed", u16(code))
				}
			}
		})
	}
	// Bridge events carry API text too.
	m, err := slack.Render(decode(t, bridgeEvent(t, event.TypePollFailing, event.BridgeData{ErrorKind: huge, Message: huge, Failures: 3})))
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
}

func TestRenderDownloadButton(t *testing.T) {
	long := "https://x.test/" + strings.Repeat("a", slack.MaxButtonURL)
	cases := []struct {
		url  *string
		want bool
	}{
		{ptr("https://app.plugchoice.com/d?signature=abc&expires=1"), true},
		{ptr("http://localhost:8080/d"), true},
		{nil, false},
		{ptr(""), false},
		{ptr("javascript:alert(1)"), false},
		{ptr("ftp://x.test/f"), false},
		{ptr("/relative/path"), false},
		{ptr("https://x.test/a b"), false},
		{ptr("https://x.test/?q=<x>"), false},
		{&long, false},
	}
	for _, tc := range cases {
		exp := readyExport()
		exp.DownloadURL = tc.url
		m, err := slack.Render(decode(t, exportEvent(t, "processing", exp)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m.Blocks)
		has := strings.Contains(string(b), `"actions"`)
		if has != tc.want {
			shown := "<nil>"
			if tc.url != nil {
				shown = (*tc.url)[:min(len(*tc.url), 60)]
			}
			t.Errorf("download_url %q: button %v, want %v", shown, has, tc.want)
		}
		if tc.want && !strings.Contains(strings.ReplaceAll(string(b), `\u0026`, "&"), `"url":"`+*tc.url+`"`) {
			t.Errorf("button url is not the download_url: %s", b)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	good := decode(t, exportEvent(t, "", readyExport()))
	cases := map[string]*event.CloudEvent{
		"nil":             nil,
		"foreign type":    {ID: "x", Type: "org.example.thing"},
		"unknown family":  {ID: "x", Type: "com.plugchoice.invoice.paid", Data: good.Data},
		"export bad data": {ID: "x", Type: "com.plugchoice.export.ready", Data: json.RawMessage(`"not an object"`)},
		"export bad obj":  {ID: "x", Type: "com.plugchoice.export.ready", Data: json.RawMessage(`{"status":"ready","export":[1,2]}`)},
		"bridge bad data": {ID: "x", Type: "com.plugchoice.bridge.poll_failing", Data: json.RawMessage(`[]`)},
	}
	for name, ce := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := slack.Render(ce)
			if err == nil {
				t.Fatal("Render succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "render slack message") {
				t.Errorf("error %q does not say what failed", err)
			}
		})
	}
}
