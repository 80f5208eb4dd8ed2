package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/plugchoice"
)

// replica is one exportbridge process of the accounts benchmark: the accounts it has
// logged poll cycles for, and the largest "tracked" of each.
type replica struct {
	cmd  *exec.Cmd
	done chan error

	mu      sync.Mutex
	tracked map[string]int       // account -> largest tracked seen
	lastAt  map[string]time.Time // account -> last poll cycle
}

func (r *replica) polledSince(t time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for a, at := range r.lastAt {
		if at.After(t) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// benchAccounts measures the RSS of each of replicas exportbridge processes (STORE=nats
// on an embedded JetStream server in this process) polling accounts simulated accounts
// of exports each: after every account's baseline and a settling time (the replicas
// share the accounts out), VmRSS is sampled every second over window.
func benchAccounts(ctx context.Context, w io.Writer, bin string, accounts, exports, replicas int, interval, window time.Duration) error {
	dir, err := os.MkdirTemp("", "benchbridge-accounts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	js, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		return err
	}
	defer func() { js.Shutdown(); js.WaitForShutdown() }()
	var cfg strings.Builder
	cfg.WriteString("accounts:\n")
	for i := range accounts {
		e := newEnv(1_000_000)
		defer e.close()
		e.sim.AddN(exports-5, plugchoice.StatusReady)
		e.sim.AddN(5, plugchoice.StatusPending)
		fmt.Fprintf(&cfg, "  - name: a%02d\n    api_token: ${BENCH_TOKEN}\n    api_url: %s\n", i, e.srv.URL)
	}
	cfg.WriteString("sinks:\n  - name: out\n    kind: stdout\n")
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	const ttl = 5 * time.Second
	fmt.Fprintf(w, "# %d replicas (STORE=nats, LEASE_TTL %s, POLL_INTERVAL %s) polling %d accounts x %d exports\n", replicas, ttl, interval, accounts, exports)
	t0 := time.Now()
	reps := make([]*replica, replicas)
	for i := range reps {
		cmd := exec.Command(bin, "run")
		cmd.Env = append(os.Environ(),
			"BENCH_TOKEN=bench-token",
			"EXPORTBRIDGE_CONFIG_FILE="+cfgFile,
			"EXPORTBRIDGE_STORE=nats",
			"EXPORTBRIDGE_STORE_NATS_URL="+js.ClientURL(),
			"EXPORTBRIDGE_LEASE_TTL="+ttl.String(),
			"EXPORTBRIDGE_POLL_INTERVAL="+interval.String(),
			"EXPORTBRIDGE_STATE_DIR="+filepath.Join(dir, fmt.Sprint("r", i)),
			"EXPORTBRIDGE_LISTEN_ADDR=", "EXPORTBRIDGE_ADMIN_ADDR=",
			"EXPORTBRIDGE_LOG_FORMAT=json", "EXPORTBRIDGE_LOG_LEVEL=info",
		)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			return err
		}
		cmd.Stdout = io.Discard
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", bin, err)
		}
		r := &replica{cmd: cmd, done: make(chan error, 1), tracked: map[string]int{}, lastAt: map[string]time.Time{}}
		reps[i] = r
		defer func() {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.done:
			case <-time.After(30 * time.Second):
				_ = r.cmd.Process.Kill()
			}
		}()
		go func() {
			sc := bufio.NewScanner(stderr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				if !strings.Contains(line, `"msg":"poll cycle"`) {
					if strings.Contains(line, `"level":"ERROR"`) {
						fmt.Fprintln(os.Stderr, "exportbridge:", line)
					}
					continue
				}
				a := strings.Trim(stringField(line, "account"), `"`)
				n, _ := strconv.Atoi(field(line, "tracked"))
				r.mu.Lock()
				r.tracked[a] = max(r.tracked[a], n)
				r.lastAt[a] = time.Now()
				r.mu.Unlock()
			}
			r.done <- cmd.Wait()
		}()
	}
	baselined := func() int {
		seen := map[string]bool{}
		for _, r := range reps {
			r.mu.Lock()
			for a, n := range r.tracked {
				if n >= exports {
					seen[a] = true
				}
			}
			r.mu.Unlock()
		}
		return len(seen)
	}
	for baselined() < accounts {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		for _, r := range reps {
			select {
			case err := <-r.done:
				return fmt.Errorf("a replica exited: %v", err)
			default:
			}
		}
		if time.Since(t0) > 10*time.Minute {
			return fmt.Errorf("only %d of %d accounts baselined after 10 minutes", baselined(), accounts)
		}
	}
	fmt.Fprintf(w, "every account's baseline listed %s after start\n", time.Since(t0).Round(100*time.Millisecond))
	time.Sleep(3 * ttl) // the replicas share the accounts out
	w0 := time.Now()
	rss := make([][]int64, len(reps))
	for time.Since(w0) < window {
		for i, r := range reps {
			if kb, err := statusKB(r.cmd.Process.Pid, "VmRSS"); err == nil {
				rss[i] = append(rss[i], kb)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	for i, r := range reps {
		hwm, _ := statusKB(r.cmd.Process.Pid, "VmHWM")
		var last, top int64
		for _, v := range rss[i] {
			top = max(top, v)
		}
		if n := len(rss[i]); n > 0 {
			last = rss[i][n-1]
		}
		polled := r.polledSince(w0)
		fmt.Fprintf(w, "replica %d: polled %d accounts in the window %v; RSS last %.1f MB, max sampled %.1f MB; VmHWM %.1f MB\n",
			i+1, len(polled), polled, float64(last)/1024, float64(top)/1024, float64(hwm)/1024)
	}
	return nil
}

// stringField extracts a top-level string field of a JSON log line, quotes included.
func stringField(line, name string) string {
	k := `"` + name + `":"`
	i := strings.Index(line, k)
	if i < 0 {
		return "?"
	}
	rest := line[i+len(k):]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return rest
}
