package natsstore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/store"
)

// Message headers of outbox and dead-letter messages. Values that come from the API or
// from errors are JSON-encoded (json.Marshal escapes control characters, which a header
// cannot hold). The data of a message is the event's CloudEvent body.
const (
	hdrEvent    = "Exportbridge-Event"    // JSON eventMeta
	hdrEnqueued = "Exportbridge-Enqueued" // RFC 3339 time
	hdrAttempt  = "Exportbridge-Attempt"  // JSON attempt (dead letters, moved records)
	hdrSeq      = "Exportbridge-Seq"      // a dead letter's outbox sequence
)

type eventMeta struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Subject    string    `json:"subject,omitempty"`
	Status     string    `json:"status"`
	ExportType string    `json:"export_type,omitempty"`
	DetectedAt time.Time `json:"detected_at"`
}

// attempt is a record's delivery state: the value of att.<sink>.<seq> keys and of the
// Exportbridge-Attempt header.
type attempt struct {
	Attempts       int       `json:"attempts"`
	FirstAttemptAt time.Time `json:"first,omitzero"`
	NextAttemptAt  time.Time `json:"next,omitzero"`
	LastError      string    `json:"error,omitempty"`
	LastStatus     int       `json:"status,omitempty"`
	DeadAt         time.Time `json:"dead,omitzero"`
}

func attemptOf(r *store.Record) attempt {
	return attempt{
		Attempts: r.Attempts, FirstAttemptAt: r.FirstAttemptAt, NextAttemptAt: r.NextAttemptAt,
		LastError: r.LastError, LastStatus: r.LastStatus, DeadAt: r.DeadAt,
	}
}

func (a attempt) apply(r *store.Record) {
	r.Attempts, r.FirstAttemptAt, r.NextAttemptAt = a.Attempts, a.FirstAttemptAt, a.NextAttemptAt
	r.LastError, r.LastStatus, r.DeadAt = a.LastError, a.LastStatus, a.DeadAt
}

func (a attempt) zero() bool { return a == attempt{} }

// recordMsg is the message of r on subject. withAttempt adds r's attempt state.
func recordMsg(subject string, r *store.Record, withAttempt bool) (*nats.Msg, error) {
	ev := &r.Event
	meta, err := json.Marshal(eventMeta{
		ID: ev.ID, Type: ev.Type, Subject: ev.Subject, Status: ev.Status,
		ExportType: ev.ExportType, DetectedAt: ev.DetectedAt,
	})
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	m := nats.NewMsg(subject)
	m.Data = ev.Body
	m.Header.Set(hdrEvent, string(meta))
	m.Header.Set(hdrEnqueued, r.EnqueuedAt.UTC().Format(time.RFC3339Nano))
	if a := attemptOf(r); withAttempt && !a.zero() {
		v, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("encode attempt state of event %s: %w", ev.ID, err)
		}
		m.Header.Set(hdrAttempt, string(v))
	}
	return m, nil
}

// decodeRecord reads a message of the outbox or DLQ stream. The record's Seq is the
// outbox sequence: the message's for the outbox, the Exportbridge-Seq header's for a
// dead letter.
func decodeRecord(sink string, seq uint64, h nats.Header, data []byte) (store.Record, error) {
	rec := store.Record{Seq: seq, Sink: sink}
	var meta eventMeta
	if err := json.Unmarshal([]byte(h.Get(hdrEvent)), &meta); err != nil {
		return store.Record{}, fmt.Errorf("record %s/%d: header %s: %w", sink, seq, hdrEvent, err)
	}
	rec.Event = event.Event{
		ID: meta.ID, Type: meta.Type, Subject: meta.Subject, Status: meta.Status,
		ExportType: meta.ExportType, DetectedAt: meta.DetectedAt,
	}
	if len(data) > 0 {
		rec.Event.Body = append([]byte(nil), data...)
	}
	if v := h.Get(hdrEnqueued); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return store.Record{}, fmt.Errorf("record %s/%d: header %s: %w", sink, seq, hdrEnqueued, err)
		}
		rec.EnqueuedAt = t
	}
	if v := h.Get(hdrAttempt); v != "" {
		var a attempt
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			return store.Record{}, fmt.Errorf("record %s/%d: header %s: %w", sink, seq, hdrAttempt, err)
		}
		a.apply(&rec)
	}
	return rec, nil
}

func decodeMsg(prefix string, m jetstream.Msg) (store.Record, uint64, error) {
	md, err := m.Metadata()
	if err != nil {
		return store.Record{}, 0, fmt.Errorf("message metadata: %w", err)
	}
	sink, err := sinkOf(m.Subject(), prefix)
	if err != nil {
		return store.Record{}, 0, err
	}
	seq := md.Sequence.Stream
	if v := m.Headers().Get(hdrSeq); v != "" {
		if seq, err = strconv.ParseUint(v, 10, 64); err != nil {
			return store.Record{}, 0, fmt.Errorf("dead letter %d: header %s: %w", md.Sequence.Stream, hdrSeq, err)
		}
	}
	rec, err := decodeRecord(sink, seq, m.Headers(), m.Data())
	return rec, md.Sequence.Stream, err
}

// Snapshot entries: "<at> <missed> <status>".
func encodeEntry(e diff.Entry) []byte {
	b := strconv.AppendInt(nil, e.At, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(e.Missed), 10)
	b = append(b, ' ')
	return append(b, e.Status...)
}

func decodeEntry(v []byte, intern map[string]string) (diff.Entry, error) {
	at, rest, ok1 := strings.Cut(string(v), " ")
	missed, status, ok2 := strings.Cut(rest, " ")
	a, err1 := strconv.ParseInt(at, 10, 64)
	m, err2 := strconv.ParseUint(missed, 10, 8)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return diff.Entry{}, fmt.Errorf("snapshot entry %q: expected \"<at> <missed> <status>\"", v)
	}
	if st, ok := intern[status]; ok {
		status = st
	} else {
		intern[status] = status
	}
	return diff.Entry{At: a, Missed: uint8(m), Status: status}, nil
}
