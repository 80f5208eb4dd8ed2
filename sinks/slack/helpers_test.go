package slack_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/slack-go/slack/slacktest"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks/slack"
)

const (
	source    = "https://app.plugchoice.com/api/v3/exports"
	testToken = "xoxb-111-222-SeCrEtToKeN"
	exportID  = "9b2c6a1e-5d1f-4c3e-8a7b-0123456789ab"
)

var observed = time.Date(2026, 11, 28, 10, 15, 20, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// baseExport is a typical export; tests set what they need on a copy.
func baseExport(status string) plugchoice.Export {
	return plugchoice.Export{
		UUID:        exportID,
		Type:        "sessions",
		Status:      status,
		RequestedAt: "2026-11-28T10:11:00Z",
		Subject:     &plugchoice.Subject{Type: "site", ID: 12, Label: "Acme Depot Rotterdam"},
	}
}

func readyExport() plugchoice.Export {
	e := baseExport(plugchoice.StatusReady)
	e.Filename = ptr("sessions-2026-11.csv")
	e.FileSize = ptr(int64(3_200_000))
	e.RowCount = ptr(int64(1_234_567))
	e.CompletedAt = ptr("2026-11-28T10:15:12Z")
	e.DownloadURL = ptr("https://app.plugchoice.com/api/v3/exports/" + exportID + "/download?expires=1796000000&signature=0123abcd")
	return e
}

func failedExport() plugchoice.Export {
	e := baseExport(plugchoice.StatusFailed)
	e.ErrorMessage = ptr("SQLSTATE[HY000]: General error: 2006 MySQL server has gone away")
	e.FailedAt = ptr("2026-11-28T10:12:30Z")
	return e
}

func exportEvent(t testing.TB, prev string, exp plugchoice.Export) event.Event {
	t.Helper()
	ev, err := event.NewExport(source, prev, &exp, observed)
	if err != nil {
		t.Fatalf("NewExport: %v", err)
	}
	return ev
}

func bridgeEvent(t testing.TB, typ string, d event.BridgeData) event.Event {
	t.Helper()
	ev, err := event.NewBridge(source, typ, d, observed.Add(-3*time.Minute), observed)
	if err != nil {
		t.Fatalf("NewBridge: %v", err)
	}
	return ev
}

func decode(t testing.TB, ev event.Event) *event.CloudEvent {
	t.Helper()
	ce, err := event.Decode(ev.Body)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return ce
}

// ---- meta store ----

type memMeta struct {
	mu      sync.Mutex
	m       map[string][]byte
	getErr  error
	putErr  error
	puts    int
	putSeen []string
}

func newMeta() *memMeta { return &memMeta{m: map[string][]byte{}} }

func (m *memMeta) GetMeta(sink, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.getErr != nil {
		return nil, m.getErr
	}
	return m.m[sink+"/"+key], nil
}

func (m *memMeta) PutMeta(sink, key string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.putErr != nil {
		return m.putErr
	}
	m.puts++
	m.m[sink+"/"+key] = append([]byte(nil), v...)
	return nil
}

func (m *memMeta) ref(t testing.TB, key string) (channel, ts string) {
	t.Helper()
	m.mu.Lock()
	b := m.m["slack/"+key]
	m.mu.Unlock()
	if b == nil {
		return "", ""
	}
	var r struct{ Channel, TS string }
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("stored ref %q: %v", b, err)
	}
	return r.Channel, r.TS
}

// ---- fake Slack workspace on slacktest ----

type fakeMsg struct {
	Channel, TS, Text, Blocks string
	Replies                   []fakeMsg
}

type recorded struct {
	Method string
	Form   url.Values
}

type responder struct {
	status int
	header map[string]string
	body   string
	times  int // 0: always
}

// fakeSlack is slacktest's server with chat.postMessage and chat.update handlers that
// keep the channel's messages (slacktest has no chat.update, and its postMessage gives
// second-resolution ts values and keeps nothing).
type fakeSlack struct {
	srv *slacktest.Server

	mu      sync.Mutex
	seq     int
	msgs    []*fakeMsg
	reqs    []recorded
	respond map[string]*responder
}

const channelIDOf = "C0EXPORTS1"

func newFakeSlack(t *testing.T, extra ...slacktest.Binder) *fakeSlack {
	t.Helper()
	f := &fakeSlack{respond: map[string]*responder{}}
	binders := append([]slacktest.Binder{func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", f.handle("chat.postMessage", f.postMessage))
		c.Handle("/chat.update", f.handle("chat.update", f.update))
	}}, extra...)
	f.srv = slacktest.NewTestServer(binders...)
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

// fail makes the next `times` calls of method (0: all) answer with status/header/body.
func (f *fakeSlack) fail(method string, status int, header map[string]string, body string, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.respond[method] = &responder{status: status, header: header, body: body, times: times}
}

func (f *fakeSlack) handle(method string, next func(http.ResponseWriter, url.Values)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{Method: method, Form: r.PostForm})
		rsp := f.respond[method]
		if rsp != nil && rsp.times > 0 {
			rsp.times--
			if rsp.times == 0 {
				delete(f.respond, method)
			}
		}
		f.mu.Unlock()
		if rsp != nil {
			for k, v := range rsp.header {
				w.Header().Set(k, v)
			}
			if rsp.status == 0 || rsp.status == http.StatusOK {
				w.Header().Set("Content-Type", "application/json")
			}
			if rsp.status != 0 {
				w.WriteHeader(rsp.status)
			}
			_, _ = io.WriteString(w, rsp.body)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		next(w, r.PostForm)
	}
}

func chanID(c string) string {
	if strings.HasPrefix(c, "#") || !strings.HasPrefix(c, "C") {
		return channelIDOf
	}
	return c
}

func (f *fakeSlack) postMessage(w http.ResponseWriter, v url.Values) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := chanID(v.Get("channel"))
	if parent := v.Get("thread_ts"); parent != "" {
		for _, m := range f.msgs {
			if m.Channel == ch && m.TS == parent {
				f.seq++
				ts := fmt.Sprintf("1764324000.%06d", f.seq)
				m.Replies = append(m.Replies, fakeMsg{Channel: ch, TS: ts, Text: v.Get("text"), Blocks: v.Get("blocks")})
				_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": ch, "ts": ts})
				return
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "thread_not_found"})
		return
	}
	f.seq++
	ts := fmt.Sprintf("1764324000.%06d", f.seq)
	f.msgs = append(f.msgs, &fakeMsg{Channel: ch, TS: ts, Text: v.Get("text"), Blocks: v.Get("blocks")})
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": ch, "ts": ts})
}

func (f *fakeSlack) update(w http.ResponseWriter, v url.Values) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.msgs {
		if m.Channel == v.Get("channel") && m.TS == v.Get("ts") {
			m.Text, m.Blocks = v.Get("text"), v.Get("blocks")
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text})
			return
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "message_not_found"})
}

func (f *fakeSlack) messages() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fakeMsg, len(f.msgs))
	for i, m := range f.msgs {
		out[i] = *m
	}
	return out
}

func (f *fakeSlack) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func (f *fakeSlack) methods() []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, r.Method)
	}
	return out
}

// ---- sinks under test ----

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func newBot(t *testing.T, f *fakeSlack, meta slack.MetaStore, channel string) (*slack.Sink, *logBuf) {
	t.Helper()
	lg, lb := newLogger()
	s, err := slack.NewSink(slack.Options{
		Token: testToken, Channel: channel, APIURL: f.srv.GetAPIURL(),
		Timeout: 20 * time.Second, Meta: meta, Logger: lg,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, lb
}

// ---- message inspection ----

// textObj is a Block Kit text object found while walking a message.
type textObj struct {
	Type, Text string
	Verbatim   bool
	Where      string // block type / role
}

// walk decodes blocks JSON and returns every text object with where it sits, and every
// string value (for checks of the whole payload).
func walk(t testing.TB, blocksJSON []byte) (texts []textObj, strs []string, blocks []map[string]any) {
	t.Helper()
	if err := json.Unmarshal(blocksJSON, &blocks); err != nil {
		t.Fatalf("blocks JSON: %v\n%s", err, blocksJSON)
	}
	var visit func(v any, where string)
	visit = func(v any, where string) {
		switch x := v.(type) {
		case map[string]any:
			if typ, ok := x["type"].(string); ok && (typ == "plain_text" || typ == "mrkdwn") {
				txt, _ := x["text"].(string)
				verb, _ := x["verbatim"].(bool)
				texts = append(texts, textObj{Type: typ, Text: txt, Verbatim: verb, Where: where})
			}
			w := where
			if typ, ok := x["type"].(string); ok && typ != "plain_text" && typ != "mrkdwn" {
				w = typ
			}
			for k, e := range x {
				if k == "fields" {
					for _, fe := range e.([]any) {
						visit(fe, "field")
					}
					continue
				}
				visit(e, w)
			}
		case []any:
			for _, e := range x {
				visit(e, where)
			}
		case string:
			strs = append(strs, x)
		}
	}
	for _, b := range blocks {
		visit(b, "")
	}
	return texts, strs, blocks
}

func u16(s string) int { return len(utf16.Encode([]rune(s))) }

// fixedPlain are the only texts our plain_text objects may carry.
var fixedPlain = map[string]bool{
	":hourglass_flowing_sand: Export pending":         true,
	":gear: Export processing":                        true,
	":white_check_mark: Export ready":                 true,
	":x: Export failed":                               true,
	":no_entry_sign: Export cancelled":                true,
	":wastebasket: Export removed":                    true,
	":grey_question: Export status changed":           true,
	":rotating_light: Plugchoice polling failing":     true,
	":white_check_mark: Plugchoice polling recovered": true,
	":rotating_light: Sink failing":                   true,
	":white_check_mark: Sink recovered":               true,
	":information_source: exportbridge event":         true,
	"Download": true,
}

// checkMessage asserts Slack's limits and our safety rules on a rendered message.
func checkMessage(t testing.TB, m slack.Message) {
	t.Helper()
	if u16(m.Text) > slack.MaxFallback {
		t.Errorf("fallback text is %d units, limit %d", u16(m.Text), slack.MaxFallback)
	}
	if strings.ContainsAny(m.Text, "<>") {
		t.Errorf("fallback text has an unescaped < or >: %q", m.Text)
	}
	b, err := json.Marshal(m.Blocks)
	if err != nil {
		t.Fatalf("marshal blocks: %v", err)
	}
	checkBlocksJSON(t, b)
	if m.Reply != nil {
		checkMessage(t, *m.Reply)
	}
}

func checkBlocksJSON(t testing.TB, b []byte) {
	t.Helper()
	texts, _, blocks := walk(t, b)
	if len(blocks) > slack.MaxBlocks {
		t.Errorf("%d blocks, limit %d", len(blocks), slack.MaxBlocks)
	}
	for _, blk := range blocks {
		switch blk["type"] {
		case "section":
			if f, ok := blk["fields"].([]any); ok && len(f) > 10 {
				t.Errorf("section has %d fields, limit 10", len(f))
			}
		case "context":
			if e, ok := blk["elements"].([]any); ok && len(e) > 10 {
				t.Errorf("context has %d elements, limit 10", len(e))
			}
		case "actions":
			for _, e := range blk["elements"].([]any) {
				if u, _ := e.(map[string]any)["url"].(string); u16(u) > slack.MaxButtonURL {
					t.Errorf("button url is %d units", u16(u))
				}
			}
		}
	}
	for _, x := range texts {
		limit := map[string]int{"header": slack.MaxHeaderText, "section": slack.MaxSectionText,
			"field": slack.MaxFieldText, "context": slack.MaxContextText, "button": 75}[x.Where]
		if limit == 0 {
			t.Errorf("text object in unexpected place %q: %q", x.Where, x.Text)
			continue
		}
		if u16(x.Text) > limit {
			t.Errorf("%s text is %d units, limit %d", x.Where, u16(x.Text), limit)
		}
		if strings.ContainsAny(x.Text, "<>") {
			t.Errorf("%s text has an unescaped < or >: %q", x.Where, x.Text)
		}
		switch x.Type {
		case "plain_text":
			if !fixedPlain[x.Text] {
				t.Errorf("plain_text object carries %q, not one of our fixed strings", x.Text)
			}
		case "mrkdwn":
			if !x.Verbatim {
				t.Errorf("mrkdwn object without verbatim: %q", x.Text)
			}
			if strings.Count(x.Text, "```")%2 != 0 {
				t.Errorf("unbalanced code block in %q", x.Text)
			}
		}
	}
}
