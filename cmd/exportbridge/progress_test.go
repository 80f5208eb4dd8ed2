package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/store"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// onTerminal runs the binary with a terminal as its stdout and stderr (util-linux's
// script), and returns what the terminal showed.
func onTerminal(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("script (util-linux) not found: %v (CI runs on Debian, where it is essential)", err)
		}
		t.Skipf("script (util-linux) not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	line := binPath + " " + strings.Join(args, " ")
	cmd := exec.CommandContext(ctx, script, "-qefc", line, "/dev/null")
	cmd.Env = bridgetest.EnvList(env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s on a terminal: %v\n%s", line, err, bridgetest.Tail(string(out), 3000))
	}
	return string(out)
}

// TestLongCommandsShowProgress: replaying thousands of dead letters draws a bar on a
// terminal, ending complete on a line of its own; without a terminal (a log, a pipe)
// work that takes less than 10 s prints no progress at all, only the result.
func TestLongCommandsShowProgress(t *testing.T) {
	const n = 3000
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{ID: fmt.Sprintf("ev-%05d", i), Type: "export.failed", Subject: fmt.Sprintf("u%05d", i), Status: "failed", Body: []byte(`{}`)}
	}
	if err := st.Enqueue("hook", evs...); err != nil {
		t.Fatal(err)
	}
	recs, err := st.Pending("hook", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Settle("hook", store.Settlement{Dead: recs}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	env := map[string]string{"EXPORTBRIDGE_STATE_DIR": dir}

	shown := onTerminal(t, env, "dlq", "replay", "--all")
	bar := "\rdlq replay [" + strings.Repeat("#", 30) + "] 3,000/3,000 records 100%\r\n"
	if !strings.Contains(shown, bar) || !strings.Contains(shown, "replayed 3000 dead letters") {
		t.Errorf("the terminal showed %q, want the complete bar %q on its own line and the result", bridgetest.Tail(shown, 600), bar)
	}

	// Back to the dead-letter queue, and once more without a terminal.
	st, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if recs, err = st.Pending("hook", 0, 0); err != nil || len(recs) != n {
		t.Fatalf("after the replay: %d queued, %v; want %d", len(recs), err, n)
	}
	if err := st.Settle("hook", store.Settlement{Dead: recs}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	stdout, stderr, code := run(t, env, 60*time.Second, "dlq", "replay", "--all")
	if code != 0 || stdout != "replayed 3000 dead letters\n" {
		t.Fatalf("dlq replay --all without a terminal: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if strings.Contains(stderr, "\r") || strings.Contains(stderr, "records") {
		t.Errorf("without a terminal, quick work printed progress: %q", stderr)
	}
}
