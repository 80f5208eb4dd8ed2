package main

import (
	"context"
	"time"

	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/sinks/registry"
)

// orphanReportEvery is how often orphaned queues are reported again while they last.
const orphanReportEvery = time.Hour

// checkStoredSinks compares the sinks in the store with the configured ones: it warns
// about a stored sink that is no longer configured but holds events (renamed or
// removed: see queue move/drop), and about a configured sink with queued events whose
// destination changed (a reordered WEBHOOK_URLS sends them to another endpoint). Then it
// records each sink's destination.
func (b *bridge) checkStoredSinks() {
	b.reportOrphans()
	for _, s := range b.specs {
		old, err := b.st.Destination(s.Name)
		if err != nil {
			b.log.Error("cannot read the stored destination of a sink", "sink", s.Name, "error", err)
			continue
		}
		if old != "" && old != s.Fingerprint {
			queued, dead, err := b.st.Depths(s.Name)
			if err == nil && queued+dead > 0 {
				b.log.Warn("sink now points at another destination than when its events were queued: they go to the new one; if the sink was renamed or the URLs reordered, stop and move them with 'exportbridge queue move'",
					"sink", s.Name, "destination", s.Destination, "queued", queued, "dead_letters", dead)
			}
		}
		if old != s.Fingerprint {
			if err := b.st.SetDestination(s.Name, s.Fingerprint); err != nil {
				b.log.Error("cannot record the destination of a sink", "sink", s.Name, "error", err)
			}
		}
	}
}

// reportOrphans logs every stored sink that is not configured and still holds events,
// and sets exportbridge_orphaned_events.
func (b *bridge) reportOrphans() {
	st, err := b.st.Stats()
	if err != nil {
		b.log.Error("cannot count the stored queues", "error", err)
		return
	}
	orphans := server.Orphans(server.StateOf(st), registry.Names(b.sinkSpecs()))
	seen := map[string]bool{}
	for _, o := range orphans {
		seen[o.Sink] = true
		b.m.Orphaned(o.Sink, o.Queued+o.DeadLetters)
		b.log.Warn("a stored sink is not configured but holds events: they are not delivered; re-home them with 'exportbridge queue move --from "+o.Sink+" --to NEW' or delete them with 'exportbridge queue drop --sink "+o.Sink+"'",
			"sink", o.Sink, "queued", o.Queued, "dead_letters", o.DeadLetters)
	}
	for name := range b.orphans {
		if !seen[name] {
			b.m.Orphaned(name, 0)
		}
	}
	b.orphans = seen
}

// watchOrphans repeats reportOrphans hourly until ctx ends.
func (b *bridge) watchOrphans(ctx context.Context) {
	t := time.NewTicker(orphanReportEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.reportOrphans()
		}
	}
}

func (b *bridge) sinkSpecs() []registry.Spec {
	out := make([]registry.Spec, len(b.specs))
	for i, s := range b.specs {
		out[i] = s.Spec
	}
	return out
}
