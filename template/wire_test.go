package template

import (
	"fmt"
	"reflect"
	"testing"
)

// wireRef is decodeWire by way of a map of the whole envelope: the reference the
// envelope reader is held to.
func wireRef(body []byte, mode Mode) (*wire, error) {
	v, err := decodeJSONMode(body, mode == Slack)
	if err != nil {
		return nil, err
	}
	env, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the CloudEvent is not a JSON object")
	}
	w := &wire{}
	for i, to := range [...]*string{&w.SpecVersion, &w.ID, &w.Source, &w.Type, &w.Subject, &w.Time, &w.Account} {
		switch x := env[envelopeNames[i]].(type) {
		case string:
			*to = x
		case nil:
		default:
			return nil, fmt.Errorf("attribute %s is a %T (expected a string)", envelopeNames[i], x)
		}
	}
	switch x := env["data"].(type) {
	case map[string]any:
		w.Data = x
	case nil:
	default:
		return nil, fmt.Errorf("data is a %T (expected an object)", x)
	}
	return w, nil
}

// FuzzDecodeWire: reading the envelope's attributes as they come gives the same wire,
// and the same error, as decoding the whole envelope into a map first.
func FuzzDecodeWire(f *testing.F) {
	for _, s := range []string{
		`{"specversion":"1.0","id":"a","source":"s","type":"com.plugchoice.export.ready","subject":"u","time":"t","data":{"export":{"uuid":"u"}}}`,
		`{"id":1}`, `{"id":"a","id":null}`, `{"data":[]}`, `[1]`, `"x"`, `{"id":"a"} x`, `{"id":"a",}`, `{"id":"<b>","data":{"k<":"&"}}`, ``, `{`,
		`{"id":1,"id":"a"}`, `{"id":"a","id":1}`, `{"data":1,"data":{}}`, `{"data":{},"data":null}`, `{"id":{},"x":[1]}`, `{"time":"t","time":null,"account":"a\u0041"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, mode := range []Mode{Plain, Slack} {
			got, gerr := decodeWire(b, mode)
			want, werr := wireRef(b, mode)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("%q (%s): error %v, want %v", b, mode, gerr, werr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q (%s): %#v, want %#v", b, mode, got, want)
			}
		}
	})
}
