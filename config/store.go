package config

import (
	"strings"
	"time"
)

// Store kinds (STORE).
const (
	StoreBolt = "bolt"
	StoreNATS = "nats"
)

// validateStore checks STORE and, for STORE=nats, its settings; STORE_NATS_URL defaults
// to NATS_URL.
func (l *loader) validateStore() {
	c := l.cfg
	switch k := strings.ToLower(strings.TrimSpace(c.Store)); k {
	case StoreBolt, StoreNATS:
		c.Store = k
	default:
		l.problem("STORE", "%q is not a store (expected bolt or nats)", c.Store)
		return
	}
	if c.Store == StoreBolt {
		l.unused([]string{"STORE_NATS_URL", "STORE_NATS_REPLICAS", "LEASE_TTL"}, "STORE=nats")
		return
	}
	if len(c.StoreNATSURL) == 0 && !l.bad["STORE_NATS_URL"] {
		c.StoreNATSURL = c.NATSURL
	}
	if len(c.StoreNATSURL) == 0 && !l.bad["STORE_NATS_URL"] && !l.bad["NATS_URL"] {
		l.problem("STORE_NATS_URL", "is required when EXPORTBRIDGE_STORE is nats (expected the NATS servers holding the state, such as nats://nats:4222; EXPORTBRIDGE_NATS_URL is used when set)")
	}
	l.intRange("STORE_NATS_REPLICAS", c.StoreNATSReplicas, 1, 5)
	l.positive("LEASE_TTL", c.LeaseTTL, time.Second)
}
