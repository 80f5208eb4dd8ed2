package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/sinks/registry"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "run (settings from EXPORTBRIDGE_* variables)", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: exportbridge run\n\nPolls forever and delivers. Settings (environment):\n\n")
		config.Usage(stderr)
	}
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	cfg, specs, err := loadSettings("run")
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr, specs...)
	return runBridge(ctx, cfg, specs, stdout, log)
}

// runBridge runs a bridge until ctx is done: SIGTERM stops polling, lets in-flight
// deliveries finish for up to SHUTDOWN_TIMEOUT, leaves the rest queued, closes the store.
func runBridge(ctx context.Context, cfg *config.Config, specs []registry.Spec, stdout io.Writer, l *slog.Logger) error {
	b, err := openBridge(ctx, cfg, specs, stdout, l)
	if err != nil {
		return err
	}
	defer b.close()
	l.Info("exportbridge started", "version", version, "state_dir", cfg.StateDir, "sinks", b.sinkNames(),
		"tracked", b.poller.Tracked(), "poll_interval", cfg.PollInterval.String())
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	waitSrv, err := b.serve(srvCtx)
	if err != nil {
		stopSrv()
		waitSrv()
		return err
	}
	waitDisp := b.startDispatchers(ctx)
	orphCtx, stopOrph := context.WithCancel(ctx)
	orphDone := make(chan struct{})
	go func() { defer close(orphDone); b.watchOrphans(orphCtx) }()
	b.runPoller(ctx)
	stopOrph()
	<-orphDone
	l.Info("stopping: polling stopped, waiting for in-flight deliveries", "grace", cfg.ShutdownTimeout.String())
	waitDisp()
	stopSrv()
	waitSrv()
	l.Info("stopped", "queued", b.queued())
	return nil
}

func cmdOnce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("once", "once [--timeout 60s]", stderr)
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for every outbox to drain")
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	cfg, specs, err := loadSettings("once")
	if err != nil {
		return err
	}
	if cfg.Store == config.StoreNATS {
		return usageErr("once runs one bridge on its own store; with EXPORTBRIDGE_STORE=nats the replicas share the state and take turns through leases: use run")
	}
	log := newLogger(cfg, stderr, specs...)
	b, err := openBridge(ctx, cfg, specs, stdout, log)
	if err != nil {
		return err
	}
	defer b.close()
	if _, err := b.poller.Cycle(ctx); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("poll: %w", err)}
	}
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	runCtx, stopDisp := context.WithCancel(ctx)
	wait := b.startDispatchers(runCtx)
	for _, d := range b.disp {
		if err := d.WaitIdle(dctx); err != nil {
			break
		}
	}
	stopDisp()
	wait()
	st, err := b.st.Stats()
	if err != nil {
		return err
	}
	queued, dead := 0, 0
	for _, s := range b.specs {
		queued += st.Outbox[s.Name]
		dead += st.DeadLetters[s.Name]
	}
	if queued > 0 || dead > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d events still queued, %d dead-lettered (see 'exportbridge dlq list')", queued, dead)}
	}
	return nil
}

func usageFlagErr(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &exitError{code: 2, err: fmt.Errorf("")}
}
