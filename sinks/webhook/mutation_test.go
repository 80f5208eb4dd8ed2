package webhook_test

// Tests that kill mutants scripts/mutation.sh found alive in ./sinks/webhook (issue 17).

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// TestConfigLimitsAreInclusive: a webhook block's timeout must be positive, its
// concurrency 1 to 64 (both ends allowed), and a CA file, when given, must be readable.
func TestConfigLimitsAreInclusive(t *testing.T) {
	missingCA := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name    string
		mod     func(c *webhook.Config)
		wantKey string // "" for valid
	}{
		{"defaults", func(*webhook.Config) {}, ""},
		{"timeout 0", func(c *webhook.Config) { c.Timeout = 0 }, "timeout"},
		{"timeout 1ns", func(c *webhook.Config) { c.Timeout = time.Nanosecond }, ""},
		{"concurrency 1", func(c *webhook.Config) { c.Concurrency = 1 }, ""},
		{"concurrency 64", func(c *webhook.Config) { c.Concurrency = 64 }, ""},
		{"concurrency 0", func(c *webhook.Config) { c.Concurrency = 0 }, "concurrency"},
		{"concurrency 65", func(c *webhook.Config) { c.Concurrency = 65 }, "concurrency"},
		{"missing CA file", func(c *webhook.Config) { c.CA = missingCA }, "ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := webhook.DefaultConfig()
			c.URL = "https://example.com/hook"
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantKey == "" && err != nil:
				t.Errorf("Validate = %v, want valid", err)
			case tt.wantKey != "" && (err == nil || !strings.Contains(err.Error(), tt.wantKey)):
				t.Errorf("Validate = %v, want an error naming %q", err, tt.wantKey)
			}
		})
	}
}

// TestHighestPortAccepted: a webhook URL on port 65535 is valid.
func TestHighestPortAccepted(t *testing.T) {
	s, err := webhook.NewSink(webhook.Options{Name: "webhook-1", URL: "https://example.com:65535/hook"})
	if err != nil {
		t.Fatalf("NewSink with port 65535: %v", err)
	}
	_ = s.Close()
}
