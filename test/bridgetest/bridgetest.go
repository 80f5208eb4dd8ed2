// Package bridgetest runs the exportbridge binary as a subprocess, for the end-to-end
// tests of cmd/exportbridge and the reliability suite in test/chaos.
package bridgetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Build compiles the exportbridge command in pkgDir (a directory, relative to the
// current one) into a new temporary directory. cleanup removes it.
func Build(pkgDir string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "exportbridge-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("temp dir: %w", err)
	}
	bin = filepath.Join(dir, "exportbridge")
	build := exec.Command("go", "build", "-o", bin, pkgDir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build %s: %w", pkgDir, err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// SyncBuf is a bytes.Buffer safe for the process's writer and the test's readers.
type SyncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a running exportbridge subprocess.
type Proc struct {
	Stdout, Stderr *SyncBuf

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	code int
}

// EnvList is a process environment of PATH, HOME and only the given variables.
func EnvList(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// Start runs bin with args in the background, with EnvList(env). At the end of the test
// it is killed, and when the test failed the tail of its standard error is logged. A
// process that cannot start fails the test (t.Errorf, so Start may be called from any
// goroutine) and is returned as already exited.
func Start(t testing.TB, bin string, env map[string]string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, Stdout: &SyncBuf{}, Stderr: &SyncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = EnvList(env)
	p.cmd.Stdout, p.cmd.Stderr = p.Stdout, p.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Errorf("start exportbridge %v: %v", args, err)
		p.code = -1
		close(p.done)
		return p
	}
	go func() {
		err := p.cmd.Wait()
		p.code = 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		case err != nil:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("exportbridge %v stderr (tail):\n%s", args, Tail(p.Stderr.String(), 4000))
		}
	})
	return p
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) {
	if !p.Exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Wait waits up to timeout for the process to exit and returns its exit code; past
// timeout the test fails.
func (p *Proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("exportbridge did not exit within %s; stderr:\n%s", timeout, Tail(p.Stderr.String(), 3000))
		return -1
	}
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Code is the exit code once Exited (-1: killed by a signal or never started).
func (p *Proc) Code() int {
	<-p.done
	return p.code
}

// Polls counts the successful poll cycles the process logged (JSON logs).
func (p *Proc) Polls() int { return strings.Count(p.Stderr.String(), `"msg":"poll cycle"`) }

// WaitPolls waits until the process logged n successful poll cycles; the test fails when
// it exits first or timeout passes.
func (p *Proc) WaitPolls(n int, timeout time.Duration) {
	p.t.Helper()
	WaitFor(p.t, timeout, fmt.Sprintf("%d poll cycles", n), func() bool {
		if p.Exited() {
			p.t.Fatalf("exportbridge exited early (code %d); stderr:\n%s", p.code, Tail(p.Stderr.String(), 3000))
		}
		return p.Polls() >= n
	})
}

// WaitFor polls cond every 50 ms until it holds; past timeout the test fails.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
