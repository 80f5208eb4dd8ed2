package logging_test

import (
	"testing"

	"github.com/exportbridge/exportbridge/logging"
)

func TestSafeURL(t *testing.T) {
	tests := []struct {
		raw      string
		hostOnly bool
		want     string
	}{
		{"https://user:pass@wh.example:8443/hooks/x?token=abc#frag", false, "https://wh.example:8443/hooks/x"},
		{"https://user:pass@wh.example:8443/hooks/x?token=abc#frag", true, "https://wh.example:8443/..."},
		{"https://hooks.slack.com/services/T000/B000/XXXX", true, "https://hooks.slack.com/..."},
		{"https://slack.com/", true, "https://slack.com"},
		{"nats://tok@nats.example:4222", false, "nats://nats.example:4222"},
		// A token in the path (Discord, legacy Teams, Slack) ends the path shown.
		{"https://discord.com/api/webhooks/123456789012345678/AbCdEf0123456789_abcdefGHIJ-klmn", false, "https://discord.com/api/webhooks/123456789012345678/..."},
		{"https://x.webhook.office.com/webhookb2/0b5c3b4e-7f9a-4f3e-9a1b-2c3d4e5f6a7b@1a2b/IncomingWebhook/0123456789abcdef0123456789abcdef/x", false, "https://x.webhook.office.com/webhookb2/..."},
		{"https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXX1234", false, "https://hooks.slack.com/services/T0000/B0000/..."},
		{"https://wh.example/hooks/plugchoice-export-events", false, "https://wh.example/hooks/plugchoice-export-events"},
		{"https://wh.example/orders/12345678901234567890", false, "https://wh.example/orders/12345678901234567890"},
		{" nats.example:4222 ", false, "nats.example:4222"},
		{"user:pass@host/x", false, "user:"}, // parsed as scheme user: with an opaque part, which is dropped
		{"/hook", false, "/hook"},
		{"mailto:a@b", false, "mailto:"},
		{"", false, "(url)"},
		{"%zz://x", false, "(url)"},
	}
	for _, tt := range tests {
		if got := logging.SafeURL(tt.raw, tt.hostOnly); got != tt.want {
			t.Errorf("SafeURL(%q, %v) = %q, want %q", tt.raw, tt.hostOnly, got, tt.want)
		}
	}
}
