package event_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
)

const src = "https://app.plugchoice.com/api/v3/exports"

var at = time.Date(2026, 11, 28, 10, 15, 4, 0, time.UTC)

func TestSanitizeToken(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "_",
		"sessions":         "sessions",
		"Meter Values":     "meter_values",
		"invoices/monthly": "invoices_monthly",
		"a.b*c>d":          "a_b_c_d",
		"ready-2_x":        "ready-2_x",
		"Zählerstände":     "z_hlerst_nde",
	} {
		if got := event.SanitizeToken(in); got != want {
			t.Errorf("SanitizeToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTimeAttribute(t *testing.T) {
	s := func(v string) *string { return &v }
	tests := []struct {
		name string
		exp  plugchoice.Export
		want string
	}{
		{"pending: requested_at", plugchoice.Export{UUID: "u", Status: "pending", RequestedAt: "2026-11-28T10:00:00Z"}, "2026-11-28T10:00:00Z"},
		{"ready: completed_at", plugchoice.Export{UUID: "u", Status: "ready", RequestedAt: "2026-11-28T10:00:00Z", CompletedAt: s("2026-11-28T10:04:12Z")}, "2026-11-28T10:04:12Z"},
		{"failed: failed_at", plugchoice.Export{UUID: "u", Status: "failed", RequestedAt: "2026-11-28T10:00:00Z", FailedAt: s("2026-11-28T10:01:00Z")}, "2026-11-28T10:01:00Z"},
		{"processing: observed_at", plugchoice.Export{UUID: "u", Status: "processing", RequestedAt: "2026-11-28T10:00:00Z"}, "2026-11-28T10:15:04Z"},
		{"ready without completed_at: observed_at", plugchoice.Export{UUID: "u", Status: "ready", RequestedAt: "2026-11-28T10:00:00Z"}, "2026-11-28T10:15:04Z"},
		{"unparseable: observed_at", plugchoice.Export{UUID: "u", Status: "pending", RequestedAt: "yesterday"}, "2026-11-28T10:15:04Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := event.NewExport(src, "", &tt.exp, at)
			if err != nil {
				t.Fatal(err)
			}
			ce, err := event.Decode(ev.Body)
			if err != nil {
				t.Fatal(err)
			}
			if ce.Time != tt.want {
				t.Errorf("time = %s, want %s", ce.Time, tt.want)
			}
			if ce.ID != ev.ID || ce.Type != "com.plugchoice.export."+tt.exp.Status || ce.Subject != "u" || ce.Source != src {
				t.Errorf("envelope = %+v", ce)
			}
		})
	}
}

func TestBridgeAndRemovedEvents(t *testing.T) {
	since := at.Add(-5 * time.Minute)
	f1, _ := event.NewBridge(src, event.TypePollFailing, event.BridgeData{ErrorKind: "auth", Message: "Unauthenticated.", Failures: 5}, since, at)
	f2, _ := event.NewBridge(src, event.TypePollFailing, event.BridgeData{ErrorKind: "auth", Failures: 6}, since, at.Add(time.Minute))
	if f1.ID != f2.ID {
		t.Error("poll_failing of one failing period must keep its id")
	}
	if f1.Subject != "" || f1.OrderKey() != "bridge" || !f1.IsBridge() || f1.Status != "poll_failing" {
		t.Errorf("bridge event = %+v", f1)
	}
	ce, _ := event.Decode(f1.Body)
	if ce.Subject != "" || !strings.Contains(string(ce.Data), `"since":"2026-11-28T10:10:04Z"`) {
		t.Errorf("bridge envelope: %s", f1.Body)
	}
	r, err := event.NewRemoved(src, "u1", "ready", 42, at)
	if err != nil {
		t.Fatal(err)
	}
	d, exp, err := event.ExportOf(mustDecode(t, r.Body))
	if err != nil || d.Status != "removed" || *d.PreviousStatus != "ready" || exp.UUID != "u1" {
		t.Errorf("removed: %+v %+v %v", d, exp, err)
	}
}

func mustDecode(t *testing.T, b []byte) *event.CloudEvent {
	t.Helper()
	ce, err := event.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return ce
}

func TestDecodeRejects(t *testing.T) {
	for _, b := range []string{``, `{`, `[]`, `{"id":"x"}`, `{"type":"t"}`} {
		if _, err := event.Decode([]byte(b)); err == nil {
			t.Errorf("Decode(%q) succeeded", b)
		}
	}
	if _, err := event.Decode(json.RawMessage(`{"id":"x","type":"t"}`)); err != nil {
		t.Errorf("minimal event rejected: %v", err)
	}
}
