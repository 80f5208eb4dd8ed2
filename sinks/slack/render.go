package slack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/dustin/go-humanize"
	slackapi "github.com/slack-go/slack"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/template"
)

// Slack's limits, in characters. Lengths are counted in UTF-16 code units, which is never
// fewer than the number of characters, so a text within our count is within Slack's.
const (
	MaxSectionText = 3000 // text of a section block
	MaxFieldText   = 2000 // each of a section's fields
	MaxHeaderText  = 150  // a header block's plain_text
	MaxContextText = 2000 // a context element's text (we stay well below Slack's)
	MaxBlocks      = 50   // blocks in one message
	MaxButtonURL   = 3000 // a button's url
	MaxFallback    = 3000 // the top-level `text` (Slack allows more; a notification shows little)
	maxFields      = 10   // fields in one section
	fallbackErrLen = 200  // error message excerpt in the fallback text
)

// Ellipsis marks a truncated text.
const Ellipsis = "…"

// Message is a rendered Slack message: Block Kit blocks and the fallback text that
// notifications show. Reply, when set, is the thread reply that a failed export adds
// in bot mode (the error, so that the failure notifies).
type Message struct {
	Text   string           `json:"text"`
	Blocks []slackapi.Block `json:"blocks"`
	Reply  *Message         `json:"-"`
}

// Escape escapes the three characters Slack's mrkdwn treats as control characters:
// & < > become &amp; &lt; &gt;. Every value from the API goes through it, so that a
// filename like "<!channel>" reaches Slack as literal text and pings no one.
func Escape(s string) string { return template.SlackEscape(s) }

// escapeCode is Escape for text inside a code span or block: a backtick is followed by a
// zero-width space so that no value can close the code block early.
func escapeCode(s string) string {
	s = Escape(s)
	if strings.Contains(s, "`") {
		s = strings.ReplaceAll(s, "`", "`\u200b")
	}
	return s
}

// oneLine replaces control characters (newlines included) with spaces: values shown in
// a field or the fallback text stay on one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// u16len is the length of s in UTF-16 code units.
func u16len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// clip escapes raw with esc and, when the result exceeds max UTF-16 units, cuts it at a
// character boundary (never inside an escape sequence) and appends Ellipsis.
func clip(raw string, max int, esc func(string) string) string {
	full := esc(raw)
	if u16len(full) <= max {
		return full
	}
	limit := max - u16len(Ellipsis)
	var b strings.Builder
	n := 0
	for _, r := range raw {
		e := esc(string(r))
		l := u16len(e)
		if n+l > limit {
			break
		}
		b.WriteString(e)
		n += l
	}
	b.WriteString(Ellipsis)
	return b.String()
}

// clipOurs cuts a text we composed (already escaped) to max units, backing off to a
// character boundary that is not inside an escape sequence.
func clipOurs(s string, max int) string {
	if u16len(s) <= max {
		return s
	}
	limit := max - u16len(Ellipsis)
	n, end := 0, 0
	for i, r := range s {
		l := utf16.RuneLen(r)
		if n+l > limit {
			break
		}
		n += l
		end = i + len(string(r))
	}
	cut := s[:end]
	if amp := strings.LastIndexByte(cut, '&'); amp >= 0 && !strings.Contains(cut[amp:], ";") {
		cut = cut[:amp]
	}
	return cut + Ellipsis
}

func mrkdwn(s string) *slackapi.TextBlockObject {
	// verbatim: Slack must not turn "@channel", "#general" or bare URLs in our text into
	// mentions or links; the text is shown as written.
	return slackapi.NewTextBlockObject(slackapi.MarkdownType, s, false, true)
}

func plain(s string) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.PlainTextType, clipOurs(s, MaxHeaderText), true, false)
}

// look is how a status is shown: emoji, word (for the text) and header (plain_text, a
// fixed string of ours).
type look struct {
	emoji, word, header string
}

var looks = map[string]look{
	plugchoice.StatusPending:    {":hourglass_flowing_sand:", "Pending", "Export pending"},
	plugchoice.StatusProcessing: {":gear:", "Processing", "Export processing"},
	plugchoice.StatusReady:      {":white_check_mark:", "Ready", "Export ready"},
	plugchoice.StatusFailed:     {":x:", "Failed", "Export failed"},
	plugchoice.StatusCancelled:  {":no_entry_sign:", "Cancelled", "Export cancelled"},
	"removed":                   {":wastebasket:", "Removed", "Export removed"},
}

var unknownLook = look{":grey_question:", "", "Export status changed"}

// Render builds the Slack message for an event: Block Kit blocks and a fallback text.
// It is pure and never fails over length: long values are truncated with an ellipsis to
// stay within Slack's limits. Values from the API appear only in mrkdwn text objects and
// the fallback text, always escaped; plain_text objects carry fixed strings of ours.
func Render(ce *event.CloudEvent) (Message, error) {
	if ce == nil {
		return Message{}, errors.New("render slack message: nil event")
	}
	short, ok := strings.CutPrefix(ce.Type, event.TypePrefix)
	if !ok {
		return Message{}, fmt.Errorf("render slack message for event %s: unsupported type %q (expected %sexport.* or %sbridge.*)",
			ce.ID, ce.Type, event.TypePrefix, event.TypePrefix)
	}
	switch {
	case strings.HasPrefix(short, "bridge."):
		var d event.BridgeData
		if err := json.Unmarshal(ce.Data, &d); err != nil {
			return Message{}, fmt.Errorf("render slack message for event %s: decode bridge data: %w", ce.ID, err)
		}
		return capBlocks(renderBridge(short, &d)), nil
	case strings.HasPrefix(short, "export."):
		d, exp, err := event.ExportOf(ce)
		if err != nil {
			return Message{}, fmt.Errorf("render slack message: %w", err)
		}
		return capBlocks(renderExport(strings.TrimPrefix(short, "export."), ce, d, exp)), nil
	default:
		return Message{}, fmt.Errorf("render slack message for event %s: unsupported type %q (expected %sexport.* or %sbridge.*)",
			ce.ID, ce.Type, event.TypePrefix, event.TypePrefix)
	}
}

func renderExport(status string, ce *event.CloudEvent, d *event.ExportData, exp *plugchoice.Export) Message {
	lk, known := looks[status]
	word := lk.word
	if !known {
		lk = unknownLook
		shown := d.Status
		if shown == "" {
			shown = status
		}
		word = clip(oneLine(shown), 200, Escape)
	}
	uuid := exp.UUID
	if uuid == "" {
		uuid = ce.Subject
	}

	// Status line.
	line := lk.emoji + " *" + word + "*"
	if d.PreviousStatus != nil && *d.PreviousStatus != "" {
		line += " (was " + clip(oneLine(*d.PreviousStatus), 200, Escape) + ")"
	}
	if status == "removed" {
		line += ": no longer in the exports list"
	}

	// Fields: label on the first line, value on the second.
	var fields []*slackapi.TextBlockObject
	field := func(label, value string) {
		if len(fields) < maxFields {
			fields = append(fields, mrkdwn(label+"\n"+value))
		}
	}
	valueMax := MaxFieldText - 32 // room for the label and the code span
	if exp.Type != "" {
		field("*Type*", "`"+clip(oneLine(exp.Type), valueMax, escapeCode)+"`")
	}
	if exp.Filename != nil && *exp.Filename != "" {
		field("*File*", "`"+clip(oneLine(*exp.Filename), valueMax, escapeCode)+"`")
	}
	if subj := subjectText(exp.Subject, valueMax); subj != "" {
		field("*Subject*", subj)
	}
	if exp.RowCount != nil {
		field("*Rows*", humanize.Comma(*exp.RowCount))
	}
	if exp.FileSize != nil && *exp.FileSize >= 0 {
		field("*Size*", humanize.Bytes(uint64(*exp.FileSize)))
	}
	if dur := exportDuration(exp); dur != "" {
		field("*Duration*", dur)
	}

	blocks := []slackapi.Block{
		slackapi.NewHeaderBlock(plain(lk.emoji + " " + lk.header)),
		slackapi.NewSectionBlock(mrkdwn(clipOurs(line, MaxSectionText)), fields, nil),
	}

	var errText string
	if exp.ErrorMessage != nil && *exp.ErrorMessage != "" {
		errText = *exp.ErrorMessage
		blocks = append(blocks, slackapi.NewSectionBlock(mrkdwn(codeBlock("*Error*", errText)), nil, nil))
	}

	if u, ok := downloadURL(exp.DownloadURL); ok {
		btn := slackapi.NewButtonBlockElement("download", "download", plain("Download"))
		btn.URL = u
		btn.Style = slackapi.StylePrimary
		blocks = append(blocks, slackapi.NewActionBlock("actions", btn))
	}

	ctx := "Export `" + clip(oneLine(uuid), 100, escapeCode) + "`"
	if t := when(exp.RequestedAt); t != "" {
		ctx += " · requested " + t
	}
	switch {
	case exp.CompletedAt != nil && when(*exp.CompletedAt) != "":
		ctx += " · completed " + when(*exp.CompletedAt)
	case exp.FailedAt != nil && when(*exp.FailedAt) != "":
		ctx += " · failed " + when(*exp.FailedAt)
	}
	blocks = append(blocks, slackapi.NewContextBlock("context", mrkdwn(clipOurs(ctx, MaxContextText))))

	// Fallback text: one line a phone notification can show.
	text := "Export " + strings.ToLower(word)
	if !known {
		text = "Export status " + word
	}
	var parts []string
	if exp.Filename != nil && *exp.Filename != "" {
		parts = append(parts, clip(oneLine(*exp.Filename), 300, Escape))
	}
	if exp.Type != "" {
		parts = append(parts, clip(oneLine(exp.Type), 200, Escape))
	}
	if exp.Subject != nil && exp.Subject.Label != "" {
		parts = append(parts, clip(oneLine(exp.Subject.Label), 200, Escape))
	}
	if exp.RowCount != nil {
		parts = append(parts, humanize.Comma(*exp.RowCount)+" rows")
	}
	if exp.FileSize != nil && *exp.FileSize >= 0 {
		parts = append(parts, humanize.Bytes(uint64(*exp.FileSize)))
	}
	if len(parts) > 0 {
		text += ": " + strings.Join(parts, " · ")
	} else if uuid != "" {
		text += ": " + clip(oneLine(uuid), 100, Escape)
	}
	if errText != "" {
		text += " · error: " + clip(oneLine(errText), fallbackErrLen, Escape)
	}

	m := Message{Text: clipOurs(text, MaxFallback), Blocks: blocks}
	if status == plugchoice.StatusFailed {
		reply := ":x: Export failed"
		if exp.Filename != nil && *exp.Filename != "" {
			reply += ": `" + clip(oneLine(*exp.Filename), 300, escapeCode) + "`"
		}
		rtext := "Export failed"
		if errText != "" {
			rtext += ": " + clip(oneLine(errText), fallbackErrLen, Escape)
		}
		rblocks := []slackapi.Block{slackapi.NewSectionBlock(mrkdwn(clipOurs(reply, MaxSectionText)), nil, nil)}
		if errText != "" {
			rblocks = append(rblocks, slackapi.NewSectionBlock(mrkdwn(codeBlock("*Error*", errText)), nil, nil))
		}
		m.Reply = &Message{Text: clipOurs(rtext, MaxFallback), Blocks: rblocks}
	}
	return m
}

// codeBlock renders "<label>\n```<escaped raw>```" within a section's limit.
func codeBlock(label, raw string) string {
	head := label + "\n```"
	const tail = "```"
	budget := MaxSectionText - u16len(head) - len(tail)
	return head + clip(raw, budget, escapeCode) + tail
}

func subjectText(s *plugchoice.Subject, max int) string {
	if s == nil {
		return ""
	}
	var b strings.Builder
	if s.Label != "" {
		b.WriteString(clip(oneLine(s.Label), max-130, Escape))
	}
	if s.Type != "" || s.ID != 0 {
		if b.Len() > 0 {
			b.WriteString(" (")
		} else {
			b.WriteString("(")
		}
		if s.Type != "" {
			b.WriteString(clip(oneLine(s.Type), 100, Escape) + " ")
		}
		fmt.Fprintf(&b, "#%d)", s.ID)
	}
	return b.String()
}

// downloadURL returns the URL for the Download button: only absolute http(s) URLs
// within Slack's length limit and free of characters a URL never needs.
func downloadURL(p *string) (string, bool) {
	if p == nil || *p == "" || len(*p) > MaxButtonURL {
		return "", false
	}
	raw := *p
	if strings.ContainsAny(raw, "<>\"`| \t\r\n\\") {
		return "", false
	}
	for _, r := range raw {
		if r < 0x21 || r > 0x7e {
			return "", false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	return raw, true
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"}

func parseTime(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// when shows an API timestamp as "2026-11-28 10:15 UTC"; "" when it does not parse.
func when(s string) string {
	t, ok := parseTime(s)
	if !ok {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// exportDuration is the time from requested to completed (or failed), "" when unknown.
func exportDuration(exp *plugchoice.Export) string {
	start, ok := parseTime(exp.RequestedAt)
	if !ok {
		return ""
	}
	var end string
	switch {
	case exp.CompletedAt != nil:
		end = *exp.CompletedAt
	case exp.FailedAt != nil:
		end = *exp.FailedAt
	default:
		return ""
	}
	stop, ok := parseTime(end)
	if !ok || stop.Before(start) {
		return ""
	}
	return FormatDuration(stop.Sub(start))
}

// FormatDuration shows d the way people read it: "42s", "4m 12s", "2h 3m", "1d 2h" (the
// templates' humanDuration).
func FormatDuration(d time.Duration) string { return template.HumanDuration(d) }

func renderBridge(short string, d *event.BridgeData) Message {
	since := when(d.Since)
	if since == "" && d.Since != "" {
		since = clip(oneLine(d.Since), 60, Escape)
	}
	var header, line string
	switch short {
	case event.TypePollFailing:
		header = ":rotating_light: Plugchoice polling failing"
		line = ":rotating_light: Plugchoice polling failing"
		if d.ErrorKind != "" {
			line += ": " + clip(oneLine(d.ErrorKind), 100, Escape)
		}
		if d.Message != "" {
			line += ": " + clip(oneLine(d.Message), 1000, Escape)
		}
		line += " (" + cycles(d.Failures)
		if since != "" {
			line += " since " + since
		}
		line += ")"
	case event.TypePollRecovered:
		header = ":white_check_mark: Plugchoice polling recovered"
		line = ":white_check_mark: Plugchoice polling recovered"
		var bits []string
		if d.Failures > 0 {
			bits = append(bits, "after "+cycles(d.Failures))
		}
		if since != "" {
			bits = append(bits, "failing since "+since)
		}
		if len(bits) > 0 {
			line += " (" + strings.Join(bits, ", ") + ")"
		}
	case event.TypeSinkFailing:
		name := oneLine(d.Sink)
		header = ":rotating_light: Sink failing"
		line = ":rotating_light: Sink *" + clip(name, 100, Escape) + "*"
		if where := sinkWhere(d); where != "" {
			line += " (" + where + ")"
		}
		line += " is down"
		if since != "" {
			line += " since " + since
		}
		if d.LastError != "" {
			line += ": " + clip(oneLine(d.LastError), 1000, Escape)
		}
		if d.Queued != nil {
			line += fmt.Sprintf(" (%d events queued)", *d.Queued)
		}
	case event.TypeSinkRecovered:
		name := oneLine(d.Sink)
		header = ":white_check_mark: Sink recovered"
		line = ":white_check_mark: Sink *" + clip(name, 100, Escape) + "*"
		if where := sinkWhere(d); where != "" {
			line += " (" + where + ")"
		}
		line += " delivers again"
		var bits []string
		if since != "" {
			bits = append(bits, "down since "+since)
		}
		if d.Queued != nil {
			bits = append(bits, fmt.Sprintf("%d events queued, catching up", *d.Queued))
		}
		if len(bits) > 0 {
			line += " (" + strings.Join(bits, "; ") + ")"
		}
	default:
		header = ":information_source: exportbridge event"
		line = ":information_source: exportbridge event " + clip(oneLine(short), 100, Escape)
		if d.Message != "" {
			line += ": " + clip(oneLine(d.Message), 1000, Escape)
		}
	}
	blocks := []slackapi.Block{
		slackapi.NewHeaderBlock(plain(header)),
		slackapi.NewSectionBlock(mrkdwn(clipOurs(line, MaxSectionText)), nil, nil),
	}
	if t := when(d.ObservedAt); t != "" {
		blocks = append(blocks, slackapi.NewContextBlock("context", mrkdwn("exportbridge · observed "+t)))
	}
	return Message{Text: clipOurs(line, MaxFallback), Blocks: blocks}
}

// sinkWhere is the kind and destination of the sink a sink_failing/sink_recovered is about.
func sinkWhere(d *event.BridgeData) string {
	var parts []string
	if d.Kind != "" {
		parts = append(parts, clip(oneLine(d.Kind), 50, Escape))
	}
	if d.Destination != "" {
		parts = append(parts, clip(oneLine(d.Destination), 300, Escape))
	}
	return strings.Join(parts, ", ")
}

func cycles(n int) string {
	if n == 1 {
		return "1 failed cycle"
	}
	return fmt.Sprintf("%d failed cycles", n)
}

// capBlocks keeps a message within Slack's block count, replacing the overflow with a
// context note. Our messages stay far below it; the cap guards future changes.
func capBlocks(m Message) Message {
	if len(m.Blocks) > MaxBlocks {
		m.Blocks = append(m.Blocks[:MaxBlocks-1:MaxBlocks-1],
			slackapi.NewContextBlock("truncated", mrkdwn(Ellipsis+" (message shortened to fit Slack's limits)")))
	}
	return m
}
