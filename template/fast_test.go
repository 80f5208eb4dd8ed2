package template

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// leaves collects the string leaves of a decoded YAML value.
func leaves(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		if strings.Contains(x, "{{") {
			*out = append(*out, x)
		}
	case map[string]any:
		for _, e := range x {
			leaves(e, out)
		}
	case []any:
		for _, e := range x {
			leaves(e, out)
		}
	}
}

// TestFastPathRendersLikeTextTemplate holds fast.go to text/template's output (and its
// errors) on every sample event, in both modes, for the leaves of the golden templates
// and the recipes and for a list of odd ones.
func TestFastPathRendersLikeTextTemplate(t *testing.T) {
	srcs := []string{
		"{{ .Export.uuid }}",
		"{{ .Event.id }} {{ .Event.previous_status }} {{ .Event.time }}",
		"*File*\n`{{ .Export.filename | default \"-\" }}`",
		"{{ .Export.file_size | humanBytes | default \"-\" }} {{ .Export.row_count | default \"none\" }}",
		"{{ .Export.subject.label }} ({{ .Export.subject.type }} #{{ .Export.subject.id }}) {{ .Export.subject.nope.deeper }}",
		"{{ .Export }} {{ .Export.subject }} {{ .Bridge }} {{ .Sink.name }} {{ .Bridge.count }} {{ .Vars }}",
		"{{ .Export.missing }}{{ .Missing }}{{ .Missing.x }}{{ .Export.type.x }}{{/* a comment */}}",
		"{{ .Bridge.message | default .Export.type }}{{ .Export.nope | default .Export.nada }}",
		"{{ with .Export.subject }}{{ .label }} {{ .id }} {{ .nope }} {{ $.Event.status }}{{ else }}none{{ end }}",
		"{{ if .Export.download_url }}dl{{ else if .Export.error_message }}err{{ else }}-{{ end }}",
		"{{ if eq .Event.status \"failed\" }}F{{ end }}{{ if ne .Export.status \"ready\" }}N{{ end }}{{ if not .Export.filename }}nofile{{ end }}",
		"{{ eq .Export.row_count \"1234567\" }} {{ eq .Export.nope \"x\" }} {{ eq .Export.subject \"x\" }}",
		"{{ .Export.error_message | trunc 20 }}|{{ .Export.type | upper }}|{{ .Export.nope | lower }}|{{ trunc -3 .Export.uuid }}",
		"{{ .Export.row_count | trunc 3 }}", // json.Number to a string parameter: text/template's error
		"{{ replace \"-\" \"_\" .Export.uuid }} {{ hasSuffix \"_recovered\" .Event.status }} {{ contains \"ess\" .Export.type }}",
		"{{ toJson .Export.subject }} {{ toJson .Export.error_message }} {{ toJson .Export.subject.label }} {{ .Export.subject | toJson }}",
		"{{ humanDuration .Export.requested_at (.Export.completed_at | default .Export.failed_at) | default \"-\" }}",
		"{{ humanDuration .Export.requested_at .Export.completed_at }} {{ humanDuration 90 }} {{ humanDuration }}",
		"{{ $.Export.uuid }} {{ $.Export.subject.label }} {{ $ | toJson | trunc 10 }}",
		"{{ with .Export.tags }}{{ . }}{{ end }}{{ .Export.subject.id | humanBytes }}",
		"{{ with .Event.status }}{{ .x }}{{ end }}", // a field of a string: text/template's error
		"{{ 5 }} {{ true }} {{ \"lit\" }}",
	}
	for _, f := range []string{"testdata/body.yaml", "testdata/slack.yaml", "../deploy/templates/teams.yaml", "../deploy/templates/discord.yaml", "../deploy/templates/pagerduty.yaml"} {
		b, err := os.ReadFile(filepath.FromSlash(f))
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		leaves(v, &srcs)
	}
	fast, compared := 0, 0
	for _, src := range srcs {
		for _, mode := range []Mode{Plain, Slack} {
			tp, err := Text("t", src, mode)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			if tp.text.fast != nil {
				fast++
			}
			for _, e := range Samples() {
				d, err := NewData(e, "ops", mode)
				if err != nil {
					t.Fatal(err)
				}
				d.SetVars(map[string]string{"k": "v"})
				useFast = true
				got, err1 := tp.Render(d)
				useFast = false
				want, err2 := tp.Render(d)
				useFast = true
				compared++
				if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
					t.Errorf("%s on %s (%s): fast error %v, text/template error %v", src, e.Type, mode, err1, err2)
					continue
				}
				if string(got) != string(want) {
					t.Errorf("%s on %s (%s): fast %q, text/template %q", src, e.Type, mode, got, want)
				}
				if strings.Contains(string(want), "<no value>") {
					t.Errorf("%s on %s: %q", src, e.Type, want)
				}
			}
		}
	}
	// Most leaves of real templates take the fast path; the test is worthless otherwise.
	if fast < 2*(len(srcs)-3) {
		t.Errorf("only %d of %d templates took the fast path", fast, 2*len(srcs))
	}
	t.Logf("%d templates (%d on the fast path), %d renders compared", 2*len(srcs), fast, compared)
}
