package scripts_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// TestComposeHA parses deploy/compose-ha.yaml (anchors and merge keys resolved) and
// checks its structure: a 3-node NATS JetStream cluster whose nodes route to each other,
// and 2 bridge replicas on STORE=nats with 3 replicas of its state, the token as a secret.
func TestComposeHA(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "compose-ha.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Secrets     []string          `yaml:"secrets"`
			DependsOn   []string          `yaml:"depends_on"`
			Build       struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("deploy/compose-ha.yaml: %v", err)
	}
	var nats, bridges []string
	for name, s := range doc.Services {
		switch {
		case strings.HasPrefix(s.Image, "nats:"):
			nats = append(nats, name)
		case s.Build.Dockerfile == "Dockerfile":
			bridges = append(bridges, name)
		}
	}
	slices.Sort(nats)
	slices.Sort(bridges)
	if len(nats) != 3 || len(bridges) != 2 {
		t.Fatalf("services: NATS %v, bridges %v; want 3 NATS nodes and 2 bridge replicas", nats, bridges)
	}
	for _, n := range nats {
		cmd := strings.Join(doc.Services[n].Command, " ")
		for _, want := range []string{"-js", "--name " + n, "--cluster_name exportbridge", "--cluster nats://0.0.0.0:6222"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s: command %q lacks %q", n, cmd, want)
			}
		}
		for _, other := range nats {
			if other != n && !strings.Contains(cmd, "nats://"+other+":6222") {
				t.Errorf("%s: no route to %s", n, other)
			}
		}
	}
	for _, b := range bridges {
		s := doc.Services[b]
		env := s.Environment
		if env["EXPORTBRIDGE_STORE"] != "nats" || env["EXPORTBRIDGE_STORE_NATS_REPLICAS"] != "3" || env["EXPORTBRIDGE_LEASE_TTL"] == "" {
			t.Errorf("%s: STORE %q, STORE_NATS_REPLICAS %q, LEASE_TTL %q; want nats, 3, set", b, env["EXPORTBRIDGE_STORE"], env["EXPORTBRIDGE_STORE_NATS_REPLICAS"], env["EXPORTBRIDGE_LEASE_TTL"])
		}
		for _, n := range nats {
			if !strings.Contains(env["EXPORTBRIDGE_STORE_NATS_URL"], "nats://"+n+":4222") {
				t.Errorf("%s: STORE_NATS_URL %q lacks %s", b, env["EXPORTBRIDGE_STORE_NATS_URL"], n)
			}
			if !slices.Contains(s.DependsOn, n) {
				t.Errorf("%s: does not depend on %s", b, n)
			}
		}
		if env["EXPORTBRIDGE_API_TOKEN_FILE"] != "/run/secrets/plugchoice_token" || !slices.Contains(s.Secrets, "plugchoice_token") {
			t.Errorf("%s: the API token is not read from the plugchoice_token secret", b)
		}
	}
	if doc.Secrets["plugchoice_token"].File == "" {
		t.Error("secret plugchoice_token has no file")
	}
	if strings.Contains(string(raw), "\t") {
		t.Error("deploy/compose-ha.yaml contains tabs")
	}
}
