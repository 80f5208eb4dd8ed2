package template_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/template"
)

// mentions are the sequences that make Slack ping someone or link a channel.
var mentions = []string{"<!", "<@", "<#"}

func mentionIn(s string) string {
	for _, m := range mentions {
		if strings.Contains(s, m) {
			return m
		}
	}
	return ""
}

// strings of a decoded JSON value.
func eachString(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case map[string]any:
		for k, val := range x {
			fn(k)
			eachString(val, fn)
		}
	case []any:
		for _, val := range x {
			eachString(val, fn)
		}
	}
}

// FuzzSlackRenderNeverMentions: whatever the export's field values (and keys), no Slack
// render contains an unescaped <!, <@ or <#, whatever the template does with the values:
// places them in text, in a code span, after a literal "<", ranges over the whole
// export, or decodes them. A render that would mention is refused with an error instead.
func FuzzSlackRenderNeverMentions(f *testing.F) {
	f.Add("<!channel>", "<@U123>", "<#C1|general>", "x & y", "failed", "<!here>", "<!everyone>", "IWNoYW5uZWw=")
	f.Add("a<", "!channel>", "<", "@U1", "On <Hold>", "k", "#", "PCFjaGFubmVsPg==")
	f.Add("&lt;!channel&gt;", "\x00<!", "<\u200b!", "<<!!", "ready", "<@", "<<@@>>", "")
	text, blocks := slackTemplates(f)
	extra := []string{
		"<{{ .Export.download_url }}|Download> {{ .Export.filename }}",
		"{{ range $k, $v := .Export }}<{{ $k }}>{{ $v }} {{ end }}",
		"{{ toJson .Export }}",
		"{{ .Export.filename | b64dec }} {{ .Export.error_message | b64dec }}",
		"<{{ .Export.subject.label | trunc 1 }}{{ .Export.type | substr 0 3 }}",
		"{{ .Export.error_message | replace \"x\" \"y\" | upper | lower | nospace }}{{ printf \"%s%s\" \"<\" .Export.type }}",
	}
	var extras []*template.Template
	for _, src := range extra {
		tp, err := template.Text("slack.text", src, template.Slack)
		if err != nil {
			f.Fatal(err)
		}
		extras = append(extras, tp)
	}
	f.Fuzz(func(t *testing.T, filename, label, typ, errMsg, status, key, val, dl string) {
		switch key {
		case "uuid", "type", "status", "requested_at", "filename", "error_message", "download_url", "subject", "tags",
			"file_size", "row_count", "completed_at", "failed_at":
			key = "x_" + key // a field the Export type reads must keep its type
		}
		exp := map[string]any{
			"uuid": "u-1", "type": typ, "status": status, "requested_at": "2026-11-28T10:11:00Z",
			"filename": filename, "error_message": errMsg, "download_url": dl,
			"subject": map[string]any{"type": "site", "id": 1, "label": label},
			key:       val, "tags": []any{val, label},
		}
		raw, err := json.Marshal(exp)
		if err != nil {
			t.Skip()
		}
		e := exportEvent(t, status, string(raw))
		d, err := template.NewData(e, "ops", template.Slack)
		if err != nil {
			t.Fatal(err)
		}
		check := func(name string, tp *template.Template, refusable bool) {
			out, err := tp.Render(d)
			if err != nil {
				if refusable && errors.Is(err, template.ErrMention) {
					return
				}
				t.Fatalf("%s: %v", name, err)
			}
			if tp == blocks {
				var v any
				if err := json.Unmarshal(out, &v); err != nil {
					t.Fatalf("blocks are not JSON: %v\n%s", err, out)
				}
				eachString(v, func(s string) {
					if m := mentionIn(s); m != "" {
						t.Fatalf("%s renders %q, holding %q", name, s, m)
					}
				})
				return
			}
			if m := mentionIn(string(out)); m != "" {
				t.Fatalf("%s renders %q, holding %q", name, out, m)
			}
		}
		check("text", text, false)
		check("blocks", blocks, false)
		for i, tp := range extras {
			check(extra[i], tp, true)
		}
	})
}
