package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/exportbridge/exportbridge/store"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestDeadEndpointDelaysNoOtherSink: one webhook endpoint hangs on every request; the
// other webhook endpoint and the stdout sink still get every event, the healthy endpoint
// each within 1 s of its detection (the SPEC's bound; a dead endpoint that held it up
// would cost a WEBHOOK_TIMEOUT of 2 s per attempt), while the hanging one has delivered
// nothing. Afterwards /metrics reports the cycle and the failures.
func TestDeadEndpointDelaysNoOtherSink(t *testing.T) {
	const maxDelay = time.Second
	sim, apiURL := newSim(t, simToken)
	uuids := sim.AddN(8, "processing")
	dead, good := newHook(t), newHook(t)
	release := make(chan struct{})
	dead.SetDelay(func() time.Duration {
		select {
		case <-release:
		case <-time.After(time.Minute):
		}
		return 0
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = dead.URL + "," + good.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = dead.Secret + "," + good.Secret
	env["EXPORTBRIDGE_WEBHOOK_TIMEOUT"] = "2s"
	env["EXPORTBRIDGE_STDOUT"] = "true"
	env["EXPORTBRIDGE_LISTEN_ADDR"] = bridgetest.FreeAddr(t)
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())
	for _, u := range uuids {
		sim.SetStatus(u, "ready")
	}
	wants := expectedSince(sim, baseline)
	bridgetest.WaitFor(t, 60*time.Second, "every event at the healthy endpoint and on stdout", func() bool {
		return distinctIDs(good.deliveries()) >= len(wants) && len(stdoutEvents(t, p)) >= len(wants)
	})
	checkDelivered(t, good.deliveries(), wants)
	if n := len(dead.deliveries()); n != 0 {
		t.Fatalf("the hanging endpoint delivered %d events", n)
	}
	delays := delaysSinceDetection(good.deliveries())
	if len(delays) < len(wants) {
		t.Fatalf("%d delivery delays recorded at the healthy endpoint, want %d", len(delays), len(wants))
	}
	var worst time.Duration
	for id, d := range delays {
		worst = max(worst, d)
		if d > maxDelay {
			t.Errorf("event %s reached the healthy endpoint %v after its detection, want at most %v while the other endpoint hangs", id, d.Round(time.Millisecond), maxDelay)
		}
	}
	t.Logf("healthy endpoint: worst delay since detection %v over %d events", worst.Round(time.Millisecond), len(delays))

	// The hanging endpoint's first attempt times out after WEBHOOK_TIMEOUT: a retry.
	var metrics string
	bridgetest.WaitFor(t, 30*time.Second, "a failed delivery in /metrics", func() bool {
		resp, err := http.Get("http://" + env["EXPORTBRIDGE_LISTEN_ADDR"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(body)
		return strings.Contains(metrics, `exportbridge_deliveries_total{outcome="retry",sink="webhook-1"}`)
	})
	for _, m := range []string{
		`exportbridge_polls_total{account="default",outcome="ok"}`,
		`exportbridge_api_requests_total{account="default",code="2xx"}`,
		`exportbridge_exports_tracked{account="default"} 8`,
		`exportbridge_events_detected_total{type="export.ready"} 8`,
		`exportbridge_deliveries_total{outcome="delivered",sink="webhook-2"} 8`,
		`exportbridge_deliveries_total{outcome="retry",sink="webhook-1"}`,
		`exportbridge_delivery_latency_seconds_count{sink="stdout"} 8`,
		`exportbridge_outbox_depth{sink="webhook-1"}`,
		`exportbridge_dead_letter_depth{sink="webhook-2"} 0`,
		`exportbridge_last_successful_poll_timestamp_seconds`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(metrics, "exportbridge_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestStateJSON: `state --json` prints the store statistics as one JSON document.
func TestStateJSON(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(dir, store.Options{}) // state reads a store; it never makes one
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	stdout, stderr, code := run(t, map[string]string{"EXPORTBRIDGE_STATE_DIR": dir}, 30*time.Second, "state", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var st struct {
		Exports     *int           `json:"exports"`
		Outbox      map[string]int `json:"outbox"`
		Initialized *bool          `json:"initialized"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || st.Exports == nil || st.Initialized == nil || st.Outbox == nil {
		t.Fatalf("state --json = %q (%v)", stdout, err)
	}
}

// TestSlackCheckAndSendTest: check and send-test against slack-go's slacktest server, in
// bot mode: a healthy workspace, and a channel the bot cannot post to.
func TestSlackCheckAndSendTest(t *testing.T) {
	_, apiURL := newSim(t, simToken)
	healthy := slacktest.NewTestServer()
	healthy.Start()
	t.Cleanup(healthy.Stop)
	broken := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":false,"error":"not_in_channel"}`)
		})
	})
	broken.Start()
	t.Cleanup(broken.Stop)

	tests := []struct {
		name     string
		api      string
		args     []string
		wantCode int
		want     string
	}{
		{"check healthy", healthy.GetAPIURL(), []string{"check", "--timeout", "5s"}, 0, "authenticated as"},
		{"send-test healthy", healthy.GetAPIURL(), []string{"send-test", "--sink", "slack"}, 0, "slack: sent"},
		{"send-test not in channel", broken.GetAPIURL(), []string{"send-test", "--sink", "slack"}, 1, "/invite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv(apiURL, t.TempDir())
			env["EXPORTBRIDGE_SLACK_TOKEN"] = "xoxb-test-token-123"
			env["EXPORTBRIDGE_SLACK_CHANNEL"] = "#exports"
			env["EXPORTBRIDGE_SLACK_API_URL"] = tt.api
			stdout, stderr, code := run(t, env, 60*time.Second, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			if out := stdout + stderr; !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
			if strings.Contains(stdout+stderr, "xoxb-test-token-123") {
				t.Error("the Slack token was printed")
			}
		})
	}
}
