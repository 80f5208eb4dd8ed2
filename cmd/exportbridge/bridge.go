package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/poller"
	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/registry"
	"github.com/exportbridge/exportbridge/sinks/route"
	"github.com/exportbridge/exportbridge/store"
)

// sinkSpec is one enabled sink: its validated spec (name, filter, destination) and the
// sink built from it.
type sinkSpec struct {
	registry.Spec
	sink sinks.Sink
}

// loadConfig reads the settings and checks what command needs; problems are exit code 2.
func loadConfig(command string) (*config.Config, error) {
	cfg, err := config.LoadFor(nil, command)
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("bad settings:\n%w", err)}
	}
	return cfg, nil
}

// loadSettings is loadConfig plus every configured sink, decoded and validated: every
// problem of the settings and of each sink is reported at once (exit code 2).
func loadSettings(command string) (*config.Config, []registry.Spec, error) {
	cfg, specs, err := registry.LoadSettings(nil, command)
	if err != nil {
		return nil, nil, &exitError{code: 2, err: fmt.Errorf("bad settings:\n%w", err)}
	}
	return cfg, specs, nil
}

// newLogger is the redacting logger; it logs the settings' warnings (unknown
// EXPORTBRIDGE_* variables, settings of a sink that is not enabled) once.
func newLogger(cfg *config.Config, stderr io.Writer, specs ...registry.Spec) *slog.Logger {
	l := logging.New(stderr, cfg.LogFormat, cfg.LogLevel, append(cfg.Secrets(), registry.Secrets(specs)...))
	for _, w := range cfg.Warnings {
		l.Warn("settings: " + w)
	}
	return l
}

func userAgent() string { return "exportbridge/" + version }

// source is the CloudEvents source attribute.
func source(cfg *config.Config) string { return cfg.APIURL + "/exports" }

func newClient(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (*plugchoice.Client, error) {
	return plugchoice.New(plugchoice.Options{
		BaseURL:   cfg.APIURL,
		Token:     cfg.APIToken,
		Timeout:   cfg.HTTPTimeout,
		UserAgent: userAgent(),
		Budget:    plugchoice.NewBudget(cfg.APIBudget),
		Metrics:   m,
		Logger:    log,
	})
}

func baseQuery(cfg *config.Config) plugchoice.Query {
	q := plugchoice.Query{Types: cfg.FilterTypes, SubjectType: cfg.FilterSubjectType, PerPage: cfg.PerPage}
	if cfg.FilterSubjectID != 0 {
		q.SubjectID = fmt.Sprint(cfg.FilterSubjectID)
	}
	return q
}

// buildSinks builds every configured sink. meta is the store (Slack keeps message ids
// there); send-test and check pass an in-memory one.
func buildSinks(ctx context.Context, specs []registry.Spec, out io.Writer, meta sinks.MetaStore, log *slog.Logger, m *metrics.Metrics) ([]sinkSpec, error) {
	var built []sinkSpec
	var errs []error
	for _, sp := range specs {
		s, err := sp.Build(ctx, sinks.Deps{Logger: log, Metrics: m, Meta: meta, Out: out, UserAgent: userAgent()})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		built = append(built, sinkSpec{Spec: sp, sink: s})
	}
	if len(errs) > 0 {
		closeSinks(built)
		return nil, errors.Join(errs...)
	}
	return built, nil
}

func closeSinks(specs []sinkSpec) {
	for _, s := range specs {
		if c, ok := s.sink.(sinks.Closer); ok {
			c.Close()
		}
	}
}

// selectSpecs keeps the sinks named by --sink ("webhook" selects every webhook sink).
func selectSpecs(specs []registry.Spec, name string) ([]registry.Spec, error) {
	if name == "" {
		return specs, nil
	}
	var out []registry.Spec
	for _, s := range specs {
		if store.MatchSink(name, s.Name) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, usageErr("--sink %q: no such enabled sink (enabled: %s)", name, strings.Join(registry.Names(specs), ", "))
	}
	return out, nil
}

// bridge is a running exportbridge: store, client, sinks, dispatchers, poller.
type bridge struct {
	cfg     *config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics.Metrics
	st      bridgeStore
	client  *plugchoice.Client
	specs   []sinkSpec
	disp    []*delivery.Dispatcher
	poller  *poller.Poller
	health  *server.Health
	closeMu sync.Once
	orphans map[string]bool // stored sinks reported as orphaned

	ha       *ha            // STORE=nats: leases; nil for bolt
	pollOpts poller.Options // to build a poller per lease taken (STORE=nats)
	listings listings       // full listings in progress, for the status page
	accounts []*account     // the config file's accounts: list (STORE=nats); nil without it
}

// openBridge opens the store and builds everything; it starts nothing.
func openBridge(ctx context.Context, cfg *config.Config, specs []registry.Spec, out io.Writer, log *slog.Logger) (*bridge, error) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	st, ha, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	b := &bridge{cfg: cfg, log: log, reg: reg, m: m, st: st, ha: ha}
	b.health = server.NewHealth(cfg.PollInterval, time.Now)
	b.health.StoreOpen(true)
	if b.client, err = newClient(cfg, log, m); err != nil {
		st.Close()
		return nil, &exitError{code: 2, err: err}
	}
	if b.specs, err = buildSinks(ctx, specs, out, st, log, m); err != nil {
		st.Close()
		return nil, err
	}
	if len(b.specs) == 0 {
		log.Warn(noSinkHint)
	}
	b.checkStoredSinks()
	for _, s := range b.specs {
		b.disp = append(b.disp, delivery.NewDispatcher(b.queueFor(s.Name), delivery.DispatcherOptions{
			Sink: b.fenceSink(s.Name, s.sink), Concurrency: s.Concurrency, MaxElapsed: cfg.RetryMaxElapsed,
			Grace: b.grace(), Logger: log, Metrics: m, Alert: b.alertOptions(s),
		}))
	}
	b.pollOpts = poller.Options{
		Client: b.client, Store: st, Query: baseQuery(cfg), Source: source(cfg),
		Interval: cfg.PollInterval, ActiveInterval: cfg.PollIntervalActive, FullSyncInterval: cfg.FullSyncInterval,
		EmitExisting: cfg.EmitExisting, EmitRemoved: cfg.EmitRemoved,
		FailureThreshold: cfg.PollFailureThreshold, Route: b.route, Notify: b.notify,
		Health: b.health, Logger: log, Metrics: m, OnProgress: b.listings.set,
	}
	b.poller, err = poller.New(b.pollOpts)
	if err != nil {
		b.close()
		return nil, err
	}
	if err := b.openAccounts(); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// noSinkHint is said when no sink is configured.
const noSinkHint = "no sink enabled: events are stored but go nowhere; set EXPORTBRIDGE_CONFIG_FILE, or EXPORTBRIDGE_STDOUT, _NATS_URL, _SLACK_*, _WEBHOOK_URLS"

// route names the sinks whose filter wants e. A `when` that fails on an event counts as
// no match, logged once per sink and counted.
func (b *bridge) route(e event.Event) []string {
	var names []string
	in := route.NewInput(e)
	for _, s := range b.specs {
		ok, _, err := s.Selector.Decide(in)
		if err != nil {
			b.m.FilterError(s.Name)
			s.Selector.ErrOnce(func() {
				b.log.Warn("sink filter failed on an event; counted as no match (logged once per sink)", "sink", s.Name, "event_id", e.ID, "error", err)
			})
		}
		if ok {
			names = append(names, s.Name)
		}
	}
	return names
}

func (b *bridge) notify() {
	for _, d := range b.disp {
		d.Notify()
	}
	b.wakeReplicas()
}

func (b *bridge) close() {
	b.closeMu.Do(func() {
		closeSinks(b.specs)
		b.health.StoreOpen(false)
		if err := b.st.Close(); err != nil {
			b.log.Error("close store", "error", err)
		}
	})
}

// startDispatchers runs every dispatcher until ctx is done; wait returns when all stopped.
func (b *bridge) startDispatchers(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for i, d := range b.disp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.runDispatcher(ctx, d, b.specs[i].Name); err != nil {
				b.log.Error("dispatcher stopped", "error", err)
			}
		}()
	}
	return wg.Wait
}

// serve starts the health/metrics server and the admin endpoint (when configured).
func (b *bridge) serve(ctx context.Context) (wait func(), err error) {
	var wg sync.WaitGroup
	o := server.Options{
		Health: b.health, Registry: b.reg, Admin: b.st, AdminToken: b.cfg.AdminToken,
		AdminRequireToken: !b.cfg.AdminIsLoopback() || b.cfg.AdminToken != "",
		OnReplay:          b.notify, Logger: b.log, Configured: b.sinkNames(),
		Status: b.statusPage(),
	}
	start := func(addr, what string, h http.Handler) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s on %s: %w", what, addr, err)
		}
		b.log.Info("listening", "what", what, "addr", ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := server.Serve(ctx, ln, h); err != nil {
				b.log.Error("server stopped", "what", what, "error", err)
			}
		}()
		return nil
	}
	if err := start(b.cfg.ListenAddr, "health and metrics server", server.Handler(o)); err != nil {
		return wg.Wait, err
	}
	if err := start(b.cfg.AdminAddr, "admin endpoint", server.AdminHandler(o)); err != nil {
		return wg.Wait, err
	}
	return wg.Wait, nil
}

// queued sums the undelivered events over every dispatcher.
func (b *bridge) queued() int {
	n := 0
	for _, d := range b.disp {
		n += d.Queued()
	}
	return n
}

func (b *bridge) sinkNames() []string {
	var names []string
	for _, s := range b.specs {
		names = append(names, s.Name)
	}
	return names
}
