package chaos

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestDiskFull (scenario 4): the store lives on a small tmpfs that is filled mid-run. The
// bridge must stop advancing (no successful poll cycle while commits fail), say
// store_error on /readyz and in its log, resume when space returns, and lose nothing.
// Needs mount(2) (root in this sandbox); skipped with the reason otherwise.
func TestDiskFull(t *testing.T) {
	needChaos(t)
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, "size=4m", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	live := sim.AddN(30, "pending")
	h := newHook(t)
	listen := bridgetest.FreeAddr(t)
	env := baseEnv(apiURL, token, dir)
	env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
	env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
	env["EXPORTBRIDGE_LISTEN_ADDR"] = listen
	env["EXPORTBRIDGE_PER_PAGE"] = "100"
	p := start(t, env, "run")
	p.WaitPolls(1, 60*time.Second)
	baseline := len(sim.Transitions())
	d := newDriver(sim, live, 2)
	d.step(0.5)
	p.WaitPolls(p.Polls()+2, 60*time.Second)

	// Fill the file system.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 16<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()
	// A burst of new exports needs new pages in the store: the commit must fail.
	sim.AddN(300, "ready")
	d.step(0.5)
	var body string
	bridgetest.WaitFor(t, 60*time.Second, "/readyz 503 store_error", func() bool {
		var code int
		code, body = readyz(listen)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "store_error")
	})
	stuck := p.Polls()
	time.Sleep(5 * time.Second)
	if n := p.Polls(); n != stuck {
		t.Errorf("%d poll cycles succeeded while the disk was full: the snapshot advanced without a commit", n-stuck)
	}
	logged := strings.Contains(p.Stderr.String(), "no space left on device")
	if !logged {
		t.Errorf("the log does not say 'no space left on device' while commits fail")
	}
	if p.Exited() {
		t.Fatalf("the bridge exited on a full disk (code %d)", p.Code())
	}

	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 60*time.Second, "/readyz 200 after space returned", func() bool {
		code, _ := readyz(listen)
		return code == http.StatusOK
	})
	d.step(0.5)
	p.WaitPolls(p.Polls()+2, 60*time.Second)
	want := expectedSince(sim, baseline, nil)
	bridgetest.WaitFor(t, 120*time.Second, fmt.Sprintf("%d events", len(want)), func() bool { return hasAll(h.Deliveries(), want) })
	time.Sleep(time.Second)
	r := checkInvariant(t, "webhook", h.Deliveries(), want)
	noSecretInRequests(t, h)
	report(t, "tmpfs 4 MiB filled: /readyz said %s; polls stopped; store file %d bytes after; %s",
		strings.TrimSpace(body), fileSize(filepath.Join(dir, "exportbridge.db")), r)
}

// TestStoreReadOnly (scenario 4, read-only half): a read-only remount of the store's file
// system while the bridge runs is refused by the kernel (EBUSY: the store is open for
// writing), so what can be tested here is a store directory that is read-only when the
// bridge starts: it must exit at once with a clear message naming the directory, not
// run without a store.
func TestStoreReadOnly(t *testing.T) {
	needChaos(t)
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, "size=1m,ro", dir)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	sim.AddN(3, "ready")
	p := start(t, baseEnv(apiURL, token, dir), "run")
	p.Wait(60 * time.Second) // fails the test when the bridge keeps running
	errOut := p.Stderr.String()
	if p.Code() == 0 {
		t.Errorf("exit code 0 on a read-only store directory")
	}
	if !strings.Contains(errOut, dir) || !strings.Contains(errOut, "read-only file system") {
		t.Errorf("the message does not name %s and 'read-only file system':\n%s", dir, errOut)
	}
	report(t, "read-only store directory at start: exit code %d, %q", p.Code(), strings.TrimSpace(bridgetest.Tail(errOut, 300)))
}

// mountTmpfs mounts a tmpfs with opts on dir. Where mount(2) is not allowed the scenario
// is skipped with the reason, except under CI (CI=true): CI runs as root, where mount
// works, so a failure there would silently drop the scenario and fails instead.
func mountTmpfs(t *testing.T, opts, dir string) {
	t.Helper()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("cannot mount a tmpfs (-o %s) on %s (%v: %s)", opts, dir, err, strings.TrimSpace(string(out)))
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: CI runs as root and must run this scenario", msg)
	}
	t.Skipf("%s: scenario not run here; see RELIABILITY.md", msg)
}
