package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/server"
	slacksink "github.com/exportbridge/exportbridge/sinks/slack"
	"github.com/exportbridge/exportbridge/sinks/stdout"
	"github.com/exportbridge/exportbridge/sinks/webhook"

	natssink "github.com/exportbridge/exportbridge/sinks/nats"
)

// statusPage is the status page of b (GET / on ADMIN_ADDR). It starts recording the
// polls: call it before the poller runs.
func (b *bridge) statusPage() *server.Status {
	budget := func() int {
		if b.cfg.APIBudget > 0 {
			return b.cfg.APIBudget
		}
		if limit, _, ok := b.client.RateLimit(); ok {
			return limit * 8 / 10 // the automatic budget: 80 % of X-RateLimit-Limit
		}
		return 0
	}
	polls := server.NewPollRecorder(budget, b.client.Requests, b.client.RateLimit)
	b.st.OnPoll(polls.Observe)
	return &server.Status{
		Version: version, Started: time.Now(), StoreKind: "bbolt", StorePath: b.st.Path(),
		Accounts: []string{"default (" + b.cfg.APIURL + ")"},
		Store:    b.st, Sinks: statusSinks{b}, Polls: polls, Secrets: b.cfg.Secrets(),
	}
}

// statusSinks describes the bridge's sinks for the status page's cards.
type statusSinks struct{ b *bridge }

func (s statusSinks) StatusSinks() []server.StatusSink {
	cfg := s.b.cfg
	var out []server.StatusSink
	for _, spec := range s.b.specs {
		name := spec.sink.Name()
		ss := server.StatusSink{Name: name, Filter: spec.filter.String()}
		switch spec.sink.(type) {
		case *stdout.Sink:
			ss.Kind, ss.Destination = "stdout", "standard output"
		case *natssink.Sink:
			ss.Kind = "nats"
			ss.Destination = strings.Join(cfg.NATSURL, ", ") + " (subjects " + cfg.NATSSubjectPrefix + ".>)"
		case *slacksink.Sink:
			ss.Kind = "slack"
			if cfg.SlackToken != "" {
				ss.Destination = "Web API, channel " + cfg.SlackChannel
			} else if u, err := url.Parse(cfg.SlackWebhookURL); err == nil {
				ss.Destination = "incoming webhook at " + u.Host // its path is the secret
			}
		case *webhook.Sink:
			ss.Kind = "webhook"
			i := 0
			if n, ok := strings.CutPrefix(name, "webhook-"); ok {
				if v, err := strconv.Atoi(n); err == nil {
					i = v - 1
				}
			}
			if i >= 0 && i < len(cfg.WebhookURLs) {
				ss.Destination = cfg.WebhookURLs[i]
			}
		default:
			ss.Kind = fmt.Sprintf("%T", spec.sink)
		}
		out = append(out, ss)
	}
	return out
}
