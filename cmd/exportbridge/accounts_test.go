package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// pollsOf counts the poll cycles p logged for account.
func pollsOf(p *proc, account string) int {
	n := 0
	for _, line := range strings.Split(p.Stderr.String(), "\n") {
		if strings.Contains(line, `"msg":"poll cycle"`) && strings.Contains(line, `"account":"`+account+`"`) {
			n++
		}
	}
	return n
}

// pollDeltas counts the poll cycles of each replica and account over d.
func pollDeltas(procs []*proc, accounts []string, d time.Duration) [][]int {
	before := make([][]int, len(procs))
	for i, p := range procs {
		for _, a := range accounts {
			before[i] = append(before[i], pollsOf(p, a))
		}
	}
	time.Sleep(d)
	for i, p := range procs {
		for j, a := range accounts {
			before[i][j] = pollsOf(p, a) - before[i][j]
		}
	}
	return before
}

// TestTwoAccountsOnTwoReplicas (STORE=nats): two accounts of the config file on two
// replicas. Each account is polled by exactly one replica; a 429 with Retry-After on
// one account holds that account's token only, and the other keeps its cadence; each
// event carries its account, and match.accounts routes on it.
func TestTwoAccountsOnTwoReplicas(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	accounts := []string{"acme", "globex"}
	sims := map[string]*simapi.API{}
	urls := map[string]string{}
	inFlight := map[string][]string{}
	for _, a := range accounts {
		sims[a], urls[a] = newSim(t, a+"-token")
		inFlight[a] = sims[a].AddN(3, "processing")
	}
	all, acmeOnly := newHook(t), newHook(t)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "acme-token")
	if err := os.WriteFile(tokFile, []byte("acme-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`accounts:
  - name: acme
    api_token_file: %s
    api_url: %s
  - name: globex
    api_token: ${GLOBEX_TOKEN}
    api_url: %s
sinks:
  - name: all
    kind: webhook
    webhook: {url: %s, secret: "%s"}
  - name: acme-only
    kind: webhook
    match: {accounts: [acme]}
    webhook: {url: %s, secret: "%s"}
`, tokFile, urls["acme"], urls["globex"], all.URL, all.Secret, acmeOnly.URL, acmeOnly.Secret)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	procs := make([]*proc, 2)
	listen := []string{bridgetest.FreeAddr(t), bridgetest.FreeAddr(t)}
	admin := bridgetest.FreeAddr(t)
	var checkEnv map[string]string
	for i := range procs {
		env := baseEnv("", t.TempDir())
		delete(env, "EXPORTBRIDGE_API_URL")
		delete(env, "EXPORTBRIDGE_API_TOKEN")
		env["GLOBEX_TOKEN"] = "globex-token"
		env["EXPORTBRIDGE_CONFIG_FILE"] = cfgFile
		env["EXPORTBRIDGE_STORE"] = "nats"
		env["EXPORTBRIDGE_STORE_NATS_URL"] = srv.ClientURL()
		env["EXPORTBRIDGE_LEASE_TTL"] = "3s"
		checkEnv = maps.Clone(env)
		env["EXPORTBRIDGE_LISTEN_ADDR"] = listen[i]
		if i == 0 {
			env["EXPORTBRIDGE_ADMIN_ADDR"] = admin
		}
		procs[i] = start(t, env, "run")
	}

	// Each account is polled by exactly one replica, and each replica polls one.
	var deltas [][]int
	bridgetest.WaitFor(t, 60*time.Second, "each account polled by exactly one replica, one account each", func() bool {
		for _, p := range procs {
			if p.Exited() {
				t.Fatalf("a replica exited (code %d):\n%s", p.Code(), bridgetest.Tail(p.Stderr.String(), 3000))
			}
		}
		deltas = pollDeltas(procs, accounts, 3*time.Second)
		for _, row := range deltas { // each replica polls exactly one account
			if (row[0] > 0) == (row[1] > 0) {
				return false
			}
		}
		return (deltas[0][0] > 0) != (deltas[1][0] > 0) // and not the same one
	})
	t.Logf("poll cycles per replica and account over 3s: %v", deltas)

	// Events carry their account; match.accounts routes on it.
	for _, a := range accounts {
		sims[a].SetStatus(inFlight[a][0], "ready")
	}
	bridgetest.WaitFor(t, 20*time.Second, "both accounts' events at the sink all", func() bool { return len(all.Deliveries()) >= 2 })
	got := map[string]string{}
	for _, d := range all.Deliveries() {
		var ce struct {
			Account string `json:"account"`
			Subject string `json:"subject"`
		}
		if err := json.Unmarshal(d.Body, &ce); err != nil {
			t.Fatal(err)
		}
		got[ce.Subject] = ce.Account
	}
	for _, a := range accounts {
		if got[inFlight[a][0]] != a {
			t.Errorf("the event of %s's export carries account %q, want %q (all: %v)", a, got[inFlight[a][0]], a, got)
		}
	}
	time.Sleep(2 * time.Second) // a misrouted globex event would have arrived by now
	var only []string
	for _, d := range acmeOnly.Deliveries() {
		only = append(only, d.Subject)
	}
	if !slices.Equal(only, []string{inFlight["acme"][0]}) {
		t.Errorf("sink acme-only (match.accounts [acme]) got %v, want acme's %s only", only, inFlight["acme"][0])
	}

	// A 429 with Retry-After: 4 on every request of acme's token for a while: acme's
	// poller waits, globex's keeps its 1s cadence.
	acmeReq := sims["acme"].Requests()
	sims["acme"].InjectFaults(simapi.Fault{Status: 429, RetryAfter: "4", Count: 3})
	deltas = pollDeltas(procs, accounts, 8*time.Second)
	acmePolls, globexPolls := deltas[0][0]+deltas[1][0], deltas[0][1]+deltas[1][1]
	t.Logf("over 8s with acme's token rate-limited: acme %d poll cycles (%d requests), globex %d poll cycles",
		acmePolls, sims["acme"].Requests()-acmeReq, globexPolls)
	// Healthy globex polls about 8 times in 8s; held by acme's Retry-After it would poll
	// at most twice.
	if globexPolls < 4 {
		t.Errorf("globex polled %d times in 8s while acme was rate-limited, want at least 4 (its own 1s cadence)", globexPolls)
	}
	if acmePolls > 2 || sims["acme"].Requests()-acmeReq > 5 {
		t.Errorf("acme: %d poll cycles, %d requests in 8s of Retry-After: 4; want it held back", acmePolls, sims["acme"].Requests()-acmeReq)
	}
	for _, p := range procs {
		if s := p.Stderr.String(); strings.Contains(s, "acme-token") || strings.Contains(s, "globex-token") {
			t.Error("a replica logged an account token")
		}
	}

	// Both replicas are ready: every account's last stored poll succeeded recently,
	// whichever replica polled it.
	bridgetest.WaitFor(t, 15*time.Second, "both replicas ready", func() bool {
		for _, l := range listen {
			resp, err := http.Get("http://" + l + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})

	// The poll metrics carry the account; no phantom account default.
	var metricsText string
	for _, l := range listen {
		metricsText += httpGet(t, "http://"+l+"/metrics")
	}
	for _, want := range []string{`exportbridge_polls_total{account="acme",outcome="ok"}`, `exportbridge_polls_total{account="globex",outcome="ok"}`,
		`exportbridge_api_requests_total{account="acme",code="429"}`, `exportbridge_exports_tracked{account="globex"} 3`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("the replicas' /metrics lack %s", want)
		}
	}
	if strings.Contains(metricsText, `account="default"`) {
		t.Error(`/metrics has series of account="default", which is not configured`)
	}
	// The status page lists the accounts, and the exports in flight of both.
	page := httpGet(t, "http://"+admin+"/")
	if !strings.Contains(page, "acme ("+urls["acme"]+")") || !strings.Contains(page, "globex ("+urls["globex"]+")") {
		t.Errorf("the status page does not list both accounts:\n%s", bridgetest.Tail(page, 2000))
	}
	for _, a := range accounts {
		if !strings.Contains(page, inFlight[a][1]) {
			t.Errorf("the status page does not show %s's export in flight %s", a, inFlight[a][1])
		}
	}
	// Its poll log names the account of each poll (the replica's own polls).
	if !strings.Contains(page, "<th>Account</th>") || !strings.Contains(page, "<td>acme</td>") && !strings.Contains(page, "<td>globex</td>") {
		t.Errorf("the status page's poll log does not name the accounts:\n%s", bridgetest.Tail(page, 2000))
	}
	// A replica SIGKILLed: its presence key and its lease expire with LEASE_TTL, and the
	// survivor's share grows to both accounts.
	procs[0].Kill()
	killedAt := time.Now()
	bridgetest.WaitFor(t, 20*time.Second, "the surviving replica polls both accounts", func() bool {
		d := pollDeltas(procs[1:], accounts, time.Second)
		return d[0][0] > 0 && d[0][1] > 0
	})
	if took := time.Since(killedAt); took > 12*time.Second {
		t.Errorf("the survivor polled both accounts %s after the kill, want within about LEASE_TTL (3s) plus a cycle", took.Round(100*time.Millisecond))
	} else {
		t.Logf("the survivor polled both accounts within %s of the kill", took.Round(100*time.Millisecond))
	}

	// state reads each account's snapshot and last poll straight from JetStream.
	stateOut, stateErr, code := run(t, checkEnv, 30*time.Second, "state")
	for _, a := range accounts {
		if !regexp.MustCompile(`account +` + a + ` \(` + regexp.QuoteMeta(urls[a]) + `\)\n +exports +3 tracked \(baseline taken: true\)\n +last poll +\S+ ok`).MatchString(stateOut) {
			t.Errorf("state (exit %d) lacks account %s with 3 exports tracked and a good last poll:\n%s\n%s", code, a, stateOut, stateErr)
		}
	}
	jsonOut, jsonErr, code := run(t, checkEnv, 30*time.Second, "state", "--json")
	var st server.State
	if err := json.Unmarshal([]byte(jsonOut), &st); err != nil || code != 0 {
		t.Fatalf("state --json: exit %d, %v\n%s\n%s", code, err, jsonOut, jsonErr)
	}
	if len(st.Accounts) != len(accounts) {
		t.Fatalf("state --json lists %d accounts, want %d: %+v", len(st.Accounts), len(accounts), st.Accounts)
	}
	for i, a := range accounts {
		if got := st.Accounts[i]; got.Name != a || got.APIURL != urls[a] || got.Exports != 3 || !got.Initialized || !got.LastPoll.OK {
			t.Errorf("state --json account %d: %+v, want %s (%s) with 3 exports, baseline taken, last poll ok", i, got, a, urls[a])
		}
	}

	// check asks the API of each account with its own token.
	var out, errOut string
	out, errOut, code = run(t, checkEnv, 30*time.Second, "check")
	for _, a := range accounts {
		if !regexp.MustCompile(`plugchoice api \(` + a + `\)\s+ok\s+`).MatchString(out) {
			t.Errorf("check (exit %d) has no ok row for account %s:\n%s\n%s", code, a, out, errOut)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return string(b)
}
