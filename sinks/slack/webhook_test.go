package slack_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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

const hookPath = "/services/T000/B000/XXsecretXXwebhookXX"

type hookReply struct {
	status int
	header map[string]string
	body   string
}

// hookServer is an incoming-webhook endpoint that records what it receives.
type hookServer struct {
	srv *httptest.Server

	mu     sync.Mutex
	bodies [][]byte
	paths  []string
	reply  []hookReply // answered in turn; then 200 "ok"
}

func newHookServer(t *testing.T, replies ...hookReply) *hookServer {
	t.Helper()
	h := &hookServer{reply: replies}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, b)
		h.paths = append(h.paths, r.URL.Path)
		var rep *hookReply
		if len(h.reply) > 0 {
			rep = &h.reply[0]
			h.reply = h.reply[1:]
		}
		h.mu.Unlock()
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		if rep == nil {
			_, _ = io.WriteString(w, "ok")
			return
		}
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookServer) received() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...)
}

func newHookSink(t *testing.T, h *hookServer, timeout time.Duration) (*slack.Sink, *logBuf) {
	t.Helper()
	lg, lb := newLogger()
	s, err := slack.NewSink(slack.Options{WebhookURL: h.srv.URL + hookPath, Timeout: timeout, Logger: lg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, lb
}

func TestWebhookPostsOneMessagePerEvent(t *testing.T) {
	h := newHookServer(t)
	s, logs := newHookSink(t, h, 0)
	ctx := ctxT(t)
	exp := failedExport()
	exp.Filename = ptr("<!channel>.csv")
	exp.ErrorMessage = ptr("<@U123> did <https://evil|click> & left")
	for _, ev := range []event.Event{
		exportEvent(t, "pending", baseExport(plugchoice.StatusProcessing)),
		exportEvent(t, "processing", exp),
		bridgeEvent(t, event.TypePollFailing, event.BridgeData{ErrorKind: "http_401", Message: "Unauthenticated.", Failures: 5}),
	} {
		if err := s.Deliver(ctx, ev); err != nil {
			t.Fatalf("Deliver %s: %v", ev.Type, err)
		}
	}
	bodies := h.received()
	if len(bodies) != 3 {
		t.Fatalf("%d webhook posts, want 3 (one per event)", len(bodies))
	}
	for i, b := range bodies {
		var m struct {
			Text        string          `json:"text"`
			Blocks      json.RawMessage `json:"blocks"`
			UnfurlLinks *bool           `json:"unfurl_links"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("post %d is not JSON: %v", i, err)
		}
		if m.Text == "" || len(m.Blocks) == 0 {
			t.Errorf("post %d lacks text or blocks: %s", i, b)
		}
		if m.UnfurlLinks == nil || *m.UnfurlLinks {
			t.Errorf("post %d does not disable unfurling", i)
		}
		if strings.ContainsAny(m.Text, "<>") {
			t.Errorf("post %d text has < or >: %q", i, m.Text)
		}
		checkBlocksJSON(t, m.Blocks)
		raw := string(b)
		for _, bad := range []string{"<!channel>", `\u003c!channel`, "<@U123>", `\u003c@U123`, "<https://evil"} {
			if strings.Contains(raw, bad) {
				t.Errorf("post %d carries %q", i, bad)
			}
		}
	}
	failed := strings.ReplaceAll(string(bodies[1]), `\u0026`, "&")
	if !strings.Contains(failed, "&lt;!channel&gt;.csv") || !strings.Contains(failed, "&lt;@U123&gt; did &lt;https://evil|click&gt; &amp; left") {
		t.Errorf("escaped values missing: %s", bodies[1])
	}
	if strings.Contains(logs.String(), "XXsecretXX") {
		t.Errorf("the webhook URL appears in the logs")
	}
}

func TestWebhookErrors(t *testing.T) {
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		name      string
		reply     hookReply
		permanent bool
		after     time.Duration // >0: exact RetryAfter; <0: any positive up to -after
		says      string
	}{
		{"404 no_service", hookReply{404, nil, "no_service"}, true, 0, "create a new incoming webhook"},
		{"404 channel_not_found", hookReply{404, nil, "channel_not_found"}, true, 0, "the webhook's channel no longer exists"},
		{"404 html", hookReply{404, nil, "<html>not here</html>"}, true, 0, "incoming webhook no longer exists"},
		{"410 channel_is_archived", hookReply{410, nil, "channel_is_archived"}, true, 0, "archived"},
		{"410 empty", hookReply{410, nil, ""}, true, 0, "HTTP 410"},
		{"403 invalid_token", hookReply{403, nil, "invalid_token"}, true, 0, "webhook URL is not valid"},
		{"403 action_prohibited", hookReply{403, nil, "action_prohibited"}, true, 0, "admin"},
		{"400 invalid_payload", hookReply{400, nil, "invalid_payload"}, true, 0, "bug"},
		{"400 other", hookReply{400, nil, "something_else"}, true, 0, `slack said "something_else"`},
		{"400 a code with a z", hookReply{400, nil, "not_authorized"}, true, 0, `slack said "not_authorized"`},
		{"400 a code of 64 characters", hookReply{400, nil, strings.Repeat("ab", 32)}, true, 0, `slack said "` + strings.Repeat("ab", 32) + `"`},
		{"400 a body of 65 characters", hookReply{400, nil, strings.Repeat("ab", 32) + "c"}, true, 0, "HTTP 400"},
		{"302 redirect", hookReply{302, map[string]string{"Location": "https://elsewhere.test/"}, ""}, true, 0, "redirect"},
		{"429 seconds", hookReply{429, map[string]string{"Retry-After": "30"}, "rate_limited"}, false, 30 * time.Second, "rate limit"},
		{"429 http date", hookReply{429, map[string]string{"Retry-After": future}, ""}, false, -91 * time.Second, "rate limit"},
		{"429 no header", hookReply{429, nil, ""}, false, 0, "429"},
		{"500 rollup_error", hookReply{500, nil, "rollup_error"}, false, 0, "rollup_error"},
		{"503", hookReply{503, nil, "<html>busy</html>"}, false, 0, "HTTP 503"},
		{"408", hookReply{408, nil, ""}, false, 0, "HTTP 408"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHookServer(t, tc.reply)
			s, logs := newHookSink(t, h, 0)
			err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
			if err == nil {
				t.Fatal("Deliver succeeded")
			}
			if sinks.IsPermanent(err) != tc.permanent {
				t.Errorf("permanent = %v, want %v: %v", sinks.IsPermanent(err), tc.permanent, err)
			}
			if sinks.StatusCode(err) != tc.reply.status {
				t.Errorf("status code %d, want %d", sinks.StatusCode(err), tc.reply.status)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			d, ok := sinks.RetryAfterOf(err)
			switch {
			case tc.after > 0 && d != tc.after:
				t.Errorf("RetryAfter %v, want %v", d, tc.after)
			case tc.after < 0 && (d <= 0 || d > -tc.after):
				t.Errorf("RetryAfter %v, want in (0, %v]", d, -tc.after)
			case tc.after == 0 && ok:
				t.Errorf("RetryAfter %v, want none", d)
			}
			if strings.Contains(err.Error(), "XXsecretXX") || strings.Contains(logs.String(), "XXsecretXX") {
				t.Errorf("the webhook URL leaked: %v", err)
			}
			if tc.reply.status == 302 && len(h.received()) != 1 {
				t.Errorf("the redirect was followed")
			}
			// A retry (after a retryable error) goes through.
			if !tc.permanent {
				if err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport())); err != nil {
					t.Errorf("retry: %v", err)
				}
			}
		})
	}
}

func TestWebhookNetworkErrors(t *testing.T) {
	t.Run("server down", func(t *testing.T) {
		h := newHookServer(t)
		s, _ := newHookSink(t, h, 0)
		h.srv.Close()
		err := s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
		if err == nil || sinks.IsPermanent(err) {
			t.Fatalf("server down: %v, want retryable", err)
		}
		if strings.Contains(err.Error(), "XXsecretXX") || strings.Contains(err.Error(), hookPath) {
			t.Errorf("error shows the webhook URL: %v", err)
		}
		if !strings.Contains(err.Error(), "/...") {
			t.Errorf("error %q does not show the redacted address", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		s, err := slack.NewSink(slack.Options{WebhookURL: srv.URL + hookPath, Timeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Deliver(ctxT(t), exportEvent(t, "processing", readyExport()))
		if err == nil || sinks.IsPermanent(err) {
			t.Fatalf("timeout: %v, want retryable", err)
		}
		if strings.Contains(err.Error(), "XXsecretXX") {
			t.Errorf("error shows the webhook URL: %v", err)
		}
	})
}

func TestNewValidates(t *testing.T) {
	meta := newMeta()
	cases := []struct {
		name string
		o    slack.Options
		want string
	}{
		{"nothing", slack.Options{}, "nothing to post to"},
		{"both modes", slack.Options{WebhookURL: "https://hooks.slack.com/services/X", Token: testToken, Channel: "#x", Meta: meta}, "either"},
		{"webhook and channel", slack.Options{WebhookURL: "https://hooks.slack.com/services/X", Channel: "#x"}, "either"},
		{"token without channel", slack.Options{Token: testToken, Meta: meta}, "slack.channel"},
		{"channel without token", slack.Options{Channel: "#x", Meta: meta}, "slack.token"},
		{"blank token", slack.Options{Token: "  ", Channel: "#x", Meta: meta}, "slack.token"},
		{"bad webhook URL", slack.Options{WebhookURL: "hooks.slack.com/services/SECRETPART"}, "not an absolute http(s) URL"},
		{"webhook URL bad scheme", slack.Options{WebhookURL: "ftp://hooks.slack.com/services/SECRETPART"}, "not an absolute http(s) URL"},
		{"bad API URL", slack.Options{Token: testToken, Channel: "#x", Meta: meta, APIURL: "slack.local/api"}, "API URL"},
		{"negative timeout", slack.Options{Token: testToken, Channel: "#x", Meta: meta, Timeout: -time.Second}, "negative"},
		{"bot without meta", slack.Options{Token: testToken, Channel: "#x"}, "meta store"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := slack.NewSink(tc.o)
			if err == nil {
				t.Fatalf("New succeeded: %+v", s)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			for _, secret := range []string{testToken, "SECRETPART"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret: %q", err)
				}
			}
		})
	}
	s, err := slack.NewSink(slack.Options{Token: testToken, Channel: "#x", Meta: meta})
	if err != nil || s.Name() != "slack" {
		t.Errorf("valid bot options: %v, name %q", err, s.Name())
	}
	s, err = slack.NewSink(slack.Options{Name: "slack-ops", WebhookURL: "https://hooks.slack.com/services/X"})
	if err != nil || s.Name() != "slack-ops" {
		t.Errorf("valid webhook options: %v", err)
	}
}

func TestCheck(t *testing.T) {
	t.Run("webhook mode posts nothing", func(t *testing.T) {
		h := newHookServer(t)
		s, _ := newHookSink(t, h, 0)
		detail, err := s.Check(ctxT(t))
		if err != nil || detail != "webhook mode: not checked without posting" {
			t.Errorf("Check = %q, %v", detail, err)
		}
		if n := len(h.received()); n != 0 {
			t.Errorf("check sent %d requests", n)
		}
	})

	cases := []struct {
		name    string
		channel string
		auth    string // auth.test answer; "" keeps slacktest's
		info    string // conversations.info answer; "" keeps slacktest's
		wantErr string
		want    string
		perm    bool
	}{
		{name: "channel id", channel: "C0EXPORTS1", want: "authenticated as Egon Spengler in workspace SlackTest Team; channel #0EXPORTS1 (C0EXPORTS1)"},
		{name: "not a member", channel: "C0EXPORTS1", want: "/invite @yourbot"},
		{name: "channel name", channel: "#exports", want: `channel "#exports" given by name: not verified`},
		{name: "bad token", channel: "C0EXPORTS1", auth: `{"ok":false,"error":"invalid_auth"}`, wantErr: "slack.token", perm: true},
		{name: "channel missing", channel: "C0MISSING1", info: `{"ok":false,"error":"channel_not_found"}`, wantErr: "does not exist", perm: true},
		{name: "archived", channel: "C0EXPORTS1", info: `{"ok":true,"channel":{"id":"C0EXPORTS1","name":"exports","is_archived":true}}`, wantErr: "archived", perm: true},
		{name: "no channels:read", channel: "C0EXPORTS1", info: `{"ok":false,"error":"missing_scope","needed":"channels:read"}`, want: "not verified (the token lacks channels:read"},
		{name: "member", channel: "C0EXPORTS1", info: `{"ok":true,"channel":{"id":"C0EXPORTS1","name":"exports","is_member":true}}`, want: "channel #exports (C0EXPORTS1)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer := func(path, body string) slacktest.Binder {
				return func(c slacktest.Customize) {
					c.Handle(path, func(w http.ResponseWriter, _ *http.Request) {
						w.Header().Set("Content-Type", "application/json")
						_, _ = io.WriteString(w, body)
					})
				}
			}
			var binders []slacktest.Binder
			if tc.auth != "" {
				binders = append(binders, answer("/auth.test", tc.auth))
			}
			if tc.info != "" {
				binders = append(binders, answer("/conversations.info", tc.info))
			}
			f := newFakeSlack(t, binders...)
			s, logs := newBot(t, f, newMeta(), tc.channel)
			detail, err := s.Check(ctxT(t))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Check error %v, want one saying %q", err, tc.wantErr)
				}
				if sinks.IsPermanent(err) != tc.perm {
					t.Errorf("permanent %v, want %v", sinks.IsPermanent(err), tc.perm)
				}
			} else if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !strings.Contains(detail, tc.want) {
				t.Errorf("detail %q lacks %q", detail, tc.want)
			}
			if n := len(f.messages()); n != 0 {
				t.Errorf("check posted %d messages", n)
			}
			if strings.Contains(detail+fmt.Sprint(err)+logs.String(), testToken) {
				t.Errorf("token leaked")
			}
		})
	}
}
