package chaos

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestHAClusterNodeLoss (STORE=nats): two replicas run as subprocesses on a 3-node
// JetStream cluster on loopback (in-process servers with routes, STORE_NATS_REPLICAS=3)
// while exports move through their statuses. Mid-stream the node that leads the outbox
// stream is shut down. Every transition reaches the webhook in per-export order,
// duplicates carry identical bytes, and both replicas stay up.
func TestHAClusterNodeLoss(t *testing.T) {
	needChaos(t)
	const ttl = 3 * time.Second
	srvs, urls := bridgetest.StartCluster(t, 3)
	// The replicas create the bridge's buckets and streams themselves, both at once (a
	// concurrent creation the cluster may leave unanswered: they retry), once the fresh
	// cluster has elected its JetStream meta leader.
	bridgetest.WaitFor(t, 30*time.Second, "a JetStream meta leader", func() bool {
		for _, s := range srvs {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})

	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	live := sim.AddN(pick(60, 200), "pending")
	h := newHook(t)
	procs := make([]*proc, 2)
	listen := make([]string, len(procs))
	for i := range procs {
		env := baseEnv(apiURL, token, filepath.Join(t.TempDir(), fmt.Sprint(i)))
		listen[i] = bridgetest.FreeAddr(t)
		env["EXPORTBRIDGE_LISTEN_ADDR"] = listen[i]
		env["EXPORTBRIDGE_STORE"] = "nats"
		env["EXPORTBRIDGE_STORE_NATS_URL"] = strings.Join(urls, ",")
		env["EXPORTBRIDGE_STORE_NATS_REPLICAS"] = "3"
		env["EXPORTBRIDGE_LEASE_TTL"] = ttl.String()
		env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
		env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
		env["EXPORTBRIDGE_PER_PAGE"] = "100"
		procs[i] = start(t, env, "run")
	}
	bridgetest.WaitFor(t, 60*time.Second, "a first poll cycle", func() bool {
		for _, p := range procs {
			if p.Exited() {
				t.Fatalf("a replica exited (code %d):\n%s", p.Code(), bridgetest.Tail(p.Stderr.String(), 3000))
			}
		}
		return totalPolls(procs) > 0
	})
	baseline := len(sim.Transitions())
	bridgetest.WaitFor(t, 30*time.Second, "every replica ready", func() bool {
		for _, a := range listen {
			if code, _ := readyz(a); code != http.StatusOK {
				return false
			}
		}
		return true
	})

	hold := 2 * time.Second
	d := newDriver(sim, live, 2)
	var lost string
	steps := pick(12, 40)
	for s := range steps {
		d.step(0.3)
		if s == steps/2 {
			lost = shutDownOutboxLeader(t, srvs)
		}
		time.Sleep(hold)
	}
	time.Sleep(hold)
	want := expectedSince(sim, baseline, nil)
	if len(want) == 0 || lost == "" {
		t.Fatalf("%d transitions, node lost %q: nothing to check", len(want), lost)
	}
	bridgetest.WaitFor(t, pick(90*time.Second, 3*time.Minute), fmt.Sprintf("%d webhook events", len(want)), func() bool {
		return hasAll(h.Deliveries(), want)
	})
	time.Sleep(2 * time.Second) // anything extra (wrong) would show now
	r := checkInvariant(t, "webhook", h.Deliveries(), want)
	for i, p := range procs {
		if p.Exited() {
			t.Errorf("replica %d exited (code %d) after the node loss:\n%s", i, p.Code(), bridgetest.Tail(p.Stderr.String(), 3000))
		}
	}
	retries := 0
	for _, p := range procs {
		retries += strings.Count(p.Stderr.String(), "yet; retrying")
	}
	report(t, "2 replicas on a 3-node cluster (STORE_NATS_REPLICAS=3), %d start-up retries, %d steps, outbox leader %s shut down at step %d; %s",
		retries, steps, lost, steps/2, r)
}

// shutDownOutboxLeader shuts down the server that leads the outbox stream (the one
// whose loss costs a leader election on the hot path) and returns its name.
func shutDownOutboxLeader(t *testing.T, srvs []*natsserver.Server) string {
	t.Helper()
	for _, s := range srvs {
		if s.JetStreamIsStreamLeader(natsserver.DEFAULT_GLOBAL_ACCOUNT, natsstore.OutboxStream) {
			name := s.Name()
			s.Shutdown()
			t.Logf("shut down %s, the leader of %s", name, natsstore.OutboxStream)
			return name
		}
	}
	t.Fatalf("no server leads %s", natsstore.OutboxStream)
	return ""
}
