// Package chaos is the reliability suite of issue 7: it runs the real exportbridge binary
// as a subprocess against the simulated API (simapi), an embedded NATS server with
// JetStream, loopback webhook receivers that verify signatures and a fake Slack, and
// asserts the delivery invariant under crashes, outages, API faults, a full disk and a
// soak. It only runs when EXPORTBRIDGE_CHAOS is "short" or "full":
//
//	EXPORTBRIDGE_CHAOS=short go test -timeout 20m ./test/chaos/
//	EXPORTBRIDGE_CHAOS=full  go test -timeout 90m ./test/chaos/
//
// See RELIABILITY.md at the root of the module for the scenarios and the figures.
package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// mode is "short" or "full" (EXPORTBRIDGE_CHAOS); anything else skips every test.
var mode = os.Getenv("EXPORTBRIDGE_CHAOS")

// binPath is the exportbridge binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	if mode != "short" && mode != "full" {
		// Every test skips itself (needChaos); nothing to build.
		os.Exit(m.Run())
	}
	bin, cleanup, err := bridgetest.Build("../../cmd/exportbridge")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	binPath = bin
	code := m.Run()
	figuresMu.Lock()
	fmt.Println("=== chaos figures (mode " + mode + ")")
	for _, f := range figures {
		fmt.Println("  " + f)
	}
	figuresMu.Unlock()
	outputMu.Lock()
	fmt.Printf("  secrets: %d bytes of exportbridge output checked for every secret set\n", outputChecked)
	outputMu.Unlock()
	cleanup()
	os.Exit(code)
}

// needChaos skips t unless the suite is switched on, and runs it in parallel with the
// other scenarios (at most -parallel, GOMAXPROCS by default, at a time).
func needChaos(t *testing.T) {
	t.Helper()
	if mode != "short" && mode != "full" {
		t.Skip("chaos suite: set EXPORTBRIDGE_CHAOS=short or full to run it")
	}
	t.Parallel()
}

// pick returns the short-mode or the full-mode value.
func pick[T any](short, full T) T {
	if mode == "full" {
		return full
	}
	return short
}

// --- secrets: every value set is registered; every process's output is checked -------

var (
	secretsMu sync.Mutex
	secrets   = map[string]string{} // value -> what it is
)

// newSecret returns a distinctive random secret value and registers it.
func newSecret(what string) string {
	b := make([]byte, 9)
	rand.Read(b)
	s := what + "-S3CRET-" + base64.RawURLEncoding.EncodeToString(b)
	registerSecret(s, what)
	return s
}

func registerSecret(value, what string) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	secrets[value] = what
}

// leakedSecrets returns the registered secrets that appear in s.
func leakedSecrets(s string) []string {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	var out []string
	for v, what := range secrets {
		if i := strings.Index(s, v); i >= 0 {
			out = append(out, fmt.Sprintf("%s (…%s…)", what, s[max(0, i-120):min(len(s), i+len(v)+40)]))
		}
	}
	// A signed download URL's query must never be printed either.
	for _, q := range []string{"signature=", "expires="} {
		if i := strings.Index(s, q); i >= 0 {
			out = append(out, fmt.Sprintf("signed URL query %q (…%s…)", q, s[max(0, i-120):min(len(s), i+60)]))
		}
	}
	return out
}

// --- subprocess ---------------------------------------------------------------------

type proc = bridgetest.Proc

// killLoop SIGKILLs the bridge in cur at random instants (every min to min+spread) and
// restarts it on the same settings, wantKills times or until ctx ends; the channel gets
// the number of kills done.
func killLoop(ctx context.Context, t *testing.T, env map[string]string, cur *atomic.Pointer[proc], wantKills int, min, spread time.Duration) <-chan int {
	done := make(chan int, 1)
	go func() {
		n := 0
		defer func() { done <- n }()
		for n < wantKills {
			if !sleepCtx(ctx, min+mrand.N(spread)) {
				return
			}
			cur.Load().Kill()
			n++
			cur.Store(start(t, env, "run"))
		}
	}()
	return done
}

// start runs the binary in the background. At the end of the test it is killed and its
// whole output is checked for every registered secret.
func start(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	p := bridgetest.Start(t, binPath, env, args...)
	t.Cleanup(func() { // runs before bridgetest's own cleanup
		p.Kill()
		out := p.Stdout.String() + p.Stderr.String()
		for _, l := range leakedSecrets(out) {
			t.Errorf("exportbridge %v printed a secret: %s", args, l)
		}
		countOutput(len(out))
	})
	return p
}

var (
	outputMu      sync.Mutex
	outputChecked int
)

func countOutput(n int) {
	outputMu.Lock()
	defer outputMu.Unlock()
	outputChecked += n
}

// --- simulated API -------------------------------------------------------------------

// newSim serves a simulated API (rate limit off unless rateLimit > 0) behind wrap (may
// be nil); it returns the API and its base URL.
func newSim(t *testing.T, token string, rateLimit int, wrap func(http.Handler) http.Handler) (*simapi.API, string) {
	t.Helper()
	if rateLimit == 0 {
		rateLimit = -1
	}
	sim := simapi.New(simapi.Options{Token: token, Seed: time.Now().UnixNano(), RateLimit: rateLimit})
	var h http.Handler = http.StripPrefix("/api/v3", sim)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return sim, srv.URL + "/api/v3"
}

// baseEnv is a bridge against apiURL with state in stateDir: 1s polls, no servers.
func baseEnv(apiURL, token, stateDir string) map[string]string {
	return map[string]string{
		"EXPORTBRIDGE_API_URL":       apiURL,
		"EXPORTBRIDGE_API_TOKEN":     token,
		"EXPORTBRIDGE_STATE_DIR":     stateDir,
		"EXPORTBRIDGE_POLL_INTERVAL": "1s",
		"EXPORTBRIDGE_LISTEN_ADDR":   "",
		"EXPORTBRIDGE_ADMIN_ADDR":    "",
		"EXPORTBRIDGE_LOG_LEVEL":     "info",
	}
}

// driver moves exports through their statuses in steps. Every step changes a share of
// the live exports at once and adds new ones; the caller holds each step long enough
// for a poll to see it, so every transition is one a poll could have seen.
type driver struct {
	sim    *simapi.API
	live   []string // pending or processing
	rng    *mrand.Rand
	newPer int
}

func newDriver(sim *simapi.API, live []string, newPer int) *driver {
	return &driver{sim: sim, live: slices.Clone(live), rng: mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7)), newPer: newPer}
}

// step advances about share of the live exports by one status and adds newPer exports
// (1 in 5 of them already ready). It returns the number of transitions made.
func (d *driver) step(share float64) int {
	n := 0
	var keep []string
	for _, u := range d.live {
		if d.rng.Float64() >= share {
			keep = append(keep, u)
			continue
		}
		e, ok := d.sim.Get(u)
		if !ok {
			continue
		}
		switch e.Status {
		case "pending":
			if d.rng.IntN(10) == 0 {
				d.sim.SetStatus(u, "cancelled")
			} else {
				d.sim.SetStatus(u, "processing")
				keep = append(keep, u)
			}
		case "processing":
			if d.rng.IntN(5) == 0 {
				d.sim.SetStatus(u, "failed")
			} else {
				d.sim.SetStatus(u, "ready")
			}
		}
		n++
	}
	d.live = keep
	for i := range d.newPer {
		if i%5 == 4 {
			d.sim.AddN(1, "ready")
		} else {
			d.live = append(d.live, d.sim.AddN(1, "pending")...)
		}
		n++
	}
	return n
}

// --- deliveries and the invariant ------------------------------------------------------

// delivery is one event a sink received.
type delivery = bridgetest.Delivery

func newDelivery(id string, ce *event.CloudEvent, body []byte, at time.Time) delivery {
	d := delivery{ID: id, Type: ce.Type, Subject: ce.Subject, Body: append([]byte(nil), body...), At: at}
	var od struct {
		ObservedAt string `json:"observed_at"`
	}
	if json.Unmarshal(ce.Data, &od) == nil {
		d.Observed, _ = time.Parse(time.RFC3339Nano, od.ObservedAt)
	}
	return d
}

// want is an expected event: export uuid and full CloudEvents type.
type want struct{ uuid, typ string }

// expectedSince lists the export events the API's transitions after index from should
// yield, in order, keeping those whose short status passes keep (nil: all).
func expectedSince(sim *simapi.API, from int, keep func(status string) bool) []want {
	var out []want
	for _, tr := range sim.Transitions()[from:] {
		if tr.To == "" || keep != nil && !keep(tr.To) {
			continue
		}
		out = append(out, want{tr.UUID, "com.plugchoice.export." + tr.To})
	}
	return out
}

// onlyStatuses is a keep function for a sink filter such as "ready,failed".
func onlyStatuses(list ...string) func(string) bool {
	return func(s string) bool { return slices.Contains(list, s) }
}

// errorer is the part of testing.T the invariant check uses (a recorder in its own test).
type errorer interface {
	Helper()
	Errorf(format string, args ...any)
}

// result sums up one sink's deliveries against the expectation.
type result struct {
	sink                               string
	expected, delivered, dups, missing int
	unexpected                         int
	bridge                             map[string]int // bridge.* event type -> distinct count
	maxDelay, p99                      time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("%s: expected %d, delivered %d distinct, duplicates %d, missing %d, unexpected %d, max delay %s, p99 %s",
		r.sink, r.expected, r.delivered, r.dups, r.missing, r.unexpected, r.maxDelay.Round(time.Millisecond), r.p99.Round(time.Millisecond))
}

// checkInvariant asserts that got holds every wanted export event at least once, in
// per-export order (by first arrival of each id), no other export event, and that every
// duplicate of an id carries identical bytes. Bridge events are counted apart.
func checkInvariant(t errorer, sink string, got []delivery, wants []want) result {
	t.Helper()
	r := result{sink: sink, expected: len(wants), bridge: map[string]int{}}
	first := map[string]delivery{}
	var order []delivery
	var delays []time.Duration
	for _, d := range got {
		if prev, ok := first[d.ID]; ok {
			r.dups++
			if !bytes.Equal(prev.Body, d.Body) {
				t.Errorf("%s: event %s delivered twice with different bytes:\n%s\n%s", sink, d.ID, prev.Body, d.Body)
			}
			continue
		}
		first[d.ID] = d
		if strings.HasPrefix(d.Type, "com.plugchoice.bridge.") {
			r.bridge[strings.TrimPrefix(d.Type, "com.plugchoice.")]++
			continue
		}
		order = append(order, d)
		if !d.Observed.IsZero() && !d.At.IsZero() {
			delays = append(delays, d.At.Sub(d.Observed))
		}
	}
	r.delivered = len(order)
	r.maxDelay, r.p99 = maxAndP99(delays)
	perGot := map[string][]string{}
	for _, d := range order {
		perGot[d.Subject] = append(perGot[d.Subject], d.Type)
	}
	perWant := map[string][]string{}
	for _, w := range wants {
		perWant[w.uuid] = append(perWant[w.uuid], w.typ)
	}
	bad := 0
	for uuid, ws := range perWant {
		g := perGot[uuid]
		if strings.Join(g, " ") != strings.Join(ws, " ") {
			// Missing is what a wanted list lacks; unexpected what got has beyond it.
			r.missing += max(0, len(ws)-len(g))
			if bad++; bad <= 10 {
				t.Errorf("%s: export %s: got events %v, want %v (in this order)", sink, uuid, short(g), short(ws))
			}
		}
	}
	for uuid, g := range perGot {
		if _, ok := perWant[uuid]; !ok {
			r.unexpected += len(g)
			if bad++; bad <= 10 {
				t.Errorf("%s: export %s: unexpected events %v", sink, uuid, short(g))
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: … and %d more exports with wrong events", sink, bad-10)
	}
	return r
}

func short(types []string) []string {
	out := make([]string, len(types))
	for i, s := range types {
		out[i] = strings.TrimPrefix(s, "com.plugchoice.")
	}
	return out
}

func maxAndP99(ds []time.Duration) (mx, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(0.99*float64(len(s)))) - 1
	return s[len(s)-1], s[max(i, 0)]
}

// p99Between is the p99 delivery delay of the events detected in [from, to).
func p99Between(got []delivery, from, to time.Time) (p99 time.Duration, n int) {
	seen := map[string]bool{}
	var ds []time.Duration
	for _, d := range got {
		if seen[d.ID] || d.Observed.IsZero() || d.Observed.Before(from) || !d.Observed.Before(to) {
			continue
		}
		seen[d.ID] = true
		ds = append(ds, d.At.Sub(d.Observed))
	}
	_, p := maxAndP99(ds)
	return p, len(ds)
}

func distinctIDs(ds []delivery) int {
	m := map[string]bool{}
	for _, d := range ds {
		m[d.ID] = true
	}
	return len(m)
}

// hasAll reports whether got holds an event of every wanted (uuid, type).
func hasAll(got []delivery, wants []want) bool {
	have := map[want]bool{}
	for _, d := range got {
		have[want{d.Subject, d.Type}] = true
	}
	for _, w := range wants {
		if !have[w] {
			return false
		}
	}
	return true
}

// --- webhook receiver ----------------------------------------------------------------

// hook is the shared webhook receiver (test/bridgetest.Hook): it verifies signatures,
// can go down and come back on the same port, hang or answer another status, and counts
// requests carrying its secret.
type hook = bridgetest.Hook

// newHook starts a receiver whose secret the suite's output check looks for.
func newHook(t *testing.T) *hook {
	t.Helper()
	h := bridgetest.NewHook(t)
	registerSecret(h.Secret, "webhook secret")
	registerSecret(h.KeyB64, "webhook secret (base64 key)")
	return h
}

// --- fake Slack (incoming-webhook mode) ------------------------------------------------

// fakeSlack is an incoming-webhook endpoint: it records every message posted and can
// answer 429 with Retry-After.
type fakeSlack struct {
	srv  *httptest.Server
	URL  string // the secret webhook URL
	path string

	mu       sync.Mutex
	msgs     []slackMsg
	status   int
	retryAft string
	rejected int
	badPath  int
}

type slackMsg struct {
	raw  []byte
	text string
	all  []string // every string value in the payload
	at   time.Time
}

func newFakeSlack(t *testing.T) *fakeSlack {
	t.Helper()
	f := &fakeSlack{}
	f.path = "/services/T0CHAOS/B0CHAOS/" + newSecret("slackhook")
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.URL.Path != f.path {
			f.badPath++
			http.Error(w, "no_service", http.StatusNotFound)
			return
		}
		if f.status != 0 {
			f.rejected++
			if f.retryAft != "" {
				w.Header().Set("Retry-After", f.retryAft)
			}
			w.WriteHeader(f.status)
			_, _ = io.WriteString(w, "rate_limited")
			return
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		m := slackMsg{raw: body, at: time.Now()}
		if o, ok := v.(map[string]any); ok {
			m.text, _ = o["text"].(string)
		}
		m.all = stringsIn(v)
		f.msgs = append(f.msgs, m)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(f.srv.Close)
	f.URL = f.srv.URL + f.path
	return f
}

func stringsIn(v any) []string {
	var out []string
	var visit func(any)
	visit = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				visit(x[k])
			}
		case []any:
			for _, e := range x {
				visit(e)
			}
		case string:
			out = append(out, x)
		}
	}
	visit(v)
	return out
}

func (f *fakeSlack) set429(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.status, f.retryAft = http.StatusTooManyRequests, "1"
	} else {
		f.status, f.retryAft = 0, ""
	}
}

func (f *fakeSlack) rejectedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejected
}

func (f *fakeSlack) messages() []slackMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.msgs)
}

// slackDeliveries maps the Slack messages to (uuid, type) deliveries: a message is about
// the export whose uuid it names, and its status is the word of its fallback text.
func slackDeliveries(msgs []slackMsg, uuids []string) []delivery {
	var out []delivery
	for _, m := range msgs {
		joined := strings.Join(m.all, "\n")
		for _, u := range uuids {
			if !strings.Contains(joined, u) {
				continue
			}
			for _, st := range []string{"pending", "processing", "ready", "failed", "cancelled"} {
				if strings.HasPrefix(m.text, "Export "+st) {
					typ := "com.plugchoice.export." + st
					out = append(out, delivery{ID: u + "/" + st, Type: typ, Subject: u, Body: m.raw, At: m.at})
				}
			}
			break
		}
	}
	return out
}

// --- metrics and /proc ----------------------------------------------------------------

// metric reads one sample (name with labels exactly as exposed, e.g. go_goroutines) from
// the bridge's /metrics; ok is false when it cannot.
func metric(addr, name string) (float64, bool) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// readyz returns /readyz's status code and body.
func readyz(addr string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rssKB reads VmRSS of pid in kB.
func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return n
		}
	}
	return -1
}

func openFDs(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(es)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// sleepCtx sleeps d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// figures collects the lines each scenario reports, printed at the end of the run
// (go test -v shows them) so RELIABILITY.md can be updated from one place.
var (
	figuresMu sync.Mutex
	figures   []string
)

func report(t *testing.T, format string, args ...any) {
	t.Helper()
	s := fmt.Sprintf(format, args...)
	t.Log(s)
	figuresMu.Lock()
	figures = append(figures, t.Name()+": "+s)
	figuresMu.Unlock()
}

// noSecretInRequests checks that no request a receiver got carried the webhook secret
// (only HMAC signatures may be derived from it).
func noSecretInRequests(t *testing.T, hs ...*hook) {
	t.Helper()
	for _, h := range hs {
		if _, _, leaks := h.Counts(); leaks > 0 {
			t.Errorf("the webhook secret appeared in %d requests to %s", leaks, h.URL)
		}
	}
}
