package slack_test

import (
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks/slack"
)

func unescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

func FuzzEscape(f *testing.F) {
	for _, s := range injections {
		f.Add(s)
	}
	f.Add("&amp;lt;")
	f.Fuzz(func(t *testing.T, s string) {
		got := slack.Escape(s)
		if strings.ContainsAny(got, "<>") {
			t.Fatalf("Escape(%q) = %q keeps a < or >", s, got)
		}
		if back := unescape(got); back != s {
			t.Fatalf("Escape(%q) = %q does not round-trip (got back %q)", s, got, back)
		}
		if strings.Count(got, "&") != strings.Count(got, "&amp;")+strings.Count(got, "&lt;")+strings.Count(got, "&gt;") {
			t.Fatalf("Escape(%q) = %q leaves a bare &", s, got)
		}
	})
}

// FuzzRender: whatever the API sends, Render never panics, never lets a < or > through
// (our own text carries none, so any would come from the input), keeps plain_text to our
// fixed strings and stays within Slack's limits.
func FuzzRender(f *testing.F) {
	f.Add("ready", "sessions", "report.csv", "Acme", "", "https://x.test/d?s=1", int64(1234), int64(3_200_000))
	f.Add("failed", "<!channel>", "<@U123>", "<https://evil|click>", "```<!here>``` & boom", "", int64(-1), int64(-1))
	f.Add("Weird <Status>", "a&b", "`x`", "\n\t", strings.Repeat("é<", 2000), "javascript:alert(1)", int64(0), int64(0))
	f.Fuzz(func(t *testing.T, status, typ, filename, label, errMsg, dl string, rows, size int64) {
		exp := plugchoice.Export{
			UUID: "u-" + typ, Type: typ, Status: status, RequestedAt: "2026-11-28T10:11:00Z",
			Subject: &plugchoice.Subject{Type: label, ID: rows, Label: label},
		}
		if filename != "" {
			exp.Filename = &filename
		}
		if errMsg != "" {
			exp.ErrorMessage = &errMsg
			exp.FailedAt = ptr("2026-11-28T10:12:00Z")
		}
		if dl != "" {
			exp.DownloadURL = &dl
		}
		if rows >= 0 {
			exp.RowCount = &rows
		}
		if size >= 0 {
			exp.FileSize = &size
			exp.CompletedAt = ptr("2026-11-28T10:15:12Z")
		}
		m, err := slack.Render(decode(t, exportEvent(t, label, exp)))
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		checkMessage(t, m)
	})
}
