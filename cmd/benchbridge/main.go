// Command benchbridge measures exportbridge against the simulated Plugchoice API
// (simapi) on loopback: API requests per cycle, detection latency, sink throughput
// next to a plain-client ceiling, and the resources of the real binary at 100k exports.
// Figures and the commands that reproduce them are in BENCHMARKS.md.
//
// Usage:
//
//	benchbridge requests   [-sizes 1000,10000,100000] [-cycles 20] [-full-cycles 3]
//	benchbridge latency    [-changes 100] [-interval 1s] [-active 0]
//	benchbridge throughput [-events 10000] [-runs 3] [-sinks stdout,webhook,nats,jetstream] [-receiver-delay 0]
//	benchbridge resources  -bin ./exportbridge [-exports 100000] [-interval 5s] [-window 60s] [-restarts 3]
//	benchbridge accounts   -bin ./exportbridge [-accounts 10] [-exports 10000] [-replicas 2] [-interval 5s] [-window 30s]
//	benchbridge budget     [-exports 10000]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchbridge:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("missing mode (expected one of: requests, latency, throughput, resources, stores, accounts, budget)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mode, rest := args[0], args[1:]
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	switch mode {
	case "requests":
		sizes := fs.String("sizes", "1000,10000,100000", "export counts, comma-separated")
		cycles := fs.Int("cycles", 20, "cheap cycles per size")
		fullCycles := fs.Int("full-cycles", 3, "full-listing cycles per size (after the baseline)")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		ns, err := parseInts(*sizes)
		if err != nil {
			return fmt.Errorf("-sizes: %w", err)
		}
		return benchRequests(ctx, os.Stdout, ns, *cycles, *fullCycles)
	case "latency":
		changes := fs.Int("changes", 100, "status changes to time")
		interval := fs.Duration("interval", time.Second, "POLL_INTERVAL")
		active := fs.Duration("active", 0, "POLL_INTERVAL_ACTIVE (exports are always in flight here); 0: the interval")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		return benchLatency(ctx, os.Stdout, *changes, *interval, *active)
	case "throughput":
		events := fs.Int("events", 10_000, "transitions in the burst")
		runs := fs.Int("runs", 3, "runs per sink")
		sinkList := fs.String("sinks", "stdout,webhook,nats,jetstream", "sinks to measure")
		cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		delay := fs.Duration("receiver-delay", 0, "how long the webhook receivers take to answer (a remote endpoint's round trip); 0: at once, on loopback")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if *delay < 0 {
			return fmt.Errorf("-receiver-delay %s: expected a duration of 0 or more", *delay)
		}
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				return fmt.Errorf("-cpuprofile: %w", err)
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return fmt.Errorf("-cpuprofile: %w", err)
			}
			defer pprof.StopCPUProfile()
		}
		return benchThroughput(ctx, os.Stdout, *events, *runs, strings.Split(*sinkList, ","), *delay)
	case "resources":
		bin := fs.String("bin", "", "path to a built exportbridge binary (go build -o ... ./cmd/exportbridge)")
		exports := fs.Int("exports", 100_000, "exports tracked")
		interval := fs.Duration("interval", 5*time.Second, "POLL_INTERVAL")
		window := fs.Duration("window", time.Minute, "steady-state sampling window")
		restarts := fs.Int("restarts", 3, "restarts timed (start to first poll)")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if *bin == "" {
			return errors.New("resources: -bin is required (path to a built exportbridge binary)")
		}
		return benchResources(ctx, os.Stdout, *bin, *exports, *interval, *window, *restarts)
	case "stores":
		events := fs.Int("events", 5000, "transitions in each burst")
		changes := fs.Int("changes", 50, "single changes timed per run")
		runs := fs.Int("runs", 5, "runs per store, alternated")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		return benchStores(ctx, os.Stdout, *events, *changes, *runs)
	case "accounts":
		bin := fs.String("bin", "", "path to a built exportbridge binary (go build -o ... ./cmd/exportbridge)")
		accounts := fs.Int("accounts", 10, "simulated Plugchoice accounts in the config file")
		exports := fs.Int("exports", 10_000, "exports per account")
		replicas := fs.Int("replicas", 2, "exportbridge replicas (STORE=nats)")
		interval := fs.Duration("interval", 5*time.Second, "POLL_INTERVAL")
		window := fs.Duration("window", 30*time.Second, "RSS sampling window, after every baseline")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if *bin == "" {
			return errors.New("accounts: -bin is required (path to a built exportbridge binary)")
		}
		return benchAccounts(ctx, os.Stdout, *bin, *accounts, *exports, *replicas, *interval, *window)
	case "budget":
		exports := fs.Int("exports", 10_000, "exports listed")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		return benchBudget(ctx, os.Stdout, *exports)
	default:
		return fmt.Errorf("unknown mode %q (expected one of: requests, latency, throughput, resources, stores, accounts, budget)", mode)
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// stats summarises durations (or counts as durations of 1ns each).
type stats struct{ min, median, p90, p99, max time.Duration }

func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return stats{min: s[0], median: medianDur(s), p90: q(0.90), p99: q(0.99), max: s[len(s)-1]}
}

// median of s (0 when empty); s is not modified.
func median[T ~int | ~int64 | ~float64](s []T) float64 {
	s = slices.Clone(s)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return float64(s[n/2])
	}
	return (float64(s[n/2-1]) + float64(s[n/2])) / 2
}

func medianDur(s []time.Duration) time.Duration { return time.Duration(median(s)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
