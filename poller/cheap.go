package poller

import (
	"context"
	"fmt"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// cheapListing observes what can have changed since the last cycle at a cost of one
// request when it can, and a few whatever the number of exports:
//
//  1. the head of the unfiltered list, page by page, until a page whose exports are all
//     known with an unchanged status, verifying on every page that the list is
//     newest-first (requested_at never increases);
//  2. when every export the snapshot has in flight was seen on those pages, that is all
//     (one request in the common case of a few recent in-flight exports); otherwise the
//     in-flight exports (status pending or processing), all pages;
//  3. every export the snapshot has in flight that neither the head pages nor the
//     in-flight query returned (it finished, or vanished) is looked up further down the
//     head, reading on past step 1's stop while one may still be there (its
//     requested_at not yet passed) and up to a page of known exports; when one is not
//     found, ok is false and the caller does a full listing.
//
// ok is false too when the order check fails. The result is never complete: it cannot
// prove a removal. Its exports are in the order they were read, so a later reading of
// an export comes after an earlier one.
func (p *Poller) cheapListing(ctx context.Context) (current []plugchoice.Export, ok bool, err error) {
	head := p.o.Query
	head.Statuses = nil
	// unseen: exports the snapshot has in flight that no page read so far showed.
	unseen := make(map[string]int64, len(p.inflight))
	for uuid, at := range p.inflight {
		unseen[uuid] = at
	}
	var (
		last time.Time
		page int
		more = true // the head has a next page
	)
	// readHead reads head pages from page+1 on until stop says so after a page, or the
	// list ends. ok is false when the order check failed.
	readHead := func(stop func(allKnown bool) bool) (bool, error) {
		for more {
			page++
			pg, err := p.o.Client.ListPage(ctx, head, page)
			if err != nil {
				return false, fmt.Errorf("list exports page %d: %w", page, err)
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
					return false, nil
				}
				last = t
				delete(unseen, e.UUID)
				if prev, known := p.snap[e.UUID]; !known || prev.Status != e.Status {
					allKnown = false
				}
			}
			current = append(current, pg.Data...)
			more = pg.Links.Next != nil && len(pg.Data) > 0
			if stop(allKnown) {
				break
			}
		}
		return true, nil
	}

	if ok, err := readHead(func(allKnown bool) bool { return allKnown }); err != nil || !ok {
		return nil, false, err
	}
	if len(unseen) == 0 {
		return current, true, nil // every in-flight export was on the head pages
	}

	q := p.o.Query
	q.Statuses = []string{plugchoice.StatusPending, plugchoice.StatusProcessing}
	inflight, err := p.o.Client.List(ctx, q)
	if err != nil {
		return nil, false, fmt.Errorf("list in-flight exports: %w", err)
	}
	current = append(current, inflight.Exports...)
	// unresolved: exports the snapshot has in flight that neither the head pages nor the
	// in-flight query returned. They finished (or vanished); the head pages further down
	// must show how.
	for i := range inflight.Exports {
		delete(unseen, inflight.Exports[i].UUID)
	}
	unresolved := unseen
	for _, at := range unresolved {
		if at == 0 {
			return nil, false, nil // no requested_at to search by
		}
	}
	if len(unresolved) > 0 && deeper(unresolved, last) {
		if ok, err := readHead(func(allKnown bool) bool { return allKnown && !deeper(unresolved, last) }); err != nil || !ok {
			return nil, false, err
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
