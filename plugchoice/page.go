package plugchoice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Page is one page of the List Exports response.
type Page struct {
	Data  []Export `json:"data"`
	Links Links    `json:"links"`
	Meta  Meta     `json:"meta"`
}

// Links is the `links` object of a page. A nil Next means there is no further page.
type Links struct {
	First *string `json:"first"`
	Last  *string `json:"last"`
	Prev  *string `json:"prev"`
	Next  *string `json:"next"`
}

// Meta is the `meta` object of a page (simple pagination: there is no total).
type Meta struct {
	CurrentPage int    `json:"current_page"`
	PerPage     int    `json:"per_page"`
	From        *int   `json:"from"`
	To          *int   `json:"to"`
	Path        string `json:"path"`
}

// DecodeError reports a response body that is not a valid exports page.
type DecodeError struct {
	Err error
}

func (e *DecodeError) Error() string { return e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// exportFields has Export's fields without its UnmarshalJSON method, so DecodePage can
// decode an element in one pass and set Raw itself.
type exportFields Export

// DecodePage decodes one List Exports response body strictly: b must be a JSON object
// with a `data` array (missing or null is an error), every element must pass
// Export.Validate, and nothing but white space may follow the object. A truncated body
// is an error, never a short page. Errors are *DecodeError and name what was wrong
// ("decode: unexpected end of JSON input", "data[4]: export without uuid").
//
// Each export's Raw is a sub-slice of b (no copy): b must not be modified afterwards.
func DecodePage(b []byte) (*Page, error) {
	// A streaming decoder scans each element once for its extent and once to decode it,
	// and InputOffset gives the element's bytes in b for Raw without copying them.
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, decodeErrf("decode: empty body (expected a JSON object with a data array)")
		}
		return nil, syntaxErr("decode", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, decodeErrf("decode: expected a JSON object with a data array, got %s", tokenKind(tok))
	}
	p := &Page{}
	seenData := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxErr("decode", err)
		}
		key, ok := tok.(string)
		if !ok { // cannot happen with a valid decoder state; be safe
			return nil, decodeErrf("decode: expected an object key, got %s", tokenKind(tok))
		}
		switch key {
		case "data":
			if seenData {
				return nil, decodeErrf("decode: duplicate key \"data\"")
			}
			seenData = true
			if p.Data, err = decodeData(dec, b); err != nil {
				return nil, err
			}
		case "links":
			if err := dec.Decode(&p.Links); err != nil {
				return nil, fieldErr("links", err)
			}
		case "meta":
			if err := dec.Decode(&p.Meta); err != nil {
				return nil, fieldErr("meta", err)
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, syntaxErr("decode", err)
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, syntaxErr("decode", err)
	}
	if !seenData {
		return nil, decodeErrf("decode: no \"data\" array in the page")
	}
	if off := int(dec.InputOffset()); !isSpace(b[off:]) {
		return nil, decodeErrf("decode: unexpected data after the page object at offset %d", off)
	}
	return p, nil
}

func decodeData(dec *json.Decoder, b []byte) ([]Export, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxErr("decode", err)
	}
	if tok == nil {
		return nil, decodeErrf("decode: data is null (expected an array of exports)")
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		if ok && d == '{' {
			return nil, decodeErrf("decode: data is an object (expected an array of exports)")
		}
		return nil, decodeErrf("decode: data is %s (expected an array of exports)", tokenKind(tok))
	}
	data := make([]Export, 0, 25)
	for i := 0; dec.More(); i++ {
		start := int(dec.InputOffset())
		data = append(data, Export{})
		e := &data[i]
		if err := dec.Decode((*exportFields)(e)); err != nil {
			return nil, fieldErr(fmt.Sprintf("data[%d]", i), err)
		}
		e.Raw = json.RawMessage(trimSep(b[start:int(dec.InputOffset())]))
		if err := e.Validate(); err != nil {
			return nil, decodeErrf("data[%d]: %w", i, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, syntaxErr("decode", err)
	}
	return data, nil
}

func decodeErrf(format string, args ...any) error {
	return &DecodeError{Err: fmt.Errorf(format, args...)}
}

// truncated is a body that ends early, wherever it ends. It matches io.ErrUnexpectedEOF.
type truncated struct{}

func (truncated) Error() string        { return "decode: unexpected end of JSON input" }
func (truncated) Is(target error) bool { return target == io.ErrUnexpectedEOF }

// syntaxErr words a decoder error at where ("decode", "data[3]"); an input that ends
// early reads "decode: unexpected end of JSON input" whatever the decoder's own words.
func syntaxErr(where string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &DecodeError{Err: truncated{}}
	}
	if where != "decode" {
		where = "decode: " + where
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &DecodeError{Err: fmt.Errorf("%s: %w (offset %d)", where, err, se.Offset)}
	}
	return &DecodeError{Err: fmt.Errorf("%s: %w", where, err)}
}

// fieldErr words an error decoding the value at where ("data[3]", "meta").
func fieldErr(where string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return decodeErrf("%s: expected an object, got %s", where, te.Value)
		}
		return decodeErrf("%s.%s: expected %s, got %s", where, te.Field, te.Type, te.Value)
	}
	return syntaxErr(where, err)
}

func tokenKind(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	}
	return fmt.Sprintf("%T", tok)
}

// trimSep drops the white space and comma the decoder leaves before an array element.
func trimSep(b []byte) []byte {
	for len(b) > 0 {
		switch b[0] {
		case ' ', '\t', '\r', '\n', ',':
			b = b[1:]
		default:
			return b
		}
	}
	return b
}

func isSpace(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}
