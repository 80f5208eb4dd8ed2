// Package slack is the Slack sink: it renders events as Block Kit messages and posts them
// through an incoming webhook (one message per event) or as a bot (one living message per
// export, updated in place, with a thread reply when an export fails).
package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	slackapi "github.com/slack-go/slack"
	"golang.org/x/time/rate"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/template"
)

// DefaultTimeout bounds one request to Slack.
const DefaultTimeout = 10 * time.Second

// MetaStore keeps the message ts per export (the store package implements it).
type MetaStore = sinks.MetaStore

// Options configure a Sink. Set WebhookURL (webhook mode) or Token and Channel (bot mode).
type Options struct {
	Name       string        // sink name in logs, metrics and the meta store; default "slack"
	WebhookURL string        // webhook mode; a secret
	Token      string        // bot mode; a secret
	Channel    string        // bot mode: channel ID (C0123...) or name
	APIURL     string        // Web API base override (proxies, tests); default Slack's
	Timeout    time.Duration // per request; default DefaultTimeout
	Meta       MetaStore     // required in bot mode
	Logger     *slog.Logger  // default slog.Default()
	// Setting names a setting (token, webhook_url, channel, api_url) the way the user
	// wrote it, for the hints in error messages; nil: the key itself.
	Setting func(key string) string
	// Text and Blocks are the sink's own templates (template.go); empty: the built-in
	// message.
	Text   string
	Blocks any
}

// Sink delivers events to Slack. It is safe for concurrent use.
type Sink struct {
	name string
	log  *slog.Logger
	hc   *http.Client

	// webhook mode
	webhook      string
	webhookShown string

	// bot mode
	api     *slackapi.Client
	channel string
	meta    MetaStore

	names *strings.Replacer // {token} and friends -> the user's spelling
	pacer *rate.Limiter     // the channel's pace (pace.go)
	tpl   *templates        // the sink's own text and blocks (template.go), or nil
}

var (
	_ sinks.Sink    = (*Sink)(nil)
	_ sinks.Checker = (*Sink)(nil)
)

// NewSink validates o and builds the sink. It makes no request.
func NewSink(o Options) (*Sink, error) {
	name := strings.TrimSpace(o.Name)
	if name == "" {
		name = "slack"
	}
	names := sinks.SettingNames(o.Setting, Kind, "token", "webhook_url", "channel", "api_url")
	webhook := strings.TrimSpace(o.WebhookURL)
	token := strings.TrimSpace(o.Token)
	channel := strings.TrimSpace(o.Channel)
	switch {
	case webhook != "" && (token != "" || channel != ""):
		return nil, errors.New(names.Replace(fmt.Sprintf("slack sink %s: both a webhook URL and a bot token/channel are set (expected either {webhook_url}, or {token} with {channel})", name)))
	case webhook == "" && token == "" && channel == "":
		return nil, errors.New(names.Replace(fmt.Sprintf("slack sink %s: nothing to post to (expected {webhook_url}, or {token} with {channel})", name)))
	case webhook == "" && token == "":
		return nil, errors.New(names.Replace(fmt.Sprintf("slack sink %s: a channel is set but no bot token (expected {token}, a bot token xoxb-...)", name)))
	case webhook == "" && channel == "":
		return nil, errors.New(names.Replace(fmt.Sprintf("slack sink %s: a bot token is set but no channel (expected {channel}, a channel ID like C0123456789 or a name like #exports)", name)))
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("slack sink %s: timeout %s is negative (expected a positive duration such as 10s)", name, o.Timeout)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("sink", name)

	base := http.DefaultTransport.(*http.Transport).Clone()
	hc := &http.Client{
		Timeout:   timeout,
		Transport: retryAfterTransport{base: base, now: time.Now},
		// Redirects are not followed: a redirected webhook would carry the message to
		// another address.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s := &Sink{name: name, log: logger, hc: hc, names: names}
	tpl, err := compileTemplates(name, o.Text, o.Blocks)
	if err != nil {
		var te *template.Error
		if errors.As(err, &te) && te.Key != "" {
			return nil, fmt.Errorf("slack sink %s: %s: %s", name, sinks.SettingNames(o.Setting, Kind, te.Key).Replace("{"+te.Key+"}"), te.Detail())
		}
		return nil, fmt.Errorf("slack sink %s: %w", name, err)
	}
	s.tpl = tpl

	if webhook != "" {
		u, err := url.Parse(webhook)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			// The URL is a secret: never echo it.
			return nil, fmt.Errorf("slack sink %s: the webhook URL is not an absolute http(s) URL (expected https://hooks.slack.com/services/...)", name)
		}
		s.webhook = webhook
		s.webhookShown = shownURL(webhook)
		s.pacer = pacerFor("webhook " + webhook)
		return s, nil
	}

	if o.Meta == nil {
		return nil, fmt.Errorf("slack sink %s: bot mode needs a meta store to keep the message of each export (programming error: Options.Meta is nil)", name)
	}
	opts := []slackapi.Option{slackapi.OptionHTTPClient(hc)}
	if api := strings.TrimSpace(o.APIURL); api != "" {
		u, err := url.Parse(api)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("slack sink %s: API URL %q is not an absolute http(s) URL (expected something like https://slack.com/api/)", name, api)
		}
		if !strings.HasSuffix(api, "/") {
			api += "/"
		}
		opts = append(opts, slackapi.OptionAPIURL(api))
	}
	// slack-go's own retry stays off: the dispatcher retries from the outbox, so a
	// crash during a wait loses nothing.
	s.api = slackapi.New(token, opts...)
	s.channel = channel
	s.meta = o.Meta
	s.pacer = pacerFor("bot " + strings.TrimSpace(o.APIURL) + " " + channel)
	return s, nil
}

// Name is the sink name.
func (s *Sink) Name() string { return s.name }

// Deliver posts the event. In bot mode, the first event of an export posts a message
// and stores its ts; later events update that message, and a failed export adds a
// thread reply. It returns nil once Slack accepted the message (and, in bot mode, its
// ts is stored).
func (s *Sink) Deliver(ctx context.Context, e event.Event) error {
	ce, msg, err := s.message(e)
	if err != nil {
		return err
	}
	if s.webhook != "" {
		return s.postWebhook(ctx, msg)
	}
	return s.deliverBot(ctx, ce, msg)
}

// message renders e: the built-in message, with the sink's own templates applied. Its
// errors are permanent: they would be the same on every retry.
func (s *Sink) message(e event.Event) (*event.CloudEvent, Message, error) {
	ce, err := event.Decode(e.Body)
	if err != nil {
		return nil, Message{}, sinks.Permanent(fmt.Errorf("slack: event %s: %w", e.ID, err))
	}
	msg, err := Render(ce)
	if err != nil {
		return nil, Message{}, sinks.Permanent(fmt.Errorf("slack: %w", err))
	}
	if s.tpl != nil {
		if msg, err = s.tpl.apply(e, msg); err != nil {
			return nil, Message{}, sinks.Permanent(fmt.Errorf("slack: event %s: template %w", e.ID, err))
		}
	}
	return ce, msg, nil
}

func (s *Sink) postWebhook(ctx context.Context, msg Message) error {
	no := false
	wm := &slackapi.WebhookMessage{
		Text:        msg.Text,
		Blocks:      &slackapi.Blocks{BlockSet: msg.Blocks},
		UnfurlLinks: &no,
		UnfurlMedia: &no,
	}
	var got hookResponse
	client := *s.hc
	client.Transport = captureTransport{base: s.hc.Transport, out: &got}
	if err := s.pace(ctx); err != nil {
		return err
	}
	err := slackapi.PostWebhookCustomHTTPContext(ctx, s.webhook, &client, wm)
	if err != nil {
		return s.classify("slack webhook "+s.webhookShown, err, &got)
	}
	s.log.Debug("slack webhook message posted")
	return nil
}

// msgRef is what the meta store keeps per export.
type msgRef struct {
	Channel string `json:"channel"`          // channel ID Slack answered
	TS      string `json:"ts"`               // the message ts
	Target  string `json:"target,omitempty"` // the configured channel it was posted for
}

func (s *Sink) deliverBot(ctx context.Context, ce *event.CloudEvent, msg Message) error {
	key := ce.Subject
	if key == "" {
		// Bridge events are not tied to an export: each is its own message.
		_, _, err := s.post(ctx, msg)
		return err
	}
	log := s.log.With("export", key, "event", ce.ID)

	ref, err := s.loadRef(key)
	if err != nil {
		return err
	}
	updated := false
	if ref != nil && ref.Target == s.channel {
		if err := s.pace(ctx); err != nil {
			return err
		}
		_, _, _, err := s.api.UpdateMessageContext(ctx, ref.Channel, ref.TS,
			slackapi.MsgOptionText(msg.Text, false), slackapi.MsgOptionBlocks(msg.Blocks...))
		if err != nil {
			code, _ := slackCode(err)
			if !repostCodes[code] {
				return s.classify("slack chat.update", err, nil)
			}
			log.Warn("slack message of the export cannot be updated; posting a new one", "reason", code, "channel", ref.Channel, "ts", ref.TS)
		} else {
			updated = true
			log.Debug("slack message updated", "channel", ref.Channel, "ts", ref.TS)
		}
	}
	if !updated {
		ch, ts, err := s.post(ctx, msg)
		if err != nil {
			return err
		}
		ref = &msgRef{Channel: ch, TS: ts, Target: s.channel}
		b, err := json.Marshal(ref)
		if err != nil {
			return fmt.Errorf("slack: encode message ref of export %s: %w", key, err)
		}
		if err := s.meta.PutMeta(s.name, key, b); err != nil {
			return fmt.Errorf("slack: message posted (channel %s, ts %s) but its ts could not be stored for export %s: %w", ch, ts, key, err)
		}
		log.Debug("slack message posted", "channel", ch, "ts", ts)
	}
	if msg.Reply != nil {
		if err := s.pace(ctx); err != nil {
			return err
		}
		_, _, err := s.api.PostMessageContext(ctx, ref.Channel,
			slackapi.MsgOptionText(msg.Reply.Text, false), slackapi.MsgOptionBlocks(msg.Reply.Blocks...),
			slackapi.MsgOptionTS(ref.TS), slackapi.MsgOptionDisableLinkUnfurl(), slackapi.MsgOptionDisableMediaUnfurl())
		if err != nil {
			return s.classify("slack chat.postMessage (thread reply)", err, nil)
		}
		log.Debug("slack thread reply posted", "channel", ref.Channel, "thread_ts", ref.TS)
	}
	return nil
}

// post posts msg to the configured channel and returns the channel ID and ts.
func (s *Sink) post(ctx context.Context, msg Message) (string, string, error) {
	if err := s.pace(ctx); err != nil {
		return "", "", err
	}
	ch, ts, err := s.api.PostMessageContext(ctx, s.channel,
		slackapi.MsgOptionText(msg.Text, false), slackapi.MsgOptionBlocks(msg.Blocks...),
		slackapi.MsgOptionDisableLinkUnfurl(), slackapi.MsgOptionDisableMediaUnfurl())
	if err != nil {
		return "", "", s.classify("slack chat.postMessage", err, nil)
	}
	if ts == "" {
		return "", "", fmt.Errorf("slack chat.postMessage to %q: the answer carried no message ts", s.channel)
	}
	if ch == "" {
		ch = s.channel
	}
	return ch, ts, nil
}

// loadRef returns the stored message of an export, nil when there is none (or when the
// stored value is unreadable: a new message is then posted).
func (s *Sink) loadRef(key string) (*msgRef, error) {
	b, err := s.meta.GetMeta(s.name, key)
	if err != nil {
		return nil, fmt.Errorf("slack: read the message ts of export %s: %w", key, err)
	}
	if b == nil {
		return nil, nil
	}
	var ref msgRef
	if err := json.Unmarshal(b, &ref); err != nil || ref.Channel == "" || ref.TS == "" {
		s.log.Warn("slack: stored message ref is unreadable; posting a new message", "export", key)
		return nil, nil
	}
	return &ref, nil
}

var channelID = regexp.MustCompile(`^[CGD][A-Z0-9]{6,}$`)

// Check verifies the destination without posting. Bot mode: auth.test, then
// conversations.info when the channel is given by ID. Webhook mode cannot be checked
// without posting.
func (s *Sink) Check(ctx context.Context) (string, error) {
	if s.webhook != "" {
		return "webhook mode: not checked without posting", nil
	}
	at, err := s.api.AuthTestContext(ctx)
	if err != nil {
		return "", s.classify("slack auth.test", err, nil)
	}
	detail := fmt.Sprintf("authenticated as %s in workspace %s", at.User, at.Team)
	if !channelID.MatchString(s.channel) {
		return detail + fmt.Sprintf(s.settingNames("; channel %q given by name: not verified (set {channel} to the channel ID, C0123..., to let check verify it)"), s.channel), nil
	}
	ch, err := s.api.GetConversationInfoContext(ctx, &slackapi.GetConversationInfoInput{ChannelID: s.channel})
	if err != nil {
		if code, _ := slackCode(err); code == "missing_scope" {
			return detail + fmt.Sprintf("; channel %s not verified (the token lacks channels:read/groups:read)", s.channel), nil
		}
		return detail, s.classify("slack conversations.info", err, nil)
	}
	if ch.IsArchived {
		return detail, sinks.Permanent(fmt.Errorf("slack conversations.info: %s", fmt.Sprintf(s.settingNames(codes["is_archived"].fix), fmt.Sprintf("%q", s.channel))))
	}
	detail += fmt.Sprintf("; channel #%s (%s)", ch.Name, ch.ID)
	if !ch.IsMember {
		detail += "; the bot is not a member (invite it: /invite @yourbot, unless it has chat:write.public)"
	}
	return detail, nil
}
