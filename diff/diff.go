// Package diff turns two observations of the exports list into events. It is pure: no
// I/O and no clock (the observation time is passed in).
package diff

import (
	"slices"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
)

// Entry is what the snapshot keeps per export: the status and that status's own
// timestamp (unix nanoseconds, 0 when the API gave none or it did not parse).
type Entry struct {
	Status string
	At     int64
	// Missed counts the complete listings in a row that lacked the export (0 or 1): a
	// removal is confirmed by the second, so an export that a deletion shifted past the
	// end of one long listing is not taken for removed. Any observation of the export
	// sets it back to 0.
	Missed uint8
}

// ConfirmListings is the number of consecutive complete listings an export must be
// absent from to be removed.
const ConfirmListings = 2

// Snapshot maps export uuid to its last known Entry.
type Snapshot map[string]Entry

// Safety valve: a complete listing that lacks more than half of a snapshot of at least
// ValveMinSnapshot exports emits no export.removed events.
const ValveMinSnapshot = 20

// Input is one observation to compare with the previous snapshot.
type Input struct {
	Prev    Snapshot
	Current []plugchoice.Export
	// Complete is true only for a full, unfiltered listing that finished: only then can
	// an export missing from Current be considered removed.
	Complete bool
	// Baseline records Current without events (first start with an empty store).
	Baseline bool
	// EmitRemoved turns confirmed removals into export.removed events.
	EmitRemoved bool
	// Source is the CloudEvents source (API base URL + "/exports").
	Source string
	// ObservedAt is when the listing was taken.
	ObservedAt time.Time
}

// Result is what changed. Applying Upserts and Removes to Prev gives the new snapshot.
type Result struct {
	Events  []event.Event
	Upserts map[string]Entry
	Removes []string
	// Missing counts exports of Prev absent from a complete listing: those removed (the
	// second listing in a row without them) and those now awaiting confirmation.
	Missing int
	// ValveTripped is true when the safety valve suppressed removal (nothing removed).
	ValveTripped bool
}

// Compute compares in.Current with in.Prev. It never modifies in.Prev.
func Compute(in Input) (Result, error) {
	var res Result
	seen := 0 // occurrences in Current of exports Prev has
	for i := range in.Current {
		exp := &in.Current[i]
		prev, had := in.Prev[exp.UUID]
		if had {
			seen++
		}
		if up, dup := res.Upserts[exp.UUID]; dup {
			// The same export twice in one listing: compare with what we just recorded.
			if up.Status == exp.Status {
				continue
			}
			prev, had = up, true
		} else if had && prev.Status == exp.Status {
			if prev.Missed == 0 {
				continue
			}
			// Present after all (one listing missed it): no longer awaiting removal.
			if res.Upserts == nil {
				res.Upserts = make(map[string]Entry)
			}
			prev.Missed = 0
			res.Upserts[exp.UUID] = prev
			continue
		}
		if res.Upserts == nil {
			res.Upserts = make(map[string]Entry)
		}
		res.Upserts[exp.UUID] = Entry{Status: intern(exp.Status), At: parseTime(exp.StatusTime())}
		if in.Baseline {
			continue
		}
		var prevStatus string
		if had {
			prevStatus = prev.Status
		}
		ev, err := event.NewExport(in.Source, prevStatus, exp, in.ObservedAt)
		if err != nil {
			return Result{}, err
		}
		res.Events = append(res.Events, ev)
	}
	// Every export of Prev was seen: nothing can be missing, and no set is needed (the
	// common case, kept free of allocations). A uuid listed twice can make seen reach
	// len(Prev) while another is missing: its removal then waits for a later complete
	// listing. A removal is only ever delayed that way, never invented.
	if !in.Complete || seen == len(in.Prev) {
		return res, nil
	}
	present := make(map[string]struct{}, len(in.Current))
	for i := range in.Current {
		present[in.Current[i].UUID] = struct{}{}
	}
	rm, err := Removals(RemovalInput{Prev: in.Prev, Present: present, EmitRemoved: in.EmitRemoved && !in.Baseline,
		Source: in.Source, ObservedAt: in.ObservedAt})
	if err != nil {
		return Result{}, err
	}
	res.Removes, res.Missing, res.ValveTripped = rm.Removes, rm.Missing, rm.ValveTripped
	res.Events = append(res.Events, rm.Events...)
	for k, v := range rm.Upserts { // absent for the first time: awaiting confirmation
		if res.Upserts == nil {
			res.Upserts = make(map[string]Entry, len(rm.Upserts))
		}
		res.Upserts[k] = v
	}
	return res, nil
}

// RemovalInput is a complete listing reduced to the uuids it held.
type RemovalInput struct {
	Prev        Snapshot
	Present     map[string]struct{}
	EmitRemoved bool
	Source      string
	ObservedAt  time.Time
}

// Removals finds the exports of Prev that a COMPLETE listing no longer holds. Only a
// complete listing may be given. An export is removed only when the previous complete
// listing lacked it too (its Entry's Missed is 1): a first absence is recorded in
// Upserts (Missed 1) and announces nothing, since a deletion during a long listing can
// shift an export past its end. When more than half of a snapshot of at least
// ValveMinSnapshot exports is missing, the safety valve trips: nothing is removed or
// recorded. The result's Removes are sorted; Events are export.removed when
// EmitRemoved is set.
func Removals(in RemovalInput) (Result, error) {
	var res Result
	var missing []string
	for uuid := range in.Prev {
		if _, ok := in.Present[uuid]; !ok {
			missing = append(missing, uuid)
		}
	}
	res.Missing = len(missing)
	if len(missing) == 0 {
		return res, nil
	}
	if len(in.Prev) >= ValveMinSnapshot && 2*len(missing) > len(in.Prev) {
		res.ValveTripped = true
		return res, nil
	}
	slices.Sort(missing)
	for _, uuid := range missing {
		e := in.Prev[uuid]
		if int(e.Missed)+1 >= ConfirmListings {
			res.Removes = append(res.Removes, uuid)
			continue
		}
		if res.Upserts == nil {
			res.Upserts = make(map[string]Entry)
		}
		e.Missed++
		res.Upserts[uuid] = e
	}
	if !in.EmitRemoved {
		return res, nil
	}
	for _, uuid := range res.Removes {
		p := in.Prev[uuid]
		ev, err := event.NewRemoved(in.Source, uuid, p.Status, p.At, in.ObservedAt)
		if err != nil {
			return Result{}, err
		}
		res.Events = append(res.Events, ev)
	}
	return res, nil
}

// Apply returns prev with res applied, modifying prev in place.
func Apply(prev Snapshot, res Result) Snapshot {
	if prev == nil {
		prev = make(Snapshot, len(res.Upserts))
	}
	for k, v := range res.Upserts {
		prev[k] = v
	}
	for _, k := range res.Removes {
		delete(prev, k)
	}
	return prev
}

// intern returns the known status constants without keeping the decoder's string alive.
func intern(s string) string {
	switch s {
	case plugchoice.StatusPending:
		return plugchoice.StatusPending
	case plugchoice.StatusProcessing:
		return plugchoice.StatusProcessing
	case plugchoice.StatusReady:
		return plugchoice.StatusReady
	case plugchoice.StatusFailed:
		return plugchoice.StatusFailed
	case plugchoice.StatusCancelled:
		return plugchoice.StatusCancelled
	}
	return s
}

func parseTime(s string) int64 {
	if s == "" {
		return 0
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return t.UnixNano()
}
