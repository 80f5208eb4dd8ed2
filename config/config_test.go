package config_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/sinks/registry"
)

// Distinctive secret values: none of them may ever appear in an error.
const (
	apiToken   = "apitok-SECRET-1111"
	adminToken = "admtok-SECRET-2222"
	natsToken  = "natstok-SECRET-3333"
	natsPass   = "natspass-SECRET-4444"
	slackToken = "xoxb-SECRET-5555"
	slackHook  = "https://hooks.slack.com/services/T0/B0/SECRET6666"
	hdrValue   = "Bearer-SECRET-7777"
)

var (
	key1  = []byte("0123456789abcdef0123456789abcdef")
	key2  = []byte("another key of 24 bytes!")
	whsec = "whsec_" + base64.StdEncoding.EncodeToString(key1)
	// whsecBad is not valid base64 after the prefix and is itself a secret.
	whsecBad = "whsec_SECRET8888!!"
)

var allSecrets = []string{apiToken, adminToken, natsToken, natsPass, slackToken, slackHook, hdrValue, whsec, whsecBad, "SECRET6666", "SECRET8888"}

func e(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[config.Prefix+kv[i]] = kv[i+1]
	}
	return m
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func problems(t *testing.T, err error) []config.Problem {
	t.Helper()
	if err == nil {
		t.Fatal("Load succeeded, want problems")
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T, want *config.Error: %v", err, err)
	}
	return ce.Problems
}

func defaults() config.Config {
	return config.Config{
		APIURL:               "https://app.plugchoice.com/api/v3",
		PollInterval:         30 * time.Second,
		PollIntervalActive:   10 * time.Second,
		Store:                config.StoreBolt,
		StoreNATSReplicas:    1,
		LeaseTTL:             15 * time.Second,
		FullSyncInterval:     10 * time.Minute,
		HTTPTimeout:          20 * time.Second,
		StateDir:             "./data",
		ListenAddr:           ":9090",
		AdminAddr:            "127.0.0.1:9091",
		LogLevel:             "info",
		LogFormat:            "json",
		RetryMaxElapsed:      24 * time.Hour,
		NATSSubjectPrefix:    "plugchoice.exports",
		NATSEvents:           "*",
		SlackAPIURL:          "https://slack.com/api/",
		SlackEvents:          "ready,failed,bridge",
		WebhookTimeout:       10 * time.Second,
		WebhookConcurrency:   4,
		WebhookEvents:        "*",
		PollFailureThreshold: 5,
		ShutdownTimeout:      10 * time.Second,
		SinkFailureAlert:     5 * time.Minute,
	}
}

func TestLoadGood(t *testing.T) {
	ca, _ := filepath.Abs(filepath.Join("testdata", "ca.pem")) // a real PEM: the webhook sink reads it
	cert := writeFile(t, "cert")
	keyf := writeFile(t, "key")
	tests := []struct {
		name string
		env  map[string]string
		want func(c *config.Config)
	}{
		{"defaults", e(), func(c *config.Config) {}},
		{"api", e("API_URL", "http://localhost:8080/api/v3//", "API_TOKEN", apiToken, "FILTER_TYPES", " charge sessions , invoices",
			"FILTER_SUBJECT_TYPE", "site", "FILTER_SUBJECT_ID", "42", "PER_PAGE", "100", "API_BUDGET", "200"), func(c *config.Config) {
			c.APIURL = "http://localhost:8080/api/v3"
			c.APIToken = apiToken
			c.FilterTypes = config.List{"charge sessions", "invoices"}
			c.FilterSubjectType = "site"
			c.FilterSubjectID = 42
			c.PerPage = 100
			c.APIBudget = 200
		}},
		{"durations", e("POLL_INTERVAL", "1s", "FULL_SYNC_INTERVAL", "1s", "HTTP_TIMEOUT", "1500ms", "RETRY_MAX_ELAPSED", "1h30m",
			"WEBHOOK_TIMEOUT", "3s", "SHUTDOWN_TIMEOUT", "1m", "WEBHOOK_URLS", "https://h.example/x"), func(c *config.Config) {
			c.PollInterval, c.FullSyncInterval, c.HTTPTimeout = time.Second, time.Second, 1500*time.Millisecond
			c.PollIntervalActive = time.Second // the 10s default, cut to POLL_INTERVAL
			c.RetryMaxElapsed, c.WebhookTimeout, c.ShutdownTimeout = 90*time.Minute, 3*time.Second, time.Minute
			c.WebhookURLs = config.List{"https://h.example/x"}
		}},
		{"booleans strict forms", e("EMIT_EXISTING", "true", "EMIT_REMOVED", "1", "STDOUT", "TRUE", "NATS_JETSTREAM", "0", "NATS_URL", "nats://127.0.0.1:4222"), func(c *config.Config) {
			c.EmitExisting, c.EmitRemoved, c.Stdout, c.NATSJetStream = true, true, true, false
			c.NATSURL = config.List{"nats://127.0.0.1:4222"}
		}},
		{"active poll interval", e("POLL_INTERVAL", "1m", "POLL_INTERVAL_ACTIVE", "2s"), func(c *config.Config) {
			c.PollInterval, c.PollIntervalActive = time.Minute, 2*time.Second
		}},
		{"active poll interval equal to poll interval", e("POLL_INTERVAL", "5s", "POLL_INTERVAL_ACTIVE", "5s"), func(c *config.Config) {
			c.PollInterval, c.PollIntervalActive = 5*time.Second, 5*time.Second
		}},
		{"api budget zero is automatic", e("API_BUDGET", "0"), func(c *config.Config) {}},
		{"server and admin", e("STATE_DIR", "/data", "LISTEN_ADDR", "", "ADMIN_ADDR", "0.0.0.0:9091", "ADMIN_TOKEN", adminToken,
			"LOG_LEVEL", "DEBUG", "LOG_FORMAT", "Text", "POLL_FAILURE_THRESHOLD", "1"), func(c *config.Config) {
			c.StateDir, c.ListenAddr, c.AdminAddr, c.AdminToken = "/data", "", "0.0.0.0:9091", adminToken
			c.LogLevel, c.LogFormat, c.PollFailureThreshold = "debug", "text", 1
		}},
		{"admin disabled", e("ADMIN_ADDR", ""), func(c *config.Config) { c.AdminAddr = "" }},
		{"sink failure alert disabled", e("SINK_FAILURE_ALERT", "0"), func(c *config.Config) { c.SinkFailureAlert = 0 }},
		{"sink failure alert", e("SINK_FAILURE_ALERT", "90s"), func(c *config.Config) { c.SinkFailureAlert = 90 * time.Second }},
		{"admin on localhost needs no token", e("ADMIN_ADDR", "localhost:7000"), func(c *config.Config) { c.AdminAddr = "localhost:7000" }},
		{"nats", e("NATS_URL", "nats://a:4222, tls://b:4222,ws://c:80,wss://d:443,e:4222", "NATS_SUBJECT_PREFIX", "acme.exports-v2",
			"NATS_JETSTREAM", "true", "NATS_USER", "bridge", "NATS_PASSWORD", natsPass, "NATS_CA", ca, "NATS_CERT", cert, "NATS_KEY", keyf,
			"NATS_EVENTS", "ready,bridge"), func(c *config.Config) {
			c.NATSURL = config.List{"nats://a:4222", "tls://b:4222", "ws://c:80", "wss://d:443", "e:4222"}
			c.NATSSubjectPrefix, c.NATSJetStream, c.NATSUser, c.NATSPassword = "acme.exports-v2", true, "bridge", natsPass
			c.NATSCA, c.NATSCert, c.NATSKey, c.NATSEvents = ca, cert, keyf, "ready,bridge"
		}},
		{"nats token", e("NATS_URL", "h:1", "NATS_TOKEN", natsToken), func(c *config.Config) {
			c.NATSURL, c.NATSToken = config.List{"h:1"}, natsToken
		}},
		{"nats creds and nkey files", e("NATS_URL", "h:1", "NATS_CREDS", ca), func(c *config.Config) {
			c.NATSURL, c.NATSCreds = config.List{"h:1"}, ca
		}},
		{"slack webhook", e("SLACK_WEBHOOK_URL", slackHook, "SLACK_EVENTS", "*"), func(c *config.Config) {
			c.SlackWebhookURL, c.SlackEvents = slackHook, "*"
		}},
		{"slack bot", e("SLACK_TOKEN", slackToken, "SLACK_CHANNEL", "#exports", "SLACK_API_URL", "http://127.0.0.1:5555/api"), func(c *config.Config) {
			c.SlackToken, c.SlackChannel, c.SlackAPIURL = slackToken, "#exports", "http://127.0.0.1:5555/api" // the sink adds the slash
		}},
		{"webhooks", e("WEBHOOK_URLS", "https://a.example/hook, http://b.example:8080/x?k=v", "WEBHOOK_SECRET", whsec+" , whsec_"+base64.StdEncoding.EncodeToString(key2),
			"WEBHOOK_HEADERS", "x-api-key: "+hdrValue+",X-Team:ops:blue", "WEBHOOK_CONCURRENCY", "64", "WEBHOOK_CA", ca,
			"WEBHOOK_EVENTS", "ready,failed,export.cancelled,custom_status"), func(c *config.Config) {
			c.WebhookURLs = config.List{"https://a.example/hook", "http://b.example:8080/x?k=v"}
			c.WebhookSecret = config.List{whsec, "whsec_" + base64.StdEncoding.EncodeToString(key2)}
			c.WebhookHeaders = config.Headers{{Name: "X-Api-Key", Value: hdrValue}, {Name: "X-Team", Value: "ops:blue"}}
			c.WebhookConcurrency, c.WebhookCA = 64, ca
			c.WebhookEvents = "ready,failed,export.cancelled,custom_status"
		}},
		{"empty lists are empty", e("FILTER_TYPES", "", "WEBHOOK_URLS", "  "), func(c *config.Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadAll(tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := defaults()
			tt.want(&want)
			got.Warnings, got.Sinks = nil, nil
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("Load(%v)\n got %+v\nwant %+v", tt.env, *got, want)
			}
		})
	}
}

func TestLoadProblems(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string // after the prefix
		wantMsg string
	}{
		{"api url relative", e("API_URL", "/api/v3"), "API_URL", "not an absolute http(s) URL"},
		{"api url scheme", e("API_URL", "ftp://h/api"), "API_URL", "not an absolute http(s) URL"},
		{"api url query", e("API_URL", "https://h/api?x=1"), "API_URL", "query or fragment"},
		{"api url credentials", e("API_URL", "https://u:p@h/api"), "API_URL", "credentials"},
		{"subject id not integer", e("FILTER_SUBJECT_ID", "abc"), "FILTER_SUBJECT_ID", `"abc" is not a whole number`},
		{"subject id zero", e("FILTER_SUBJECT_ID", "0"), "FILTER_SUBJECT_ID", "positive integer"},
		{"filter types empty item", e("FILTER_TYPES", "a,,b"), "FILTER_TYPES", "item #2 of 3 is empty"},
		{"filter types trailing comma", e("FILTER_TYPES", "a,"), "FILTER_TYPES", "item #2 of 2 is empty"},
		{"poll interval words", e("POLL_INTERVAL", "5 minutes"), "POLL_INTERVAL", `"5 minutes" is not a duration (expected Go syntax such as 30s or 5m)`},
		{"poll interval bare number", e("POLL_INTERVAL", "30"), "POLL_INTERVAL", "not a duration"},
		{"poll interval empty", e("POLL_INTERVAL", ""), "POLL_INTERVAL", `"" is not a duration`},
		{"poll interval too short", e("POLL_INTERVAL", "500ms"), "POLL_INTERVAL", "at least 1s"},
		{"active poll interval longer than poll", e("POLL_INTERVAL", "30s", "POLL_INTERVAL_ACTIVE", "1m"), "POLL_INTERVAL_ACTIVE", "1m0s is longer than EXPORTBRIDGE_POLL_INTERVAL 30s (expected at most the poll interval)"},
		{"active poll interval too short", e("POLL_INTERVAL_ACTIVE", "100ms"), "POLL_INTERVAL_ACTIVE", "at least 1s"},
		{"active poll interval not a duration", e("POLL_INTERVAL_ACTIVE", "10"), "POLL_INTERVAL_ACTIVE", "not a duration"},
		{"full sync shorter than poll", e("POLL_INTERVAL", "1m", "FULL_SYNC_INTERVAL", "30s"), "FULL_SYNC_INTERVAL", "at least the poll interval"},
		{"http timeout zero", e("HTTP_TIMEOUT", "0s"), "HTTP_TIMEOUT", "not positive"},
		{"retry negative", e("RETRY_MAX_ELAPSED", "-1h"), "RETRY_MAX_ELAPSED", "not positive"},
		{"webhook timeout zero", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_TIMEOUT", "0"), "WEBHOOK_TIMEOUT", "not positive"},
		{"shutdown timeout bad", e("SHUTDOWN_TIMEOUT", "ten seconds"), "SHUTDOWN_TIMEOUT", "not a duration"},
		{"sink failure alert negative", e("SINK_FAILURE_ALERT", "-5m"), "SINK_FAILURE_ALERT", "negative"},
		{"sink failure alert bad", e("SINK_FAILURE_ALERT", "5"), "SINK_FAILURE_ALERT", "not a duration"},
		{"per page zero", e("PER_PAGE", "0"), "PER_PAGE", "out of range (expected 1 to 100)"},
		{"per page big", e("PER_PAGE", "101"), "PER_PAGE", "out of range"},
		{"per page text", e("PER_PAGE", "many"), "PER_PAGE", "not a whole number"},
		{"api budget negative", e("API_BUDGET", "-5"), "API_BUDGET", "negative"},
		{"state dir empty", e("STATE_DIR", " "), "STATE_DIR", "empty"},
		{"emit existing yes", e("EMIT_EXISTING", "yes"), "EMIT_EXISTING", `"yes" is not a boolean (expected true, false, 1 or 0)`},
		{"emit removed t", e("EMIT_REMOVED", "t"), "EMIT_REMOVED", "not a boolean"},
		{"stdout on", e("STDOUT", "on"), "STDOUT", "not a boolean"},
		{"jetstream empty", e("NATS_URL", "h:1", "NATS_JETSTREAM", ""), "NATS_JETSTREAM", "not a boolean"},
		{"listen addr no port", e("LISTEN_ADDR", "localhost"), "LISTEN_ADDR", "not host:port"},
		{"listen addr bad port", e("LISTEN_ADDR", ":http"), "LISTEN_ADDR", "bad port"},
		{"admin addr bad", e("ADMIN_ADDR", "127.0.0.1"), "ADMIN_ADDR", "not host:port"},
		{"admin beyond loopback without token", e("ADMIN_ADDR", ":9091"), "ADMIN_TOKEN", "not a loopback address"},
		{"admin on lan without token", e("ADMIN_ADDR", "10.0.0.5:9091", "ADMIN_TOKEN", ""), "ADMIN_TOKEN", "not a loopback address"},
		{"log level", e("LOG_LEVEL", "verbose"), "LOG_LEVEL", "expected debug, info, warn or error"},
		{"log format", e("LOG_FORMAT", "logfmt"), "LOG_FORMAT", "expected json or text"},
		{"nats url scheme", e("NATS_URL", "nats://a:4222,http://b:4222"), "NATS_URL", `server #2: server URL http://b:4222 has scheme "http"`},
		{"nats url junk", e("NATS_URL", "just a name"), "NATS_URL", "is not a valid URL"},
		{"nats url empty item", e("NATS_URL", "a:1,,b:2"), "NATS_URL", "item #2 of 3 is empty"},
		{"nats prefix wildcard", e("NATS_URL", "h:1", "NATS_SUBJECT_PREFIX", "plugchoice.*"), "NATS_SUBJECT_PREFIX", "contains the wildcard '*'"},
		{"nats prefix gt", e("NATS_URL", "h:1", "NATS_SUBJECT_PREFIX", "a.>"), "NATS_SUBJECT_PREFIX", "contains the wildcard '>'"},
		{"nats prefix empty token", e("NATS_URL", "h:1", "NATS_SUBJECT_PREFIX", "a..b"), "NATS_SUBJECT_PREFIX", "empty token at position 2"},
		{"nats prefix trailing dot", e("NATS_URL", "h:1", "NATS_SUBJECT_PREFIX", "a.b."), "NATS_SUBJECT_PREFIX", "empty token at position 3"},
		{"nats prefix space", e("NATS_URL", "h:1", "NATS_SUBJECT_PREFIX", "a b"), "NATS_SUBJECT_PREFIX", "white space"},
		{"nats prefix empty", e("NATS_URL", "h:1", "NATS_SUBJECT_PREFIX", ""), "NATS_SUBJECT_PREFIX", "empty"},
		{"nats ca missing", e("NATS_URL", "h:1", "NATS_CA", missing), "NATS_CA", "read " + missing + ": open " + missing},
		{"nats creds missing", e("NATS_URL", "h:1", "NATS_CREDS", missing), "NATS_CREDS", "no such file or directory (expected a .creds file"},
		{"nats nkey is a directory", e("NATS_URL", "h:1", "NATS_NKEY", dir), "NATS_NKEY", "is a directory"},
		{"nats cert without key", e("NATS_URL", "h:1", "NATS_CERT", writeFile(t, "c")), "NATS_CERT", "go together"},
		{"nats user without password", e("NATS_URL", "h:1", "NATS_USER", "u"), "NATS_USER", "go together"},
		{"nats password without user", e("NATS_URL", "h:1", "NATS_PASSWORD", natsPass), "NATS_USER", "go together"},
		{"nats two auth methods", e("NATS_URL", "h:1", "NATS_TOKEN", natsToken, "NATS_USER", "u", "NATS_PASSWORD", natsPass), "NATS_TOKEN", "several authentication methods are set (EXPORTBRIDGE_NATS_TOKEN, EXPORTBRIDGE_NATS_USER)"},
		{"nats events bad", e("NATS_URL", "h:1", "NATS_EVENTS", "ready,Not Valid"), "NATS_EVENTS", "bad name"},
		{"nats events empty", e("NATS_URL", "h:1", "NATS_EVENTS", ""), "NATS_EVENTS", "empty name"},
		{"slack webhook not url", e("SLACK_WEBHOOK_URL", "hooks.slack.com/SECRET6666"), "SLACK_WEBHOOK_URL", "not an absolute http(s) URL"},
		{"slack both modes", e("SLACK_WEBHOOK_URL", slackHook, "SLACK_TOKEN", slackToken, "SLACK_CHANNEL", "c"), "SLACK_WEBHOOK_URL", "expected one"},
		{"slack token without channel", e("SLACK_TOKEN", slackToken), "SLACK_CHANNEL", "required with EXPORTBRIDGE_SLACK_TOKEN"},
		{"slack api url relative", e("SLACK_WEBHOOK_URL", slackHook, "SLACK_API_URL", "slack/api"), "SLACK_API_URL", "not an absolute http(s) URL"},
		{"slack api url query", e("SLACK_WEBHOOK_URL", slackHook, "SLACK_API_URL", "https://s/api/?a=b"), "SLACK_API_URL", "a query or a fragment"},
		{"slack events bad", e("SLACK_WEBHOOK_URL", slackHook, "SLACK_EVENTS", "ready,,failed"), "SLACK_EVENTS", "empty name"},
		{"webhook url relative", e("WEBHOOK_URLS", "https://a.example/x,/hook"), "WEBHOOK_URLS", `webhook URL /hook has scheme ""`},
		{"webhook url scheme", e("WEBHOOK_URLS", "mailto:a@b"), "WEBHOOK_URLS", `webhook URL mailto: has scheme "mailto"`},
		{"webhook url twice", e("WEBHOOK_URLS", "https://a/x, https://a/x"), "WEBHOOK_URLS", "URL #2 is the same as URL #1"},
		{"webhook secret no prefix", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET", "SECRET8888"), "WEBHOOK_SECRET", "secret #1 is not whsec_ followed by base64"},
		{"webhook secret bad base64", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET", whsec+","+whsecBad), "WEBHOOK_SECRET", "secret #2 is not whsec_ followed by base64"},
		{"webhook secret empty key", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET", "whsec_"), "WEBHOOK_SECRET", "secret #1 is not whsec_"},
		{"webhook secret url-safe base64", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET", "whsec_-_-_"), "WEBHOOK_SECRET", "secret #1 is not whsec_"},
		{"webhook secret empty item", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET", whsec+",,"+whsec), "WEBHOOK_SECRET", "item #2 of 3 is empty"},
		{"webhook header no colon", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_HEADERS", "X-Key "+hdrValue), "WEBHOOK_HEADERS", "header #1 has no ':'"},
		{"webhook header bad name", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_HEADERS", "X-A:1,Bad Name:"+hdrValue), "WEBHOOK_HEADERS", `name "Bad Name" is not a valid HTTP header name`},
		{"webhook header empty name", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_HEADERS", ":"+hdrValue), "WEBHOOK_HEADERS", "header #1 has an empty name"},
		{"webhook header newline", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_HEADERS", "X-A:"+hdrValue+"\r\nX-Evil: 1"), "WEBHOOK_HEADERS", `extra header "X-A" has a value with a line break or NUL byte`},
		{"webhook header reserved", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_HEADERS", "webhook-signature:"+hdrValue), "WEBHOOK_HEADERS", `extra header "Webhook-Signature" is set by the webhook sink itself`},
		{"webhook header content type", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_HEADERS", "content-type:text/plain"), "WEBHOOK_HEADERS", `extra header "Content-Type" is set by the webhook sink itself`},
		{"webhook concurrency zero", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_CONCURRENCY", "0"), "WEBHOOK_CONCURRENCY", "out of range (expected 1 to 64)"},
		{"webhook concurrency big", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_CONCURRENCY", "65"), "WEBHOOK_CONCURRENCY", "out of range"},
		{"webhook ca missing", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_CA", missing), "WEBHOOK_CA", "read webhook CA file: open " + missing},
		{"webhook events bad", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_EVENTS", "ready;failed"), "WEBHOOK_EVENTS", "bad name"},
		{"poll failure threshold zero", e("POLL_FAILURE_THRESHOLD", "0"), "POLL_FAILURE_THRESHOLD", "at least 1"},
		{"poll failure threshold text", e("POLL_FAILURE_THRESHOLD", "five"), "POLL_FAILURE_THRESHOLD", "not a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadAll(tt.env)
			if c != nil {
				t.Errorf("Load returned a Config with an error")
			}
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), err)
			}
			if ps[0].Var != config.Prefix+tt.wantVar {
				t.Errorf("problem names %s, want %s%s", ps[0].Var, config.Prefix, tt.wantVar)
			}
			if !strings.Contains(ps[0].Msg, tt.wantMsg) {
				t.Errorf("problem %q lacks %q", ps[0].Msg, tt.wantMsg)
			}
			if want := ps[0].Var + ": " + ps[0].Msg; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
			for _, s := range allSecrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows secret %q: %v", s, err)
				}
			}
		})
	}
}

func TestLoadReportsAllProblems(t *testing.T) {
	_, err := loadAll(e(
		"POLL_INTERVAL", "5 minutes",
		"PER_PAGE", "500",
		"LOG_LEVEL", "loud",
		"WEBHOOK_URLS", "https://a/x",
		"WEBHOOK_SECRET", whsecBad,
		"SLACK_TOKEN", slackToken,
		"API_TOKEN", apiToken,
		"API_TOKEN_FILE", "/nonexistent",
	))
	ps := problems(t, err)
	var vars []string
	for _, p := range ps {
		vars = append(vars, strings.TrimPrefix(p.Var, config.Prefix))
	}
	slices.Sort(vars)
	want := []string{"API_TOKEN", "LOG_LEVEL", "PER_PAGE", "POLL_INTERVAL", "SLACK_CHANNEL", "WEBHOOK_SECRET"}
	if !slices.Equal(vars, want) {
		t.Fatalf("problems for %v, want %v:\n%v", vars, want, err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Error() has %d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, config.Prefix) {
			t.Errorf("line %q does not start with the variable", l)
		}
	}
	for _, s := range allSecrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error shows secret %q", s)
		}
	}
}

func TestSecretFiles(t *testing.T) {
	good := writeFile(t, "\n  "+apiToken+"\r\n\n")
	empty := writeFile(t, " \n")
	missing := filepath.Join(t.TempDir(), "nope")
	hook := writeFile(t, slackHook+"\n")
	secrets := writeFile(t, whsec+"\n")
	tests := []struct {
		name     string
		env      map[string]string
		wantVar  string // problem variable after the prefix; "" for success
		wantMsg  string
		wantConf func(c *config.Config) bool
	}{
		{"file trimmed", e("API_TOKEN_FILE", good), "", "", func(c *config.Config) bool { return c.APIToken == apiToken }},
		{"slack hook file", e("SLACK_WEBHOOK_URL_FILE", hook), "", "", func(c *config.Config) bool { return c.SlackWebhookURL == slackHook }},
		{"webhook secret file is validated", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET_FILE", secrets), "", "", func(c *config.Config) bool {
			return len(c.WebhookSecret) == 1 && c.WebhookSecret[0] == whsec
		}},
		{"every secret has a file twin", e("ADMIN_TOKEN_FILE", good, "NATS_TOKEN_FILE", good, "NATS_URL", "h:1", "SLACK_TOKEN_FILE", good, "SLACK_CHANNEL", "c"), "", "", func(c *config.Config) bool {
			return c.AdminToken == apiToken && c.NATSToken == apiToken && c.SlackToken == apiToken
		}},
		{"nats password file", e("NATS_URL", "h:1", "NATS_USER", "u", "NATS_PASSWORD_FILE", good), "", "", func(c *config.Config) bool { return c.NATSPassword == apiToken }},
		{"empty _FILE is unset", e("API_TOKEN", apiToken, "API_TOKEN_FILE", ""), "", "", func(c *config.Config) bool { return c.APIToken == apiToken }},
		{"both set", e("API_TOKEN", apiToken, "API_TOKEN_FILE", good), "API_TOKEN", "both EXPORTBRIDGE_API_TOKEN and EXPORTBRIDGE_API_TOKEN_FILE are set", nil},
		{"both set even if empty value", e("SLACK_TOKEN", "", "SLACK_TOKEN_FILE", good), "SLACK_TOKEN", "both", nil},
		{"unreadable", e("ADMIN_TOKEN_FILE", missing), "ADMIN_TOKEN_FILE", "cannot read the secret file: open " + missing, nil},
		{"directory", e("NATS_TOKEN_FILE", t.TempDir()), "NATS_TOKEN_FILE", "cannot read the secret file", nil},
		{"empty file", e("WEBHOOK_SECRET_FILE", empty), "WEBHOOK_SECRET_FILE", "is empty", nil},
		{"bad secret from file", e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET_FILE", writeFile(t, whsecBad+"\n")), "WEBHOOK_SECRET", "secret #1 is not whsec_", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadAll(tt.env)
			if tt.wantVar == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if !tt.wantConf(c) {
					t.Fatalf("unexpected config %+v", c)
				}
				return
			}
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Var != config.Prefix+tt.wantVar || !strings.Contains(ps[0].Msg, tt.wantMsg) {
				t.Fatalf("problems %+v, want one for %s containing %q", ps, tt.wantVar, tt.wantMsg)
			}
			for _, s := range allSecrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows secret %q: %v", s, err)
				}
			}
		})
	}
}

// Never leak: secrets in the wrong place, given twice, malformed, or read from files.
func TestErrorsNeverShowSecrets(t *testing.T) {
	envs := []map[string]string{
		e("SLACK_WEBHOOK_URL", "not a url "+slackHook),
		e("SLACK_WEBHOOK_URL", slackHook, "SLACK_TOKEN", slackToken),
		e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET", whsec+","+whsecBad, "WEBHOOK_HEADERS", "Bad Name:"+hdrValue),
		e("WEBHOOK_HEADERS", hdrValue),
		e("WEBHOOK_URLS", "https://user:"+natsPass+"@a/x,ftp://u:"+adminToken+"@b/"),
		e("NATS_URL", "nats://u:"+natsPass+"@h:4222,http://x:"+natsToken+"@h"),
		e("API_URL", "https://h/api?token="+apiToken),
		e("API_URL", "https://u:"+apiToken+"@h/api"),
		e("ADMIN_ADDR", "0.0.0.0:1", "ADMIN_TOKEN", " "),
		e("NATS_URL", "h:1", "NATS_TOKEN", natsToken, "NATS_PASSWORD", natsPass),
		e("API_TOKEN_FILE", writeFile(t, apiToken), "API_TOKEN", apiToken),
		e("SLACK_WEBHOOK_URL_FILE", writeFile(t, "junk "+slackHook)),
	}
	for i, env := range envs {
		_, err := loadAll(env)
		if err == nil {
			t.Errorf("env #%d: Load succeeded, want problems", i)
			continue
		}
		for _, s := range allSecrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("env #%d: error shows secret %q:\n%v", i, s, err)
			}
		}
	}
}

func TestUnprefixedVariablesAreIgnored(t *testing.T) {
	unprefixed := map[string]string{
		"API_TOKEN": apiToken, "STDOUT": "true", "LISTEN_ADDR": "", "POLL_INTERVAL": "garbage",
		"NATS_URL": "nats://elsewhere:4222", "SLACK_TOKEN": slackToken, "LOG_LEVEL": "nonsense",
	}
	t.Run("injected", func(t *testing.T) {
		c, err := loadAll(unprefixed)
		if err != nil {
			t.Fatalf("unprefixed variables were read: %v", err)
		}
		c.Warnings = nil
		if want := defaults(); !reflect.DeepEqual(*c, want) {
			t.Fatalf("unprefixed variables changed the config:\n got %+v\nwant %+v", *c, want)
		}
	})
	t.Run("process", func(t *testing.T) {
		for k, v := range unprefixed {
			t.Setenv(k, v)
		}
		c, err := loadAll(nil)
		if err != nil {
			t.Fatalf("unprefixed variables were read: %v", err)
		}
		if c.APIToken != "" || c.Stdout || c.ListenAddr != ":9090" || len(c.NATSURL) != 0 || c.SlackToken != "" {
			t.Fatalf("unprefixed variables changed the config: %+v", *c)
		}
	})
}

func TestLoadProcessEnvironment(t *testing.T) {
	t.Setenv(config.Prefix+"POLL_INTERVAL", "45s")
	t.Setenv(config.Prefix+"LISTEN_ADDR", "")
	t.Setenv(config.Prefix+"API_TOKEN_FILE", writeFile(t, apiToken+"\n"))
	c, err := loadAll(nil)
	if err != nil {
		t.Fatalf("Load(nil): %v", err)
	}
	if c.PollInterval != 45*time.Second || c.ListenAddr != "" || c.APIToken != apiToken {
		t.Fatalf("process environment not read: %+v", *c)
	}

	t.Setenv(config.Prefix+"POLL_INTERVAL", "soon")
	_, err = loadAll(nil)
	if ps := problems(t, err); len(ps) != 1 || ps[0].Var != config.Prefix+"POLL_INTERVAL" {
		t.Fatalf("problems %+v, want POLL_INTERVAL", ps)
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings, one warning each, in order
	}{
		{"none", e("NATS_URL", "h:1", "NATS_TOKEN", natsToken), nil},
		{"typo", e("POLL_INTERVALL", "1m", "SLACK_WEBHOOK", "x"), []string{
			"EXPORTBRIDGE_POLL_INTERVALL is not a setting", "EXPORTBRIDGE_SLACK_WEBHOOK is not a setting"}},
		{"nats settings without nats", e("NATS_TOKEN", natsToken), []string{"EXPORTBRIDGE_NATS_TOKEN has no effect without EXPORTBRIDGE_NATS_URL"}},
		{"slack channel without slack", e("SLACK_CHANNEL", "#x"), []string{"EXPORTBRIDGE_SLACK_CHANNEL has no effect"}},
		{"webhook secret without urls", e("WEBHOOK_SECRET", whsec), []string{"EXPORTBRIDGE_WEBHOOK_SECRET has no effect without EXPORTBRIDGE_WEBHOOK_URLS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadAll(tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(c.Warnings) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", c.Warnings, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("warning %q lacks %q", c.Warnings[i], w)
				}
			}
			for _, w := range c.Warnings {
				for _, s := range allSecrets {
					if strings.Contains(w, s) {
						t.Errorf("warning shows secret: %q", w)
					}
				}
			}
		})
	}
}

func TestRequire(t *testing.T) {
	tests := []struct {
		command string
		token   string
		wantErr bool
	}{
		{"run", apiToken, false},
		{"run", "", true},
		{"run", "  ", true},
		{"once", "", true},
		{"check", "", true},
		{"check", apiToken, false},
		{"demo", "", false},
		{"dlq", "", false},
		{"state", "", false},
		{"send-test", "", false},
		{"version", "", false},
		{"healthcheck", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.command+"/"+tt.token, func(t *testing.T) {
			env := e()
			if tt.token != "" {
				env = e("API_TOKEN", tt.token)
			}
			c, err := loadAll(env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			err = c.Require(tt.command)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Require(%q) = %v, want nil", tt.command, err)
				}
				return
			}
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Var != config.Prefix+"API_TOKEN" || !strings.Contains(ps[0].Msg, `required by "`+tt.command+`"`) {
				t.Fatalf("Require(%q) = %+v", tt.command, ps)
			}
		})
	}
}

func TestWebhookSecretsKeepTheirOrder(t *testing.T) {
	k2 := "whsec_" + base64.StdEncoding.EncodeToString(key2)
	c, err := loadAll(e("WEBHOOK_URLS", "https://a/x", "WEBHOOK_SECRET", whsec+", "+k2))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.WebhookSecret; len(got) != 2 || got[0] != whsec || got[1] != k2 {
		t.Fatalf("WebhookSecret = %q", got)
	}
}

func TestSecrets(t *testing.T) {
	c, err := loadAll(e(
		"API_TOKEN", apiToken, "ADMIN_TOKEN", adminToken, "NATS_URL", "nats://nu:natsurlpass@h:4222",
		"NATS_TOKEN", natsToken, "SLACK_TOKEN", slackToken, "SLACK_CHANNEL", "c",
		"WEBHOOK_URLS", "https://hookuser:hookpass@a.example/x,https://b.example/y",
		"WEBHOOK_SECRET", whsec, "WEBHOOK_HEADERS", "X-Key:"+hdrValue,
	))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Secrets()
	for _, want := range []string{apiToken, adminToken, natsToken, slackToken, whsec, strings.TrimPrefix(whsec, "whsec_"),
		hdrValue, "hookuser:hookpass", "hookpass", "nu:natsurlpass", "natsurlpass"} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() lacks %q", want)
		}
	}
	for _, s := range got {
		if s == "" {
			t.Error("Secrets() holds an empty string")
		}
	}

	c, err = loadAll(e("SLACK_WEBHOOK_URL", slackHook, "NATS_URL", "h:1", "NATS_USER", "u", "NATS_PASSWORD", natsPass))
	if err != nil {
		t.Fatal(err)
	}
	got = c.Secrets()
	for _, want := range []string{slackHook, "/services/T0/B0/SECRET6666", natsPass} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() lacks %q: %q", want, got)
		}
	}

	c, err = loadAll(e())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Secrets(); len(got) != 0 {
		t.Errorf("Secrets() with no secrets = %q", got)
	}
}

func TestAdminIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9091", true},
		{"127.3.4.5:9091", true},
		{"[::1]:9091", true},
		{"localhost:9091", true},
		{"LOCALHOST:1", true},
		{"", true}, // disabled
		{":9091", false},
		{"0.0.0.0:9091", false},
		{"[::]:9091", false},
		{"10.1.2.3:9091", false},
		{"admin.internal:9091", false},
		{"garbage", false},
	}
	for _, tt := range tests {
		c := &config.Config{AdminAddr: tt.addr}
		if got := c.AdminIsLoopback(); got != tt.want {
			t.Errorf("AdminIsLoopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// specVars is every setting of SPEC.md "Settings", after the prefix.
var specVars = strings.Fields(`API_URL API_TOKEN FILTER_TYPES FILTER_SUBJECT_TYPE FILTER_SUBJECT_ID
POLL_INTERVAL FULL_SYNC_INTERVAL HTTP_TIMEOUT PER_PAGE API_BUDGET STATE_DIR EMIT_EXISTING
EMIT_REMOVED LISTEN_ADDR ADMIN_ADDR ADMIN_TOKEN LOG_LEVEL LOG_FORMAT RETRY_MAX_ELAPSED NATS_URL
NATS_SUBJECT_PREFIX NATS_JETSTREAM NATS_CREDS NATS_NKEY NATS_TOKEN NATS_USER NATS_PASSWORD
NATS_CA NATS_CERT NATS_KEY NATS_EVENTS SLACK_WEBHOOK_URL SLACK_TOKEN SLACK_CHANNEL
SLACK_API_URL SLACK_EVENTS WEBHOOK_URLS WEBHOOK_SECRET WEBHOOK_HEADERS WEBHOOK_TIMEOUT
WEBHOOK_CONCURRENCY WEBHOOK_CA WEBHOOK_EVENTS STDOUT POLL_FAILURE_THRESHOLD SHUTDOWN_TIMEOUT
CONFIG_FILE POLL_INTERVAL_ACTIVE SINK_FAILURE_ALERT STORE STORE_NATS_URL STORE_NATS_REPLICAS LEASE_TTL`)

// notYet are SPEC settings this version does not have yet (each names its issue).
var notYet = map[string]bool{}

var specSecrets = []string{"API_TOKEN", "ADMIN_TOKEN", "NATS_TOKEN", "NATS_PASSWORD", "SLACK_WEBHOOK_URL", "SLACK_TOKEN", "WEBHOOK_SECRET"}

func TestTable(t *testing.T) {
	table := config.Table()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if lines[0] != "| variable | default | secret | meaning |" || lines[1] != "|---|---|---|---|" {
		t.Fatalf("table header:\n%s", table)
	}
	rows := map[string][]string{}
	for _, l := range lines[2:] {
		cells := strings.Split(strings.Trim(l, "|"), " | ")
		if len(cells) != 4 {
			t.Fatalf("row %q has %d cells, want 4", l, len(cells))
		}
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if _, dup := rows[name]; dup {
			t.Fatalf("%s listed twice", name)
		}
		rows[name] = cells
	}
	for name := range rows {
		if !slices.Contains(specVars, strings.TrimPrefix(name, config.Prefix)) {
			t.Errorf("table has %s, which SPEC.md does not name", name)
		}
	}
	defaults := map[string]string{
		"API_URL": "`https://app.plugchoice.com/api/v3`", "POLL_INTERVAL": "`30s`", "FULL_SYNC_INTERVAL": "`10m`",
		"HTTP_TIMEOUT": "`20s`", "STATE_DIR": "`./data`", "LISTEN_ADDR": "`:9090`", "ADMIN_ADDR": "`127.0.0.1:9091`",
		"LOG_LEVEL": "`info`", "LOG_FORMAT": "`json`", "RETRY_MAX_ELAPSED": "`24h`", "NATS_SUBJECT_PREFIX": "`plugchoice.exports`",
		"NATS_EVENTS": "`*`", "SLACK_EVENTS": "`ready,failed,bridge`", "WEBHOOK_TIMEOUT": "`10s`", "WEBHOOK_CONCURRENCY": "`4`",
		"WEBHOOK_EVENTS": "`*`", "POLL_FAILURE_THRESHOLD": "`5`", "SHUTDOWN_TIMEOUT": "`10s`", "EMIT_EXISTING": "`false`",
		"POLL_INTERVAL_ACTIVE": "`10s`",
		"API_BUDGET":           "80% of X-RateLimit-Limit",
		"SINK_FAILURE_ALERT":   "`5m`",
	}
	for _, v := range specVars {
		cells, ok := rows[config.Prefix+v]
		if !ok && notYet[v] {
			continue
		}
		if !ok {
			t.Errorf("table lacks %s%s", config.Prefix, v)
			continue
		}
		if d, ok := defaults[v]; ok && strings.TrimSpace(cells[1]) != d {
			t.Errorf("%s default %q, want %q", v, cells[1], d)
		}
		isSecret := strings.HasPrefix(strings.TrimSpace(cells[2]), "yes")
		if slices.Contains(specSecrets, v) && !isSecret {
			t.Errorf("%s not marked secret", v)
		}
		if strings.TrimSpace(strings.TrimSuffix(cells[3], " |")) == "" {
			t.Errorf("%s has no meaning", v)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("closed pipe") }

func TestUsage(t *testing.T) {
	var buf bytes.Buffer
	if err := config.Usage(&buf); err != nil {
		t.Fatalf("Usage: %v", err)
	}
	for _, v := range specVars {
		if notYet[v] {
			continue
		}
		if !strings.Contains(buf.String(), config.Prefix+v+" ") {
			t.Errorf("usage lacks %s", v)
		}
	}
	if err := config.Usage(failWriter{}); err == nil || !strings.Contains(err.Error(), "closed pipe") {
		t.Fatalf("Usage on a failing writer = %v, want the write error", err)
	}
}

func TestListDecode(t *testing.T) {
	tests := []struct {
		in      string
		want    config.List
		wantErr string
	}{
		{"", nil, ""},
		{"   ", nil, ""},
		{"a", config.List{"a"}, ""},
		{" a , b c ,d ", config.List{"a", "b c", "d"}, ""},
		{"a,,b", nil, "item #2 of 3 is empty"},
		{",a", nil, "item #1 of 2 is empty"},
		{"a, ", nil, "item #2 of 2 is empty"},
	}
	for _, tt := range tests {
		var l config.List
		err := l.Decode(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Decode(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(l, tt.want) {
			t.Errorf("Decode(%q) = %q, %v; want %q", tt.in, l, err, tt.want)
		}
	}
}

func TestHeadersHTTP(t *testing.T) {
	var h config.Headers
	if err := h.Decode("x-a: 1, X-B:two:parts ,x-a:3"); err != nil {
		t.Fatal(err)
	}
	got := h.HTTP()
	if !slices.Equal(got.Values("X-A"), []string{"1", "3"}) || got.Get("X-B") != "two:parts" {
		t.Fatalf("HTTP() = %v", got)
	}
}

// loadAll is what the program does with the settings: config.Load, then every sink's
// block decoded and validated by its kind, all problems together.
func loadAll(env map[string]string) (*config.Config, error) {
	c, _, err := registry.LoadSettings(env, "")
	return c, err
}

// With STORE=nats, the NATS_* connection settings are the store's, so a config file of
// sinks does not refuse them; the settings of a NATS sink still are.
func TestStoreNATSKeepsItsConnectionBesideAConfigFile(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("sinks:\n  - name: out\n    kind: stdout\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := e("CONFIG_FILE", cfgFile, "STORE", "nats", "NATS_URL", "nats://127.0.0.1:4222", "NATS_TOKEN", natsToken)
	if _, err := loadAll(base); err != nil {
		t.Fatalf("STORE=nats with a config file and NATS_URL/NATS_TOKEN: %v", err)
	}
	base[config.Prefix+"NATS_SUBJECT_PREFIX"] = "acme"
	ps := problems(t, func() error { _, err := loadAll(base); return err }())
	if len(ps) != 1 || ps[0].Var != config.Prefix+"NATS_SUBJECT_PREFIX" {
		t.Fatalf("problems %+v, want NATS_SUBJECT_PREFIX refused", ps)
	}
	delete(base, config.Prefix+"STORE")
	delete(base, config.Prefix+"NATS_SUBJECT_PREFIX")
	if ps := problems(t, func() error { _, err := loadAll(base); return err }()); len(ps) != 2 {
		t.Fatalf("with STORE=bolt: problems %+v, want NATS_URL and NATS_TOKEN refused", ps)
	}
}
