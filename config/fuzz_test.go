package config_test

import (
	"strings"
	"testing"
)

// FuzzLoad feeds random values to a few settings, secret and not: Load never panics, and
// a secret value never appears in its error. Secret values are wrapped in markers that no
// message contains, so that the whole value can only appear in an error by being shown.
func FuzzLoad(f *testing.F) {
	f.Add("tok", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "30s", "https://a.example/x", "v", "T0/B0/x", "nats://u:p@h:4222")
	f.Add("", "!!", "5 minutes", "ftp://x,,", "Bad Name:v", "", "http://h")
	f.Add("a\nb", "", "-1s", "https://u:p@h/?q=1", "content-type:x", "https://hooks.slack.com/services/T/B/C", "h:1,")
	f.Fuzz(func(t *testing.T, token, whsecB64, poll, urls, headers, slackHook, natsURL string) {
		secretTok := "zq" + token + "qz"
		secretWhsec := "whsec_zq" + whsecB64
		secretHeader := "X-Fuzz:zq" + headers + "qz"
		secretHook := "https://hooks.slack.com/services/zq" + slackHook + "qz"
		env := e(
			"API_TOKEN", secretTok,
			"WEBHOOK_SECRET", secretWhsec,
			"WEBHOOK_HEADERS", secretHeader,
			"SLACK_WEBHOOK_URL", secretHook,
			"POLL_INTERVAL", poll,
			"WEBHOOK_URLS", urls,
			"NATS_URL", natsURL,
		)
		c, err := loadAll(env)
		if err == nil {
			if c == nil {
				t.Fatal("Load returned neither a config nor an error")
			}
			return
		}
		msg := err.Error()
		for _, s := range []string{secretTok, secretWhsec, "zq" + headers + "qz", secretHook} {
			if len(s) < 6 {
				continue
			}
			// A value the fuzzer also put in a non-secret variable may be quoted there.
			if strings.Contains(poll, s) || strings.Contains(urls, s) || strings.Contains(natsURL, s) || strings.Contains(headers, s) {
				continue
			}
			if strings.Contains(msg, s) {
				t.Fatalf("error shows secret %q:\n%s", s, msg)
			}
		}
	})
}
