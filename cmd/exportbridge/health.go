package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/sinks"
	natssink "github.com/exportbridge/exportbridge/sinks/nats"
	slacksink "github.com/exportbridge/exportbridge/sinks/slack"
	"github.com/exportbridge/exportbridge/sinks/stdout"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// alertOptions are what the dispatcher of s reports about its sink's health
// (bridge.sink_failing / sink_recovered) and who queues it.
func (b *bridge) alertOptions(s sinkSpec) delivery.AlertOptions {
	kind, dest := describeSink(b.cfg, s.sink)
	return delivery.AlertOptions{Kind: kind, Destination: dest, After: b.cfg.SinkFailureAlert, Alerter: sinkAlerter{b}}
}

// sinkAlerter queues a sink's health events for every OTHER sink whose filter wants
// them: the failing sink never gets its own alert, which would wait behind the outage.
type sinkAlerter struct{ b *bridge }

var _ delivery.Alerter = sinkAlerter{}

func (a sinkAlerter) SinkHealth(al delivery.Alert) error {
	b := a.b
	queued := al.Queued
	d := event.BridgeData{
		Sink: al.Sink, Kind: al.Kind, Destination: al.Destination,
		// The error goes to other destinations, past the log redactor: scrub it the same way.
		LastError: logging.Redact(al.LastError, b.cfg.Secrets()),
		Queued:    &queued, Failures: al.Failures,
	}
	ev, err := event.NewBridge(source(b.cfg), al.Type, d, al.Since, al.At)
	if err != nil {
		return fmt.Errorf("build %s for sink %s: %w", al.Type, al.Sink, err)
	}
	var to []string
	for _, name := range b.route(ev) {
		if name != al.Sink {
			to = append(to, name)
		}
	}
	if len(to) == 0 {
		b.log.Warn("no other sink takes bridge events: the sink health alert goes nowhere", "type", al.Type, "sink", al.Sink)
		return nil
	}
	for _, name := range to {
		if err := b.st.Enqueue(name, ev); err != nil {
			return fmt.Errorf("queue %s about sink %s for sink %s: %w", al.Type, al.Sink, name, err)
		}
	}
	b.m.Event(ev.Type)
	b.notify()
	return nil
}

// describeSink returns a sink's kind and its destination without credentials or query
// (a Slack incoming-webhook URL is a secret past its host).
// TODO(issue 11): ask each sink kind's Config once the registry of kinds lands.
func describeSink(cfg *config.Config, s sinks.Sink) (kind, dest string) {
	switch s.(type) {
	case *stdout.Sink:
		return "stdout", "standard output"
	case *natssink.Sink:
		urls := make([]string, len(cfg.NATSURL))
		for i, u := range cfg.NATSURL {
			urls[i] = safeURL(u, true)
		}
		return "nats", strings.Join(urls, ",")
	case *slacksink.Sink:
		if cfg.SlackWebhookURL != "" {
			return "slack", safeURL(cfg.SlackWebhookURL, false)
		}
		return "slack", "channel " + cfg.SlackChannel
	case *webhook.Sink:
		i := 0
		if n, ok := strings.CutPrefix(s.Name(), "webhook-"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				i = v - 1
			}
		}
		if i >= 0 && i < len(cfg.WebhookURLs) {
			return "webhook", safeURL(cfg.WebhookURLs[i], true)
		}
		return "webhook", ""
	}
	return fmt.Sprintf("%T", s), ""
}

// safeURL is raw without userinfo, query and fragment, and without its path unless
// keepPath. What does not parse as a URL with a host is dropped.
func safeURL(raw string, keepPath bool) string {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if !strings.Contains(raw, "://") && !strings.ContainsAny(raw, "@?#/") {
			return raw // host:port
		}
		return ""
	}
	out := url.URL{Scheme: u.Scheme, Host: u.Host}
	if keepPath {
		out.Path = u.Path
	}
	return out.String()
}
