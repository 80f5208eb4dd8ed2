package template

import (
	"errors"
	"fmt"
	"strings"

	"github.com/exportbridge/exportbridge/event"
)

// Content types of a templated payload when the sink sets none.
const (
	DefaultBodyType     = "application/json"          // body: JSON by construction
	DefaultBodyTextType = "text/plain; charset=utf-8" // body_text: the bytes as rendered
)

// Payload is the templated payload of a webhook or NATS sink: its `body` or `body_text`
// with its content type and the sink's vars. The CloudEvent attributes then travel as
// headers (CEHeaders).
type Payload struct {
	sink        string
	tpl         *Template
	contentType string
	vars        map[string]string
}

// PayloadConfig is the template keys of a webhook or NATS block.
type PayloadConfig struct {
	Body        any               // `body`: a YAML structure, nil when unset
	BodyText    string            // `body_text`
	ContentType string            // `content_type`; default by kind of template
	Vars        map[string]string // `vars`: the sink's own values, .Vars in templates
}

// Set reports whether c asks for a templated payload.
func (c PayloadConfig) Set() bool { return c.Body != nil || c.BodyText != "" }

// FieldError is a problem with one key of a sink's block: Key is relative to the block
// ("body.title", "content_type"), Msg says what is wrong without repeating it.
type FieldError struct {
	Key, Msg string
}

// Validate compiles and checks c against every sample event (Check), reporting each
// problem under its key. It is what a sink's Config.Validate calls.
func (c PayloadConfig) Validate(sink string) []FieldError {
	var out []FieldError
	if c.Body != nil && c.BodyText != "" {
		out = append(out, FieldError{Key: "body_text", Msg: "is set together with body (expected one: body, a YAML structure sent as JSON, or body_text, sent as rendered)"})
		return out
	}
	if c.ContentType != "" && !c.Set() {
		out = append(out, FieldError{Key: "content_type", Msg: "has no effect without body or body_text (the CloudEvent is sent as application/cloudevents+json)"})
	}
	if ct := c.ContentType; ct != "" && (strings.ContainsAny(ct, "\r\n") || !strings.Contains(ct, "/")) {
		out = append(out, FieldError{Key: "content_type", Msg: fmt.Sprintf("%q is not a media type (expected something like application/json)", ct)})
	}
	if c.Set() {
		if _, err := NewPayload(sink, c); err != nil {
			var te *Error
			if errors.As(err, &te) {
				out = append(out, FieldError{Key: te.Key, Msg: te.Detail()})
			} else {
				out = append(out, FieldError{Key: "body", Msg: err.Error()})
			}
		}
	}
	return out
}

// NewPayload compiles c for the sink named sink and checks it against every sample
// event; nil, nil when c sets no template. Errors are *Error named "body..." or
// "body_text".
func NewPayload(sink string, c PayloadConfig) (*Payload, error) {
	if !c.Set() {
		return nil, nil
	}
	var (
		t   *Template
		err error
		ct  = c.ContentType
	)
	if c.Body != nil {
		t, err = Structure("body", c.Body, Plain)
		if ct == "" {
			ct = DefaultBodyType
		}
	} else {
		t, err = Text("body_text", c.BodyText, Plain)
		if ct == "" {
			ct = DefaultBodyTextType
		}
	}
	if err != nil {
		return nil, err
	}
	p := &Payload{sink: sink, tpl: t, contentType: ct, vars: c.Vars}
	for _, e := range Samples() {
		if _, _, err := p.Render(e); err != nil {
			var te *Error
			if errors.As(err, &te) {
				c := *te
				c.Sample = e.Type
				return nil, &c
			}
			return nil, err
		}
	}
	return p, nil
}

// ContentType is the media type of the rendered payload.
func (p *Payload) ContentType() string { return p.contentType }

// Render renders the payload of e, and returns the CloudEvent attributes to send as
// headers with it (CEHeaders). An error is an *Error (a template error, or a body over
// MaxBody): the event can never be sent, so sinks mark it permanent.
func (p *Payload) Render(e event.Event) (body []byte, ce [][2]string, err error) {
	d, err := NewData(e, p.sink, Plain)
	if err != nil {
		return nil, nil, err
	}
	if len(p.vars) > 0 {
		d.SetVars(p.vars)
	}
	body, err = p.tpl.Render(d)
	return body, d.ce, err
}

// Detail is the error without its key: "line 2, column 5: ... (rendering a sample
// export.failed event)".
func (e *Error) Detail() string {
	c := *e
	c.Key = ""
	return strings.TrimPrefix(c.Error(), ": ")
}

// CEHeaders returns the CloudEvent attributes of e as CloudEvents binary-mode headers
// (HTTP and NATS bindings): ce-specversion, ce-id, ce-source, ce-type, ce-subject,
// ce-time, and ce-account when the event carries that extension, in name order.
// datacontenttype is the Content-Type of the payload instead. Values are
// percent-encoded where the bindings require it.
func CEHeaders(e event.Event) ([][2]string, error) {
	w, err := decodeWire(e.Body, Plain)
	if err != nil {
		return nil, fmt.Errorf("cloudevent headers of event %s: %w", e.ID, err)
	}
	return w.headers(), nil
}

// percentEncode encodes what the CloudEvents HTTP binding asks (3.1.3.2): space, '"',
// '%' and every byte outside printable ASCII.
func percentEncode(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '"' || c == '%' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '"' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
