package chaos

import (
	"bufio"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestHAReplicas (STORE=nats): three replicas run as subprocesses on one embedded
// JetStream server with LEASE_TTL=3s while exports move through their statuses. The
// active poller is SIGKILLed, then the next one. Every transition reaches the webhook
// in per-export order, duplicates carry identical bytes, and the simulated API sees one
// poller at a time: the replica behind each API request is found from its TCP
// connection, and the poller changes only at a kill.
func TestHAReplicas(t *testing.T) {
	needChaos(t)
	const ttl = 3 * time.Second
	token := newSecret("apitoken")
	var pollers pollerLog
	sim, apiURL := newSim(t, token, 0, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pollers.record(r.RemoteAddr)
			next.ServeHTTP(w, r)
		})
	})
	live := sim.AddN(pick(100, 300), "pending")
	h := newHook(t)
	js, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Shutdown(); js.WaitForShutdown() })

	procs := make([]*proc, 3)
	listen := make([]string, 3)
	for i := range procs {
		env := baseEnv(apiURL, token, filepath.Join(t.TempDir(), fmt.Sprint(i)))
		listen[i] = bridgetest.FreeAddr(t)
		env["EXPORTBRIDGE_LISTEN_ADDR"] = listen[i]
		env["EXPORTBRIDGE_STORE"] = "nats"
		env["EXPORTBRIDGE_STORE_NATS_URL"] = js.ClientURL()
		env["EXPORTBRIDGE_LEASE_TTL"] = ttl.String()
		env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
		env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
		env["EXPORTBRIDGE_PER_PAGE"] = "100"
		procs[i] = start(t, env, "run")
	}
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.PID()
	}
	pollers.setPIDs(pids)
	bridgetest.WaitFor(t, 60*time.Second, "a first poll cycle", func() bool {
		for _, p := range procs {
			if p.Exited() {
				t.Fatalf("a replica exited (code %d):\n%s", p.Code(), bridgetest.Tail(p.Stderr.String(), 3000))
			}
		}
		return pollers.last() >= 0 && totalPolls(procs) > 0
	})
	baseline := len(sim.Transitions())
	// Standbys are ready too: they follow the active poller's stored poll facts.
	bridgetest.WaitFor(t, 15*time.Second, "every replica ready", func() bool {
		for _, a := range listen {
			if code, _ := readyz(a); code != http.StatusOK {
				return false
			}
		}
		return true
	})

	// Each step is held longer than a takeover (LEASE_TTL + a retry + a poll), so that a
	// poll sees every state even across a kill.
	hold := ttl + 3*time.Second
	d := newDriver(sim, live, 2)
	var kills []killed
	steps := pick(12, 40)
	for s := range steps {
		d.step(0.3)
		if s == steps/3 || s == 2*steps/3 {
			time.Sleep(hold / 2)
			who := pollers.last()
			if who < 0 || procs[who].Exited() {
				t.Fatalf("step %d: the API saw no live poller (last %d)", s, who)
			}
			procs[who].Kill()
			kills = append(kills, killed{replica: who, at: time.Now()})
			time.Sleep(hold / 2)
			continue
		}
		time.Sleep(hold)
	}
	time.Sleep(hold) // the last step is seen

	want := expectedSince(sim, baseline, nil)
	if len(want) == 0 || len(kills) != 2 {
		t.Fatalf("%d transitions and %d kills: nothing to check", len(want), len(kills))
	}
	bridgetest.WaitFor(t, 90*time.Second, fmt.Sprintf("%d webhook events", len(want)), func() bool {
		return hasAll(h.Deliveries(), want)
	})
	time.Sleep(2 * time.Second) // anything extra (wrong) would show now
	r := checkInvariant(t, "webhook", h.Deliveries(), want)

	segs := pollers.segments()
	if unknown := pollers.unknown(); unknown > 0 {
		t.Errorf("%d API requests came from no replica the test knows", unknown)
	}
	if len(segs) != len(kills)+1 {
		t.Errorf("the poller changed %d times for %d kills (%v): more than one poller at a time", len(segs)-1, len(kills), segs)
	}
	var takeovers []string
	for i, k := range kills {
		if i+1 >= len(segs) {
			break
		}
		prev, next := segs[i], segs[i+1]
		if prev.replica != k.replica {
			t.Errorf("kill %d hit replica %d, but the poller then was %d", i+1, k.replica, prev.replica)
		}
		if next.from.Before(k.at) {
			t.Errorf("replica %d polled at %s, before replica %d was killed at %s", next.replica, next.from.Format(time.StampMilli), k.replica, k.at.Format(time.StampMilli))
		}
		gap := next.from.Sub(k.at)
		takeovers = append(takeovers, gap.Round(10*time.Millisecond).String())
		if gap > 2*ttl+5*time.Second {
			t.Errorf("takeover after kill %d took %s, want within LEASE_TTL plus a poll interval or so", i+1, gap)
		}
	}
	report(t, "3 replicas, LEASE_TTL %s, %d steps, %d SIGKILLs of the active poller; pollers seen by the API %v; takeover (kill to the next poller's first request) %v; %s",
		ttl, steps, len(kills), segs, takeovers, r)
}

// TestHAStoppedLeader (STORE=nats): the replica holding every lease is SIGSTOPped past
// its LEASE_TTL, the other takes over, and the stopped one is SIGCONTinued: it sends no
// API request and does not deliver again (it has not won a lease back), so there are
// never two pollers and every export's events arrive in order.
func TestHAStoppedLeader(t *testing.T) {
	needChaos(t)
	const ttl = 3 * time.Second
	token := newSecret("apitoken")
	var pollers pollerLog
	sim, apiURL := newSim(t, token, 0, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pollers.record(r.RemoteAddr)
			next.ServeHTTP(w, r)
		})
	})
	live := sim.AddN(pick(100, 150), "pending") // more would spend the API budget (500/min) on full listings
	h := newHook(t)
	js, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Shutdown(); js.WaitForShutdown() })
	newEnv := func(i int) map[string]string {
		env := baseEnv(apiURL, token, filepath.Join(t.TempDir(), fmt.Sprint(i)))
		env["EXPORTBRIDGE_STORE"] = "nats"
		env["EXPORTBRIDGE_STORE_NATS_URL"] = js.ClientURL()
		env["EXPORTBRIDGE_LEASE_TTL"] = ttl.String()
		env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
		env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
		return env
	}
	leader := start(t, newEnv(0), "run")
	pollers.setPIDs([]int{leader.PID()})
	leader.WaitPolls(1, 60*time.Second) // the leader holds the poller and the sink lease
	standby := start(t, newEnv(1), "run")
	pollers.setPIDs([]int{leader.PID(), standby.PID()})
	baseline := len(sim.Transitions())

	hold := ttl + 3*time.Second
	d := newDriver(sim, live, 2)
	var stopAt, contAt time.Time
	steps := pick(10, 30)
	for s := range steps {
		d.step(0.3)
		if s == steps/3 {
			time.Sleep(hold / 2)
			leader.Signal(syscall.SIGSTOP)
			stopAt = time.Now()
			time.Sleep(2*ttl + time.Second) // past the TTL: the standby takes over
			d.step(0.3)                     // a change only the new leader can see
			time.Sleep(hold)
			leader.Signal(syscall.SIGCONT)
			contAt = time.Now()
			continue
		}
		time.Sleep(hold)
	}
	time.Sleep(hold)
	want := expectedSince(sim, baseline, nil)
	if len(want) == 0 || stopAt.IsZero() {
		t.Fatalf("%d transitions, stopped at %v: nothing to check", len(want), stopAt)
	}
	bridgetest.WaitFor(t, pick(90*time.Second, 4*time.Minute), fmt.Sprintf("%d webhook events", len(want)), func() bool {
		return hasAll(h.Deliveries(), want)
	})
	time.Sleep(2 * time.Second)
	r := checkInvariant(t, "webhook", h.Deliveries(), want)
	segs := pollers.segments()
	if len(segs) != 2 || segs[0].replica != 0 || segs[1].replica != 1 {
		t.Errorf("pollers seen by the API: %v, want the leader then the standby, once each", segs)
	} else if segs[0].to.After(stopAt) {
		t.Errorf("the stopped leader sent an API request at %s, after it was stopped at %s", segs[0].to.Format(time.StampMilli), stopAt.Format(time.StampMilli))
	}
	if leader.Exited() {
		t.Errorf("the resumed leader exited (code %d), want it standing by", leader.Code())
	}
	if !strings.Contains(leader.Stderr.String(), `"msg":"lease given up"`) {
		t.Errorf("the resumed leader did not log that it gave its leases up")
	}
	report(t, "LEASE_TTL %s, leader SIGSTOPped for %s; pollers seen by the API %v; %s", ttl, contAt.Sub(stopAt).Round(100*time.Millisecond), segs, r)
}

// TestHAKillLoop (STORE=nats): three replicas on one embedded JetStream server, LEASE_TTL
// 3s; a random replica (poller, dispatcher or standby) is SIGKILLed and restarted every
// 2-4 s while the exports move. Every transition reaches the webhook in per-export
// order; duplicates carry identical bytes.
func TestHAKillLoop(t *testing.T) {
	needChaos(t)
	const ttl = 3 * time.Second
	wantKills, wantTransitions := pick(20, 60), pick(500, 1500)
	token := newSecret("apitoken")
	sim, apiURL := newSim(t, token, 0, nil)
	live := sim.AddN(pick(150, 400), "pending")
	h := newHook(t)
	h.SetDelay(func() time.Duration { return 5*time.Millisecond + mrand.N(45*time.Millisecond) })
	js, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Shutdown(); js.WaitForShutdown() })
	envs := make([]map[string]string, 3)
	var procs [3]atomic.Pointer[proc]
	// polls counts the poll cycles committed by every replica process, killed ones too.
	var startedMu sync.Mutex
	var started []*proc
	launch := func(i int) {
		p := start(t, envs[i], "run")
		startedMu.Lock()
		started = append(started, p)
		startedMu.Unlock()
		procs[i].Store(p)
	}
	polls := func() int {
		startedMu.Lock()
		defer startedMu.Unlock()
		n := 0
		for _, p := range started {
			n += p.Polls()
		}
		return n
	}
	for i := range envs {
		env := baseEnv(apiURL, token, filepath.Join(t.TempDir(), fmt.Sprint(i)))
		env["EXPORTBRIDGE_STORE"] = "nats"
		env["EXPORTBRIDGE_STORE_NATS_URL"] = js.ClientURL()
		env["EXPORTBRIDGE_LEASE_TTL"] = ttl.String()
		env["EXPORTBRIDGE_WEBHOOK_URLS"] = h.URL
		env["EXPORTBRIDGE_WEBHOOK_SECRET"] = h.Secret
		env["EXPORTBRIDGE_PER_PAGE"] = "100"
		envs[i] = env
		launch(i)
	}
	bridgetest.WaitFor(t, 60*time.Second, "a first poll cycle", func() bool { return polls() > 0 })
	baseline := len(sim.Transitions())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kills := make(chan int, 1)
	go func() {
		n := 0
		defer func() { kills <- n }()
		for n < wantKills {
			if !sleepCtx(ctx, 2*time.Second+mrand.N(2*time.Second)) {
				return
			}
			i := mrand.IntN(len(procs))
			procs[i].Load().Kill()
			n++
			launch(i)
		}
	}()
	// Each step is held longer than a takeover, and until two poll cycles have been
	// committed since it (the second began after the step), so that a poll sees every
	// state. The end of the kills does not cut a step short: a state held for less than
	// a poll interval may go unseen, and the SPEC does not invent skipped states.
	d := newDriver(sim, live, 3)
	steps, nKills := 0, -1
	for nKills < 0 || len(sim.Transitions())-baseline < wantTransitions {
		d.step(0.3)
		steps++
		from, seen := time.Now(), polls()
		for time.Since(from) < ttl+3*time.Second || polls() < seen+2 {
			if time.Since(from) > time.Minute {
				t.Fatalf("step %d: fewer than 2 poll cycles committed in %s by any replica", steps, time.Since(from).Round(time.Second))
			}
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case nKills = <-kills:
		default:
		}
		if steps > 200 {
			break
		}
	}
	cancel()
	if nKills < 0 {
		nKills = <-kills
	}
	want := expectedSince(sim, baseline, nil)
	if len(want) < wantTransitions || nKills < wantKills {
		t.Fatalf("%d transitions (want %d) and %d kills (want %d)", len(want), wantTransitions, nKills, wantKills)
	}
	for deadline := time.Now().Add(2 * time.Minute); !hasAll(h.Deliveries(), want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			r := checkInvariant(t, "webhook", h.Deliveries(), want) // names the exports
			t.Fatalf("timed out after 2m0s waiting for %d webhook events: %s", len(want), r)
		}
	}
	time.Sleep(2 * time.Second)
	r := checkInvariant(t, "webhook", h.Deliveries(), want)
	report(t, "3 replicas, LEASE_TTL %s, %d steps, %d SIGKILLs of random replicas (restarted); %s", ttl, steps, nKills, r)
}

func totalPolls(ps []*proc) int {
	n := 0
	for _, p := range ps {
		n += p.Polls()
	}
	return n
}

type killed struct {
	replica int
	at      time.Time
}

// pollerLog maps each API request to the replica process whose TCP connection sent it.
type pollerLog struct {
	mu    sync.Mutex
	pids  []int
	conns map[string]int // remote address -> replica index (-1: none)
	reqs  []polled
}

type polled struct {
	replica int
	at      time.Time
}

// segment is a run of consecutive API requests by one replica.
type segment struct {
	replica  int
	from, to time.Time
	requests int
}

func (s segment) String() string {
	return fmt.Sprintf("replica %d: %d requests %s-%s", s.replica, s.requests, s.from.Format("15:04:05.000"), s.to.Format("15:04:05.000"))
}

func (l *pollerLog) setPIDs(pids []int) {
	l.mu.Lock()
	l.pids = pids
	l.mu.Unlock()
}

func (l *pollerLog) record(remote string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		l.conns = map[string]int{}
	}
	who, ok := l.conns[remote]
	if !ok || who < 0 {
		who = connOwner(remote, l.pids)
		l.conns[remote] = who
	}
	l.reqs = append(l.reqs, polled{replica: who, at: time.Now()})
}

func (l *pollerLog) last() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.reqs) == 0 {
		return -1
	}
	return l.reqs[len(l.reqs)-1].replica
}

func (l *pollerLog) unknown() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reqs {
		if r.replica < 0 {
			n++
		}
	}
	return n
}

func (l *pollerLog) segments() []segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []segment
	for _, r := range l.reqs {
		if r.replica < 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].replica == r.replica {
			out[n-1].to = r.at
			out[n-1].requests++
			continue
		}
		out = append(out, segment{replica: r.replica, from: r.at, to: r.at, requests: 1})
	}
	return out
}

// connOwner returns the index in pids of the process that owns the client end of the
// loopback TCP connection whose address (as the server sees it) is remote, or -1.
func connOwner(remote string, pids []int) int {
	_, portStr, err := net.SplitHostPort(remote)
	if err != nil {
		return -1
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return -1
	}
	inode := ""
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if inode = socketInode(f, port); inode != "" {
			break
		}
	}
	if inode == "" {
		return -1
	}
	want := "socket:[" + inode + "]"
	for i, pid := range pids {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && link == want {
				return i
			}
		}
	}
	return -1
}

// socketInode finds in a /proc/net/tcp table the socket whose local port is port (the
// client end: the server's accepted socket has port as its remote port).
func socketInode(table string, port int) string {
	f, err := os.Open(table)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	hexPort := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || !strings.HasSuffix(fs[1], hexPort) {
			continue
		}
		return fs[9]
	}
	return ""
}
