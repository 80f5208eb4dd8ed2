package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/exportbridge/exportbridge/metrics"
)

func TestCodeClass(t *testing.T) {
	for code, want := range map[int]string{0: "error", 200: "2xx", 204: "2xx", 301: "3xx", 404: "4xx", 429: "429", 503: "5xx", 999: "other"} {
		if got := metrics.CodeClass(code); got != want {
			t.Errorf("CodeClass(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.APIRequest(200, time.Second)
	m.Delivery("s", "delivered", time.Second)
	m.Depths("s", 1, 2)
	m.Connected("s", true)
	m.Up("s", false)
	m.Poll("ok")
	m.SetExports(3)
	m.Event("export.ready")
	m.RetryAfterUntil(time.Now())
}

func TestRegisteredNamesAndBoundedLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Event("export.weird_status_from_api")
	m.Event("export.ready")
	m.Delivery("webhook-1", "delivered", 3*time.Millisecond)
	m.APIRequest(429, time.Millisecond)
	m.Up("webhook-1", false)
	m.Event("bridge.sink_failing")
	if got := testutil.ToFloat64(m.EventsDetected.WithLabelValues("bridge.sink_failing")); got != 1 {
		t.Errorf("bridge.sink_failing counted as %v, want 1 under its own label", got)
	}
	if got := testutil.ToFloat64(m.EventsDetected.WithLabelValues("export.other")); got != 1 {
		t.Errorf("unknown statuses fold into export.other: %v", got)
	}
	names, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, mf := range names {
		all = append(all, mf.GetName())
	}
	joined := strings.Join(all, " ")
	for _, want := range []string{"exportbridge_events_detected_total", "exportbridge_deliveries_total",
		"exportbridge_delivery_latency_seconds", "exportbridge_api_requests_total", "exportbridge_api_retry_after_until_timestamp_seconds",
		"exportbridge_sink_up", "go_goroutines", "process_open_fds"} {
		if !strings.Contains(joined, want) {
			t.Errorf("registry lacks %s", want)
		}
	}
}
