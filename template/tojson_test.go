package template

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// stdToJSON is toJson as encoding/json writes it (no HTML escaping).
func stdToJSON(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return strings.TrimSuffix(b.String(), "\n"), err
}

// FuzzToJSONMatchesEncodingJSON: toJson of any decoded value (an export as the API
// wrote it, in plain and Slack mode) is byte for byte what encoding/json writes.
func FuzzToJSONMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"uuid":"6f1c","file_size":12400000,"row_count":1.5e3,"filename":"a<b>&\"c\\\n\t\b\f\u0001\u2028\u2029é","subject":{"label":"x","id":12},"tags":["a",null,true,false,[],{}],"error_message":null}`,
		`"\ud800"`, `[-0, 0.5, 1E+9, 12e-3]`, `{"z":1,"a":2,"M":3,"":4,"é":5,"e":6}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, slack := range []bool{false, true} {
			v, err := decodeJSONMode(b, slack)
			if err != nil {
				return
			}
			want, werr := stdToJSON(v)
			got, ok := appendJSON(nil, v)
			if !ok || werr != nil {
				t.Fatalf("%q: fast path ok=%v, encoding/json error %v", b, ok, werr)
			}
			if string(got) != want {
				t.Fatalf("%q:\n got %s\nwant %s", b, got, want)
			}
		}
	})
}

// TestToJSONFallsBackForGoValues: values the data model does not hold (numbers of Go
// types, structs) still encode, through encoding/json; an invalid json.Number is its error.
func TestToJSONFallsBackForGoValues(t *testing.T) {
	for _, v := range []any{42, 1.5, []string{"a", "b"}, map[string]any{"n": 3, "s": []int{1}}, struct{ A int }{1}, json.Number("")} {
		want, _ := stdToJSON(v)
		got, err := toJSON(v)
		if err != nil || got != want {
			t.Errorf("toJson(%#v) = %q, %v; want %q", v, got, err, want)
		}
	}
	if _, err := toJSON(json.Number("1x")); err == nil {
		t.Errorf("toJson of json.Number(\"1x\") succeeded, want encoding/json's error")
	}
}
