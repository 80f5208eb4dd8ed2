package template

import (
	"reflect"
	"strings"
	"testing"
)

// escapeWalk is the reference for Slack mode: decode, then escape every string and every
// object key of the value for Slack.
func escapeWalk(v any) any {
	switch x := v.(type) {
	case string:
		return SlackEscape(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[SlackEscape(k)] = escapeWalk(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = escapeWalk(val)
		}
		return out
	}
	return v
}

// FuzzSlackDecodeEscapes holds the Slack-mode decoder (escaping as it reads) equal to
// decoding and then escaping every string and key, for any input: a value from the API
// reaches a Slack template escaped whatever its shape.
func FuzzSlackDecodeEscapes(f *testing.F) {
	for _, s := range []string{
		`{"a":"<!channel>","b&":["x>y",{"<@U1>":"&amp;"}],"n":12,"t":true,"z":null}`,
		`{"k\u003c":"\u0026lt;","k<":"dup","k<":"last"}`,
		`["\u003c!here\u003e", "a\"b<", "plain"]`,
		`{"export":{"filename":"<!channel> report.csv","subject":{"label":"<@U123> & co"}}}`,
		`"\ud800<"`, `{"x":"` + "\xff<" + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		plain, perr := decodeJSON(b)
		got, err := decodeJSONMode(b, true)
		if (perr == nil) != (err == nil) {
			t.Fatalf("%q: plain error %v, slack error %v", b, perr, err)
		}
		if err != nil {
			return
		}
		if want := escapeWalk(plain); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: slack mode decoded %#v, want %#v", b, got, want)
		}
		var check func(v any)
		check = func(v any) {
			switch x := v.(type) {
			case string:
				if strings.ContainsAny(x, "<>") {
					t.Fatalf("%q: %q left unescaped", b, x)
				}
			case map[string]any:
				for k, val := range x {
					check(k)
					check(val)
				}
			case []any:
				for _, val := range x {
					check(val)
				}
			}
		}
		check(got)
	})
}
