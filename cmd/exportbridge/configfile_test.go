package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/slack-go/slack/slacktest"

	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// slackFake is slack-go's slacktest server with chat.postMessage and chat.update
// handlers that record every message, per channel: the cmd tests' one fake Slack.
type slackFake struct {
	URL   string
	mu    sync.Mutex
	msg   map[string][]string // channel -> "post <text>" / "reply <text>" / "update <text>"
	all   []string            // every message's text and blocks, in arrival order
	times []time.Time         // when each of all arrived
	n     int
}

func newSlackFake(t *testing.T) *slackFake {
	t.Helper()
	f := &slackFake{msg: map[string][]string{}}
	record := func(op string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			ch, kind := r.Form.Get("channel"), op
			if op == "post" && r.Form.Get("thread_ts") != "" {
				kind = "reply"
			}
			f.mu.Lock()
			f.n++
			ts := fmt.Sprintf("1700000000.%06d", f.n)
			if op == "update" {
				ts = r.Form.Get("ts")
			}
			f.msg[ch] = append(f.msg[ch], kind+" "+r.Form.Get("text"))
			f.all = append(f.all, r.Form.Get("text")+"\n"+r.Form.Get("blocks"))
			f.times = append(f.times, time.Now())
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": ch, "ts": ts})
		}
	}
	s := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", record("post"))
		c.Handle("/chat.update", record("update"))
	})
	s.Start()
	t.Cleanup(s.Stop)
	f.URL = s.GetAPIURL()
	return f
}

// find returns the first message whose text or blocks contain sub, and when it came.
func (f *slackFake) find(sub string) (string, time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, m := range f.all {
		if strings.Contains(m, sub) {
			return m, f.times[i], true
		}
	}
	return "", time.Time{}, false
}

func (f *slackFake) messages(channel string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.msg[channel])
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFileSinksGetOnlyTheirEvents runs the binary with a config file of two Slack
// bot sinks on different channels, two webhooks with their own secrets (each verified
// with its own key) and a NATS sink with its own prefix: each gets exactly the events its
// filter asks for.
func TestConfigFileSinksGetOnlyTheirEvents(t *testing.T) {
	sim, apiURL := newSim(t, simToken)
	slack := newSlackFake(t)
	warehouse, tickets := newHook(t), newHook(t)
	ns, err := natsembed.Start(natsembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var natsMu sync.Mutex
	var subjects []string
	if _, err := nc.Subscribe("acme.exports.>", func(m *natsgo.Msg) {
		natsMu.Lock()
		subjects = append(subjects, m.Subject)
		natsMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	secretDir := t.TempDir()
	whFile := filepath.Join(secretDir, "warehouse-whsec")
	if err := os.WriteFile(whFile, []byte(warehouse.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := writeConfig(t, fmt.Sprintf(`
sinks:
  - name: ops-alerts
    kind: slack
    events: [failed]
    slack: {token: "${E2E_SLACK_TOKEN}", channel: "#ops", api_url: %q}
  - name: data
    kind: slack
    events: [ready]
    match: {types: [sessions]}
    slack: {token: "${E2E_SLACK_TOKEN}", channel: "#data", api_url: %q}
  - name: warehouse
    kind: webhook
    events: [ready]
    webhook: {url: %q, secret_file: %q}
  - name: tickets
    kind: webhook
    events: [failed]
    when: 'export.error_message != nil'
    webhook: {url: %q, secret: "${E2E_TICKETS_SECRET}"}
  - name: bus
    kind: nats
    nats: {url: %q, subject_prefix: acme.exports}
`, slack.URL, slack.URL, warehouse.URL, whFile, tickets.URL, ns.ClientURL()))

	env := baseEnv(apiURL, t.TempDir())
	env["EXPORTBRIDGE_CONFIG_FILE"] = cfgPath
	env["E2E_SLACK_TOKEN"] = "xoxb-e2e-config-file"
	env["E2E_TICKETS_SECRET"] = tickets.Secret
	p := start(t, env, "run")
	p.WaitPolls(1, 30*time.Second) // the baseline: an empty account

	sess := plugchoice.Export{UUID: "11111111-0000-4000-8000-000000000001", Type: "sessions", Status: plugchoice.StatusPending}
	meter := plugchoice.Export{UUID: "11111111-0000-4000-8000-000000000002", Type: "meter values", Status: plugchoice.StatusPending}
	sim.Add(sess)
	sim.Add(meter)
	p.WaitPolls(p.Polls()+2, 30*time.Second)
	sim.SetStatus(sess.UUID, plugchoice.StatusReady)
	sim.SetStatus(meter.UUID, plugchoice.StatusFailed)

	bridgetest.WaitFor(t, 30*time.Second, "every sink's events", func() bool {
		natsMu.Lock()
		n := len(subjects)
		natsMu.Unlock()
		return len(warehouse.deliveries()) >= 1 && len(tickets.deliveries()) >= 1 && n >= 4 &&
			len(slack.messages("#ops")) >= 1 && len(slack.messages("#data")) >= 1
	})
	p.WaitPolls(p.Polls()+2, 30*time.Second) // anything misrouted would arrive meanwhile

	check := func(sink string, got []received, wantSubject, wantType string) {
		t.Helper()
		if len(got) != 1 || got[0].Subject != wantSubject || got[0].Type != wantType {
			t.Errorf("%s got %+v, want exactly %s of %s", sink, got, wantType, wantSubject)
		}
	}
	check("warehouse", warehouse.deliveries(), sess.UUID, "com.plugchoice.export.ready")
	check("tickets", tickets.deliveries(), meter.UUID, "com.plugchoice.export.failed")
	if ops := slack.messages("#ops"); len(ops) != 2 || !strings.HasPrefix(ops[0], "post ") || !strings.Contains(ops[0], "meter values") || !strings.HasPrefix(ops[1], "reply ") {
		t.Errorf("#ops got %q, want one post about the failed meter values export and its thread reply", ops)
	}
	if data := slack.messages("#data"); len(data) != 1 || !strings.Contains(data[0], "ready") {
		t.Errorf("#data got %q, want one post about the ready sessions export", data)
	}
	natsMu.Lock()
	defer natsMu.Unlock()
	slices.Sort(subjects)
	want := []string{"acme.exports.failed.meter_values", "acme.exports.pending.meter_values", "acme.exports.pending.sessions", "acme.exports.ready.sessions"}
	if !slices.Equal(subjects, want) {
		t.Errorf("NATS subjects %v, want %v", subjects, want)
	}
	if strings.Contains(p.Stderr.String(), "xoxb-e2e-config-file") || strings.Contains(p.Stderr.String(), tickets.Secret) {
		t.Error("a secret from the config file was logged")
	}
}

// TestConfigFileErrors: every kind of mistake in the file is exit 2 with the file's
// line:column and the key path.
func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key in a block", "sinks:\n  - name: a\n    kind: webhook\n    webhook:\n      url: https://x.example/h\n      timeot: 3s\n",
			[]string{":6:7 sinks[0].webhook.timeot:", `unknown field "timeot"`}},
		{"wrong type", "sinks:\n  - name: a\n    kind: webhook\n    webhook:\n      url: https://x.example/h\n      concurrency: four\n",
			[]string{":6:20 sinks[0].webhook.concurrency:", "got string, expected a whole number"}},
		{"bad value named by path", "sinks:\n  - name: a\n    kind: webhook\n    webhook:\n      url: https://x.example/h\n      timeout: -1s\n",
			[]string{":6:7 sinks[0].webhook.timeout", "not positive"}},
		{"missing name", "sinks:\n  - kind: stdout\n", []string{":2:5 sinks[0]", "name is missing"}},
		{"bad name", "sinks:\n  - name: Ops Alerts\n    kind: stdout\n", []string{":2:11 sinks[0].name", "not a sink name"}},
		{"duplicate name", "sinks:\n  - name: a\n    kind: stdout\n  - name: a\n    kind: stdout\n", []string{":4:5 sinks[1].name", "duplicate sink name"}},
		{"unknown kind", "sinks:\n  - name: a\n    kind: email\n", []string{"sinks[0].kind", `"email" is not a sink kind`}},
		{"block of another kind", "sinks:\n  - name: a\n    kind: slack\n    webhook: {url: https://x.example/h}\n", []string{":4:5 sinks[0].webhook", "unknown key"}},
		{"when typo", "sinks:\n  - name: a\n    kind: stdout\n    when: 'evnt.status == \"ready\"'\n", []string{":4:5 sinks[0].when:", "sink a", "unknown name evnt"}},
		{"when unknown field", "sinks:\n  - name: a\n    kind: stdout\n    when: 'export.row_cout > 0'\n", []string{"sinks[0].when", "unknown field export.row_cout"}},
		{"bad event name", "sinks:\n  - name: a\n    kind: stdout\n    events: [ready, done!]\n", []string{"sinks[0].events", "bad name"}},
		{"not a list", "sinks: stdout\n", []string{":1:8 sinks", "expected a list"}},
		{"top-level typo", "sink:\n  - name: a\n", []string{":1:1 sink", "unknown key"}},
		{"missing env reference", "sinks:\n  - name: a\n    kind: webhook\n    webhook: {url: https://x.example/h, secret: '${NOT_SET_ANYWHERE}'}\n",
			[]string{"sinks[0].webhook.secret", "NOT_SET_ANYWHERE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv("https://api.example/api/v3", t.TempDir())
			env["EXPORTBRIDGE_CONFIG_FILE"] = writeConfig(t, tt.yaml)
			_, stderr, code := run(t, env, 20*time.Second, "check", "--event", "/dev/null")
			if code != 2 {
				t.Fatalf("exit %d, want 2\n%s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if !strings.Contains(stderr, "config.yaml") {
				t.Errorf("stderr does not name the file:\n%s", stderr)
			}
		})
	}
}

// TestConfigFileRefusesShorthandSinks: a sink is defined in one place.
func TestConfigFileRefusesShorthandSinks(t *testing.T) {
	env := baseEnv("https://api.example/api/v3", t.TempDir())
	env["EXPORTBRIDGE_CONFIG_FILE"] = writeConfig(t, "sinks:\n  - name: a\n    kind: stdout\n")
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = "https://x.example/h"
	env["EXPORTBRIDGE_STDOUT"] = "true"
	_, stderr, code := run(t, env, 20*time.Second, "check", "--event", "/dev/null")
	if code != 2 || !strings.Contains(stderr, "EXPORTBRIDGE_WEBHOOK_URLS: defines a sink, and EXPORTBRIDGE_CONFIG_FILE is set") {
		t.Fatalf("exit %d, want 2 naming EXPORTBRIDGE_WEBHOOK_URLS:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "EXPORTBRIDGE_STDOUT:") {
		t.Errorf("STDOUT is allowed with a config file, but was refused:\n%s", stderr)
	}
}

// TestCheckEventSaysWhy: check --event names, per sink, whether it receives the event and
// which part of its filter said no.
func TestCheckEventSaysWhy(t *testing.T) {
	env := baseEnv("https://api.example/api/v3", t.TempDir())
	env["EXPORTBRIDGE_CONFIG_FILE"] = writeConfig(t, `
sinks:
  - name: everything
    kind: stdout
  - name: failures
    kind: stdout
    events: [failed]
  - name: site-12
    kind: stdout
    match: {subject_types: [site], subject_ids: [12]}
  - name: big
    kind: stdout
    when: 'export.row_count > 1000'
`)
	exp := filepath.Join(t.TempDir(), "export.json")
	os.WriteFile(exp, []byte(`{"uuid":"e-1","type":"sessions","status":"ready","row_count":12,"requested_at":"2026-11-28T10:00:00Z","completed_at":"2026-11-28T10:05:00Z","subject":{"type":"site","id":14,"label":"Site B"}}`), 0o600)
	delete(env, "EXPORTBRIDGE_API_TOKEN") // check --event needs no API
	stdout, stderr, code := run(t, env, 20*time.Second, "check", "--event", exp)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, w := range []string{"everything  yes", "failures    no", `events "failed" does not include export.ready`,
		"site-12     no", "match.subject_ids [12]", "big         no", `when "export.row_count > 1000" is false`, "SINK        KIND"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout)
		}
	}
}

// TestExampleConfigChecks runs check --event on deploy/config.example.yaml, with its
// secret files and environment references provided.
func TestExampleConfigChecks(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, v := range map[string]string{
		"slack-bot": "xoxb-example", "warehouse-whsec": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "nats.creds": "creds",
	} {
		os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600)
	}
	cfg := strings.ReplaceAll(string(raw), "/run/credentials/exportbridge.service", dir)
	env := baseEnv("https://api.example/api/v3", t.TempDir())
	env["EXPORTBRIDGE_CONFIG_FILE"] = writeConfig(t, cfg)
	env["SLACK_BOT_TOKEN"] = "xoxb-from-env"
	env["TICKETS_WEBHOOK_SECRET"] = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	exp := filepath.Join(t.TempDir(), "export.json")
	os.WriteFile(exp, []byte(`{"uuid":"e-1","type":"sessions","status":"failed","error_message":"boom","requested_at":"2026-11-28T10:00:00Z","failed_at":"2026-11-28T10:05:00Z"}`), 0o600)
	stdout, stderr, code := run(t, env, 20*time.Second, "check", "--event", exp)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, w := range []string{"ops-alerts", "data-site-12", "warehouse", "tickets", "bus", "https://etl.example.com/hooks/plugchoice", "channel #ops"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("sink table lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Contains(stdout+stderr, "xoxb-") {
		t.Errorf("a Slack token was printed:\n%s\n%s", stdout, stderr)
	}
}

// regexpLine reports whether some line of s matches the regular expression re.
func regexpLine(s, re string) bool {
	r := regexp.MustCompile(re)
	for _, l := range strings.Split(s, "\n") {
		if r.MatchString(l) {
			return true
		}
	}
	return false
}

func bridgetestTail(s string) string { return bridgetest.Tail(s, 3000) }

// TestLiteralSecretIsWarned: a secret written into the file works, and check warns
// about it without printing it.
func TestLiteralSecretIsWarned(t *testing.T) {
	env := baseEnv("https://api.example/api/v3", t.TempDir())
	env["EXPORTBRIDGE_CONFIG_FILE"] = writeConfig(t, "sinks:\n  - name: ops\n    kind: slack\n    slack: {token: xoxb-literal-in-file, channel: \"#ops\"}\n")
	stdout, stderr, code := run(t, env, 20*time.Second, "check", "--event", "/dev/null")
	if code != 2 { // /dev/null is no event: the settings were fine, the file was not
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "sinks[0].slack.token holds a literal secret: prefer token_file or ${ENV_NAME}") {
		t.Errorf("no warning about the literal secret:\n%s", stderr)
	}
	if strings.Contains(stdout+stderr, "xoxb-literal-in-file") {
		t.Errorf("the literal secret was printed:\n%s\n%s", stdout, stderr)
	}
}
