package config_test

import (
	"reflect"
	"testing"

	"github.com/exportbridge/exportbridge/config"
	"github.com/kelseyhightower/envconfig"
)

// Load reads the variables itself (see the package doc); on a valid, prefixed
// environment it must agree with envconfig.Process over the same struct tags.
func TestLoadAgreesWithEnvconfig(t *testing.T) {
	ca := writeFile(t, "pem")
	env := e(
		"API_URL", "https://api.example/v3", "API_TOKEN", apiToken, "FILTER_TYPES", "a, b",
		"FILTER_SUBJECT_TYPE", "site", "FILTER_SUBJECT_ID", "7", "POLL_INTERVAL", "15s",
		"FULL_SYNC_INTERVAL", "5m", "HTTP_TIMEOUT", "9s", "PER_PAGE", "50", "API_BUDGET", "300",
		"STATE_DIR", "/var/lib/eb", "EMIT_EXISTING", "true", "EMIT_REMOVED", "false",
		"LISTEN_ADDR", "", "ADMIN_ADDR", "0.0.0.0:9091", "ADMIN_TOKEN", adminToken,
		"LOG_LEVEL", "warn", "LOG_FORMAT", "text", "RETRY_MAX_ELAPSED", "2h",
		"NATS_URL", "nats://a:4222,b:4222", "NATS_SUBJECT_PREFIX", "x.y", "NATS_JETSTREAM", "true",
		"NATS_CREDS", "", "NATS_NKEY", "", "NATS_TOKEN", natsToken, "NATS_USER", "", "NATS_PASSWORD", "",
		"NATS_CA", ca, "NATS_CERT", ca, "NATS_KEY", ca, "NATS_EVENTS", "ready",
		"SLACK_WEBHOOK_URL", "", "SLACK_TOKEN", slackToken, "SLACK_CHANNEL", "#c",
		"SLACK_API_URL", "http://127.0.0.1:1/api/", "SLACK_EVENTS", "*",
		"WEBHOOK_URLS", "https://h/1,https://h/2", "WEBHOOK_SECRET", whsec, "WEBHOOK_HEADERS", "X-A:b",
		"WEBHOOK_TIMEOUT", "4s", "WEBHOOK_CONCURRENCY", "8", "WEBHOOK_CA", ca, "WEBHOOK_EVENTS", "failed",
		"STDOUT", "true", "POLL_FAILURE_THRESHOLD", "3", "SHUTDOWN_TIMEOUT", "20s",
		"POLL_INTERVAL_ACTIVE", "5s", "SINK_FAILURE_ALERT", "90s",
		"STORE", "nats", "STORE_NATS_URL", "nats://s1:4222,s2:4222", "STORE_NATS_REPLICAS", "3", "LEASE_TTL", "5s",
	)
	if len(env) != len(specVars)-len(notYet)-1 { // CONFIG_FILE replaces the sink settings
		t.Fatalf("the test sets %d variables, SPEC has %d", len(env), len(specVars))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	got, err := config.Load(nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var want config.Config
	if err := envconfig.Process(config.EnvPrefix, &want); err != nil {
		t.Fatalf("envconfig.Process: %v", err)
	}
	got.Warnings, got.Sinks = nil, nil
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("Load and envconfig.Process disagree:\n Load    %+v\n envconfig %+v", *got, want)
	}
}
