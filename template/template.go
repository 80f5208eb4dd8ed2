// Package template renders the payload templates of a sink: a `body` (a YAML structure
// whose string leaves are templates, JSON-encoded after rendering, so that no template
// can produce broken JSON), a `body_text` (one template, the bytes as rendered), and the
// Slack `text` and `blocks`.
//
// Templates are Go text/template with sprig's hermetic functions (no environment, files,
// clock or randomness) plus toJson, humanBytes and humanDuration: a render is a pure
// function of the event, so a retry or a replay sends the same bytes as the first attempt.
// The data is that of the SPEC (.Event, .Export, .Bridge, .Sink, see NewData); missing
// keys and JSON nulls render empty.
//
// A sink compiles its templates at start and calls Check, which renders them against a
// sample of every event type (Samples); at delivery it builds the Data once per event and
// renders. An error at delivery (an `index` out of range on an odd export, a body over
// MaxBody) is an *Error: the sink marks it permanent, so the event goes to the
// dead-letter queue with the template error instead of being retried.
package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	texttemplate "text/template"
	"unicode/utf8"
)

// MaxBody is the largest rendered payload: a render that would exceed it is refused.
const MaxBody = 1 << 20

// ErrTooLarge is the cause of an *Error for a render over MaxBody.
var ErrTooLarge = fmt.Errorf("the rendered payload exceeds %d bytes (1 MiB)", MaxBody)

// ErrMention is the cause of an *Error for a Slack render that would mention someone
// (<!here>, <@U123>, <#C123>) although the template itself writes no such sequence: a
// value from the API placed right after a literal "<", or decoded by a function.
var ErrMention = errors.New("the rendered text holds a Slack mention or channel link (<!, <@ or <#) that the template itself does not write: refused, so that a value from the API can never ping anyone (place API values in text, not right after a literal <)")

// Error is a template that does not parse or does not render. Key is the path of the
// template in the sink's settings (webhook.body.title, slack.blocks[1].text.text), Line
// and Column its position inside that template, both counted from 1 (Column 0 when Go's
// parser gave none: parse errors carry the line only).
type Error struct {
	Key    string
	Line   int
	Column int
	Msg    string // the problem in Go's words, without its "template: name:line:" prefix
	Sample string // set by Check: the sample event type it was rendering
	Err    error  // the cause (ErrTooLarge, or the parse or execution error)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Key)
	if e.Line > 0 {
		b.WriteString(": line ")
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(", column ")
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Sample != "" {
		b.WriteString(" (rendering a sample ")
		b.WriteString(e.Sample)
		b.WriteString(" event)")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Go's messages: parse errors "template: t:3: msg", execution errors
// "template: t:3:12: executing "t" at <...>: msg".
var (
	parseMsg = regexp.MustCompile(`^template: ` + leafName + `:(\d+): (?s)(.*)$`)
	execMsg  = regexp.MustCompile(`^template: ` + leafName + `:(\d+):(\d+): executing "` + leafName + `" at <(?s:.*?)>: (?s)(.*)$`)
)

// leafName names every parsed template, so that the key path (which may hold any
// character) never has to be parsed back out of Go's messages.
const leafName = "t"

func newError(key string, err error) *Error {
	msg := err.Error()
	if m := execMsg.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		// Go counts the column from 0; editors (and the config file's line:column)
		// count from 1.
		return &Error{Key: key, Line: line, Column: col + 1, Msg: m[3], Err: err}
	}
	if m := parseMsg.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Key: key, Line: line, Msg: m[2], Err: err}
	}
	return &Error{Key: key, Msg: msg, Err: err}
}

// Template is a compiled payload template of one kind: a structure rendered to JSON, or
// a text rendered as is.
type Template struct {
	key  string
	mode Mode
	root node // structure
	text *leaf
}

// Key is the path of the template in the sink's settings.
func (t *Template) Key() string { return t.key }

// Mode is the mode the template renders in.
func (t *Template) Mode() Mode { return t.mode }

// Text compiles one text template (`body_text`, Slack `text`). key names it in errors.
func Text(key, src string, mode Mode) (*Template, error) {
	l, err := compileLeaf(key, src)
	if err != nil {
		return nil, err
	}
	return &Template{key: key, mode: mode, text: l}, nil
}

// Structure compiles a structure decoded from YAML (`body`, Slack `blocks`): maps, lists
// and scalars; its string leaves are templates, everything else is sent as written. key
// names the root in errors; the leaves are named below it (key.title, key[0].text).
func Structure(key string, v any, mode Mode) (*Template, error) {
	n, err := compileNode(key, v)
	if err != nil {
		return nil, err
	}
	return &Template{key: key, mode: mode, root: n}, nil
}

// Render renders the template with d. A structure renders to its JSON encoding, a text
// to its bytes. An error is an *Error naming the key, line and column; a result over
// MaxBody is an *Error wrapping ErrTooLarge.
func (t *Template) Render(d *Data) ([]byte, error) {
	if d == nil {
		return nil, &Error{Key: t.key, Msg: "no data to render (programming error)"}
	}
	if d.mode != t.mode {
		// A Slack template must never see unescaped values.
		return nil, &Error{Key: t.key, Msg: fmt.Sprintf("a %s template rendered with %s data (programming error)", t.mode, d.mode)}
	}
	r := renderers.Get().(*renderer)
	defer renderers.Put(r)
	r.out.Reset()
	r.mode = t.mode
	if t.text != nil {
		if err := r.execute(t.text, d.root, &r.out, MaxBody); err != nil {
			return nil, err
		}
	} else if err := t.root.render(r, d.root); err != nil {
		return nil, err
	}
	return bytes.Clone(r.out.Bytes()), nil
}

// renderer holds the buffers of one render; pooled so that a render allocates little
// beyond what text/template itself needs.
type renderer struct {
	mode    Mode
	out     bytes.Buffer
	scratch bytes.Buffer
	limit   limitWriter
	stack   []any // the fast path's call arguments (fast.go)
}

var renderers = sync.Pool{New: func() any { return new(renderer) }}

func (r *renderer) execute(l *leaf, data map[string]any, w *bytes.Buffer, max int) error {
	start := w.Len()
	fast := l.fast != nil && useFast
	if fast {
		switch err := renderFast(l.fast, data, w, max, &r.stack); {
		case err == nil:
		case errors.Is(err, ErrTooLarge):
			return &Error{Key: l.key, Msg: ErrTooLarge.Error(), Err: ErrTooLarge}
		default: // errSlow: text/template renders it, errors and all
			w.Truncate(start)
			fast = false
		}
	}
	if !fast {
		if err := l.t.Execute(r.limitTo(w, max), data); err != nil {
			if errors.Is(err, ErrTooLarge) {
				return &Error{Key: l.key, Msg: ErrTooLarge.Error(), Err: ErrTooLarge}
			}
			return newError(l.key, err)
		}
	}
	if r.mode == Slack && !l.mentions && hasMention(w.Bytes()[start:]) {
		return &Error{Key: l.key, Msg: ErrMention.Error(), Err: ErrMention}
	}
	return nil
}

// hasMention reports whether b holds the start of a Slack special mention (<!here>),
// a user mention (<@U123>) or a channel link (<#C123>).
func hasMention(b []byte) bool {
	for {
		i := bytes.IndexByte(b, '<')
		if i < 0 || i+1 >= len(b) {
			return false
		}
		switch b[i+1] {
		case '!', '@', '#':
			return true
		}
		b = b[i+1:]
	}
}

func (r *renderer) limitTo(w *bytes.Buffer, max int) *limitWriter {
	r.limit = limitWriter{w: w, left: max}
	return &r.limit
}

// useFast is false in the test that holds the fast path equal to text/template.
var useFast = true

// limitWriter refuses to grow the output past MaxBody, so a runaway `range` stops there
// instead of filling memory.
type limitWriter struct {
	w    *bytes.Buffer
	left int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		return 0, ErrTooLarge
	}
	l.left -= len(p)
	return l.w.Write(p)
}

var _ io.Writer = (*limitWriter)(nil)

// node is one compiled part of a structure.
type node interface {
	render(r *renderer, data map[string]any) error
}

// literal is a part without templates, JSON-encoded once at compile time.
type literal []byte

func (l literal) render(r *renderer, _ map[string]any) error {
	if r.out.Len()+len(l) > MaxBody {
		return errTooLargeAt(r, "")
	}
	r.out.Write(l)
	return nil
}

type object struct {
	key   string
	names [][]byte // `"name":`, JSON-encoded, sorted by name
	vals  []node
}

func (o *object) render(r *renderer, data map[string]any) error {
	r.out.WriteByte('{')
	for i, v := range o.vals {
		if i > 0 {
			r.out.WriteByte(',')
		}
		r.out.Write(o.names[i])
		if err := v.render(r, data); err != nil {
			return err
		}
	}
	r.out.WriteByte('}')
	if r.out.Len() > MaxBody {
		return errTooLargeAt(r, o.key)
	}
	return nil
}

type list struct {
	key  string
	vals []node
}

func (l *list) render(r *renderer, data map[string]any) error {
	r.out.WriteByte('[')
	for i, v := range l.vals {
		if i > 0 {
			r.out.WriteByte(',')
		}
		if err := v.render(r, data); err != nil {
			return err
		}
	}
	r.out.WriteByte(']')
	if r.out.Len() > MaxBody {
		return errTooLargeAt(r, l.key)
	}
	return nil
}

func errTooLargeAt(_ *renderer, key string) error {
	return &Error{Key: key, Msg: ErrTooLarge.Error(), Err: ErrTooLarge}
}

// leaf is a string with template actions.
type leaf struct {
	key string
	t   *texttemplate.Template
	// mentions: the source itself writes <!, <@ or <# (a deliberate @here): the Slack
	// guard in execute then lets such sequences through.
	mentions bool
	fast     []fNode // set when the leaf is within what fast.go renders itself
}

func (l *leaf) render(r *renderer, data map[string]any) error {
	left := MaxBody - r.out.Len() - 2 // the quotes
	if left < 0 {
		return errTooLargeAt(r, l.key)
	}
	r.scratch.Reset()
	if err := r.execute(l, data, &r.scratch, left); err != nil {
		return err
	}
	appendString(&r.out, r.scratch.Bytes())
	if r.out.Len() > MaxBody {
		return errTooLargeAt(r, l.key)
	}
	return nil
}

func compileLeaf(key, src string) (*leaf, error) {
	t, err := texttemplate.New(leafName).Funcs(funcs).Parse(src)
	if err != nil {
		return nil, newError(key, err)
	}
	var fast []fNode
	if len(t.Templates()) == 1 {
		fast = compileFast(t.Tree)
	}
	for _, tt := range t.Templates() {
		rewriteTree(tt.Tree)
	}
	return &leaf{key: key, t: t, mentions: hasMention([]byte(src)), fast: fast}, nil
}

func compileNode(key string, v any) (node, error) {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "{{") {
			var b bytes.Buffer
			appendString(&b, []byte(x))
			return literal(b.Bytes()), nil
		}
		return compileLeaf(key, x)
	case map[string]any:
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		return compileObject(key, names, func(k string) any { return x[k] })
	case map[any]any:
		byName := make(map[string]any, len(x))
		for k, val := range x {
			name := fmt.Sprint(k)
			if _, dup := byName[name]; dup {
				return nil, &Error{Key: key, Msg: fmt.Sprintf("two keys read as %q (expected distinct keys)", name)}
			}
			byName[name] = val
		}
		names := make([]string, 0, len(byName))
		for k := range byName {
			names = append(names, k)
		}
		return compileObject(key, names, func(k string) any { return byName[k] })
	case []any:
		l := &list{key: key, vals: make([]node, len(x))}
		for i, val := range x {
			n, err := compileNode(key+"["+strconv.Itoa(i)+"]", val)
			if err != nil {
				return nil, err
			}
			l.vals[i] = n
		}
		return l, nil
	case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, json.Number:
		b, err := json.Marshal(x)
		if err != nil {
			return nil, &Error{Key: key, Msg: err.Error(), Err: err}
		}
		return literal(b), nil
	case float32, float64:
		f, _ := number(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, &Error{Key: key, Msg: fmt.Sprintf("%v cannot be sent as JSON (expected a finite number)", x)}
		}
		b, err := json.Marshal(x)
		if err != nil {
			return nil, &Error{Key: key, Msg: err.Error(), Err: err}
		}
		return literal(b), nil
	default:
		return nil, &Error{Key: key, Msg: fmt.Sprintf("a %T cannot be sent as JSON (expected a mapping, a list, a string, a number, a boolean or null)", v)}
	}
}

func compileObject(key string, names []string, val func(string) any) (node, error) {
	sort.Strings(names)
	o := &object{key: key, names: make([][]byte, len(names)), vals: make([]node, len(names))}
	for i, name := range names {
		var b bytes.Buffer
		appendString(&b, []byte(name))
		b.WriteByte(':')
		o.names[i] = b.Bytes()
		n, err := compileNode(childKey(key, name), val(name))
		if err != nil {
			return nil, err
		}
		o.vals[i] = n
	}
	// An object whose every value is a literal is itself one literal.
	lit := true
	for _, v := range o.vals {
		if _, ok := v.(literal); !ok {
			lit = false
			break
		}
	}
	if lit {
		r := &renderer{}
		_ = o.render(r, nil)
		return literal(bytes.Clone(r.out.Bytes())), nil
	}
	return o, nil
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// childKey is the path of a map entry: key.name, or key["odd name"].
func childKey(key, name string) string {
	if plainKey.MatchString(name) {
		return key + "." + name
	}
	return key + "[" + strconv.Quote(name) + "]"
}

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD (as encoding/json
// does); < > & are written as they are (Slack data is escaped before rendering).
func appendString(b *bytes.Buffer, s []byte) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b.Write(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.Write(s[start:i])
			b.WriteString(`\ufffd`)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript readers; encoding/json
		// escapes them too.
		if r == '\u2028' || r == '\u2029' {
			b.Write(s[start:i])
			b.WriteString(`\u202`)
			b.WriteByte(hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b.Write(s[start:])
	b.WriteByte('"')
}
