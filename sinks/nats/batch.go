package nats

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
)

var _ sinks.Batcher = (*Sink)(nil)

// DeliverBatch publishes evs and confirms them together. Core mode: every publish, then
// one flush (a round trip for the batch instead of one per event). JetStream: every
// publish asynchronously, then each event's ack. errs[i] is Deliver's answer for evs[i]:
// an event counts as delivered only on its own confirmation.
func (s *Sink) DeliverBatch(ctx context.Context, evs []event.Event) []error {
	errs := make([]error, len(evs))
	subjects := make([]string, len(evs))
	if !s.nc.IsConnected() {
		for i, e := range evs {
			errs[i] = fmt.Errorf("nats: publish %s to %s: not connected to %s (status %s); will retry", e.ID, s.Subject(e), s.urls, s.nc.Status())
		}
		return errs
	}
	ctx, cancel := context.WithTimeout(ctx, s.flushTO)
	defer cancel()
	if s.js != nil {
		s.deliverBatchJS(ctx, evs, subjects, errs)
		return errs
	}
	sent := make([]int, 0, len(evs))
	for i, e := range evs {
		if len(e.Body) == 0 {
			errs[i] = sinks.Permanent(fmt.Errorf("nats: event %s has an empty body", e.ID))
			continue
		}
		subjects[i] = s.Subject(e)
		msg, err := s.message(e, subjects[i])
		if err != nil {
			errs[i] = err
			continue
		}
		if err := s.nc.PublishMsg(msg); err != nil {
			errs[i] = s.classify(e, subjects[i], err)
			continue
		}
		sent = append(sent, i)
	}
	if len(sent) == 0 {
		return errs
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		for _, i := range sent {
			errs[i] = s.classify(evs[i], subjects[i], fmt.Errorf("flush: %w", err))
		}
		return errs
	}
	// As in Deliver: a refused core publish shows as the -ERR read before the PONG.
	for _, i := range sent {
		if denied := s.publishDenied(subjects[i]); denied != nil {
			errs[i] = s.classify(evs[i], subjects[i], denied)
		}
	}
	return errs
}

func (s *Sink) deliverBatchJS(ctx context.Context, evs []event.Event, subjects []string, errs []error) {
	futs := make([]jetstream.PubAckFuture, len(evs))
	for i, e := range evs {
		if len(e.Body) == 0 {
			errs[i] = sinks.Permanent(fmt.Errorf("nats: event %s has an empty body", e.ID))
			continue
		}
		subjects[i] = s.Subject(e)
		msg, err := s.message(e, subjects[i])
		if err != nil {
			errs[i] = err
			continue
		}
		f, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(e.ID))
		if err != nil {
			errs[i] = s.classify(e, subjects[i], err)
			continue
		}
		futs[i] = f
	}
	for i, f := range futs {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				s.log.Debug("nats: duplicate publish removed by the stream", "event_id", evs[i].ID, "stream", ack.Stream, "seq", ack.Sequence)
			}
		case err := <-f.Err():
			if denied := s.publishDenied(subjects[i]); denied != nil {
				err = fmt.Errorf("%w (%w)", err, denied)
			}
			errs[i] = s.classify(evs[i], subjects[i], err)
		case <-ctx.Done():
			errs[i] = s.classify(evs[i], subjects[i], fmt.Errorf("wait for the stream's ack: %w", ctx.Err()))
		}
	}
}
