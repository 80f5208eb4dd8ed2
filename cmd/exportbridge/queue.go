package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/exportbridge/exportbridge/progress"
)

// cmdQueue re-homes (move) or deletes (drop) the queued events and dead letters of a
// sink that was renamed or removed: on the store directly, or through the running
// bridge's admin endpoint.
func cmdQueue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr("queue needs a subcommand: move --from OLD --to NEW, or drop --sink OLD")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("queue "+sub, "queue move --from OLD --to NEW | queue drop --sink OLD", stderr)
	from := fs.String("from", "", "move: the stored sink whose events are re-homed")
	to := fs.String("to", "", "move: the configured sink that takes them")
	sink := fs.String("sink", "", "drop: the stored sink whose events are deleted")
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	if fs.NArg() > 0 {
		return usageErr("queue %s takes no arguments, got %q", sub, strings.Join(fs.Args(), " "))
	}
	switch sub {
	case "move":
		if *from == "" || *to == "" || *sink != "" {
			return usageErr("queue move needs --from OLD and --to NEW")
		}
	case "drop":
		if *sink == "" || *from != "" || *to != "" {
			return usageErr("queue drop needs --sink OLD")
		}
	default:
		return usageErr("unknown queue subcommand %q (expected move or drop)", sub)
	}
	cfg, configured, err := configuredSinks("queue")
	if err != nil {
		return err
	}
	if sub == "move" && configured != nil && !slices.Contains(configured, *to) {
		return usageErr("queue move --to %q: no configured sink has that name (configured: %s)", *to, strings.Join(configured, ", "))
	}
	if configured != nil && slices.Contains(configured, *from+*sink) {
		return usageErr("sink %q is still configured: its own dispatcher delivers its queue (remove it from the settings first)", *from+*sink)
	}
	what := "queue move " + *from + " to " + *to
	if sub == "drop" {
		what = "queue drop " + *sink
	}
	meter := progress.New(stderr, what)
	a, done, err := openAdmin(cfg, meter.Report)
	if err != nil {
		return err
	}
	defer done()
	if sub == "move" {
		q, d, err := a.MoveQueue(ctx, *from, *to)
		meter.Finish()
		if err != nil {
			return fmt.Errorf("queue move: %w", err)
		}
		fmt.Fprintf(stdout, "moved %d queued events and %d dead letters from %s to %s (same event ids, same order)\n", q, d, *from, *to)
		return nil
	}
	q, d, err := a.DropQueue(ctx, *sink)
	meter.Finish()
	if err != nil {
		return fmt.Errorf("queue drop: %w", err)
	}
	fmt.Fprintf(stdout, "dropped %d queued events and %d dead letters of %s\n", q, d, *sink)
	return nil
}
