package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/lease"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/store"
)

// account is one entry of the config file's accounts: list (STORE=nats): its own API
// client (token, budget, Retry-After hold: one account's 429 never slows another), its
// snapshot in the shared store, its poll metrics and its lease "poller.<account>".
type account struct {
	cfg    config.Account
	client *plugchoice.Client
	st     *natsstore.Store // the account's view of the store, unfenced
	h      *held
	opts   poller.Options // Client is a.client; pollTerm fences Store and Client per lease taken
	lists  listings       // its full listing in progress, for the status page
}

func leaseKeyOf(name string) string { return "poller." + natsstore.Token(name) }

// openAccounts builds one client and poller setting per configured account. Without an
// accounts: list it does nothing (the one account of API_TOKEN is b.client, b.poller).
func (b *bridge) openAccounts() error {
	if len(b.cfg.Accounts) == 0 || b.ha == nil {
		return nil
	}
	for _, a := range b.cfg.Accounts {
		m := b.m.ForAccount(a.Name)
		log := b.log.With("account", a.Name)
		c, err := plugchoice.New(plugchoice.Options{
			BaseURL: a.APIURL, Token: a.APIToken, Timeout: b.cfg.HTTPTimeout, UserAgent: userAgent(),
			Budget: plugchoice.NewBudget(a.APIBudget), Metrics: m, Logger: log,
		})
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("account %s (%s): %w", a.Name, a.Where, err)}
		}
		o := b.pollOpts
		o.Client, o.Query, o.Source, o.Account = c, accountQuery(b.cfg, a), a.APIURL+"/exports", a.Name
		o.Metrics, o.Logger, o.Health = m, log, storeErrors{b}
		acct := &account{cfg: a, client: c, st: b.ha.st.ForAccount(a.Name), h: &held{}}
		o.OnProgress = acct.lists.set
		acct.opts = o
		b.accounts = append(b.accounts, acct)
	}
	b.m.DropAccount(metrics.DefaultAccount)
	b.client = b.accounts[0].client // the status page's budget line: the first account's
	return nil
}

func accountQuery(cfg *config.Config, a config.Account) plugchoice.Query {
	q := plugchoice.Query{Types: a.FilterTypes, SubjectType: a.FilterSubjectType, PerPage: cfg.PerPage}
	if a.FilterSubjectID != 0 {
		q.SubjectID = fmt.Sprint(a.FilterSubjectID)
	}
	return q
}

// runAccounts polls the accounts this replica holds leases for until ctx is done. The
// replicas spread the leases between them (lease.Spread: at most ceil(accounts / live
// replicas) each); each lease taken builds that account's poller afresh from its stored
// snapshot, fenced by the lease like the single account's (runPoller).
func (b *bridge) runAccounts(ctx context.Context) {
	byKey := map[string]*account{}
	keys := make([]string, 0, len(b.accounts))
	for _, a := range b.accounts {
		byKey[leaseKeyOf(a.cfg.Name)] = a
		keys = append(keys, leaseKeyOf(a.cfg.Name))
	}
	fctx, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() { defer close(followed); b.followAccounts(fctx) }()
	defer func() { stopFollow(); <-followed }()
	lease.Spread(ctx, lease.SpreadOptions{KV: b.ha.kv, Keys: keys, Holder: b.ha.holder, Logger: b.log}, func(ctx context.Context, key string, l *lease.Lease) error {
		a := byKey[key]
		if err := pollTerm(ctx, l, a.h, a.opts, a.st, a.opts.Logger); err != nil {
			return fmt.Errorf("account %s: %w", a.cfg.Name, err)
		}
		return nil
	})
}

// storeErrors passes a poller's store errors on to the bridge's health; the poll
// outcomes of every account reach it through followAccounts.
type storeErrors struct{ b *bridge }

func (storeErrors) PollOK(time.Time)                           {}
func (storeErrors) PollFailed(time.Time, string, string, bool) {}
func (s storeErrors) StoreError(err error)                     { s.b.health.StoreError(err) }

// followAccounts feeds /readyz from the poll facts every account's poller stores,
// whichever replica polls it: the replica is ready while every account's last poll
// succeeded within 3 x POLL_INTERVAL, and reports the last failure otherwise.
func (b *bridge) followAccounts(ctx context.Context) {
	t := time.NewTicker(min(b.cfg.PollInterval, 5*time.Second))
	defer t.Stop()
	for {
		var oldest time.Time
		known, failed := true, false
		for _, a := range b.accounts {
			p, err := a.st.LastPoll()
			switch {
			case err != nil:
				b.health.StoreError(err)
				known = false
			case p.At.IsZero():
				known = false
			case !p.OK:
				if !failed {
					b.health.PollFailed(p.At, "poll", "account "+a.cfg.Name+": "+p.Error, false)
				}
				failed = true
			case oldest.IsZero() || p.At.Before(oldest):
				oldest = p.At
			}
		}
		if known && !failed {
			b.health.PollOK(oldest)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// progressLines are the full listings in progress in this replica, one line per
// account ("acme: full listing: 12 pages, ...") with several accounts.
func (b *bridge) progressLines() []string {
	if len(b.accounts) == 0 {
		return b.listings.lines()
	}
	var out []string
	for _, a := range b.accounts {
		for _, l := range a.lists.lines() {
			out = append(out, a.cfg.Name+": "+l)
		}
	}
	return out
}

// statusAccounts lists the accounts for the status page: name and API.
func (b *bridge) statusAccounts() []string {
	if len(b.accounts) == 0 {
		return []string{config.DefaultAccount + " (" + b.cfg.APIURL + ")"}
	}
	out := make([]string, 0, len(b.accounts))
	for _, a := range b.accounts {
		out = append(out, a.cfg.Name+" ("+a.cfg.APIURL+")")
	}
	return out
}

// printPollState prints the snapshot and last poll of one account for state; prefix
// names the account ("" for the one account of API_TOKEN).
func printPollState(w io.Writer, prefix string, exports int, initialized bool, lp server.PollInfo) {
	fmt.Fprintf(w, "%sexports        %d tracked (baseline taken: %v)\n", prefix, exports, initialized)
	switch {
	case lp.At.IsZero():
		fmt.Fprintf(w, "%slast poll      never\n", prefix)
	case lp.OK:
		fmt.Fprintf(w, "%slast poll      %s ok (%s listing, %d exports, %d events, rate-limit remaining %d)\n",
			prefix, lp.At.Format(time.RFC3339), fullWord(lp.Full), lp.Exports, lp.Events, lp.RateRemaining)
	default:
		fmt.Fprintf(w, "%slast poll      %s FAILED: %s\n", prefix, lp.At.Format(time.RFC3339), lp.Error)
	}
}

// accountStates reads, for state with an accounts: list, each account's snapshot and
// last poll straight from JetStream (nil without a list, or through a running bridge's
// admin endpoint, which a STORE=nats bridge does not need).
func accountStates(a admin, cfg *config.Config) ([]server.AccountState, error) {
	if len(cfg.Accounts) == 0 {
		return nil, nil
	}
	la, ok := a.(localAdmin)
	st, isNATS := la.st.(*natsstore.Store)
	if !ok || !isNATS {
		return nil, nil
	}
	out := make([]server.AccountState, 0, len(cfg.Accounts))
	for _, acct := range cfg.Accounts {
		s, err := st.ForAccount(acct.Name).Stats()
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", acct.Name, err)
		}
		lp := s.LastPoll
		out = append(out, server.AccountState{Name: acct.Name, APIURL: acct.APIURL, Exports: s.Exports, Initialized: s.Initialized,
			LastPoll: server.PollInfo{At: lp.At, OK: lp.OK, Error: lp.Error, Full: lp.Full,
				Exports: lp.Exports, Events: lp.Events, Requests: lp.Requests, RateRemaining: lp.RateRemaining}})
	}
	return out, nil
}

// statusStore is the store the status page reads: with several accounts, the exports
// and in-flight exports of every account, not only those of the account default.
func (b *bridge) statusStore() server.StatusStore {
	if len(b.accounts) == 0 {
		return b.st
	}
	return accountsStatus{StatusStore: b.st, accounts: b.accounts}
}

type accountsStatus struct {
	server.StatusStore
	accounts []*account
}

// Stats sums the accounts' exports; the last poll is the latest of any account.
func (s accountsStatus) Stats() (store.Stats, error) {
	st, err := s.StatusStore.Stats()
	if err != nil {
		return st, err
	}
	st.Exports, st.Initialized = 0, true
	for _, a := range s.accounts {
		as, err := a.st.Stats()
		if err != nil {
			return store.Stats{}, fmt.Errorf("account %s: %w", a.cfg.Name, err)
		}
		st.Exports += as.Exports
		st.Initialized = st.Initialized && as.Initialized
		if as.LastPoll.At.After(st.LastPoll.At) {
			st.LastPoll = as.LastPoll
		}
	}
	return st, nil
}

// InFlight merges the accounts' exports in flight, oldest request first.
func (s accountsStatus) InFlight(limit int) ([]store.InFlightExport, int, error) {
	var all []store.InFlightExport
	total := 0
	for _, a := range s.accounts {
		in, n, err := a.st.InFlight(0)
		if err != nil {
			return nil, 0, fmt.Errorf("account %s: %w", a.cfg.Name, err)
		}
		all, total = append(all, in...), total+n
	}
	slices.SortFunc(all, func(x, y store.InFlightExport) int { return x.RequestedAt.Compare(y.RequestedAt) })
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all, total, nil
}
