package template

import (
	"fmt"
	"strings"

	"github.com/exportbridge/exportbridge/event"
)

// Mode says how the values a template sees are prepared.
type Mode uint8

const (
	// Plain templates (webhook and NATS bodies) see the values as the API wrote them.
	Plain Mode = iota
	// Slack templates see every string that came from the API (and the keys of its
	// objects) escaped for Slack's mrkdwn: & < > become &amp; &lt; &gt;. A filename
	// "<!channel>" reaches Slack as text and pings no one, whatever the template does.
	Slack
)

func (m Mode) String() string {
	if m == Slack {
		return "slack"
	}
	return "plain"
}

// Data is what a template sees: .Event, .Export, .Bridge and .Sink. Build it once per
// event and sink with NewData, and render every template of that sink with it.
type Data struct {
	mode Mode
	root map[string]any
	ce   [][2]string // the CloudEvent attributes as binary-mode headers (CEHeaders)
}

// Mode is the mode the data was prepared for.
func (d *Data) Mode() Mode { return d.mode }

// SetVars gives templates the sink's `vars` as .Vars: values of the user's own (a
// PagerDuty routing key read from a secret), shown as they are, in either mode.
func (d *Data) SetVars(vars map[string]string) {
	m := make(map[string]any, len(vars))
	for k, v := range vars {
		m[k] = v
	}
	d.root["Vars"] = m
}

// Map returns the data as templates see it (for `template render` and tests).
func (d *Data) Map() map[string]any { return d.root }

// wire is the part of the CloudEvent envelope the data model needs; data is decoded
// with UseNumber, so numbers render as the API wrote them (1234567, not 1.234567e+06).
type wire struct {
	SpecVersion string         `json:"specversion"`
	ID          string         `json:"id"`
	Source      string         `json:"source"`
	Type        string         `json:"type"`
	Subject     string         `json:"subject"`
	Time        string         `json:"time"`
	Account     string         `json:"account"` // the scale-out extension attribute
	Data        map[string]any `json:"data"`
}

// envelopeNames are the attributes decodeWire reads, in the order it checks them.
var envelopeNames = [...]string{"specversion", "id", "source", "type", "subject", "time", "account", "data"}

// decodeWire reads the envelope and its data in one pass (decodeJSON), in Slack mode
// with every string escaped for Slack. The envelope itself is not made a map: its
// attributes are picked as they are read, the string ones without boxing them in an
// interface (a repeated attribute counts once: the last one, as in a map).
func decodeWire(body []byte, mode Mode) (*wire, error) {
	w := &wire{}
	attrs := [...]*string{&w.SpecVersion, &w.ID, &w.Source, &w.Type, &w.Subject, &w.Time, &w.Account}
	var (
		bad  [len(envelopeNames)]string // the Go type of an attribute of the wrong kind
		data any
	)
	d := jsonDecoder{b: body, src: string(body), slack: mode == Slack}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '{' {
		if err := d.fields(func(k string) error {
			i := 0
			for i < len(envelopeNames) && envelopeNames[i] != k {
				i++
			}
			if i < len(attrs) && d.i < len(d.b) && d.b[d.i] == '"' {
				s, err := d.str()
				*attrs[i], bad[i] = s, ""
				return err
			}
			v, err := d.value(1)
			if err != nil || i == len(envelopeNames) {
				return err
			}
			bad[i] = ""
			switch x := v.(type) {
			case nil:
				if i < len(attrs) {
					*attrs[i] = ""
				}
			case map[string]any:
				if i == len(attrs) {
					break
				}
				bad[i] = fmt.Sprintf("%T", x)
			default:
				bad[i] = fmt.Sprintf("%T", x)
			}
			if i == len(attrs) {
				data = v
			}
			return nil
		}); err != nil {
			return nil, err
		}
	} else if _, err := d.value(0); err != nil {
		return nil, err
	} else {
		d.space()
		if d.i != len(d.b) {
			return nil, d.errorf("invalid character %q after top-level value", d.b[d.i])
		}
		return nil, fmt.Errorf("the CloudEvent is not a JSON object")
	}
	d.space()
	if d.i != len(d.b) {
		return nil, d.errorf("invalid character %q after top-level value", d.b[d.i])
	}
	for i := range attrs {
		if bad[i] != "" {
			return nil, fmt.Errorf("attribute %s is a %s (expected a string)", envelopeNames[i], bad[i])
		}
	}
	if bad[len(attrs)] != "" {
		return nil, fmt.Errorf("data is a %s (expected an object)", bad[len(attrs)])
	}
	w.Data, _ = data.(map[string]any)
	return w, nil
}

// headers are the envelope's attributes as CloudEvents binary-mode headers (HTTP and
// NATS bindings), in name order; datacontenttype is the payload's Content-Type instead.
func (w *wire) headers() [][2]string {
	h := make([][2]string, 0, 7)
	for _, a := range [...][2]string{
		{"ce-account", w.Account}, {"ce-id", w.ID}, {"ce-source", w.Source}, {"ce-specversion", w.SpecVersion},
		{"ce-subject", w.Subject}, {"ce-time", w.Time}, {"ce-type", w.Type},
	} {
		if a[1] != "" {
			h = append(h, [2]string{a[0], percentEncode(a[1])})
		}
	}
	return h
}

// NewData decodes the event's CloudEvent body into the data model of the SPEC:
//
//	.Event   id, type (com.plugchoice.export.ready), short_type (export.ready), status,
//	         previous_status, time, observed_at, account (the `account` attribute;
//	         "default" for the one account of API_TOKEN)
//	.Export  the export object exactly as the API returned it, unknown fields included
//	         (empty for bridge.* events)
//	.Bridge  for bridge.* events: their data, plus kind, message, count and since
//	.Sink    name
//	.Vars    the sink's own values (SetVars), empty until set
func NewData(e event.Event, sink string, mode Mode) (*Data, error) {
	// In Slack mode every string of the CloudEvent is escaped as it is decoded: the
	// export's values and keys, the bridge's own words, the envelope's attributes.
	w, err := decodeWire(e.Body, mode)
	if err != nil {
		return nil, fmt.Errorf("template data of event %s: decode the CloudEvent: %w", e.ID, err)
	}
	if w.ID == "" || w.Type == "" {
		return nil, fmt.Errorf("template data of event %s: the CloudEvent has no id or type", e.ID)
	}
	short := strings.TrimPrefix(w.Type, event.TypePrefix)
	status := short[strings.IndexByte(short, '.')+1:]
	ev := map[string]any{
		"id":          w.ID,
		"type":        w.Type,
		"short_type":  short,
		"status":      status,
		"time":        w.Time,
		"observed_at": w.Data["observed_at"],
		"account":     event.DefaultAccount,
	}
	if w.Account != "" {
		ev["account"] = w.Account
	}
	if p, ok := w.Data["previous_status"]; ok && p != nil {
		ev["previous_status"] = p
	}
	var exp, bridge map[string]any
	if strings.HasPrefix(short, "bridge.") {
		bridge = bridgeOf(w.Data)
	} else if x, ok := w.Data["export"].(map[string]any); ok {
		exp = x
	}
	if exp == nil {
		exp = map[string]any{}
	}
	if bridge == nil {
		bridge = map[string]any{}
	}
	if mode == Slack {
		// The sink name is escaped too: simpler to reason about than a list of which
		// values came from the API.
		sink = SlackEscape(sink)
	}
	root := map[string]any{
		"Event":  ev,
		"Export": exp,
		"Bridge": bridge,
		"Sink":   map[string]any{"name": sink},
		"Vars":   map[string]any{},
	}
	d := &Data{mode: mode, root: root}
	if mode == Plain {
		d.ce = w.headers() // only payloads (plain) send them
	}
	return d, nil
}

// bridgeOf is the data of a bridge.* event with the four names the SPEC gives every
// bridge event: kind, message, count, since. poll_* events carry error_kind, message
// and consecutive_failures; sink_* events carry kind (of the sink) and last_error.
func bridgeOf(d map[string]any) map[string]any {
	b := make(map[string]any, len(d)+4)
	for k, v := range d {
		b[k] = v
	}
	alias := func(name string, from ...string) {
		if v, ok := b[name]; ok && v != nil {
			return
		}
		for _, f := range from {
			if v, ok := d[f]; ok && v != nil {
				b[name] = v
				return
			}
		}
	}
	alias("kind", "error_kind")
	alias("message", "last_error")
	alias("count", "consecutive_failures")
	return b
}

// slackEscaper escapes the three characters Slack's mrkdwn treats as control
// characters. It is the same rule as sinks/slack.Escape.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// SlackEscape escapes & < > for Slack.
func SlackEscape(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	return slackEscaper.Replace(s)
}
