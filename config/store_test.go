package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/config"
)

func TestStoreSettings(t *testing.T) {
	good := []struct {
		name     string
		env      map[string]string
		store    string
		urls     []string
		replicas int
		ttl      time.Duration
		warn     string
	}{
		{"the default is the embedded store", e(), "bolt", nil, 1, 15 * time.Second, ""},
		{"nats takes the sink's NATS_URL by default", e("STORE", "NATS", "NATS_URL", "nats://n:4222"), "nats", []string{"nats://n:4222"}, 1, 15 * time.Second, ""},
		{"nats with its own servers, replicas and TTL", e("STORE", "nats", "STORE_NATS_URL", "nats://a:4222, nats://b:4222", "STORE_NATS_REPLICAS", "3", "LEASE_TTL", "3s"),
			"nats", []string{"nats://a:4222", "nats://b:4222"}, 3, 3 * time.Second, ""},
		{"lease settings without STORE=nats are only a warning", e("LEASE_TTL", "5s"), "bolt", nil, 1, 5 * time.Second, "EXPORTBRIDGE_LEASE_TTL has no effect without EXPORTBRIDGE_STORE=nats"},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Load(c.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.Store != c.store || !slices.Equal([]string(cfg.StoreNATSURL), c.urls) || cfg.StoreNATSReplicas != c.replicas || cfg.LeaseTTL != c.ttl {
				t.Errorf("store %q urls %q replicas %d ttl %s, want %q %q %d %s", cfg.Store, cfg.StoreNATSURL, cfg.StoreNATSReplicas, cfg.LeaseTTL, c.store, c.urls, c.replicas, c.ttl)
			}
			if c.warn != "" && !slices.Contains(cfg.Warnings, c.warn) {
				t.Errorf("warnings %q, want %q", cfg.Warnings, c.warn)
			}
		})
	}
	bad := []struct {
		name string
		env  map[string]string
		v    string
		msg  string
	}{
		{"unknown store", e("STORE", "redis"), "STORE", `"redis" is not a store (expected bolt or nats)`},
		{"nats without servers", e("STORE", "nats"), "STORE_NATS_URL", "is required when EXPORTBRIDGE_STORE is nats"},
		{"too many replicas", e("STORE", "nats", "STORE_NATS_URL", "nats://a:4222", "STORE_NATS_REPLICAS", "7"), "STORE_NATS_REPLICAS", "7 is out of range (expected 1 to 5)"},
		{"a lease too short", e("STORE", "nats", "STORE_NATS_URL", "nats://a:4222", "LEASE_TTL", "200ms"), "LEASE_TTL", "200ms is too short (expected at least 1s)"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Load(c.env)
			ps := problems(t, err)
			found := false
			for _, p := range ps {
				found = found || p.Var == config.Prefix+c.v && strings.Contains(p.Msg, c.msg)
			}
			if !found {
				t.Errorf("problems %+v, want %s%s: ...%s...", ps, config.Prefix, c.v, c.msg)
			}
		})
	}
}
