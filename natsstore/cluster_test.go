package natsstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/store"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// openReplicated opens the store with 3 replicas once the cluster has a JetStream
// leader (a fresh cluster needs a few seconds).
func openReplicated(t *testing.T, urls []string) *natsstore.Store {
	t.Helper()
	var s *natsstore.Store
	var err error
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		s, err = natsstore.OpenURL(context.Background(), strings.Join(urls, ","),
			natsstore.Options{Replicas: 3, Timeout: 3 * time.Second}, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err == nil {
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	}
	t.Fatalf("open a 3-replica store on the cluster: %v", err)
	return nil
}

// TestClusterNodeLoss: with STORE_NATS_REPLICAS=3 on a 3-node cluster, the node the
// bridge is connected to dies while cycles are being committed. A failed commit is
// retried as the poller's next cycle would (same events, same ids): every event is
// queued once, in order, and the snapshot is complete.
func TestClusterNodeLoss(t *testing.T) {
	srvs, urls := bridgetest.StartCluster(t, 3)
	s := openReplicated(t, urls)
	const cycles, per = 30, 10
	killed, retries := false, 0
	start := time.Now()
	for c := range cycles {
		cy := store.Cycle{Upserts: map[string]diff.Entry{}, Poll: store.PollInfo{At: time.Now(), OK: true}}
		for i := range per {
			uuid := fmt.Sprintf("u%d", i) // each export changes in every cycle
			cy.Upserts[uuid] = diff.Entry{Status: "ready", At: int64(c)}
			cy.Events = append(cy.Events, routed(ev(fmt.Sprintf("e%03d-%d", c, i), uuid), "webhook"))
		}
		if c == cycles/3 {
			name := s.Conn().ConnectedServerName()
			for _, srv := range srvs {
				if srv.Name() == name {
					srv.Shutdown()
					killed = true
					t.Logf("cycle %d: shut down %s, the node the store is connected to", c, name)
				}
			}
		}
		for {
			err := s.CommitCycle(cy)
			if err == nil {
				break
			}
			if retries++; retries > 200 {
				t.Fatalf("cycle %d: still failing after %d retries: %v", c, retries, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !killed {
		t.Fatal("no node was shut down: nothing was tested")
	}
	t.Logf("%d cycles of %d events committed in %s with a node lost, %d retried commits", cycles, per, time.Since(start).Round(time.Millisecond), retries)
	recs := pending(t, s, "webhook")
	if len(recs) != cycles*per {
		t.Errorf("queued %d events, want %d (each once)", len(recs), cycles*per)
	}
	// Per export, the events are queued in the order of their cycles (the dispatcher
	// delivers in queue order). Events of different exports in one cycle may be stored
	// in any order.
	last := map[string]string{}
	for _, r := range recs {
		if prev, ok := last[r.Event.Subject]; ok && r.Event.ID <= prev {
			t.Errorf("export %s: event %s queued after %s", r.Event.Subject, r.Event.ID, prev)
		}
		last[r.Event.Subject] = r.Event.ID
	}
	snap, _, err := s.LoadSnapshot()
	must(t, err)
	if len(snap) != per || snap["u0"].At != cycles-1 {
		t.Errorf("snapshot = %v, want %d exports at the last cycle", snap, per)
	}
}
