package main

import (
	"sync"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/sinks/registry"
)

// statusPage is the status page of b (GET / on ADMIN_ADDR). It starts recording the
// polls: call it before the poller runs.
func (b *bridge) statusPage() *server.Status {
	// Each poll is measured against its own account's client and budget: with an
	// accounts: list every account has both of its own.
	clientOf := func(account string) (*plugchoice.Client, int) {
		for _, a := range b.accounts {
			if a.cfg.Name == account {
				return a.client, a.cfg.APIBudget
			}
		}
		if account == "" && len(b.accounts) == 0 {
			return b.client, b.cfg.APIBudget
		}
		return nil, 0
	}
	budget := func(account string) int {
		c, set := clientOf(account)
		switch {
		case set > 0:
			return set
		case c == nil:
			return 0
		}
		if limit, _, ok := c.RateLimit(); ok {
			return limit * 8 / 10 // the automatic budget: 80 % of X-RateLimit-Limit
		}
		return 0
	}
	requests := func(account string) int64 {
		if c, _ := clientOf(account); c != nil {
			return c.Requests()
		}
		return 0
	}
	rate := func(account string) (int, int, bool) {
		if c, _ := clientOf(account); c != nil {
			return c.RateLimit()
		}
		return 0, 0, false
	}
	polls := server.NewPollRecorder(budget, requests, rate)
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
