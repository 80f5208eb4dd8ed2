package main

import (
	"fmt"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/sinks/registry"
)

// alertOptions are what the dispatcher of s reports about its sink's health
// (bridge.sink_failing / sink_recovered) and who queues it.
func (b *bridge) alertOptions(s sinkSpec) delivery.AlertOptions {
	return delivery.AlertOptions{Kind: s.Kind, Destination: s.Destination, After: b.cfg.SinkFailureAlert, Alerter: sinkAlerter{b}}
}

// sinkAlerter queues a sink's health events for every OTHER sink whose filter wants
// them: the failing sink never gets its own alert, which would wait behind the outage.
type sinkAlerter struct{ b *bridge }

var _ delivery.Alerter = sinkAlerter{}

func (a sinkAlerter) SinkHealth(al delivery.Alert) error {
	b := a.b
	queued := al.Queued
	d := event.BridgeData{
		Sink: al.Sink, Kind: al.Kind, Destination: al.Destination,
		// The error goes to other destinations, past the log redactor: scrub it the same way.
		LastError: logging.Redact(al.LastError, append(b.cfg.Secrets(), registry.Secrets(b.sinkSpecs())...)),
		Queued:    &queued, Failures: al.Failures,
	}
	ev, err := event.NewBridge(source(b.cfg), al.Type, d, al.Since, al.At)
	if err != nil {
		return fmt.Errorf("build %s for sink %s: %w", al.Type, al.Sink, err)
	}
	var to []string
	for _, name := range b.route(ev) {
		if name != al.Sink {
			to = append(to, name)
		}
	}
	if len(to) == 0 {
		b.log.Warn("no other sink takes bridge events: the sink health alert goes nowhere", "type", al.Type, "sink", al.Sink)
		return nil
	}
	for _, name := range to {
		if err := b.st.Enqueue(name, ev); err != nil {
			return fmt.Errorf("queue %s about sink %s for sink %s: %w", al.Type, al.Sink, name, err)
		}
	}
	b.m.Event(ev.Type)
	b.notify()
	return nil
}
