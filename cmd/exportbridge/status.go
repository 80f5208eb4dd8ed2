package main

import (
	"sync"
	"time"

	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/sinks/registry"
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
	specs := make([]registry.Spec, 0, len(b.specs))
	for _, s := range b.specs {
		specs = append(specs, s.Spec)
	}
	return &server.Status{
		Version: version, Started: time.Now(), StoreKind: b.storeKind(), StorePath: b.st.Path(),
		Accounts: b.statusAccounts(),
		Store:    b.statusStore(), Sinks: statusSinks{b}, Polls: polls, Progress: b.progressLines,
		Secrets: append(b.cfg.Secrets(), registry.Secrets(specs)...),
	}
}

// listings holds the progress of the full listing in progress, if any (SPEC "Long work
// shows progress": the status page shows the line the log shows).
type listings struct {
	mu  sync.Mutex
	cur *poller.Progress
}

func (l *listings) set(g poller.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g.Done {
		l.cur = nil
		return
	}
	l.cur = &g
}

func (l *listings) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return nil
	}
	return []string{l.cur.String()}
}

// statusSinks describes the bridge's sinks for the status page's cards.
type statusSinks struct{ b *bridge }

func (s statusSinks) StatusSinks() []server.StatusSink {
	out := make([]server.StatusSink, 0, len(s.b.specs))
	for i, sp := range s.b.specs {
		ss := server.StatusSink{Name: sp.Name, Kind: sp.Kind, Destination: sp.Destination, Filter: "*"}
		if i < len(s.b.disp) && s.b.disp[i].Down() {
			ss.Down = "breaker open: 5 or more failed attempts in a row; probing"
		}
		if sp.Selector != nil {
			ss.Filter = sp.Selector.String()
		}
		out = append(out, ss)
	}
	return out
}
