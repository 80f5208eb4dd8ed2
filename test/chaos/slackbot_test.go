package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// fakeSlackAPI is a Slack Web API with what bot mode uses: chat.postMessage (top-level
// messages and thread replies) and chat.update, over form-encoded requests as slack-go
// sends them. It keeps every top-level message with the history of its versions.
type fakeSlackAPI struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	seq      int
	messages map[string]*botMsg // ts -> top-level message
	order    []string           // ts in posting order
	replies  int
	bad      int // requests with a wrong token or an unknown method
}

type botMsg struct {
	ts       string
	versions []string // every text the message had, the post first
}

func newFakeSlackAPI(t *testing.T, token string) *fakeSlackAPI {
	t.Helper()
	f := &fakeSlackAPI{token: token, messages: map[string]*botMsg{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		w.Header().Set("Content-Type", "application/json")
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+f.token && form.Get("token") != f.token {
			f.bad++
			io.WriteString(w, `{"ok":false,"error":"invalid_auth"}`)
			return
		}
		text := form.Get("text") + "\n" + form.Get("blocks")
		switch r.URL.Path {
		case "/chat.postMessage":
			f.seq++
			ts := fmt.Sprintf("1796000000.%06d", f.seq)
			if form.Get("thread_ts") != "" {
				f.replies++
			} else {
				f.messages[ts] = &botMsg{ts: ts, versions: []string{text}}
				f.order = append(f.order, ts)
			}
			json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C0CHAOS", "ts": ts})
		case "/chat.update":
			m := f.messages[form.Get("ts")]
			if m == nil {
				io.WriteString(w, `{"ok":false,"error":"message_not_found"}`)
				return
			}
			m.versions = append(m.versions, text)
			json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C0CHAOS", "ts": m.ts})
		default:
			f.bad++
			io.WriteString(w, `{"ok":false,"error":"unknown_method"}`)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// about returns, per export uuid, the top-level messages that name it (in posting
// order), with their versions.
func (f *fakeSlackAPI) about(uuids []string) map[string][]botMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]botMsg{}
	for _, ts := range f.order {
		m := f.messages[ts]
		for _, u := range uuids {
			if strings.Contains(m.versions[0], u) {
				out[u] = append(out[u], botMsg{ts: m.ts, versions: append([]string(nil), m.versions...)})
				break
			}
		}
	}
	return out
}

// TestCrashLoopSlackBot (scenario 1, Slack in bot mode): exports move to processing and
// then ready or failed while the bridge is SIGKILLed at random instants. Slack's filter
// is processing,ready,failed, so every export's message is posted at processing and must
// be UPDATED in place to its final status, across restarts (the message ts lives in the
// store). Every export ends with a message showing its final status; a second message
// for one export can only come from a kill between Slack's answer and the store's write
// of its ts, and is counted.
func TestCrashLoopSlackBot(t *testing.T) {
	needChaos(t)
	nExports, wantKills := pick(40, 120), pick(6, 20)
	token := newSecret("apitoken")
	slackToken := "xoxb-" + newSecret("slacktoken")
	sim, apiURL := newSim(t, token, 0, nil)
	live := sim.AddN(nExports, "pending")
	slack := newFakeSlackAPI(t, slackToken)
	env := baseEnv(apiURL, token, t.TempDir())
	env["EXPORTBRIDGE_SLACK_TOKEN"] = slackToken
	env["EXPORTBRIDGE_SLACK_CHANNEL"] = "C0CHAOS"
	env["EXPORTBRIDGE_SLACK_API_URL"] = slack.srv.URL + "/"
	env["EXPORTBRIDGE_SLACK_EVENTS"] = "processing,ready,failed"

	var cur atomic.Pointer[proc]
	cur.Store(start(t, env, "run"))
	cur.Load().WaitPolls(1, 60*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	killsDone := killLoop(ctx, t, env, &cur, wantKills, 1500*time.Millisecond, 2000*time.Millisecond)

	// Two phases, each held 5 s (longer than a kill interval plus a restart and a poll):
	// every export to processing, then each to ready (5 in 6) or failed.
	final := map[string]string{}
	for _, u := range live {
		sim.SetStatus(u, "processing")
	}
	time.Sleep(5 * time.Second)
	for i, u := range live {
		st := "ready"
		if i%6 == 5 {
			st = "failed"
		}
		sim.SetStatus(u, st)
		final[u] = st
	}
	kills := <-killsDone
	p := cur.Load()

	showsFinal := func(m botMsg, st string) bool {
		last := m.versions[len(m.versions)-1]
		return strings.Contains(last, "Export "+st)
	}
	// Slack is paced to one message per second per channel (bursts of 10): about 2.2
	// messages per export (post, update, a reply for failed) take that long to drain.
	bridgetest.WaitFor(t, pick(150*time.Second, 420*time.Second), "every export's message showing its final status", func() bool {
		if p.Exited() {
			t.Fatalf("the last bridge exited (code %d)", p.Code())
		}
		msgs := slack.about(live)
		for _, u := range live {
			ms := msgs[u]
			if len(ms) == 0 || !showsFinal(ms[len(ms)-1], final[u]) {
				return false
			}
		}
		return true
	})
	msgs := slack.about(live)
	extra, updated, failedReplies := 0, 0, 0
	for _, u := range live {
		ms := msgs[u]
		extra += len(ms) - 1
		for _, m := range ms {
			if len(m.versions) > 1 {
				updated++
				break
			}
		}
		if final[u] == "failed" {
			failedReplies++
		}
	}
	slack.mu.Lock()
	replies, bad := slack.replies, slack.bad
	slack.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d Slack requests with a wrong token or method", bad)
	}
	// Slack's dispatcher delivers one event at a time: a kill can strand at most one
	// posted message whose ts was not yet committed.
	if extra > kills {
		t.Errorf("%d extra top-level messages for %d kills: messages are not updated in place across restarts", extra, kills)
	}
	if updated < len(live)-extra {
		t.Errorf("only %d of %d exports had their message updated in place", updated, len(live))
	}
	if replies < failedReplies {
		t.Errorf("%d thread replies, want at least one per failed export (%d)", replies, failedReplies)
	}
	report(t, "bot mode: %d exports, %d SIGKILLs; every export's message shows its final status; %d updated in place, %d extra top-level messages (kill between post and ts commit), %d thread replies for %d failed",
		len(live), kills, updated, extra, replies, failedReplies)
}
