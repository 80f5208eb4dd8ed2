// Package event defines the bridge's event and its CloudEvents 1.0 JSON encoding.
//
// An event is encoded once, when it is detected; every sink shares the same bytes
// (Event.Body), so a re-delivery carries exactly the bytes of the first attempt.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// TypePrefix prefixes the short event name in the CloudEvents `type` attribute.
const TypePrefix = "com.plugchoice."

// ContentType is the media type of an encoded event (structured mode).
const ContentType = "application/cloudevents+json"

// Short names of the bridge's own events.
const (
	TypePollFailing   = "bridge.poll_failing"
	TypePollRecovered = "bridge.poll_recovered"
	TypeSinkFailing   = "bridge.sink_failing"
	TypeSinkRecovered = "bridge.sink_recovered"
	TypeRemoved       = "export.removed"
)

// Event is one detected status change (or one bridge event), ready for delivery.
type Event struct {
	// ID is stable: the same transition detected twice has the same id.
	ID string `json:"id"`
	// Type is the short name users filter on: "export.ready", "bridge.poll_failing".
	Type string `json:"type"`
	// Subject is the export uuid; empty for bridge events.
	Subject string `json:"subject,omitempty"`
	// Status is the new status, sanitised ("ready", "removed", "poll_failing").
	Status string `json:"status"`
	// ExportType is the export's type as the API gave it (empty for bridge events).
	ExportType string `json:"export_type,omitempty"`
	// DetectedAt is when the bridge observed the change (for latency figures).
	DetectedAt time.Time `json:"detected_at"`
	// Body is the CloudEvent JSON, encoded once.
	Body json.RawMessage `json:"body"`
}

// CEType returns the CloudEvents type attribute: "com.plugchoice.export.ready".
func (e Event) CEType() string { return TypePrefix + e.Type }

// IsBridge reports whether this is one of the bridge's own events.
func (e Event) IsBridge() bool { return strings.HasPrefix(e.Type, "bridge.") }

// OrderKey groups events that must be delivered in order: one key per export, one for
// the bridge's own events.
func (e Event) OrderKey() string {
	if e.Subject == "" {
		return "bridge"
	}
	return e.Subject
}

// CloudEvent is the structured-mode envelope.
type CloudEvent struct {
	SpecVersion string `json:"specversion"`
	ID          string `json:"id"`
	Source      string `json:"source"`
	Type        string `json:"type"`
	Subject     string `json:"subject,omitempty"`
	// Account is the CloudEvents extension attribute of the Plugchoice account the event
	// came from, with several accounts (WithAccount); absent for the one account of
	// API_TOKEN.
	Account         string          `json:"account,omitempty"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// ExportData is the `data` of an export.* event.
type ExportData struct {
	PreviousStatus *string         `json:"previous_status"`
	Status         string          `json:"status"`
	ObservedAt     string          `json:"observed_at"`
	Export         json.RawMessage `json:"export"`
}

// BridgeData is the `data` of a bridge.* event. Sink, Kind, Destination, LastError and
// Queued are set for bridge.sink_failing and bridge.sink_recovered only.
type BridgeData struct {
	ErrorKind   string `json:"error_kind,omitempty"`
	Message     string `json:"message,omitempty"`
	Sink        string `json:"sink,omitempty"`
	Kind        string `json:"kind,omitempty"`
	Destination string `json:"destination,omitempty"`
	LastError   string `json:"last_error,omitempty"`
	Queued      *int   `json:"queued,omitempty"`
	Failures    int    `json:"consecutive_failures"`
	Since       string `json:"since"`
	ObservedAt  string `json:"observed_at"`
}

// SanitizeToken lower-cases s and replaces every rune outside [a-z0-9_-] with '_'.
// An empty string becomes "_". Used for unknown statuses and NATS subject tokens.
func SanitizeToken(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// ID derives the stable event id from the export uuid, the new status and that status's
// own timestamp. It is the hex of the first 16 bytes of a SHA-256 over the three.
func ID(uuid, status, statusTime string) string {
	h := sha256.New()
	h.Write([]byte(uuid))
	h.Write([]byte{0})
	h.Write([]byte(status))
	h.Write([]byte{0})
	h.Write([]byte(statusTime))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

const rfc3339 = time.RFC3339Nano

// NewExport builds the event for an export seen with a new status. prev is the previous
// status, "" for an export the snapshot did not have. source is the API base URL +
// "/exports".
func NewExport(source, prev string, exp *plugchoice.Export, observedAt time.Time) (Event, error) {
	status := SanitizeToken(exp.Status)
	st := exp.StatusTime()
	ev := Event{
		ID:         ID(exp.UUID, status, st),
		Type:       "export." + status,
		Subject:    exp.UUID,
		Status:     status,
		ExportType: exp.Type,
		DetectedAt: observedAt,
	}
	raw := exp.Raw
	if len(raw) == 0 {
		var err error
		if raw, err = json.Marshal(exp); err != nil {
			return Event{}, fmt.Errorf("encode export %s: %w", exp.UUID, err)
		}
	}
	d := ExportData{Status: exp.Status, ObservedAt: observedAt.UTC().Format(rfc3339), Export: raw}
	if prev != "" {
		d.PreviousStatus = &prev
	}
	t := observedAt
	switch status {
	case plugchoice.StatusPending, plugchoice.StatusReady, plugchoice.StatusFailed:
		if pt, err := time.Parse(time.RFC3339Nano, st); err == nil {
			t = pt
		}
	}
	body, err := encode(ev, source, t, d)
	if err != nil {
		return Event{}, err
	}
	ev.Body = body
	return ev, nil
}

// NewRemoved builds export.removed for an export absent from a complete listing.
// prev and prevAt are the last status the snapshot had and that status's timestamp
// (unix nanoseconds, 0 when unknown); export is the last known object, or nil.
func NewRemoved(source, uuid, prev string, prevAt int64, observedAt time.Time) (Event, error) {
	ev := Event{
		ID:         ID(uuid, "removed", fmt.Sprintf("%s@%d", prev, prevAt)),
		Type:       TypeRemoved,
		Subject:    uuid,
		Status:     "removed",
		DetectedAt: observedAt,
	}
	d := ExportData{Status: "removed", ObservedAt: observedAt.UTC().Format(rfc3339),
		Export: json.RawMessage(fmt.Sprintf(`{"uuid":%q,"status":%q}`, uuid, prev))}
	if prev != "" {
		d.PreviousStatus = &prev
	}
	body, err := encode(ev, source, observedAt, d)
	if err != nil {
		return Event{}, err
	}
	ev.Body = body
	return ev, nil
}

// NewBridge builds a bridge.* event (poll_failing, poll_recovered, sink_failing,
// sink_recovered). since is the start of the failing period; its value (and d.Sink, for
// a sink's health) makes the id stable for that period.
func NewBridge(source, typ string, d BridgeData, since, observedAt time.Time) (Event, error) {
	status := strings.TrimPrefix(typ, "bridge.")
	key := "bridge"
	if d.Sink != "" {
		key += "/" + d.Sink
	}
	ev := Event{
		ID:         ID(key, status, since.UTC().Format(rfc3339)),
		Type:       typ,
		Status:     status,
		DetectedAt: observedAt,
	}
	d.Since = since.UTC().Format(rfc3339)
	d.ObservedAt = observedAt.UTC().Format(rfc3339)
	body, err := encode(ev, source, observedAt, d)
	if err != nil {
		return Event{}, err
	}
	ev.Body = body
	return ev, nil
}

func encode(ev Event, source string, t time.Time, data any) ([]byte, error) {
	db, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode event %s data: %w", ev.ID, err)
	}
	ce := CloudEvent{
		SpecVersion:     "1.0",
		ID:              ev.ID,
		Source:          source,
		Type:            ev.CEType(),
		Subject:         ev.Subject,
		Time:            t.Format(rfc3339),
		DataContentType: "application/json",
		Data:            db,
	}
	b, err := json.Marshal(ce)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	return b, nil
}

// Decode parses an encoded event body. Sinks that render the event (Slack) use it.
func Decode(body []byte) (*CloudEvent, error) {
	var ce CloudEvent
	if err := json.Unmarshal(body, &ce); err != nil {
		return nil, fmt.Errorf("decode cloudevent: %w", err)
	}
	if ce.ID == "" || ce.Type == "" {
		return nil, fmt.Errorf("decode cloudevent: missing id or type")
	}
	return &ce, nil
}

// ExportOf decodes the export object carried by an export.* event body.
func ExportOf(ce *CloudEvent) (*ExportData, *plugchoice.Export, error) {
	var d ExportData
	if err := json.Unmarshal(ce.Data, &d); err != nil {
		return nil, nil, fmt.Errorf("decode event %s data: %w", ce.ID, err)
	}
	var exp plugchoice.Export
	if len(d.Export) > 0 {
		if err := json.Unmarshal(d.Export, &exp); err != nil {
			return nil, nil, fmt.Errorf("decode event %s export: %w", ce.ID, err)
		}
	}
	return &d, &exp, nil
}
