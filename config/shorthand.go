package config

import (
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
)

// sinkEntries sets Config.Sinks: the config file's entries (plus stdout with
// STDOUT=true), or else the environment shorthand turned into the same entries, named
// stdout, nats, slack, and webhook or webhook-1 ... webhook-N in the order of
// WEBHOOK_URLS.
func (l *loader) sinkEntries() {
	c := l.cfg
	var out []SinkEntry
	if c.Stdout {
		out = append(out, SinkEntry{Name: "stdout", Kind: "stdout", Where: "environment", Block: &envBlock{kind: "stdout"}})
	}
	if c.ConfigFile != "" {
		fc, probs := readFile(c.ConfigFile, l.src.lookup, c.APIURL)
		l.problems = append(l.problems, probs...)
		l.setAccounts(fc.accounts, fc.accountsAt, fc.warnings)
		for _, e := range fc.sinks {
			if c.Stdout && e.Name == "stdout" {
				l.problem("STDOUT", "adds a sink named stdout, and the config file has one too (expected one of them)")
				continue
			}
			out = append(out, e)
		}
		c.Sinks = out
		return
	}
	if len(c.NATSURL) > 0 {
		out = append(out, l.envEntry("nats", "nats", c.NATSEvents, map[string]any{
			"url": []string(c.NATSURL), "subject_prefix": c.NATSSubjectPrefix, "jetstream": c.NATSJetStream,
			"creds": c.NATSCreds, "nkey": c.NATSNKey, "token": c.NATSToken, "user": c.NATSUser,
			"password": c.NATSPassword, "ca": c.NATSCA, "cert": c.NATSCert, "key": c.NATSKey,
		}))
	}
	if c.SlackWebhookURL != "" || c.SlackToken != "" {
		out = append(out, l.envEntry("slack", "slack", c.SlackEvents, map[string]any{
			"webhook_url": c.SlackWebhookURL, "token": c.SlackToken, "channel": c.SlackChannel, "api_url": c.SlackAPIURL,
		}))
	}
	headers := map[string]string{}
	for _, h := range c.WebhookHeaders {
		if old, ok := headers[h.Name]; ok {
			headers[h.Name] = old + ", " + h.Value // repeated names combine, as HTTP does
		} else {
			headers[h.Name] = h.Value
		}
	}
	for i, u := range c.WebhookURLs {
		name := "webhook"
		if len(c.WebhookURLs) > 1 {
			name = "webhook-" + strconv.Itoa(i+1)
		}
		out = append(out, l.envEntry(name, "webhook", c.WebhookEvents, map[string]any{
			"url": u, "secret": []string(c.WebhookSecret), "headers": headers,
			"timeout": c.WebhookTimeout.String(), "concurrency": c.WebhookConcurrency, "ca": c.WebhookCA,
		}))
	}
	c.Sinks = out
}

func (l *loader) envEntry(name, kind, events string, values map[string]any) SinkEntry {
	var evs []string
	for _, e := range strings.Split(events, ",") {
		evs = append(evs, strings.TrimSpace(e))
	}
	return SinkEntry{Name: name, Kind: kind, Events: evs, Where: "environment",
		Block: &envBlock{kind: kind, values: values, eventsVar: Prefix + strings.ToUpper(kind) + "_EVENTS"}}
}

// envBlock is a kind's settings from the environment shorthand, already decoded and
// checked for syntax by the loader.
type envBlock struct {
	kind      string
	values    map[string]any
	eventsVar string
}

// Decode re-encodes the values as YAML and decodes them strictly into into, so the
// shorthand and the config file share one decoder.
func (b *envBlock) Decode(into any) error {
	if len(b.values) == 0 {
		return nil
	}
	data, err := yaml.Marshal(b.values)
	if err != nil {
		return err
	}
	return yaml.UnmarshalWithOptions(data, into, yaml.DisallowUnknownField())
}

// Setting names the environment variable of key: EXPORTBRIDGE_WEBHOOK_TIMEOUT.
func (b *envBlock) Setting(key string) string {
	switch {
	case b.kind == "webhook" && key == "url":
		return Prefix + "WEBHOOK_URLS"
	case key == "events":
		return b.eventsVar
	}
	return Prefix + strings.ToUpper(b.kind) + "_" + strings.ToUpper(key)
}

func (b *envBlock) Secrets() []string  { return nil } // Config.Secrets has them
func (b *envBlock) Warnings() []string { return nil }
