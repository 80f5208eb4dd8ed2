package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeJSON decodes b into the values encoding/json gives with UseNumber into an any:
// map[string]any, []any, string, json.Number, bool and nil. It is a single pass with one
// allocation per value, which is most of the cost of rendering a template for an event
// (encoding/json scans twice and allocates more); FuzzDecodeJSON holds it equal to
// encoding/json, for valid and invalid input alike.
func decodeJSON(b []byte) (any, error) { return decodeJSONMode(b, false) }

// decodeJSONMode is decodeJSON; with slack set, every string and object key is escaped
// for Slack (SlackEscape) as it is read, which is what a walk escaping the decoded value
// would give (escaping is injective, so no two keys become one), without the walk.
// Strings without escapes are cut from one copy of b: one allocation for all of them.
func decodeJSONMode(b []byte, slack bool) (any, error) {
	d := jsonDecoder{b: b, src: string(b), slack: slack}
	d.space()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.i != len(d.b) {
		return nil, d.errorf("invalid character %q after top-level value", d.b[d.i])
	}
	return v, nil
}

type jsonDecoder struct {
	b     []byte
	src   string // string(b): strings without escapes are substrings of it
	i     int
	slack bool // escape strings and keys for Slack
}

const maxDepth = 10000 // encoding/json's limit

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

var errEnd = errors.New("unexpected end of JSON input")

func (d *jsonDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if d.i >= len(d.b) {
		return nil, errEnd
	}
	if depth > maxDepth {
		return nil, d.errorf("exceeded max depth")
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		return s, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		return nil, d.errorf("invalid character %q looking for beginning of value", c)
	}
}

func (d *jsonDecoder) literal(lit string) error {
	if len(d.b)-d.i < len(lit) {
		if string(d.b[d.i:]) == lit[:len(d.b)-d.i] {
			return errEnd
		}
		return d.errorf("invalid literal")
	}
	if string(d.b[d.i:d.i+len(lit)]) != lit {
		return d.errorf("invalid literal")
	}
	d.i += len(lit)
	return nil
}

func (d *jsonDecoder) object(depth int) (any, error) {
	m := make(map[string]any)
	if err := d.membersDepth(depth, func(k string, v any) { m[k] = v }); err != nil {
		return nil, err
	}
	return m, nil
}

// members reads the object at d.i (its '{' included), handing each member to put in
// order (a repeated key is handed again: the last one wins, as in a map).
func (d *jsonDecoder) members(put func(k string, v any)) error { return d.membersDepth(0, put) }

func (d *jsonDecoder) membersDepth(depth int, put func(k string, v any)) error {
	return d.fields(func(k string) error {
		v, err := d.value(depth + 1)
		if err != nil {
			return err
		}
		put(k, v)
		return nil
	})
}

// fields reads the object at d.i (its '{' included); for each member it reads the key
// and the colon, and read reads the value (all of it: d.i after it).
func (d *jsonDecoder) fields(read func(k string) error) error {
	d.i++ // {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return nil
	}
	for {
		d.space()
		if d.i >= len(d.b) {
			return errEnd
		}
		if d.b[d.i] != '"' {
			return d.errorf("invalid character %q looking for beginning of object key string", d.b[d.i])
		}
		k, err := d.key()
		if err != nil {
			return err
		}
		d.space()
		if d.i >= len(d.b) {
			return errEnd
		}
		if d.b[d.i] != ':' {
			return d.errorf("invalid character %q after object key", d.b[d.i])
		}
		d.i++
		d.space()
		if err := read(k); err != nil {
			return err
		}
		d.space()
		if d.i >= len(d.b) {
			return errEnd
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.errorf("invalid character %q after object key:value pair", d.b[d.i])
		}
	}
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.i++ // [
	a := []any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return a, nil
	}
	for {
		d.space()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.space()
		if d.i >= len(d.b) {
			return nil, errEnd
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return a, nil
		default:
			return nil, d.errorf("invalid character %q after array element", d.b[d.i])
		}
	}
}

func (d *jsonDecoder) number() (any, error) {
	start := d.i
	if d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.i >= len(d.b) {
		return nil, errEnd
	}
	switch {
	case d.b[d.i] == '0':
		d.i++
	case d.b[d.i] >= '1' && d.b[d.i] <= '9':
		digits()
	default:
		return nil, d.errorf("invalid character %q in numeric literal", d.b[d.i])
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if d.i >= len(d.b) {
			return nil, errEnd
		}
		if digits() == 0 {
			return nil, d.errorf("invalid character %q after decimal point in numeric literal", d.b[d.i])
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if d.i >= len(d.b) {
			return nil, errEnd
		}
		if digits() == 0 {
			return nil, d.errorf("invalid character %q in exponent of numeric literal", d.b[d.i])
		}
	}
	return json.Number(d.src[start:d.i]), nil
}

// key reads an object key.
func (d *jsonDecoder) key() (string, error) { return d.str() }

// str reads a string; invalid UTF-8 and lone surrogates become U+FFFD, as encoding/json
// does.
func (d *jsonDecoder) str() (string, error) {
	d.i++ // "
	start := d.i
	special := false // & < > seen (Slack mode escapes them)
	ascii := true    // no byte >= 0x80 seen: valid UTF-8 without a check
	// Fast path: no escapes, valid UTF-8. The loop works on locals (registers).
	b, i := d.b, d.i
	for i < len(b) {
		c := b[i]
		if c == '"' {
			raw := b[start:i]
			d.i = i + 1
			var out string
			if ascii || utf8.Valid(raw) {
				out = d.src[start:i]
			} else {
				out = fixUTF8(raw)
			}
			if special && d.slack {
				out = SlackEscape(out)
			}
			return out, nil
		}
		switch {
		case c == '\\':
		case c < 0x20:
			d.i = i
			return "", d.errorf("invalid character %q in string literal", c)
		case c >= 0x80:
			ascii = false
			i++
			continue
		case c == '&' || c == '<' || c == '>':
			special = true
			i++
			continue
		default:
			i++
			continue
		}
		break // backslash: the slow path
	}
	d.i = i
	if d.i >= len(d.b) {
		return "", errEnd
	}
	out := make([]byte, 0, d.i-start+16)
	out = append(out, d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			var str string
			if utf8.Valid(out) {
				str = string(out)
			} else {
				str = fixUTF8(out)
			}
			if d.slack {
				str = SlackEscape(str)
			}
			return str, nil
		case c < 0x20:
			return "", d.errorf("invalid character %q in string literal", c)
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		d.i++ // backslash
		if d.i >= len(d.b) {
			return "", errEnd
		}
		e := d.b[d.i]
		d.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				if d.i > len(d.b) {
					return "", errEnd
				}
				return "", d.errorf("invalid character in \\u hexadecimal character escape")
			}
			if utf16.IsSurrogate(r) {
				// A pair is \uD8xx\uDCxx; anything else leaves the first as U+FFFD.
				save := d.i
				if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					d.i += 2
					if r2, ok := d.hex4(); ok {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							continue
						}
					}
				}
				d.i = save
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default:
			d.i--
			return "", d.errorf("invalid character %q in string escape code", e)
		}
	}
	return "", errEnd
}

func (d *jsonDecoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		d.i = len(d.b) + 1
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	d.i += 4
	return r, true
}

func fixUTF8(s []byte) string {
	out := make([]byte, 0, len(s)+8)
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			out = append(out, "\ufffd"...)
		} else {
			out = append(out, s[:size]...)
		}
		s = s[size:]
	}
	return string(out)
}
