package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// recipeConfig is a config file made of the three recipes of deploy/templates plus a
// signed body_text webhook.
func recipeConfig(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("sinks:\n")
	for _, r := range []string{"teams", "discord", "pagerduty"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "templates", r+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		_, entry, ok := strings.Cut(string(raw), "sinks:\n")
		if !ok {
			t.Fatalf("%s.yaml has no sinks: list", r)
		}
		b.WriteString(entry)
	}
	b.WriteString(`  - name: legacy
    kind: webhook
    webhook:
      url: https://old.example.com/hook?token=QUERYSECRET
      secret: ${LEGACY_WHSEC}
      body_text: "{{ .Event.status }} {{ .Export.uuid }}"
      content_type: text/plain
`)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The recipes' webhook URLs, as their services hand them out: a credential in the query
// (Teams) or the path (Discord), which template render must not print.
const (
	teamsURL   = "https://example.webhook.office.com/workflows/0b5c3b4e7f9a4f3e9a1b2c3d4e5f6a7b/triggers/manual/paths/invoke?api-version=1&sig=T3AMSS1GSECRET"
	discordURL = "https://discord.com/api/webhooks/123456789012345678/D1SC0RDtokenSECRETabcdefghijklmnop_QRSTUV-wxyz"
)

const legacyWhsec = "whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdA=="

// parseRequest splits `template render` output: the request line, headers, body.
func parseRequest(t *testing.T, out string) (line string, h http.Header, body []byte) {
	t.Helper()
	head, b, ok := strings.Cut(out, "\n\n")
	if !ok {
		t.Fatalf("output has no blank line between headers and body:\n%s", out)
	}
	lines := strings.Split(head, "\n")
	h = http.Header{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("header line %q", l)
		}
		h.Add(k, v)
	}
	return lines[0], h, []byte(strings.TrimSuffix(b, "\n"))
}

// TestTemplateRenderPrintsWhatTheSinkWouldSend: for each recipe, the request line, the
// headers (ce-*, webhook-id) and exactly the body the template package's golden file
// holds; a signed sink's printed signature verifies over the printed body.
func TestTemplateRenderPrintsWhatTheSinkWouldSend(t *testing.T) {
	env := map[string]string{
		"EXPORTBRIDGE_STATE_DIR": t.TempDir(), "EXPORTBRIDGE_CONFIG_FILE": recipeConfig(t),
		"PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY0123456789abcdefabcdef", "LEGACY_WHSEC": legacyWhsec,
		"TEAMS_WEBHOOK_URL": teamsURL, "DISCORD_WEBHOOK_URL": discordURL,
	}
	for _, tc := range []struct{ sink, event, url string }{
		{"teams", "failed", "https://example.webhook.office.com/workflows/..."},
		{"discord", "ready", "https://discord.com/api/webhooks/123456789012345678/..."},
		{"pagerduty", "failed", "https://events.pagerduty.com/v2/enqueue"},
		{"pagerduty", "bridge.poll_failing", "https://events.pagerduty.com/v2/enqueue"},
	} {
		t.Run(tc.sink+" "+tc.event, func(t *testing.T) {
			out, errOut, code := run(t, env, 30*time.Second, "template", "render", "--sink", tc.sink, "--event", tc.event)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			line, h, body := parseRequest(t, out)
			typ := tc.event
			if !strings.Contains(typ, ".") {
				typ = "export." + typ
			}
			if line != "POST "+tc.url || h.Get("Content-Type") != "application/json" || h.Get("Ce-Type") != "com.plugchoice."+typ ||
				h.Get("Webhook-Id") == "" || h.Get("Webhook-Id") != h.Get("Ce-Id") {
				t.Errorf("request %q headers %v", line, h)
			}
			golden, err := os.ReadFile(filepath.Join("..", "..", "template", "testdata", "golden", "recipes", tc.sink, typ+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			if err := json.Compact(&want, golden); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, want.Bytes()) {
				t.Errorf("body\n%s\nwant (golden)\n%s", body, want.Bytes())
			}
			for _, secret := range []string{"T3AMSS1GSECRET", "D1SC0RDtokenSECRET"} {
				if strings.Contains(out+errOut, secret) {
					t.Errorf("output holds the webhook URL's credential %q", secret)
				}
			}
			if !strings.Contains(errOut, "nothing is sent") {
				t.Errorf("stderr %q", errOut)
			}
		})
	}
	out, errOut, code := run(t, env, 30*time.Second, "template", "render", "--sink", "legacy")
	if code != 0 {
		t.Fatalf("legacy: exit %d: %s", code, errOut)
	}
	line, h, body := parseRequest(t, out)
	if line != "POST https://old.example.com/hook" || string(body) != "ready 9b2c6a1e-5d1f-4c3e-8a7b-0123456789ab" || h.Get("Content-Type") != "text/plain" {
		t.Errorf("legacy: %q %v %q", line, h, body)
	}
	wh, err := standardwebhooks.NewWebhook(legacyWhsec)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, h); err != nil {
		t.Errorf("the printed signature does not verify over the printed body: %v", err)
	}
	for _, secret := range []string{"QUERYSECRET", strings.TrimPrefix(legacyWhsec, "whsec_")} {
		if strings.Contains(out+errOut, secret) {
			t.Errorf("output holds the secret %q", secret)
		}
	}
}

// TestBadTemplateStopsTheBridgeNamingSinkKeyAndLine: at start, a template that does not
// parse, or fails on some sample event, is a settings error (exit 2) naming the sink's
// entry, the key and the line (and column) in the template.
func TestBadTemplateStopsTheBridgeNamingSinkKeyAndLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(`sinks:
  - name: tickets
    kind: webhook
    webhook:
      url: https://tickets.example.com/hook
      body:
        ticket:
          title: "Export {{ .Export.type }}\n{{ .Export.filename | shout }}"
  - name: ops
    kind: slack
    slack:
      token: xoxb-1
      channel: "#ops"
      blocks:
        - type: section
          text: {type: mrkdwn, text: "{{ index .Export.tags 0 }}"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"EXPORTBRIDGE_STATE_DIR": t.TempDir(), "EXPORTBRIDGE_CONFIG_FILE": cfg, "EXPORTBRIDGE_API_TOKEN": "tok"}
	for _, args := range [][]string{{"run"}, {"template", "render", "--sink", "tickets"}} {
		_, errOut, code := run(t, env, 30*time.Second, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %s", args, code, errOut)
		}
		for _, want := range []string{
			`sinks[0].webhook.body.ticket.title: sink tickets: line 2: function "shout" not defined`,
			`sinks[1].slack.blocks[0].text.text: sink ops: line 1, column 4: error calling index`,
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, errOut)
			}
		}
	}
}

// TestREADMEShowsTheRecipesAsRendered: the `template render` outputs in the README are
// what the command prints today (request line, headers but the timestamp, and body).
func TestREADMEShowsTheRecipesAsRendered(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"EXPORTBRIDGE_STATE_DIR": t.TempDir(), "EXPORTBRIDGE_CONFIG_FILE": recipeConfig(t),
		"PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY0123456789abcdefabcdef", "LEGACY_WHSEC": legacyWhsec,
		"TEAMS_WEBHOOK_URL": teamsURL, "DISCORD_WEBHOOK_URL": discordURL,
	}
	const prompt = "$ exportbridge template render "
	blocks := strings.Split(string(readme), "```\n")
	n := 0
	for _, b := range blocks {
		if !strings.HasPrefix(b, prompt) {
			continue
		}
		cmdLine, shown, _ := strings.Cut(b, "\n")
		out, errOut, code := run(t, env, 30*time.Second, strings.Fields(strings.TrimPrefix(cmdLine, "$ exportbridge "))...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", cmdLine, code, errOut)
		}
		norm := func(s string) string {
			var keep []string
			for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
				if !strings.HasPrefix(l, "webhook-timestamp: ") {
					keep = append(keep, l)
				}
			}
			return strings.Join(keep, "\n")
		}
		if norm(out) != norm(shown) {
			t.Errorf("README shows for %q:\n%s\nthe command prints:\n%s", cmdLine, shown, out)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("found %d template render outputs in the README, want the three recipes", n)
	}
}
