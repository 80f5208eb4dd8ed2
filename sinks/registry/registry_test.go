package registry_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/sinks/registry"
)

// TestDestinationsHideSecrets: what the sink table, the status page and
// bridge.sink_failing show of a destination keeps no credentials, query or fragment,
// and nothing of a Slack incoming-webhook URL past its host.
func TestDestinationsHideSecrets(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"webhook", map[string]string{"WEBHOOK_URLS": "https://user:pass@wh.example:8443/hooks/x?token=abc#frag"}, "https://wh.example:8443/hooks/x"},
		{"slack webhook", map[string]string{"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX"}, "https://hooks.slack.com/..."},
		{"slack bot", map[string]string{"SLACK_TOKEN": "xoxb-1", "SLACK_CHANNEL": "#ops"}, "channel #ops"},
		{"nats", map[string]string{"NATS_URL": "nats://tok@nats.example:4222, nats-2.example:4222"}, "nats://nats.example:4222,nats-2.example:4222"},
		{"stdout", map[string]string{"STDOUT": "true"}, "standard output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tt.env {
				env[config.Prefix+k] = v
			}
			_, specs, err := registry.LoadSettings(env, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != 1 || specs[0].Destination != tt.want {
				t.Fatalf("destination %+v, want %q", specs, tt.want)
			}
			for _, secret := range []string{"pass", "token=abc", "XXXX", "tok@"} {
				if strings.Contains(specs[0].Destination, secret) {
					t.Errorf("destination %q shows %q", specs[0].Destination, secret)
				}
			}
		})
	}
}

// TestShorthandNamesAndFingerprints: the environment shorthand names its sinks as the
// SPEC says, and a destination's fingerprint changes with the URL, not with the name.
func TestShorthandNamesAndFingerprints(t *testing.T) {
	load := func(urls string) []registry.Spec {
		_, specs, err := registry.LoadSettings(map[string]string{
			config.Prefix + "WEBHOOK_URLS": urls, config.Prefix + "STDOUT": "true",
			config.Prefix + "NATS_URL": "nats://127.0.0.1:4222", config.Prefix + "SLACK_TOKEN": "xoxb-1", config.Prefix + "SLACK_CHANNEL": "#c",
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		return specs
	}
	specs := load("https://a.example/x,https://b.example/y")
	if got := strings.Join(registry.Names(specs), " "); got != "stdout nats slack webhook-1 webhook-2" {
		t.Fatalf("names %q", got)
	}
	swapped := load("https://b.example/y,https://a.example/x")
	if specs[3].Fingerprint == swapped[3].Fingerprint || specs[3].Fingerprint != swapped[4].Fingerprint {
		t.Errorf("fingerprints do not follow the URL: %s %s / %s %s", specs[3].Fingerprint, specs[4].Fingerprint, swapped[3].Fingerprint, swapped[4].Fingerprint)
	}
	if one := load("https://a.example/x"); one[3].Name != "webhook" {
		t.Errorf("a single webhook is named %q, want webhook", one[3].Name)
	}
}

// TestProblemsNameTheSetting: a sink's Validate names the key; the problem names the
// variable the user set.
func TestProblemsNameTheSetting(t *testing.T) {
	_, _, err := registry.LoadSettings(map[string]string{
		config.Prefix + "NATS_URL": "nats://a:4222", config.Prefix + "NATS_USER": "u",
		config.Prefix + "SLACK_TOKEN": "xoxb-1",
	}, "")
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err %v, want *config.Error", err)
	}
	got := err.Error()
	for _, want := range []string{
		"EXPORTBRIDGE_NATS_USER: EXPORTBRIDGE_NATS_USER and EXPORTBRIDGE_NATS_PASSWORD go together",
		"EXPORTBRIDGE_SLACK_CHANNEL: is required with EXPORTBRIDGE_SLACK_TOKEN",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
}

// TestWebhookURLWithATokenInItsPath: a Discord or Teams webhook keeps its credential in
// the URL path. The URL may come from url_file or ${ENV} like a secret; written
// literally it is ordinary configuration (no warning). Either way the destination shown
// stops before the token, and the token is kept out of logs.
func TestWebhookURLWithATokenInItsPath(t *testing.T) {
	const token = "AbCdEf0123456789_abcdefGHIJ-klmnopQRST"
	const hook = "https://discord.com/api/webhooks/123456789012345678/" + token
	file := filepath.Join(t.TempDir(), "discord-url")
	if err := os.WriteFile(file, []byte(hook+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url string
		warned    bool
	}{
		{"literal", "url: " + hook, false},
		{"from a file", "url_file: " + file, false},
		{"from the environment", "url: ${DISCORD_HOOK}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "config.yaml")
			body := "sinks:\n  - name: discord\n    kind: webhook\n    webhook:\n      " + tt.url + "\n"
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{config.Prefix + "CONFIG_FILE": cfg, "DISCORD_HOOK": hook}
			_, specs, err := registry.LoadSettings(env, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != 1 {
				t.Fatalf("got %d sinks, want 1", len(specs))
			}
			s := specs[0]
			if want := "https://discord.com/api/webhooks/123456789012345678/..."; s.Destination != want {
				t.Errorf("destination %q, want %q", s.Destination, want)
			}
			if !slices.Contains(s.Secrets, token) {
				t.Errorf("the token is not among the secrets kept out of logs: %q", s.Secrets)
			}
			if got := len(s.Warnings) > 0; got != tt.warned {
				t.Errorf("warnings %q, want warned=%v", s.Warnings, tt.warned)
			}
		})
	}
}
