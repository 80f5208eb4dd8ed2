package logging_test

import (
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/logging"
)

// FuzzRedact: Redact never panics and its output never holds a secret of at least
// MinSecretLen bytes, except where the secret could be spelt with the mask itself.
func FuzzRedact(f *testing.F) {
	f.Add("token abcd1234 in text", "abcd1234")
	f.Add("Post \"https://hooks.slack.com/services/T/B/X\": EOF", "https://hooks.slack.com/services/T/B/X")
	f.Add("https://u:p@h/x?sig=1 Bearer zz", "p@h/")
	f.Add(`{"v":"a\"b<c"}`, `a"b<c`)
	f.Fuzz(func(t *testing.T, s, secret string) {
		out := logging.Redact(s, []string{secret})
		if len(secret) < logging.MinSecretLen || strings.ContainsRune(secret, 0) {
			return
		}
		if strings.Contains(strings.ReplaceAll(out, logging.Mask, "\x00"), secret) {
			t.Fatalf("Redact(%q, %q) = %q still holds the secret", s, secret, out)
		}
	})
}
