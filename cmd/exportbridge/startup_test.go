package main

import (
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/natsembed"
)

// TestStartOnJetStreamStopsAtAnAnswer: at start the state's open is retried only while
// JetStream does not answer. An answer that another attempt would get again, such as 3
// replicas on a single server, ends the start at once (no minute of retries), with the
// server's reason.
func TestStartOnJetStreamStopsAtAnAnswer(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	env := map[string]string{
		"EXPORTBRIDGE_STORE": "nats", "EXPORTBRIDGE_STORE_NATS_URL": srv.ClientURL(), "EXPORTBRIDGE_STORE_NATS_REPLICAS": "3",
		"EXPORTBRIDGE_API_TOKEN": "t", "EXPORTBRIDGE_STDOUT": "true", "EXPORTBRIDGE_STATE_DIR": t.TempDir(),
	}
	_, errOut, code := run(t, env, 30*time.Second, "run") // startWait is a minute: 30 s proves it did not wait
	if code == 0 || !strings.Contains(errOut, "replicas") {
		t.Errorf("run with 3 replicas on one server: exit %d, stderr %q; want a failure naming the replicas", code, errOut)
	}
	if strings.Contains(errOut, "retrying") {
		t.Errorf("the server's answer was retried:\n%s", errOut)
	}
}
