package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on deploy/systemd/exportbridge.service
// (with ExecStart pointed at an executable that exists here), and checks the hardening
// the README promises.
func TestSystemdUnitVerifies(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "systemd", "exportbridge.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=exportbridge", "LoadCredential=api-token:",
		"EXPORTBRIDGE_API_TOKEN_FILE=%d/api-token", "EXPORTBRIDGE_CONFIG_FILE=", "NoNewPrivileges=yes", "ProtectSystem=strict"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: the unit's syntax is not verified here (Debian: apt-get install systemd)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit = strings.ReplaceAll(unit, "/usr/local/bin/exportbridge", self)
	path := filepath.Join(t.TempDir(), "exportbridge.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "exportbridge.service:") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
