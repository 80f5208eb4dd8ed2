// Package registry maps each sink kind to its Config and constructor, and turns the
// configured sink entries (config file or environment shorthand) into validated sink
// specs and then into sinks. Adding a kind is a folder under sinks/ and one line in
// kinds; adding an instance is data.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/sinks"
	natssink "github.com/exportbridge/exportbridge/sinks/nats"
	"github.com/exportbridge/exportbridge/sinks/route"
	slacksink "github.com/exportbridge/exportbridge/sinks/slack"
	"github.com/exportbridge/exportbridge/sinks/stdout"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// kindConfig is what every kind's Config provides.
type kindConfig interface {
	Validate() error
	Destination() (shown, identity string)
	Secrets() []string
}

// kind is one sink kind: how to decode its block and build it.
type kind struct {
	name   string
	events string // default filter
	keys   []string
	load   func(b config.Block) (kindConfig, error)
	build  func(ctx context.Context, c kindConfig, d sinks.Deps) (sinks.Sink, error)
	conc   func(kindConfig) int
}

// register makes the kind of a sink package from its DefaultConfig and New.
func register[C kindConfig, S sinks.Sink](name, events string, def func() C,
	build func(context.Context, C, sinks.Deps) (S, error), conc func(C) int) kind {
	k := kind{name: name, events: events, keys: config.BlockKeys(def())}
	k.load = func(b config.Block) (kindConfig, error) {
		c := def()
		if err := b.Decode(&c); err != nil {
			return nil, err
		}
		return c, nil
	}
	k.build = func(ctx context.Context, c kindConfig, d sinks.Deps) (sinks.Sink, error) {
		s, err := build(ctx, c.(C), d)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	k.conc = func(c kindConfig) int {
		if conc == nil {
			return 1
		}
		return conc(c.(C))
	}
	return k
}

func noContext[C any, S any](f func(C, sinks.Deps) (S, error)) func(context.Context, C, sinks.Deps) (S, error) {
	return func(_ context.Context, c C, d sinks.Deps) (S, error) { return f(c, d) }
}

// kinds is the registry: one line per kind.
var kinds = map[string]kind{
	stdout.Kind:    register(stdout.Kind, stdout.DefaultEvents, stdout.DefaultConfig, noContext(stdout.New), nil),
	webhook.Kind:   register(webhook.Kind, webhook.DefaultEvents, webhook.DefaultConfig, noContext(webhook.New), func(c webhook.Config) int { return c.Concurrency }),
	slacksink.Kind: register(slacksink.Kind, slacksink.DefaultEvents, slacksink.DefaultConfig, noContext(slacksink.New), nil),
	natssink.Kind:  register(natssink.Kind, natssink.DefaultEvents, natssink.DefaultConfig, natssink.New, nil),
}

// Kinds lists the kind names, sorted.
func Kinds() []string {
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Spec is one configured sink, decoded and validated, not yet built.
type Spec struct {
	Name string
	Kind string
	// Where names the entry for messages ("environment", or the file position).
	Where    string
	Selector *route.Selector
	// Destination is where events go, stripped of secrets and queries.
	Destination string
	// Fingerprint identifies the destination (kind and URL, channel or servers), hashed;
	// the store keeps it to notice a sink that now points elsewhere.
	Fingerprint string
	// Concurrency is the deliveries in flight the sink allows (webhook: concurrency).
	Concurrency int
	// Config is the kind's decoded Config (webhook.Config, ...).
	Config any
	// Secrets are the values the log redactor must hide.
	Secrets []string
	// Warnings do not stop the program (a literal secret in the file).
	Warnings []string

	kind    kind
	cfg     kindConfig
	setting func(string) string
}

// Load decodes and validates every entry. All problems come back at once, as a
// *config.Error with one line each, naming the setting as the user wrote it.
func Load(entries []config.SinkEntry) ([]Spec, error) {
	var specs []Spec
	var probs []config.Problem
	for _, e := range entries {
		s, p := load(e)
		if len(p) > 0 {
			probs = append(probs, p...)
			continue
		}
		specs = append(specs, s)
	}
	if len(probs) > 0 {
		return nil, &config.Error{Problems: probs}
	}
	return specs, nil
}

// load decodes one entry. Problems of a config-file entry name the sink too (its
// position alone is hard to read back in a long file).
func load(e config.SinkEntry) (Spec, []config.Problem) {
	s, probs := loadEntry(e)
	if e.Where != "environment" && e.Name != "" {
		for i := range probs {
			probs[i].Msg = "sink " + e.Name + ": " + probs[i].Msg
		}
	}
	return s, probs
}

func loadEntry(e config.SinkEntry) (Spec, []config.Problem) {
	k, ok := kinds[e.Kind]
	if !ok {
		return Spec{}, []config.Problem{{Var: e.Where + ".kind", Msg: fmt.Sprintf("%q is not a sink kind (expected one of %s)", e.Kind, strings.Join(Kinds(), ", "))}}
	}
	s := Spec{Name: e.Name, Kind: e.Kind, Where: e.Where, kind: k, setting: e.Block.Setting}
	var probs []config.Problem
	names := sinks.SettingNames(e.Block.Setting, k.name, k.keys...)

	eventsVar := e.At("events")
	spec := k.events
	if e.Events != nil {
		spec = strings.Join(e.Events, ",")
		if e.Where == "environment" {
			eventsVar = e.Block.Setting("events")
		}
	}
	filter, err := sinks.ParseFilter(spec)
	if err != nil {
		probs = append(probs, config.Problem{Var: eventsVar, Msg: err.Error()})
	}
	sel, err := route.New(filter, route.Match{
		Types: e.Match.Types, SubjectTypes: e.Match.SubjectTypes, SubjectIDs: e.Match.SubjectIDs, Accounts: e.Match.Accounts,
	}, e.When)
	if err != nil {
		probs = append(probs, config.Problem{Var: e.At("when"), Msg: err.Error()})
	}
	s.Selector = sel

	c, err := k.load(e.Block)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			probs = append(probs, ce.Problems...)
		} else {
			probs = append(probs, config.Problem{Var: e.Where + "." + e.Kind, Msg: err.Error()})
		}
		return s, probs
	}
	s.Secrets = append(c.Secrets(), e.Block.Secrets()...)
	s.Warnings = e.Block.Warnings()
	if err := c.Validate(); err != nil {
		var fe sinks.FieldErrors
		if errors.As(err, &fe) {
			for _, f := range fe {
				probs = append(probs, config.Problem{Var: e.Block.Setting(f.Key), Msg: names.Replace(f.Msg)})
			}
		} else {
			probs = append(probs, config.Problem{Var: e.Where, Msg: names.Replace(err.Error())})
		}
	}
	s.cfg, s.Config = c, c
	shown, identity := c.Destination()
	s.Destination = shown
	sum := sha256.Sum256([]byte(e.Kind + "\x00" + identity))
	s.Fingerprint = hex.EncodeToString(sum[:8])
	s.Concurrency = max(k.conc(c), 1)
	return s, probs
}

// Build creates the sink of s. d.Name and d.Setting are filled in from s.
func (s Spec) Build(ctx context.Context, d sinks.Deps) (sinks.Sink, error) {
	d.Name, d.Setting = s.Name, s.setting
	snk, err := s.kind.build(ctx, s.cfg, d)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", s.Name, err)
	}
	return snk, nil
}

// Names lists the specs' names in order.
func Names(specs []Spec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// Secrets gathers the secrets of every spec, without duplicates.
func Secrets(specs []Spec) []string {
	var out []string
	for _, s := range specs {
		for _, v := range s.Secrets {
			if v != "" && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// LoadSettings reads the settings (config.LoadFor: env nil is the process environment)
// and decodes and validates every configured sink, reporting every problem of both at
// once in one *config.Error, without duplicates.
func LoadSettings(env map[string]string, command string) (*config.Config, []Spec, error) {
	cfg, err := config.LoadFor(env, command)
	var probs []config.Problem
	var cerr *config.Error
	switch {
	case errors.As(err, &cerr):
		probs = cerr.Problems
	case err != nil:
		return nil, nil, err
	}
	var specs []Spec
	if cfg != nil {
		specs, err = Load(cfg.Sinks)
		if errors.As(err, &cerr) {
			probs = append(probs, cerr.Problems...)
		}
	} else {
		// The settings have problems: still decode the sinks they define, so a bad
		// sink setting is reported together with the rest.
		if partial, perr := config.LoadPartial(env); perr == nil {
			if _, err := Load(partial.Sinks); errors.As(err, &cerr) {
				probs = append(probs, cerr.Problems...)
			}
		}
	}
	if len(probs) > 0 {
		return nil, nil, &config.Error{Problems: slices.Compact(probs)}
	}
	for _, s := range specs {
		cfg.Warnings = append(cfg.Warnings, s.Warnings...)
	}
	return cfg, specs, nil
}
