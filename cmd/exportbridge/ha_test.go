package main

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/store"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestAdminCommandsOnJetStream: with STORE=nats, state, dlq and queue work straight on
// JetStream, with no bridge running.
func TestAdminCommandsOnJetStream(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	st, err := natsstore.OpenURL(context.Background(), srv.ClientURL(), natsstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ev := func(id string) event.Event {
		return event.Event{ID: id, Type: "export.ready", Subject: "u-" + id, Status: "ready", DetectedAt: time.Now(), Body: []byte(`{"id":"` + id + `"}`)}
	}
	if err := st.Enqueue("webhook", ev("queued-1"), ev("dead-1")); err != nil {
		t.Fatal(err)
	}
	recs, err := st.Pending("webhook", 0, 0)
	if err != nil || len(recs) != 2 {
		t.Fatalf("Pending = %d records, %v", len(recs), err)
	}
	recs[1].Attempts, recs[1].LastError = 1, "HTTP 410: gone"
	if err := st.Settle("webhook", store.Settlement{Dead: recs[1:]}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"EXPORTBRIDGE_STORE": "nats", "EXPORTBRIDGE_STORE_NATS_URL": srv.ClientURL(), "EXPORTBRIDGE_STATE_DIR": t.TempDir()}

	out, errOut, code := run(t, env, 30*time.Second, "state", "--json")
	var s struct {
		Outbox      map[string]int `json:"outbox"`
		DeadLetters map[string]int `json:"dead_letters"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.Outbox["webhook"] != 1 {
		t.Errorf("state --json: exit %d, %s %s; want outbox webhook 1", code, out, errOut)
	}
	out, errOut, code = run(t, env, 30*time.Second, "dlq", "list")
	if code != 0 || !strings.Contains(out, "dead-1") || strings.Contains(out, "queued-1") {
		t.Errorf("dlq list: exit %d, %s %s; want dead-1 only", code, out, errOut)
	}
	if _, errOut, code = run(t, env, 30*time.Second, "dlq", "replay", "dead-1"); code != 0 {
		t.Errorf("dlq replay: exit %d: %s", code, errOut)
	}
	if q, d, err := st.Depths("webhook"); err != nil || q != 2 || d != 0 {
		t.Errorf("after replay: %d queued, %d dead, %v; want 2, 0", q, d, err)
	}
	env["EXPORTBRIDGE_STDOUT"] = "true"
	if _, errOut, code = run(t, env, 30*time.Second, "queue", "move", "--from", "webhook", "--to", "stdout"); code != 0 {
		t.Errorf("queue move: exit %d: %s", code, errOut)
	}
	if q, _, _ := st.Depths("stdout"); q != 2 {
		t.Errorf("after queue move: stdout has %d queued, want 2", q)
	}
}

// TestMigrateCommand: `migrate --to nats` copies a bolt store once; a second run says so
// and copies nothing.
func TestMigrateCommand(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	dir := t.TempDir()
	b, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Enqueue("webhook", event.Event{ID: "m-1", Type: "export.ready", Subject: "u1", Status: "ready", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	env := map[string]string{"EXPORTBRIDGE_STORE_NATS_URL": srv.ClientURL(), "EXPORTBRIDGE_STATE_DIR": dir}
	for i, want := range []string{"1 queued events", "already migrated"} {
		out, errOut, code := run(t, env, 30*time.Second, "migrate", "--to", "nats")
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("run %d: exit %d, stdout %q, stderr %q; want %q", i+1, code, out, errOut, want)
		}
	}
	if _, errOut, code := run(t, env, 30*time.Second, "migrate"); code != 2 || !strings.Contains(errOut, "--to nats") {
		t.Errorf("migrate without --to: exit %d, %q; want 2 and a hint", code, errOut)
	}
	st, err := natsstore.OpenURL(context.Background(), srv.ClientURL(), natsstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if q, _, _ := st.Depths("webhook"); q != 1 {
		t.Errorf("JetStream webhook queue = %d, want 1 (copied once)", q)
	}
}

func TestOnceRefusesSharedState(t *testing.T) {
	env := map[string]string{"EXPORTBRIDGE_STORE": "nats", "EXPORTBRIDGE_STORE_NATS_URL": "nats://127.0.0.1:1", "EXPORTBRIDGE_API_TOKEN": "t", "EXPORTBRIDGE_STDOUT": "true"}
	_, errOut, code := run(t, env, 30*time.Second, "once")
	if code != 2 || !strings.Contains(errOut, "use run") {
		t.Errorf("once with STORE=nats: exit %d, %q; want 2 and a hint to use run", code, errOut)
	}
}

// TestRunOnJetStream: `run` with STORE=nats polls, delivers to the webhook and serves the
// status page from the shared state; SIGTERM releases its leases and exits 0.
func TestRunOnJetStream(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	sim, apiURL := newSim(t, simToken)
	uuids := sim.AddN(3, "pending")
	h := newHook(t)
	env := withHook(baseEnv(apiURL, t.TempDir()), h)
	env["EXPORTBRIDGE_STORE"] = "nats"
	env["EXPORTBRIDGE_STORE_NATS_URL"] = srv.ClientURL()
	env["EXPORTBRIDGE_LEASE_TTL"] = "3s"
	admin := bridgetest.FreeAddr(t)
	env["EXPORTBRIDGE_ADMIN_ADDR"] = admin
	p := start(t, env, "run")
	p.WaitPolls(1, 30*time.Second)
	sim.SetStatus(uuids[0], "ready")
	bridgetest.WaitFor(t, 15*time.Second, "the transition at the webhook", func() bool { return len(h.deliveries()) >= 1 })
	if d := h.deliveries()[0]; d.Subject != uuids[0] || d.Type != "com.plugchoice.export.ready" {
		t.Errorf("delivered %s %s, want export.ready of %s", d.Type, d.Subject, uuids[0])
	}
	resp, err := http.Get("http://" + admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "JetStream") || !strings.Contains(string(body), uuids[1]) {
		t.Errorf("status page: %d, want 200 naming the JetStream store and the export in flight %s:\n%s", resp.StatusCode, uuids[1], bridgetest.Tail(string(body), 2000))
	}
	// The last events come from the shared state too: the delivered one is listed by its
	// export's file name.
	var ce struct {
		Data struct {
			Export struct {
				Filename string `json:"filename"`
			} `json:"export"`
		} `json:"data"`
	}
	if err := json.Unmarshal(h.deliveries()[0].Body, &ce); err != nil || ce.Data.Export.Filename == "" {
		t.Fatalf("delivered event: %v, file name %q: want one to look for on the status page", err, ce.Data.Export.Filename)
	}
	if !strings.Contains(string(body), html.EscapeString(ce.Data.Export.Filename)) {
		t.Errorf("status page: the delivered event (file %s) is not among the last events:\n%s", ce.Data.Export.Filename, bridgetest.Tail(string(body), 2000))
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(p.Stderr.String(), `"msg":"lease given up"`) {
		t.Error("no lease given up on SIGTERM")
	}
}
