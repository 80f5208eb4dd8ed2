// Command exportbridge watches the Plugchoice exports list and delivers every status
// change of an export to NATS, Slack, HTTP webhooks and stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// exitError carries an exit code: 1 runtime failure, 2 bad usage or settings.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

const usage = `exportbridge: Plugchoice export status changes to NATS, Slack, webhooks and stdout.

Usage: exportbridge [command] [flags]

Commands:
  run            poll forever and deliver (default)
  once           one poll cycle, then drain every outbox (--timeout, default 60s)
  check          validate settings, print the sinks, reach the API and every sink
                 [--event FILE: which sinks would receive that event, and why not]
  send-test      send a sample event through the enabled sinks [--sink NAME]
  dlq list       list dead letters [--sink NAME]
  dlq replay     move dead letters back to their outbox [ID...|--all] [--sink NAME]
  dlq purge      delete dead letters [ID...|--all] [--sink NAME]
  state          print store statistics
  queue move     re-home the events of a renamed sink --from OLD --to NEW
  queue drop     delete the events of a removed sink --sink OLD
  migrate        copy the bolt store into JetStream once --to nats (for STORE=nats)
  demo           run against an embedded simulated API, NATS and webhook receiver [--duration D]
  template render  print the headers and body a sink would send, sending nothing
                 --sink NAME [--event TYPE] [--export FILE]
  version        print version, commit, Go version
  healthcheck    GET /healthz on EXPORTBRIDGE_LISTEN_ADDR; exit 0 or 1

Settings come from EXPORTBRIDGE_* environment variables, and sinks from them or from
the file in EXPORTBRIDGE_CONFIG_FILE; see the README or 'exportbridge run --help'.
`

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signalContext()
	defer stop()
	err := dispatch(ctx, args, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "exportbridge:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "exportbridge:", err)
	return 1
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		// The top-level help lists the commands ("run --help" lists the settings).
		cmd, args = "help", args[1:]
	} else if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return cmdRun(ctx, args, stdout, stderr)
	case "once":
		return cmdOnce(ctx, args, stdout, stderr)
	case "check":
		return cmdCheck(ctx, args, stdout, stderr)
	case "send-test":
		return cmdSendTest(ctx, args, stdout, stderr)
	case "dlq":
		return cmdDLQ(ctx, args, stdout, stderr)
	case "queue":
		return cmdQueue(ctx, args, stdout, stderr)
	case "state":
		return cmdState(ctx, args, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, args, stdout, stderr)
	case "template":
		return cmdTemplate(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "exportbridge %s\ncommit %s\n%s\n", version, buildCommit(), runtime.Version())
		return nil
	case "healthcheck":
		return cmdHealthcheck(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageErr("unknown command %q", cmd)
	}
}

func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// signalContext is cancelled by the first SIGINT/SIGTERM. A second signal exits at once:
// everything committed is in the store, so nothing is lost.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-done:
			return
		}
		select {
		case <-ch:
			fmt.Fprintln(os.Stderr, "exportbridge: second signal, exiting now (everything committed is kept)")
			os.Exit(1)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}

// newFlags returns a FlagSet that prints its usage to stderr and returns errors.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: exportbridge %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}
