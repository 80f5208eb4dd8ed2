package slack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/slack"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBotUpdatesOneMessagePerExport(t *testing.T) {
	f := newFakeSlack(t)
	meta := newMeta()
	s, logs := newBot(t, f, meta, "#exports")
	ctx := ctxT(t)

	processing := baseExport(plugchoice.StatusProcessing)
	if err := s.Deliver(ctx, exportEvent(t, plugchoice.StatusPending, processing)); err != nil {
		t.Fatalf("first Deliver: %v", err)
	}
	ch, ts := meta.ref(t, exportID)
	if ch != channelIDOf || ts == "" {
		t.Fatalf("after the first event the store has channel %q ts %q, want %q and a ts", ch, ts, channelIDOf)
	}
	if err := s.Deliver(ctx, exportEvent(t, plugchoice.StatusProcessing, readyExport())); err != nil {
		t.Fatalf("second Deliver: %v", err)
	}

	if got, want := f.methods(), []string{"chat.postMessage", "chat.update"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
	reqs := f.requests()
	if reqs[1].Form.Get("ts") != ts || reqs[1].Form.Get("channel") != ch {
		t.Errorf("chat.update targeted channel %q ts %q, want %q %q", reqs[1].Form.Get("channel"), reqs[1].Form.Get("ts"), ch, ts)
	}
	msgs := f.messages()
	if len(msgs) != 1 {
		t.Fatalf("channel has %d messages, want 1 living message", len(msgs))
	}
	if !strings.HasPrefix(msgs[0].Text, "Export ready") || !strings.Contains(msgs[0].Blocks, "Export ready") {
		t.Errorf("the message was not updated to ready: text %q", msgs[0].Text)
	}
	if c2, ts2 := meta.ref(t, exportID); c2 != ch || ts2 != ts {
		t.Errorf("stored ref changed to %q %q", c2, ts2)
	}
	if strings.Contains(logs.String(), testToken) {
		t.Errorf("the token appears in the logs")
	}
	// A second export gets its own message.
	other := readyExport()
	other.UUID = "00000000-0000-4000-8000-000000000002"
	if err := s.Deliver(ctx, exportEvent(t, "", other)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.messages()); n != 2 {
		t.Errorf("channel has %d messages after a second export, want 2", n)
	}
}

func TestBotFailedAddsThreadReply(t *testing.T) {
	cases := []struct {
		name  string
		first bool // the failed event is the export's first (posted, not updated)
	}{
		{"after processing", false},
		{"first event", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSlack(t)
			meta := newMeta()
			s, _ := newBot(t, f, meta, "C0EXPORTS1")
			ctx := ctxT(t)
			if !tc.first {
				if err := s.Deliver(ctx, exportEvent(t, "pending", baseExport(plugchoice.StatusProcessing))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Deliver(ctx, exportEvent(t, "processing", failedExport())); err != nil {
				t.Fatalf("Deliver failed: %v", err)
			}
			msgs := f.messages()
			if len(msgs) != 1 {
				t.Fatalf("%d top-level messages, want 1", len(msgs))
			}
			if len(msgs[0].Replies) != 1 {
				t.Fatalf("%d thread replies, want 1", len(msgs[0].Replies))
			}
			r := msgs[0].Replies[0]
			if !strings.Contains(r.Blocks, "2006 MySQL server has gone away") || !strings.Contains(r.Blocks, "```") {
				t.Errorf("thread reply lacks the error in a code block: %s", r.Blocks)
			}
			if !strings.Contains(r.Text, "Export failed: SQLSTATE") {
				t.Errorf("thread reply text %q lacks the error", r.Text)
			}
			_, ts := meta.ref(t, exportID)
			last := f.requests()[len(f.requests())-1]
			if last.Form.Get("thread_ts") != ts {
				t.Errorf("reply thread_ts %q, want the stored ts %q", last.Form.Get("thread_ts"), ts)
			}
		})
	}
}

func TestBotRepostsWhenMessageIsGone(t *testing.T) {
	for _, code := range []string{"message_not_found", "cant_update_message", "edit_window_closed"} {
		t.Run(code, func(t *testing.T) {
			f := newFakeSlack(t)
			meta := newMeta()
			s, logs := newBot(t, f, meta, "#exports")
			ctx := ctxT(t)
			if err := s.Deliver(ctx, exportEvent(t, "pending", baseExport(plugchoice.StatusProcessing))); err != nil {
				t.Fatal(err)
			}
			_, oldTS := meta.ref(t, exportID)
			f.fail("chat.update", http.StatusOK, nil, fmt.Sprintf(`{"ok":false,"error":%q}`, code), 1)
			if err := s.Deliver(ctx, exportEvent(t, "processing", readyExport())); err != nil {
				t.Fatalf("Deliver after %s: %v", code, err)
			}
			if got, want := f.methods(), []string{"chat.postMessage", "chat.update", "chat.postMessage"}; !reflect.DeepEqual(got, want) {
				t.Errorf("calls %v, want %v", got, want)
			}
			_, newTS := meta.ref(t, exportID)
			if newTS == "" || newTS == oldTS {
				t.Errorf("stored ts %q after repost, want a new one (old %q)", newTS, oldTS)
			}
			if !strings.Contains(logs.String(), code) {
				t.Errorf("the repost is not logged with its reason")
			}
			// The next event updates the new message.
			if err := s.Deliver(ctx, exportEvent(t, "ready", failedExport())); err != nil {
				t.Fatal(err)
			}
			reqs := f.requests()
			if reqs[3].Method != "chat.update" || reqs[3].Form.Get("ts") != newTS {
				t.Errorf("next event: %s ts %q, want chat.update of %q", reqs[3].Method, reqs[3].Form.Get("ts"), newTS)
			}
		})
	}
}

func TestBotStoredRefEdgeCases(t *testing.T) {
	cases := []struct {
		name   string
		stored string
	}{
		{"unreadable", `not json`},
		{"empty ts", `{"channel":"C0EXPORTS1","ts":""}`},
		{"other channel configured before", `{"channel":"C0OLDCHAN1","ts":"1.000001","target":"#old"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSlack(t)
			meta := newMeta()
			meta.m["slack/"+exportID] = []byte(tc.stored)
			s, _ := newBot(t, f, meta, "#exports")
			if err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport())); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if got := f.methods(); !reflect.DeepEqual(got, []string{"chat.postMessage"}) {
				t.Errorf("calls %v, want a new post", got)
			}
			if _, ts := meta.ref(t, exportID); ts == "" || ts == "1.000001" {
				t.Errorf("stored ts %q, want the new message's", ts)
			}
		})
	}
}

func TestBotBridgeEventsPostEachTime(t *testing.T) {
	f := newFakeSlack(t)
	meta := newMeta()
	s, _ := newBot(t, f, meta, "#exports")
	for _, ev := range []event.Event{
		bridgeEvent(t, event.TypePollFailing, event.BridgeData{ErrorKind: "http_401", Message: "Unauthenticated.", Failures: 5}),
		bridgeEvent(t, event.TypePollRecovered, event.BridgeData{Failures: 6}),
	} {
		if err := s.Deliver(ctxT(t), ev); err != nil {
			t.Fatalf("Deliver %s: %v", ev.Type, err)
		}
	}
	if n := len(f.messages()); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
	if meta.puts != 0 {
		t.Errorf("bridge events stored %d refs, want none", meta.puts)
	}
	if !strings.Contains(f.messages()[0].Text, "Plugchoice polling failing: http_401: Unauthenticated. (5 failed cycles") {
		t.Errorf("poll_failing text %q", f.messages()[0].Text)
	}
}

// The raw requests Slack receives carry no live mention and no API value in plain_text.
func TestBotRequestsAreEscaped(t *testing.T) {
	f := newFakeSlack(t)
	s, _ := newBot(t, f, newMeta(), "#exports")
	exp := failedExport()
	exp.Type = "<!channel>"
	exp.Filename = ptr("<@U123>.csv")
	exp.Subject.Label = "<https://evil|click> & co"
	exp.ErrorMessage = ptr("boom <!here> ``` <!channel>")
	if err := s.Deliver(ctxT(t), exportEvent(t, "processing", exp)); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want post + thread reply", len(reqs))
	}
	for _, r := range reqs {
		for _, k := range []string{"text", "blocks"} {
			v := r.Form.Get(k)
			if strings.Contains(v, "<!channel>") || strings.Contains(v, "<@U123>") || strings.Contains(v, `\u003c`) || strings.Contains(v, "<https://evil") {
				t.Errorf("%s %s carries an unescaped mention: %s", r.Method, k, v)
			}
		}
		checkBlocksJSON(t, []byte(r.Form.Get("blocks")))
		if strings.ContainsAny(r.Form.Get("text"), "<>") {
			t.Errorf("text %q has < or >", r.Form.Get("text"))
		}
		if r.Form.Get("unfurl_links") != "false" {
			t.Errorf("%s: link unfurling not disabled", r.Method)
		}
	}
	if !strings.Contains(strings.ReplaceAll(reqs[0].Form.Get("blocks"), `\u0026`, "&"), "&lt;!channel&gt;") {
		t.Errorf("escaped type missing from blocks: %s", reqs[0].Form.Get("blocks"))
	}
}

func TestBotRateLimited(t *testing.T) {
	future := time.Now().Add(2 * time.Minute).UTC().Format(http.TimeFormat)
	cases := []struct {
		name       string
		header     map[string]string
		wantAfter  time.Duration // exact, or
		wantWithin [2]time.Duration
	}{
		{"seconds", map[string]string{"Retry-After": "7"}, 7 * time.Second, [2]time.Duration{}},
		{"http date", map[string]string{"Retry-After": future}, 0, [2]time.Duration{time.Second, 121 * time.Second}},
		{"no header", nil, 0, [2]time.Duration{}},
		{"garbage header", map[string]string{"Retry-After": "soon"}, 0, [2]time.Duration{}},
	}
	for _, tc := range cases {
		for _, method := range []string{"chat.postMessage", "chat.update"} {
			t.Run(tc.name+"/"+method, func(t *testing.T) {
				f := newFakeSlack(t)
				meta := newMeta()
				s, _ := newBot(t, f, meta, "#exports")
				ctx := ctxT(t)
				if method == "chat.update" {
					if err := s.Deliver(ctx, exportEvent(t, "pending", baseExport(plugchoice.StatusProcessing))); err != nil {
						t.Fatal(err)
					}
				}
				f.fail(method, http.StatusTooManyRequests, tc.header, `{"ok":false,"error":"ratelimited"}`, 1)
				err := s.Deliver(ctx, exportEvent(t, "processing", readyExport()))
				if err == nil {
					t.Fatal("Deliver succeeded through a 429")
				}
				if sinks.IsPermanent(err) {
					t.Fatalf("429 is permanent: %v", err)
				}
				if sinks.StatusCode(err) != http.StatusTooManyRequests {
					t.Errorf("status code %d, want 429", sinks.StatusCode(err))
				}
				d, ok := sinks.RetryAfterOf(err)
				switch {
				case tc.wantAfter > 0:
					if d != tc.wantAfter {
						t.Errorf("RetryAfter %v (%v), want %v", d, ok, tc.wantAfter)
					}
				case tc.wantWithin[1] > 0:
					if d < tc.wantWithin[0] || d > tc.wantWithin[1] {
						t.Errorf("RetryAfter %v, want within %v", d, tc.wantWithin)
					}
				default:
					if ok {
						t.Errorf("RetryAfter %v from a 429 without a usable header", d)
					}
				}
				// The retry goes through.
				if err := s.Deliver(ctx, exportEvent(t, "processing", readyExport())); err != nil {
					t.Fatalf("retry: %v", err)
				}
				if n := len(f.messages()); n != 1 {
					t.Errorf("%d messages after the retry, want 1", n)
				}
			})
		}
	}
}

func TestBotPermanentErrors(t *testing.T) {
	cases := []struct {
		code string
		fix  string
	}{
		{"invalid_auth", "slack.token"},
		{"not_authed", "slack.token"},
		{"account_inactive", "reinstall the Slack app"},
		{"token_revoked", "reinstall the Slack app"},
		{"channel_not_found", `channel "#exports" does not exist`},
		{"not_in_channel", "invite the bot to the channel: /invite @yourbot"},
		{"is_archived", "archived"},
		{"no_service", "incoming webhook"},
		{"missing_scope", "chat:write"},
		{"invalid_blocks", "bug"},
		{"some_new_error", "some_new_error"},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			f := newFakeSlack(t)
			meta := newMeta()
			s, logs := newBot(t, f, meta, "#exports")
			f.fail("chat.postMessage", http.StatusOK, nil, fmt.Sprintf(`{"ok":false,"error":%q}`, tc.code), 0)
			err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
			if !sinks.IsPermanent(err) {
				t.Fatalf("error %v is not permanent", err)
			}
			if !strings.Contains(err.Error(), tc.fix) {
				t.Errorf("error %q does not name the fix (%q)", err, tc.fix)
			}
			if strings.Contains(err.Error(), testToken) || strings.Contains(logs.String(), testToken) {
				t.Errorf("token leaked")
			}
			if meta.puts != 0 {
				t.Errorf("a ref was stored for a failed post")
			}
		})
	}
	t.Run("on update too", func(t *testing.T) {
		f := newFakeSlack(t)
		s, _ := newBot(t, f, newMeta(), "#exports")
		ctx := ctxT(t)
		if err := s.Deliver(ctx, exportEvent(t, "pending", baseExport(plugchoice.StatusProcessing))); err != nil {
			t.Fatal(err)
		}
		f.fail("chat.update", http.StatusOK, nil, `{"ok":false,"error":"channel_not_found"}`, 0)
		err := s.Deliver(ctx, exportEvent(t, "processing", readyExport()))
		if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "chat.update") {
			t.Errorf("update error %v: want permanent, naming chat.update", err)
		}
	})
	t.Run("on the thread reply", func(t *testing.T) {
		f := newFakeSlack(t)
		meta := newMeta()
		s, _ := newBot(t, f, meta, "#exports")
		ctx := ctxT(t)
		if err := s.Deliver(ctx, exportEvent(t, "pending", baseExport(plugchoice.StatusProcessing))); err != nil {
			t.Fatal(err)
		}
		f.fail("chat.postMessage", http.StatusOK, nil, `{"ok":false,"error":"is_archived"}`, 0)
		err := s.Deliver(ctx, exportEvent(t, "processing", failedExport()))
		if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "thread reply") {
			t.Errorf("reply error %v: want permanent, naming the thread reply", err)
		}
	})
}

func TestBotRetryableErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
	}{
		{"500", http.StatusInternalServerError, "<html>oops</html>"},
		{"502", http.StatusBadGateway, ""},
		{"503", http.StatusServiceUnavailable, ""},
		{"504", http.StatusGatewayTimeout, ""},
		{"internal_error", http.StatusOK, `{"ok":false,"error":"internal_error"}`},
		{"fatal_error", http.StatusOK, `{"ok":false,"error":"fatal_error"}`},
		{"not json", http.StatusOK, `<html>proxy login</html>`},
		{"ok without ts", http.StatusOK, `{"ok":true,"channel":"C0EXPORTS1"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSlack(t)
			meta := newMeta()
			s, _ := newBot(t, f, meta, "#exports")
			f.fail("chat.postMessage", tc.status, nil, tc.body, 1)
			err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
			if err == nil {
				t.Fatal("Deliver succeeded")
			}
			if sinks.IsPermanent(err) {
				t.Fatalf("error %v is permanent, want retryable", err)
			}
			if tc.status >= 500 && sinks.StatusCode(err) != tc.status {
				t.Errorf("status code %d, want %d", sinks.StatusCode(err), tc.status)
			}
			if meta.puts != 0 {
				t.Errorf("a ref was stored for a failed post")
			}
			if err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport())); err != nil {
				t.Errorf("retry: %v", err)
			}
		})
	}
}

func TestBotUnauthorizedAPIStatus(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusBadRequest} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			f := newFakeSlack(t)
			s, _ := newBot(t, f, newMeta(), "#exports")
			f.fail("chat.postMessage", status, nil, "", 0)
			err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
			if !sinks.IsPermanent(err) || sinks.StatusCode(err) != status {
				t.Errorf("HTTP %d: %v (permanent %v, code %d), want permanent with the code", status, err, sinks.IsPermanent(err), sinks.StatusCode(err))
			}
		})
	}
}

func TestBotNetworkErrorsAndCancellation(t *testing.T) {
	f := newFakeSlack(t)
	s, _ := newBot(t, f, newMeta(), "#exports")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Deliver(ctx, exportEvent(t, "processing", readyExport()))
	if err == nil || sinks.IsPermanent(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v, want a retryable error wrapping context.Canceled", err)
	}

	f.srv.Stop()
	err = s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
	if err == nil || sinks.IsPermanent(err) {
		t.Errorf("server down: %v, want a retryable error", err)
	}
}

func TestBotTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
	}
	srv := slacktest.NewTestServer(slow)
	srv.Start()
	t.Cleanup(srv.Stop)
	t.Cleanup(func() { close(release) }) // runs before Stop
	s, err := slack.NewSink(slack.Options{Token: testToken, Channel: "#x", APIURL: srv.GetAPIURL(), Timeout: 100 * time.Millisecond, Meta: newMeta()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
	if err == nil || sinks.IsPermanent(err) {
		t.Errorf("timed-out request: %v, want a retryable error", err)
	}
}

func TestBotMetaStoreErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	t.Run("read", func(t *testing.T) {
		f := newFakeSlack(t)
		meta := newMeta()
		meta.getErr = boom
		s, _ := newBot(t, f, meta, "#exports")
		err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
		if !errors.Is(err, boom) || sinks.IsPermanent(err) {
			t.Errorf("read error: %v, want retryable wrapping the store error", err)
		}
		if n := len(f.requests()); n != 0 {
			t.Errorf("%d requests to Slack before the ref could be read", n)
		}
	})
	t.Run("write", func(t *testing.T) {
		f := newFakeSlack(t)
		meta := newMeta()
		meta.putErr = boom
		s, _ := newBot(t, f, meta, "#exports")
		err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
		if !errors.Is(err, boom) || sinks.IsPermanent(err) {
			t.Errorf("write error: %v, want retryable wrapping the store error", err)
		}
		if !strings.Contains(fmt.Sprint(err), "could not be stored") {
			t.Errorf("error %q does not say the ts was not stored", err)
		}
	})
}

func TestDeliverBadEventBody(t *testing.T) {
	f := newFakeSlack(t)
	s, _ := newBot(t, f, newMeta(), "#exports")
	for name, body := range map[string]string{
		"not json":     `{`,
		"no id":        `{"type":"com.plugchoice.export.ready"}`,
		"foreign type": `{"id":"1","type":"org.example.x","data":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			err := s.Deliver(ctxT(t), event.Event{ID: "e1", Type: "export.ready", Body: json.RawMessage(body)})
			if !sinks.IsPermanent(err) {
				t.Errorf("bad body: %v, want permanent", err)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests for undeliverable events", n)
	}
}

// slacktest's own chat.postMessage (ts without a decimal part) works as well.
func TestBotWithStockSlacktest(t *testing.T) {
	var (
		mu      sync.Mutex
		updates []string
	)
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.update", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			mu.Lock()
			updates = append(updates, r.PostForm.Get("ts"))
			mu.Unlock()
			_, _ = fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q}`, r.PostForm.Get("channel"), r.PostForm.Get("ts"))
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	meta := newMeta()
	s, err := slack.NewSink(slack.Options{Token: testToken, Channel: "C0STOCK01", APIURL: strings.TrimSuffix(srv.GetAPIURL(), "/"), Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := s.Deliver(ctx, exportEvent(t, "pending", baseExport(plugchoice.StatusProcessing))); err != nil {
		t.Fatalf("post: %v", err)
	}
	_, ts := meta.ref(t, exportID)
	if ts == "" || strings.Contains(ts, ".") {
		t.Errorf("stored ts %q, want slacktest's integer ts", ts)
	}
	if err := s.Deliver(ctx, exportEvent(t, "processing", readyExport())); err != nil {
		t.Fatalf("update: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(updates) != 1 || updates[0] != ts {
		t.Errorf("updates %v, want one of ts %q", updates, ts)
	}
}
