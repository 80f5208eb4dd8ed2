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
