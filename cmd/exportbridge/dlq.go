package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/progress"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/sinks/registry"
	"github.com/exportbridge/exportbridge/store"
)

// admin is what dlq and state need: the store itself when no bridge runs, or the running
// bridge's admin endpoint when one holds the store.
type admin interface {
	State(ctx context.Context) (server.State, error)
	DeadLetters(ctx context.Context, sink string) ([]server.DeadLetter, error)
	Replay(ctx context.Context, sink string, ids []string, all bool) (int, error)
	Purge(ctx context.Context, sink string, ids []string, all bool) (int, error)
	MoveQueue(ctx context.Context, from, to string) (queued, dead int, err error)
	DropQueue(ctx context.Context, sink string) (queued, dead int, err error)
}

// localAdmin works on a store no bridge holds.
type localAdmin struct{ st localStore }

func (a localAdmin) State(context.Context) (server.State, error) {
	s, err := a.st.Stats()
	if err != nil {
		return server.State{}, err
	}
	return server.StateOf(s), nil
}

func (a localAdmin) DeadLetters(_ context.Context, sink string) ([]server.DeadLetter, error) {
	recs, err := a.st.DeadLetters(sink)
	if err != nil {
		return nil, err
	}
	out := make([]server.DeadLetter, 0, len(recs))
	for _, r := range recs {
		out = append(out, server.DeadLetterOf(r))
	}
	return out, nil
}

func (a localAdmin) Replay(_ context.Context, sink string, ids []string, all bool) (int, error) {
	return a.st.Replay(sink, ids, all)
}

func (a localAdmin) Purge(_ context.Context, sink string, ids []string, all bool) (int, error) {
	return a.st.Purge(sink, ids, all)
}

func (a localAdmin) MoveQueue(_ context.Context, from, to string) (int, int, error) {
	return a.st.MoveQueue(from, to)
}

func (a localAdmin) DropQueue(_ context.Context, sink string) (int, int, error) {
	return a.st.DropQueue(sink)
}

// openAdmin opens the store directly, or, when a running bridge holds it, talks to that
// bridge's admin endpoint. progress, when set, is told how far the long operations on
// the store come (a progress.Meter's Report); through the endpoint the running bridge
// does the work, in one bbolt transaction.
func openAdmin(cfg *config.Config, progress func(done, total int)) (admin, func(), error) {
	if cfg.Store == config.StoreNATS {
		return openNATSAdmin(cfg, progress)
	}
	st, err := store.Open(cfg.StateDir, store.Options{MustExist: true, Progress: progress})
	if err == nil {
		return localAdmin{st}, func() { st.Close() }, nil
	}
	if !errors.Is(err, store.ErrLocked) {
		return nil, nil, err
	}
	if cfg.AdminAddr == "" {
		return nil, nil, fmt.Errorf("%w; and EXPORTBRIDGE_ADMIN_ADDR is empty, so the running bridge cannot be asked", err)
	}
	base, aerr := server.AdminBaseURL(cfg.AdminAddr)
	if aerr != nil {
		return nil, nil, aerr
	}
	return &server.AdminClient{BaseURL: base, Token: cfg.AdminToken}, func() {}, nil
}

func cmdState(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("state", "state [--json]", stderr)
	asJSON := fs.Bool("json", false, "print the statistics as JSON")
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	cfg, configured, err := configuredSinks("state")
	if err != nil {
		return err
	}
	a, done, err := openAdmin(cfg, nil)
	if err != nil {
		return err
	}
	defer done()
	s, err := a.State(ctx)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if len(s.Configured) == 0 {
		s.Configured = configured // read from the store directly: the settings say
	}
	if s.Accounts, err = accountStates(a, cfg); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	fmt.Fprintf(stdout, "store          %s (%d bytes)\n", cfg.StateDir, s.FileBytes)
	for _, acct := range s.Accounts {
		fmt.Fprintf(stdout, "account        %s (%s)\n", acct.Name, acct.APIURL)
		printPollState(stdout, "  ", acct.Exports, acct.Initialized, acct.LastPoll)
	}
	if len(cfg.Accounts) == 0 {
		printPollState(stdout, "", s.Exports, s.Initialized, s.LastPoll)
	}
	names := map[string]bool{}
	for n := range s.Outbox {
		names[n] = true
	}
	for n := range s.DeadLetters {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range s.Configured {
		if !names[n] {
			sorted = append(sorted, n)
		}
	}
	sort.Strings(sorted)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tQUEUED\tDEAD LETTERS\tCONFIGURED")
	for _, n := range sorted {
		conf := "yes"
		switch {
		case len(s.Configured) == 0:
			conf = "?"
		case !slices.Contains(s.Configured, n):
			conf = "NO: see exportbridge queue move/drop"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", n, s.Outbox[n], s.DeadLetters[n], conf)
	}
	return tw.Flush()
}

// configuredSinks loads the settings and names the configured sinks. When the sinks'
// settings do not validate, the names are unknown (nil) and the command still runs.
func configuredSinks(command string) (*config.Config, []string, error) {
	if cfg, specs, err := registry.LoadSettings(nil, command); err == nil {
		return cfg, registry.Names(specs), nil
	}
	cfg, err := loadConfig(command)
	return cfg, nil, err
}

func fullWord(full bool) string {
	if full {
		return "full"
	}
	return "cheap"
}

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr("dlq needs a subcommand: list, replay or purge")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("dlq "+sub, "dlq "+sub+" [ID...|--all] [--sink NAME]", stderr)
	sinkName := fs.String("sink", "", "only this sink (webhook selects every webhook sink)")
	all := fs.Bool("all", false, "every dead letter (replay, purge)")
	// Accept flags after the ids too: exportbridge dlq replay ID --sink webhook.
	var ids []string
	for {
		if err := fs.Parse(args); err != nil {
			return usageFlagErr(err)
		}
		if fs.NArg() == 0 {
			break
		}
		ids = append(ids, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch sub {
	case "list":
		if len(ids) > 0 || *all {
			return usageErr("dlq list takes no ids and no --all")
		}
	case "replay", "purge":
		if len(ids) == 0 && !*all {
			return usageErr("dlq %s needs event ids or --all", sub)
		}
		if len(ids) > 0 && *all {
			return usageErr("dlq %s: give event ids or --all, not both", sub)
		}
	default:
		return usageErr("unknown dlq subcommand %q (expected list, replay or purge)", sub)
	}
	cfg, err := loadConfig("dlq")
	if err != nil {
		return err
	}
	var meter *progress.Meter
	if sub != "list" {
		meter = progress.New(stderr, "dlq "+sub)
	}
	a, done, err := openAdmin(cfg, meter.Report)
	if err != nil {
		return err
	}
	defer done()
	if sub == "list" {
		selected, err := a.DeadLetters(ctx, *sinkName)
		if err != nil {
			return fmt.Errorf("dlq list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SINK\tEVENT ID\tEXPORT\tTYPE\tATTEMPTS\tSTATUS\tLAST ERROR")
		for _, d := range selected {
			status := "-"
			if d.LastStatus != 0 {
				status = fmt.Sprint(d.LastStatus)
			}
			subject := d.Subject
			if subject == "" {
				subject = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Sink, d.EventID, subject, d.Type, d.Attempts, status, oneLine(d.LastError))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%d dead letters\n", len(selected))
		return nil
	}
	op := a.Replay
	verb := "replayed"
	if sub == "purge" {
		op, verb = a.Purge, "purged"
	}
	total, err := op(ctx, *sinkName, ids, *all)
	meter.Finish()
	if err != nil {
		return fmt.Errorf("dlq %s: %w", sub, err)
	}
	fmt.Fprintf(stdout, "%s %d dead letters\n", verb, total)
	if len(ids) > 0 && total < len(ids) {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d ids not found in the dead-letter queue", len(ids)-total, len(ids))}
	}
	return nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
