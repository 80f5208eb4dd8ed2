package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// clkTck is USER_HZ on Linux (the unit of utime/stime in /proc/PID/stat).
const clkTck = 100

// proc is one exportbridge process under measurement.
type proc struct {
	cmd    *exec.Cmd
	cycles chan string // one line per "poll cycle" log record
	done   chan error
}

func startBridge(bin, apiURL, stateDir string, interval time.Duration) (*proc, error) {
	cmd := exec.Command(bin, "run")
	cmd.Env = append(os.Environ(),
		"EXPORTBRIDGE_API_URL="+apiURL,
		"EXPORTBRIDGE_API_TOKEN=bench-token",
		"EXPORTBRIDGE_STATE_DIR="+stateDir,
		"EXPORTBRIDGE_POLL_INTERVAL="+interval.String(),
		"EXPORTBRIDGE_LISTEN_ADDR=",
		"EXPORTBRIDGE_ADMIN_ADDR=",
		"EXPORTBRIDGE_LOG_FORMAT=json",
		"EXPORTBRIDGE_LOG_LEVEL=info",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, cycles: make(chan string, 1000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, `"msg":"poll cycle"`) {
				select {
				case p.cycles <- line:
				default:
				}
			} else if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
				fmt.Fprintln(os.Stderr, "exportbridge:", line)
			}
		}
		p.done <- cmd.Wait()
	}()
	return p, nil
}

func (p *proc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("exportbridge did not stop within 30s of SIGTERM")
	}
}

func (p *proc) waitCycle(timeout time.Duration) (string, error) {
	select {
	case l := <-p.cycles:
		return l, nil
	case err := <-p.done:
		return "", fmt.Errorf("exportbridge exited before a poll cycle: %v", err)
	case <-time.After(timeout):
		return "", fmt.Errorf("no poll cycle within %s", timeout)
	}
}

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields after ")": state(3) ... utime is field 14, stime 15 (1-based) -> index 11, 12
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %v %v", pid, err1, err2)
	}
	return u + st, nil
}

// statusKB returns a "Vm..." field of /proc/pid/status in kB.
func statusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

func benchResources(ctx context.Context, w io.Writer, bin string, n int, interval, window time.Duration, restarts int) error {
	e := newEnv(1_000_000) // a limit high enough that the initial 100k listing is quick
	defer e.close()
	e.sim.AddN(n-10, plugchoice.StatusReady)
	var mu sync.Mutex
	inflight := e.sim.AddN(10, plugchoice.StatusPending)
	var firstReq atomic.Int64
	e.sim.SetOnRequest(func(*http.Request) { firstReq.CompareAndSwap(0, time.Now().UnixNano()) })

	// Life: every interval, 2 new exports, 2 finish, one starts processing.
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			newOnes := e.sim.AddN(2, plugchoice.StatusPending)
			e.sim.SetStatus(inflight[0], plugchoice.StatusReady)
			e.sim.SetStatus(inflight[1], plugchoice.StatusFailed)
			inflight = append(inflight[2:], newOnes...)
			e.sim.SetStatus(inflight[len(inflight)-3], plugchoice.StatusProcessing)
			mu.Unlock()
		}
	}()

	dir, err := os.MkdirTemp("", "benchbridge-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(w, "# resources of the real binary tracking %d exports, POLL_INTERVAL %s\n", n, interval)
	t0 := time.Now()
	p, err := startBridge(bin, e.srv.URL, dir, interval)
	if err != nil {
		return err
	}
	line, err := p.waitCycle(5 * time.Minute)
	if err != nil {
		p.stop()
		return fmt.Errorf("first start: %w", err)
	}
	fmt.Fprintf(w, "first start (empty store): baseline full listing done %s after start; %s\n", ms(time.Since(t0)), field(line, "requests"))
	pid := p.cmd.Process.Pid
	peakAfterBaseline, _ := statusKB(pid, "VmHWM")
	time.Sleep(time.Second) // let the baseline's garbage go
	c0, err := cpuTicks(pid)
	if err != nil {
		p.stop()
		return err
	}
	w0 := time.Now()
	var rss []int64
	cycles, reqs := 0, 0
	deadline := time.After(window)
	tick := time.NewTicker(time.Second)
sample:
	for {
		select {
		case <-deadline:
			break sample
		case l := <-p.cycles:
			cycles++
			if r, err := strconv.Atoi(field(l, "requests")); err == nil {
				reqs += r
			}
		case <-tick.C:
			if kb, err := statusKB(pid, "VmRSS"); err == nil {
				rss = append(rss, kb)
			}
		case err := <-p.done:
			tick.Stop()
			return fmt.Errorf("exportbridge exited during the window: %v", err)
		}
	}
	tick.Stop()
	c1, err := cpuTicks(pid)
	if err != nil {
		p.stop()
		return err
	}
	wall := time.Since(w0)
	hwm, _ := statusKB(pid, "VmHWM")
	if err := p.stop(); err != nil {
		return err
	}
	cpu := float64(c1-c0) / clkTck
	var rssMax, rssLast int64
	for _, r := range rss {
		rssMax = max(rssMax, r)
	}
	if len(rss) > 0 {
		rssLast = rss[len(rss)-1]
	}
	fmt.Fprintf(w, "steady state over %s: %d cycles, %d API requests (%.1f per cycle)\n", wall.Round(time.Second), cycles, reqs, float64(reqs)/float64(max(cycles, 1)))
	fmt.Fprintf(w, "CPU: %.2f s = %.2f%% of one core; %.1f ms per cycle (tick resolution 10 ms)\n", cpu, 100*cpu/wall.Seconds(), 1000*cpu/float64(max(cycles, 1)))
	fmt.Fprintf(w, "RSS: last %.1f MB, max sampled %.1f MB; VmHWM (peak, includes the baseline listing) %.1f MB (%.1f MB right after it)\n",
		float64(rssLast)/1024, float64(rssMax)/1024, float64(hwm)/1024, float64(peakAfterBaseline)/1024)

	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && !fi.IsDir() {
			fmt.Fprintf(w, "store file %s: %d bytes (%.1f MB)\n", filepath.Base(f), fi.Size(), float64(fi.Size())/1e6)
		}
	}

	// Restarts on the 100k store: process start -> first API request (store open +
	// snapshot load + setup), and -> end of the first cycle.
	var first, cycle []time.Duration
	for i := 0; i < restarts; i++ {
		firstReq.Store(0)
		t0 := time.Now()
		p, err := startBridge(bin, e.srv.URL, dir, interval)
		if err != nil {
			return err
		}
		line, err := p.waitCycle(5 * time.Minute)
		if err != nil {
			p.stop()
			return fmt.Errorf("restart %d: %w", i+1, err)
		}
		cycle = append(cycle, time.Since(t0))
		if fr := firstReq.Load(); fr != 0 {
			first = append(first, time.Unix(0, fr).Sub(t0))
		}
		if i == 0 {
			fmt.Fprintf(w, "first cycle after restart: full=%s requests=%s\n", field(line, "full"), field(line, "requests"))
		}
		if err := p.stop(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "restart with %d-export store: start -> first API request: median %s (runs %v); start -> first cycle done: median %s (runs %v)\n",
		n, ms(medianDur(first)), msList(first), ms(medianDur(cycle)), msList(cycle))
	return nil
}

func msList(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

// field extracts a top-level field of a JSON log line (numbers and booleans only).
func field(line, name string) string {
	k := `"` + name + `":`
	i := strings.Index(line, k)
	if i < 0 {
		return "?"
	}
	rest := line[i+len(k):]
	j := strings.IndexAny(rest, ",}")
	if j < 0 {
		return rest
	}
	return rest[:j]
}
