package poller

import (
	"context"
	"fmt"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// cheapListing observes what can have changed since the last cycle at a cost of a few
// requests, whatever the number of exports:
//
//  1. the in-flight exports (status pending or processing), all pages;
//  2. the head of the unfiltered list, page by page, until a page whose exports are all
//     known with an unchanged status, verifying on every page that the list is
//     newest-first (requested_at never increases);
//  3. every export the snapshot has in flight that the in-flight query no longer returns
//     (it finished, or vanished) is looked up in the head pages, reading on past step 2's
//     stop while one may still be further down (its requested_at not yet passed); when
//     one is not found, ok is false and the caller does a full listing.
//
// ok is false too when the order check fails. The result is never complete: it cannot
// prove a removal.
func (p *Poller) cheapListing(ctx context.Context) (current []plugchoice.Export, ok bool, err error) {
	q := p.o.Query
	q.Statuses = []string{plugchoice.StatusPending, plugchoice.StatusProcessing}
	inflight, err := p.o.Client.List(ctx, q)
	if err != nil {
		return nil, false, fmt.Errorf("list in-flight exports: %w", err)
	}
	current = append(current, inflight.Exports...)

	// unresolved: exports the snapshot has in flight that the in-flight query no longer
	// returns. They finished (or vanished); the head pages must show how.
	unresolved := map[string]int64{}
	inFlightNow := make(map[string]struct{}, len(inflight.Exports))
	for i := range inflight.Exports {
		inFlightNow[inflight.Exports[i].UUID] = struct{}{}
	}
	for uuid, at := range p.inflight {
		if _, ok := inFlightNow[uuid]; ok {
			continue
		}
		if at == 0 {
			return nil, false, nil // no requested_at to search by
		}
		unresolved[uuid] = at
	}

	head := p.o.Query
	head.Statuses = nil
	var last time.Time
	for page := 1; ; page++ {
		pg, err := p.o.Client.ListPage(ctx, head, page)
		if err != nil {
			return nil, false, fmt.Errorf("list exports page %d: %w", page, err)
		}
		allKnown := true
		for i := range pg.Data {
			e := &pg.Data[i]
			t, perr := time.Parse(time.RFC3339Nano, e.RequestedAt)
			if perr != nil || (!last.IsZero() && t.After(last)) {
				if !p.orderWarned {
					p.orderWarned = true
					p.o.Logger.Warn("the exports list is not newest-first by requested_at; doing a full listing",
						"page", page, "export", e.UUID, "requested_at", e.RequestedAt)
				}
				return nil, false, nil
			}
			last = t
			delete(unresolved, e.UUID)
			if prev, known := p.snap[e.UUID]; !known || prev.Status != e.Status {
				allKnown = false
			}
		}
		current = append(current, pg.Data...)
		if pg.Links.Next == nil || len(pg.Data) == 0 {
			break
		}
		if allKnown && !deeper(unresolved, last) {
			break
		}
	}
	if len(unresolved) > 0 {
		p.o.Logger.Debug("in-flight exports not found in the head pages; full listing", "count", len(unresolved))
		return nil, false, nil
	}
	return current, true, nil
}

// deeper reports whether an unresolved export may still appear further down a
// newest-first listing whose last item was requested at last.
func deeper(unresolved map[string]int64, last time.Time) bool {
	l := last.UnixNano()
	for _, at := range unresolved {
		if at <= l {
			return true
		}
	}
	return false
}
