package template

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func stdDecode(b []byte) (any, error) {
	if !json.Valid(b) {
		return nil, &json.SyntaxError{}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// FuzzDecodeJSON holds decodeJSON to encoding/json (UseNumber): the same value for
// valid input, an error for invalid input.
func FuzzDecodeJSON(f *testing.F) {
	for _, e := range Samples() {
		f.Add([]byte(e.Body))
	}
	for _, s := range []string{`{}`, `[]`, `""`, `"\ud83d\ude00 \ud800 \udc00x \u00e9\/\b\f\n\r\t\\\""`, "\"\xff\xfe ok\"",
		`{"a":{"a":1}}`, `-0.5e+10`, `01`, `1.`, `.5`, `[1,]`, `{"a" 1}`, `tru`, `nul`, ` null `, `{"a":1}x`, `"\x01"`, `"\u12"`,
		`{"dup":1,"dup":2}`, `[[[[[]]]]]`, `1e5`, `-`, `"abc`, `{"a":[1,{"b":null}],"c":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := stdDecode(b)
		got, gerr := decodeJSON(b)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%q: encoding/json error %v, decodeJSON error %v", b, werr, gerr)
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: encoding/json %#v, decodeJSON %#v", b, want, got)
		}
	})
}
