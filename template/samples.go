package template

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
)

// Short names of the sink health events (SPEC, Events). The event package builds the
// poll_* ones; the sample data of the sink_* ones follows the SPEC's field list.
const (
	TypeSinkFailing   = "bridge.sink_failing"
	TypeSinkRecovered = "bridge.sink_recovered"
)

const (
	sampleSource = "https://app.plugchoice.com/api/v3/exports"
	sampleUUID   = "9b2c6a1e-5d1f-4c3e-8a7b-0123456789ab"
)

var sampleObserved = time.Date(2026, 11, 28, 10, 15, 20, 0, time.UTC)

// sampleExport is the export object of a sample event of that status, as the API would
// return it (an unknown field included, as the API may add some).
func sampleExport(status string) string {
	base := `"uuid":"` + sampleUUID + `","type":"sessions","status":"` + status + `",` +
		`"requested_at":"2026-11-28T10:11:00Z",` +
		`"subject":{"type":"site","id":12,"label":"Acme Depot Rotterdam"},"region":"eu-west"`
	switch status {
	case plugchoice.StatusReady:
		return `{` + base + `,"filename":"sessions-2026-11.csv","file_size":3200000,"row_count":1234567,` +
			`"error_message":null,"completed_at":"2026-11-28T10:15:12Z","failed_at":null,` +
			`"download_url":"https://app.plugchoice.com/api/v3/exports/` + sampleUUID + `/download?expires=1796000000&signature=0123abcd"}`
	case plugchoice.StatusFailed:
		return `{` + base + `,"filename":null,"file_size":null,"row_count":null,` +
			`"error_message":"SQLSTATE[HY000]: General error: 2006 MySQL server has gone away",` +
			`"completed_at":null,"failed_at":"2026-11-28T10:12:30Z","download_url":null}`
	default:
		return `{` + base + `,"filename":null,"file_size":null,"row_count":null,"error_message":null,` +
			`"completed_at":null,"failed_at":null,"download_url":null}`
	}
}

// previous status of each sample, "" for a new export.
var samplePrev = map[string]string{
	plugchoice.StatusPending:    "",
	plugchoice.StatusProcessing: plugchoice.StatusPending,
	plugchoice.StatusReady:      plugchoice.StatusProcessing,
	plugchoice.StatusFailed:     plugchoice.StatusProcessing,
	plugchoice.StatusCancelled:  plugchoice.StatusPending,
	"archived":                  plugchoice.StatusReady, // a status the bridge does not know
}

// Samples returns a sample event of every export status (an unknown one included, and
// export.removed) and of every bridge.* event, in a stable order. Check renders against
// all of them; `template render` shows one.
func Samples() []event.Event {
	out := make([]event.Event, 0, len(sampleTypes))
	for _, typ := range sampleTypes {
		out = append(out, samples[typ])
	}
	return out
}

// Sample returns the sample event of a type: a short name ("export.ready",
// "bridge.poll_failing") or a status ("ready").
func Sample(typ string) (event.Event, bool) {
	if e, ok := samples[typ]; ok {
		return e, true
	}
	e, ok := samples["export."+typ]
	return e, ok
}

// SampleTypes lists the short names Sample knows, in a stable order.
func SampleTypes() []string { return append([]string(nil), sampleTypes...) }

var samples, sampleTypes = buildSamples()

func buildSamples() (map[string]event.Event, []string) {
	m := map[string]event.Event{}
	for status, prev := range samplePrev {
		raw := sampleExport(status)
		var exp plugchoice.Export
		if err := json.Unmarshal([]byte(raw), &exp); err != nil {
			panic(fmt.Sprintf("sample export %s: %v", status, err))
		}
		exp.Raw = json.RawMessage(raw)
		e, err := event.NewExport(sampleSource, prev, &exp, sampleObserved)
		if err != nil {
			panic(fmt.Sprintf("sample export %s: %v", status, err))
		}
		m[e.Type] = e
	}
	removed, err := event.NewRemoved(sampleSource, sampleUUID, plugchoice.StatusReady, 0, sampleObserved)
	if err != nil {
		panic(fmt.Sprintf("sample export.removed: %v", err))
	}
	m[removed.Type] = removed

	since := sampleObserved.Add(-3 * time.Minute)
	for typ, d := range map[string]event.BridgeData{
		event.TypePollFailing:   {ErrorKind: "unauthorized", Message: "Unauthenticated.", Failures: 5},
		event.TypePollRecovered: {Failures: 7},
	} {
		e, err := event.NewBridge(sampleSource, typ, d, since, sampleObserved)
		if err != nil {
			panic(fmt.Sprintf("sample %s: %v", typ, err))
		}
		m[typ] = e
	}
	for typ, d := range map[string]map[string]any{
		TypeSinkFailing: {"sink": "warehouse", "kind": "webhook", "destination": "https://etl.example.com/hooks/plugchoice",
			"last_error": "POST https://etl.example.com/hooks/plugchoice: 503 Service Unavailable", "queued": 42},
		TypeSinkRecovered: {"sink": "warehouse", "kind": "webhook", "destination": "https://etl.example.com/hooks/plugchoice",
			"last_error": "", "queued": 0},
	} {
		m[typ] = sinkSample(typ, d, since)
	}

	types := make([]string, 0, len(m))
	for typ := range m {
		types = append(types, typ)
	}
	sort.Strings(types)
	return m, types
}

// sinkSample builds a bridge.sink_* event the way the SPEC describes it.
func sinkSample(typ string, d map[string]any, since time.Time) event.Event {
	status := typ[len("bridge."):]
	d["since"] = since.Format(time.RFC3339Nano)
	d["observed_at"] = sampleObserved.Format(time.RFC3339Nano)
	data, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("sample %s: %v", typ, err))
	}
	ev := event.Event{
		ID:         event.ID("bridge", status+"/"+d["sink"].(string), since.Format(time.RFC3339Nano)),
		Type:       typ,
		Status:     status,
		DetectedAt: sampleObserved,
	}
	body, err := json.Marshal(event.CloudEvent{
		SpecVersion: "1.0", ID: ev.ID, Source: sampleSource, Type: ev.CEType(),
		Time: sampleObserved.Format(time.RFC3339Nano), DataContentType: "application/json", Data: data,
	})
	if err != nil {
		panic(fmt.Sprintf("sample %s: %v", typ, err))
	}
	ev.Body = body
	return ev
}

// Check renders t against every sample event (Samples) as the sink named sink would, so
// that a template that fails on some status fails at start, not at 3 a.m. The error is
// an *Error naming the key, the line and column, and the sample.
func Check(sink string, ts ...*Template) error {
	for _, e := range Samples() {
		var data [2]*Data
		for _, t := range ts {
			if t == nil {
				continue
			}
			d := data[t.mode]
			if d == nil {
				var err error
				if d, err = NewData(e, sink, t.mode); err != nil {
					return fmt.Errorf("template sample %s: %w", e.Type, err)
				}
				data[t.mode] = d
			}
			if _, err := t.Render(d); err != nil {
				if te, ok := err.(*Error); ok {
					c := *te
					c.Sample = e.Type
					return &c
				}
				return err
			}
		}
	}
	return nil
}
