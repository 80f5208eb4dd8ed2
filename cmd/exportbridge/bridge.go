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
	natssink "github.com/exportbridge/exportbridge/sinks/nats"
	slacksink "github.com/exportbridge/exportbridge/sinks/slack"
	"github.com/exportbridge/exportbridge/sinks/stdout"
	"github.com/exportbridge/exportbridge/sinks/webhook"
	"github.com/exportbridge/exportbridge/store"
)

// sinkSpec is one enabled sink with its filter and delivery concurrency.
type sinkSpec struct {
	sink        sinks.Sink
	filter      sinks.Filter
	concurrency int
}

// loadConfig reads the settings and checks what command needs; problems are exit code 2.
func loadConfig(command string) (*config.Config, error) {
	cfg, err := config.Load(nil)
	if err == nil {
		err = cfg.Require(command)
	}
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("bad settings:\n%w", err)}
	}
	return cfg, nil
}

// newLogger is the redacting logger; it logs the settings' warnings (unknown
// EXPORTBRIDGE_* variables, settings of a sink that is not enabled) once.
func newLogger(cfg *config.Config, stderr io.Writer) *slog.Logger {
	l := logging.New(stderr, cfg.LogFormat, cfg.LogLevel, cfg.Secrets())
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

// buildSinks creates every enabled sink. meta is the store (Slack keeps message ids there);
// it may be nil for send-test/check, where bot mode keeps nothing.
func buildSinks(ctx context.Context, cfg *config.Config, out io.Writer, meta slacksink.MetaStore, log *slog.Logger, m *metrics.Metrics) ([]sinkSpec, error) {
	var specs []sinkSpec
	var errs []error
	add := func(s sinks.Sink, filter string, conc int) {
		f, err := sinks.ParseFilter(filter)
		if err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", s.Name(), err))
			return
		}
		specs = append(specs, sinkSpec{sink: s, filter: f, concurrency: conc})
	}
	if cfg.Stdout {
		add(stdout.New(out), "*", 1)
	}
	if len(cfg.NATSURL) > 0 {
		n, err := natssink.New(ctx, natssink.Options{
			Name: "nats", URLs: cfg.NATSURL, Prefix: cfg.NATSSubjectPrefix, JetStream: cfg.NATSJetStream,
			Token: cfg.NATSToken, User: cfg.NATSUser, Password: cfg.NATSPassword, CredsFile: cfg.NATSCreds,
			NKeyFile: cfg.NATSNKey, CAFile: cfg.NATSCA, CertFile: cfg.NATSCert, KeyFile: cfg.NATSKey,
			Logger: log, Metrics: m,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("sink nats: %w", err))
		} else {
			add(n, cfg.NATSEvents, 1)
		}
	}
	if cfg.SlackWebhookURL != "" || cfg.SlackToken != "" {
		s, err := slacksink.New(slacksink.Options{
			Name: "slack", WebhookURL: cfg.SlackWebhookURL, Token: cfg.SlackToken, Channel: cfg.SlackChannel,
			APIURL: cfg.SlackAPIURL, Meta: meta, Logger: log,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("sink slack: %w", err))
		} else {
			add(s, cfg.SlackEvents, 1)
		}
	}
	for i, u := range cfg.WebhookURLs {
		name := "webhook"
		if len(cfg.WebhookURLs) > 1 {
			name = fmt.Sprintf("webhook-%d", i+1)
		}
		w, err := webhook.New(webhook.Options{
			Name: name, URL: u, Secrets: cfg.WebhookSecrets(), Headers: webhookHeaders(cfg),
			Timeout: cfg.WebhookTimeout, CAFile: cfg.WebhookCA, Concurrency: cfg.WebhookConcurrency,
			UserAgent: userAgent(),
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", name, err))
			continue
		}
		add(w, cfg.WebhookEvents, cfg.WebhookConcurrency)
	}
	if len(errs) > 0 {
		closeSinks(specs)
		return nil, errors.Join(errs...)
	}
	return specs, nil
}

func webhookHeaders(cfg *config.Config) [][2]string {
	var hs [][2]string
	for _, h := range cfg.WebhookHeaders {
		hs = append(hs, [2]string{h.Name, h.Value})
	}
	return hs
}

func closeSinks(specs []sinkSpec) {
	for _, s := range specs {
		if c, ok := s.sink.(sinks.Closer); ok {
			c.Close()
		}
	}
}

// selectSinks keeps the sinks named by --sink ("webhook" selects every webhook sink).
func selectSinks(specs []sinkSpec, name string) ([]sinkSpec, error) {
	if name == "" {
		return specs, nil
	}
	var out []sinkSpec
	for _, s := range specs {
		if store.MatchSink(name, s.sink.Name()) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		var names []string
		for _, s := range specs {
			names = append(names, s.sink.Name())
		}
		return nil, usageErr("--sink %q: no such enabled sink (enabled: %s)", name, strings.Join(names, ", "))
	}
	return out, nil
}

// bridge is a running exportbridge: store, client, sinks, dispatchers, poller.
type bridge struct {
	cfg     *config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics.Metrics
	st      *store.Store
	client  *plugchoice.Client
	specs   []sinkSpec
	disp    []*delivery.Dispatcher
	poller  *poller.Poller
	health  *server.Health
	closeMu sync.Once
}

// openBridge opens the store and builds everything; it starts nothing.
func openBridge(ctx context.Context, cfg *config.Config, out io.Writer, log *slog.Logger) (*bridge, error) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	st, err := store.Open(cfg.StateDir, store.Options{})
	if err != nil {
		return nil, err
	}
	b := &bridge{cfg: cfg, log: log, reg: reg, m: m, st: st}
	b.health = server.NewHealth(cfg.PollInterval, time.Now)
	b.health.StoreOpen(true)
	if b.client, err = newClient(cfg, log, m); err != nil {
		st.Close()
		return nil, &exitError{code: 2, err: err}
	}
	if b.specs, err = buildSinks(ctx, cfg, out, st, log, m); err != nil {
		st.Close()
		return nil, err
	}
	if len(b.specs) == 0 {
		log.Warn("no sink enabled: events are stored but go nowhere; set EXPORTBRIDGE_STDOUT, _NATS_URL, _SLACK_*, or _WEBHOOK_URLS")
	}
	for _, s := range b.specs {
		b.disp = append(b.disp, delivery.NewDispatcher(st, delivery.DispatcherOptions{
			Sink: s.sink, Concurrency: s.concurrency, MaxElapsed: cfg.RetryMaxElapsed,
			Grace: cfg.ShutdownTimeout, Logger: log, Metrics: m,
		}))
	}
	b.poller, err = poller.New(poller.Options{
		Client: b.client, Store: st, Query: baseQuery(cfg), Source: source(cfg),
		Interval: cfg.PollInterval, FullSyncInterval: cfg.FullSyncInterval,
		EmitExisting: cfg.EmitExisting, EmitRemoved: cfg.EmitRemoved,
		FailureThreshold: cfg.PollFailureThreshold, Route: b.route, Notify: b.notify,
		Health: b.health, Logger: log, Metrics: m,
	})
	if err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// route names the sinks whose filter wants e.
func (b *bridge) route(e event.Event) []string {
	var names []string
	for _, s := range b.specs {
		if s.filter.Match(e.Type) {
			names = append(names, s.sink.Name())
		}
	}
	return names
}

func (b *bridge) notify() {
	for _, d := range b.disp {
		d.Notify()
	}
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
	for _, d := range b.disp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(ctx); err != nil {
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
		OnReplay:          b.notify, Logger: b.log,
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
		names = append(names, s.sink.Name())
	}
	return names
}
