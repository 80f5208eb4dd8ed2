package sinks

import (
	"context"

	"github.com/exportbridge/exportbridge/event"
)

// Batcher is implemented by sinks that confirm several events at once for about the cost
// of one (a NATS publish of each and one flush, or JetStream publishes whose acks are
// awaited together). The dispatcher hands it events of different exports only, at most
// MaxBatch, and settles each event by its own answer: errs[i] is what Deliver would have
// returned for evs[i], so delivery stays at-least-once.
type Batcher interface {
	DeliverBatch(ctx context.Context, evs []event.Event) (errs []error)
}

// MaxBatch is the most events the dispatcher hands a Batcher at once.
const MaxBatch = 256
