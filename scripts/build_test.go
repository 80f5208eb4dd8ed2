// Package scripts_test proves the container build without a container engine: it runs
// scripts/build.sh, the exact build step the Dockerfile runs, and checks the result, and
// it checks the Dockerfile and the deployment examples for what the image promises.
package scripts_test

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// root is the repository root, relative to this package's directory.
const root = ".."

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}

// staticELF returns nil when the ELF file at path is statically linked: no PT_INTERP
// program header (no dynamic loader) and no PT_DYNAMIC segment.
func staticELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("open %s as ELF: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			return fmt.Errorf("%s has a PT_INTERP program header (dynamically linked; expected CGO_ENABLED=0)", path)
		case elf.PT_DYNAMIC:
			return fmt.Errorf("%s has a PT_DYNAMIC segment (dynamically linked; expected CGO_ENABLED=0)", path)
		}
	}
	return nil
}

// TestBuildScript runs scripts/build.sh into a temporary directory, as the Dockerfile
// does, and checks that the binary is static, runs, and reports the injected version
// and commit.
func TestBuildScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole binary with -trimpath; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skipf("the image is linux; the ELF checks need linux, not %s", runtime.GOOS)
	}
	for _, tool := range []string{"sh", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	out := filepath.Join(t.TempDir(), "exportbridge")
	const version, commit = "v0.0.0-buildtest", "0123456789abcdef0123456789abcdef01234567"

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(root, "scripts", "build.sh"))
	cmd.Env = append(os.Environ(), "OUT="+out, "VERSION="+version, "COMMIT="+commit)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, b)
	}

	if err := staticELF(out); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	run := exec.CommandContext(ctx, out, "version")
	run.Env = []string{} // the image's binary must not need anything from the environment
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("%s version: %v\nstderr: %s", out, err, stderr.String())
	}
	for _, want := range []string{"exportbridge " + version, "commit " + commit, runtime.Version()} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// TestStaticELFDetectsDynamicBinaries makes sure the static check can fail: the test
// binary itself is checked when it is dynamically linked, and a file that is not ELF is
// an error.
func TestStaticELFDetectsDynamicBinaries(t *testing.T) {
	notELF := filepath.Join(t.TempDir(), "not-elf")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := staticELF(notELF); err == nil {
		t.Error("a shell script passed as a static ELF binary")
	}
	if err := staticELF(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file passed as a static ELF binary")
	}
	if runtime.GOOS != "linux" {
		return
	}
	// A known dynamically linked binary, when the system has one.
	for _, p := range []string{"/bin/sh", "/usr/bin/env", "/bin/ls"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dynamic := false
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				dynamic = true
			}
		}
		f.Close()
		if !dynamic {
			continue
		}
		if err := staticELF(p); err == nil || !strings.Contains(err.Error(), "PT_INTERP") {
			t.Errorf("staticELF(%s) = %v, want a PT_INTERP error", p, err)
		}
		return
	}
	t.Error("no dynamically linked system binary found (/bin/sh, /usr/bin/env, /bin/ls): the negative case was not exercised")
}

// dockerInstructions returns the Dockerfile's instructions of the final stage (after the
// last FROM), one per line, continuation lines joined and comments dropped.
func dockerInstructions(dockerfile string) (all, final []string) {
	var cur strings.Builder
	for _, line := range strings.Split(dockerfile, "\n") {
		trim := strings.TrimSpace(line)
		if cur.Len() == 0 && (trim == "" || strings.HasPrefix(trim, "#")) {
			continue
		}
		cont := strings.HasSuffix(trim, `\`)
		cur.WriteString(strings.TrimSuffix(trim, `\`))
		if cont {
			cur.WriteByte(' ')
			continue
		}
		ins := cur.String()
		cur.Reset()
		all = append(all, ins)
		if strings.HasPrefix(strings.ToUpper(ins), "FROM ") {
			final = nil
		}
		final = append(final, ins)
	}
	return all, final
}

// TestDockerfile checks the image promises: multi-stage build through scripts/build.sh,
// distroless base, non-root user, state volume, port, health check, entrypoint.
func TestDockerfile(t *testing.T) {
	all, final := dockerInstructions(readFile(t, "Dockerfile"))
	joined := strings.Join(all, "\n")
	finalJoined := strings.Join(final, "\n")
	tests := []struct {
		name string
		in   string // "all" or "final"
		re   string
	}{
		{"builder stage on golang:1.26", "all", `(?m)^FROM golang:1\.26\S* AS \w+$`},
		{"builder runs scripts/build.sh", "all", `(?m)^RUN .*\./scripts/build\.sh`},
		{"distroless static nonroot base", "final", `(?m)^FROM gcr\.io/distroless/static-debian12:nonroot$`},
		{"binary copied from the builder", "final", `(?m)^COPY --from=\w+ \S+ /exportbridge$`},
		{"non-root user", "final", `(?m)^USER (nonroot|65532)(:(nonroot|65532))?$`},
		{"state dir in /data", "final", `(?m)^ENV EXPORTBRIDGE_STATE_DIR=/data$`},
		{"volume /data", "final", `(?m)^VOLUME \[?"?/data"?\]?$`},
		{"port 9090", "final", `(?m)^EXPOSE 9090$`},
		{"health check through the binary", "final", `(?m)^HEALTHCHECK .*CMD \["/exportbridge", "healthcheck"\]$`},
		{"entrypoint", "final", `(?m)^ENTRYPOINT \["/exportbridge"\]$`},
		{"default command run", "final", `(?m)^CMD \["run"\]$`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := finalJoined
			if tc.in == "all" {
				text = joined
			}
			if !regexp.MustCompile(tc.re).MatchString(text) {
				t.Errorf("Dockerfile (%s stage) has no instruction matching %s:\n%s", tc.in, tc.re, text)
			}
		})
	}
	if strings.Contains(finalJoined, "USER root") {
		t.Error("the final stage switches to root")
	}
}

// TestBuildScriptCommand checks that scripts/build.sh holds the documented build command,
// so the Dockerfile, CI and the README describe the same build.
func TestBuildScriptCommand(t *testing.T) {
	script := readFile(t, "scripts/build.sh")
	want := `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "${OUT:-bin/exportbridge}" ./cmd/exportbridge`
	if !strings.Contains(script, want) {
		t.Errorf("scripts/build.sh lacks the build command\n%s", want)
	}
	if !strings.HasPrefix(script, "#!/bin/sh") || !strings.Contains(script, "set -eu") {
		t.Error("scripts/build.sh must be a POSIX sh script with set -eu (the builder image runs it)")
	}
	fi, err := os.Stat(filepath.Join(root, "scripts", "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&0o111 == 0 {
		t.Error("scripts/build.sh is not executable (the Dockerfile runs ./scripts/build.sh)")
	}
}

// TestDeployExamples checks the compose and Kubernetes examples for the settings and
// probes the README promises. (No YAML parser is a dependency: these are text checks.)
func TestDeployExamples(t *testing.T) {
	compose := readFile(t, "deploy/compose.yaml")
	var k8s strings.Builder
	for _, f := range []string{"deployment.yaml", "pvc.yaml", "secret.yaml", "service.yaml"} {
		k8s.WriteString(readFile(t, filepath.Join("deploy", "kubernetes", f)))
		k8s.WriteString("\n---\n")
	}
	tests := []struct {
		name, text string
		want       []string
	}{
		{"compose: NATS with JetStream", compose, []string{"image: nats:2.10", `"-js"`}},
		{"compose: bridge built from the Dockerfile", compose, []string{"context: ..", "dockerfile: Dockerfile", "depends_on:"}},
		{"compose: bridge settings", compose, []string{"EXPORTBRIDGE_NATS_URL: nats://nats:4222", "EXPORTBRIDGE_API_TOKEN_FILE:", ":/data"}},
		{"compose: stream with a duplicate window", compose, []string{"stream add EXPORTS --subjects 'plugchoice.exports.>'", "--dupe-window"}},
		{"k8s: one replica, Recreate", k8s.String(), []string{"kind: Deployment", "replicas: 1", "type: Recreate"}},
		{"k8s: probes", k8s.String(), []string{"livenessProbe:", "path: /healthz", "readinessProbe:", "path: /readyz", "containerPort: 9090"}},
		{"k8s: non-root, read-only root", k8s.String(), []string{"runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false"}},
		{"k8s: store on a PVC", k8s.String(), []string{"kind: PersistentVolumeClaim", "claimName: exportbridge-data", "mountPath: /data"}},
		{"k8s: token from a Secret file", k8s.String(), []string{"kind: Secret", "name: EXPORTBRIDGE_API_TOKEN_FILE", "secretName: exportbridge"}},
		{"k8s: metrics Service", k8s.String(), []string{"kind: Service", "port: 9090"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var missing []string
			for _, w := range tc.want {
				if !strings.Contains(tc.text, w) {
					missing = append(missing, w)
				}
			}
			if len(missing) > 0 {
				t.Errorf("missing %q", missing)
			}
		})
	}
	if strings.Contains(k8s.String(), "\t") || strings.Contains(compose, "\t") {
		t.Error("YAML files contain tabs")
	}
}
