package slack

import (
	"errors"
	"net/url"
	"strings"

	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/template"
)

// Kind is the sink kind's name in the config file.
const Kind = "slack"

// DefaultEvents is the filter of a Slack sink that sets no `events`.
const DefaultEvents = "ready,failed,bridge"

// DefaultAPIURL is Slack's Web API.
const DefaultAPIURL = "https://slack.com/api/"

// Config is one Slack sink's settings: the `slack:` block of a config-file entry, or the
// environment shorthand (SLACK_*). Either webhook_url (incoming-webhook mode) or token
// with channel (bot mode).
type Config struct {
	WebhookURL string `yaml:"webhook_url" secret:"true"`
	Token      string `yaml:"token" secret:"true"`
	Channel    string `yaml:"channel"`
	APIURL     string `yaml:"api_url"`
	// Templates (SPEC "Templates"): text replaces the headline and the fallback text,
	// blocks (Block Kit as YAML, string leaves templated) replace the blocks.
	Text   string `yaml:"text"`
	Blocks any    `yaml:"blocks"`
}

// DefaultConfig is the Config a block starts from.
func DefaultConfig() Config { return Config{APIURL: DefaultAPIURL} }

// Validate reports every problem, each under its key.
func (c Config) Validate() error {
	var fe sinks.FieldErrors
	hook, token, channel := strings.TrimSpace(c.WebhookURL), strings.TrimSpace(c.Token), strings.TrimSpace(c.Channel)
	switch {
	case hook != "" && token != "":
		fe.Add("webhook_url", "is set together with {token} (expected one: {webhook_url} for incoming-webhook mode, or {token} with {channel} for bot mode)")
	case hook != "" && channel != "":
		fe.Add("channel", "has no effect with {webhook_url} (an incoming webhook posts to its own channel; remove {channel}, or use {token} with {channel})")
	case hook == "" && token == "":
		fe.Add("token", "is not set (expected {webhook_url} for incoming-webhook mode, or {token}, a bot token xoxb-..., with {channel})")
	case token != "" && channel == "":
		fe.Add("channel", "is required with {token} (expected a channel name or id such as #exports or C0123456789)")
	}
	if hook != "" {
		if u, err := url.Parse(hook); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			// The URL is a secret: never echo it.
			fe.Add("webhook_url", "is not an absolute http(s) URL (expected https://hooks.slack.com/services/...)")
		}
	}
	if api := strings.TrimSpace(c.APIURL); api != "" {
		u, err := url.Parse(api)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			fe.Add("api_url", "%q is not an absolute http(s) URL (expected a base URL such as https://slack.com/api/)", shownAPI(api))
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			fe.Add("api_url", "%q has credentials, a query or a fragment (expected a base URL such as https://slack.com/api/)", shownAPI(api))
		}
	}
	if _, err := compileTemplates(Kind, c.Text, c.Blocks); err != nil {
		addTemplateError(&fe, err)
	}
	return fe.Err()
}

func shownAPI(api string) string {
	u, err := url.Parse(api)
	if err != nil {
		return "(unparsable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Destination is where messages go, for tables and logs (the webhook URL is a secret:
// only its host is shown), and identity what the store fingerprints.
func (c Config) Destination() (shown, identity string) {
	if c.WebhookURL != "" {
		return shownURL(c.WebhookURL), "webhook " + c.WebhookURL
	}
	return "channel " + c.Channel, "bot " + strings.TrimSuffix(c.APIURL, "/") + " " + c.Channel
}

// Secrets returns the values to keep out of logs.
func (c Config) Secrets() []string {
	out := []string{c.Token, c.WebhookURL}
	if u, err := url.Parse(c.WebhookURL); err == nil && len(u.EscapedPath()) > 1 {
		out = append(out, u.EscapedPath())
	}
	return out
}

// New validates c and builds the sink named d.Name; bot mode keeps its message ids in
// d.Meta.
func New(c Config, d sinks.Deps) (*Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return NewSink(Options{
		Name: d.Name, WebhookURL: c.WebhookURL, Token: c.Token, Channel: c.Channel, APIURL: c.APIURL,
		Meta: d.Meta, Logger: d.Logger, Setting: d.Setting, Text: c.Text, Blocks: c.Blocks,
	})
}

// addTemplateError records a template error under its key ("text", "blocks[0].text.text").
func addTemplateError(fe *sinks.FieldErrors, err error) {
	var te *template.Error
	if errors.As(err, &te) && te.Key != "" {
		fe.Add(te.Key, "%s", te.Detail())
		return
	}
	fe.Add("blocks", "%v", err)
}
