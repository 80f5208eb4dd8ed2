package template

import (
	"strings"
	"testing"
)

// TestFastPathRendersLikeTextTemplate holds the shortcut for plain lookups (fast.go) to
// the output of text/template, on every sample event, in both modes.
func TestFastPathRendersLikeTextTemplate(t *testing.T) {
	srcs := []string{
		"{{ .Export.uuid }}",
		"{{ .Event.id }} {{ .Event.previous_status }} {{ .Event.time }}",
		"*File*\n`{{ .Export.filename | default \"-\" }}`",
		"{{ .Export.file_size | humanBytes | default \"-\" }} {{ .Export.row_count | default \"none\" }}",
		"{{ .Export.subject.label }} ({{ .Export.subject.type }} #{{ .Export.subject.id }}) {{ .Export.subject.nope.deeper }}",
		"{{ .Export }} {{ .Export.subject }} {{ .Bridge }} {{ .Sink.name }} {{ .Bridge.count }}",
		"{{ .Export.missing }}{{ .Missing }}{{ .Missing.x }}{{ .Export.type.x }}{{/* a comment */}}",
		"{{ .Bridge.message | default .Export.type }}", // not a fast leaf: default of a field
	}
	fast := 0
	for _, src := range srcs {
		for _, mode := range []Mode{Plain, Slack} {
			tp, err := Text("t", src, mode)
			if err != nil {
				t.Fatal(err)
			}
			if tp.text.fast != nil {
				fast++
			}
			for _, e := range Samples() {
				d, err := NewData(e, "ops", mode)
				if err != nil {
					t.Fatal(err)
				}
				useFast = true
				got, err1 := tp.Render(d)
				useFast = false
				want, err2 := tp.Render(d)
				useFast = true
				if err1 != nil || err2 != nil {
					t.Fatalf("%s on %s: %v / %v", src, e.Type, err1, err2)
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
	if fast != 2*(len(srcs)-1) {
		t.Fatalf("%d of %d templates took the fast path, want all but the last", fast, 2*len(srcs))
	}
}
