package route_test

import (
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/route"
)

func exportEvent(t *testing.T, typ, status string, rows *int64, subj *plugchoice.Subject) event.Event {
	t.Helper()
	done := "2026-11-28T10:05:00Z"
	e := plugchoice.Export{UUID: "u-1", Type: typ, Status: status, RowCount: rows, RequestedAt: "2026-11-28T10:00:00Z", CompletedAt: &done, Subject: subj}
	ev, err := event.NewExport("https://api/exports", "processing", &e, time.Date(2026, 11, 28, 10, 5, 3, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestDecide(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	site12 := &plugchoice.Subject{Type: "site", ID: 12, Label: "Site A"}
	ready := exportEvent(t, "sessions", "ready", n(12410), site12)
	emptyReady := exportEvent(t, "meter values", "ready", nil, nil)
	bridge, err := event.NewBridge("https://api/exports", event.TypePollFailing, event.BridgeData{}, time.Now(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		events     string
		match      route.Match
		when       string
		ev         event.Event
		want       bool
		wantReason string
		wantErr    bool
	}{
		{name: "all", events: "*", ev: ready, want: true},
		{name: "status not in filter", events: "failed", ev: ready, wantReason: `events "failed" does not include export.ready`},
		{name: "type matches", events: "*", match: route.Match{Types: []string{"other", "sessions"}}, ev: ready, want: true},
		{name: "type does not match", events: "*", match: route.Match{Types: []string{"sessions"}}, ev: emptyReady, wantReason: "match.types"},
		{name: "subject id matches", events: "ready", match: route.Match{SubjectTypes: []string{"site"}, SubjectIDs: []int64{12, 14}}, ev: ready, want: true},
		{name: "no subject", events: "ready", match: route.Match{SubjectIDs: []int64{12}}, ev: emptyReady, wantReason: "match.subject_ids"},
		{name: "when true", events: "*", when: "export.row_count > 1000 && event.status == 'ready'", ev: ready, want: true},
		{name: "when false", events: "*", when: "export.row_count > 100000", ev: ready, wantReason: "is false"},
		{name: "when on a null is no match and an error", events: "*", when: "export.row_count > 0", ev: emptyReady, wantReason: "failed", wantErr: true},
		{name: "when nil-safe", events: "*", when: "export.row_count != nil && export.row_count > 0", ev: emptyReady, wantReason: "is false"},
		{name: "bridge events skip match and when", events: "bridge", match: route.Match{Types: []string{"sessions"}}, when: "export.row_count > 0", ev: bridge, want: true},
		{name: "bridge not wanted", events: "ready", ev: bridge, wantReason: "does not include bridge.poll_failing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := route.New(sinks.MustFilter(tt.events), tt.match, tt.when)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			got, reason, err := sel.Decide(route.NewInput(tt.ev))
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("Decide = %v, %q, %v; want %v (error %v)", got, reason, err, tt.want, tt.wantErr)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason %q lacks %q", reason, tt.wantReason)
			}
		})
	}
}

func TestWhenIsCheckedAtStart(t *testing.T) {
	tests := []struct{ when, want string }{
		{"evnt.status == 'ready'", "unknown name evnt"},
		{"export.row_cout > 0", "unknown field export.row_cout"},
		{"export.subject.lable == 'A'", "unknown field export.subject.lable"},
		{"event.stauts == 'ready'", "unknown field event.stauts"},
		{"export.row_count >", "unexpected token"},
		{"export.type", "on a sample ready export"},
	}
	for _, tt := range tests {
		_, err := route.New(sinks.MustFilter("*"), route.Match{}, tt.when)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(when %q) = %v, want an error containing %q", tt.when, err, tt.want)
		}
	}
}
