package nats_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/sinks"
	bnats "github.com/exportbridge/exportbridge/sinks/nats"
)

// TestDeliverBatch: a batch is confirmed event by event: core NATS after one flush,
// JetStream by each event's ack (a re-sent batch is removed as duplicates); an empty
// body is refused on its own, and a batch to a stopped server fails retryably.
func TestDeliverBatch(t *testing.T) {
	for _, js := range []bool{false, true} {
		t.Run(fmt.Sprintf("jetstream=%v", js), func(t *testing.T) {
			srv := startServer(t, natsembed.Options{JetStream: js})
			obs := connect(t, srv.ClientURL())
			sub, err := obs.SubscribeSync("plugchoice.exports.>")
			if err != nil {
				t.Fatal(err)
			}
			if err := obs.Flush(); err != nil {
				t.Fatal(err)
			}
			var stream jetstream.Stream
			if js {
				stream = createStream(t, obs, "EXPORTS", "plugchoice.exports.>")
			}
			s := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}, JetStream: js})
			var evs []event.Event
			for i := range 100 {
				evs = append(evs, ev(fmt.Sprintf("u%d", i), "ready", "sites", i))
			}
			empty := evs[42]
			empty.Body = nil
			evs[42] = empty
			errs := s.DeliverBatch(context.Background(), evs)
			if len(errs) != len(evs) {
				t.Fatalf("%d answers for %d events", len(errs), len(evs))
			}
			for i, err := range errs {
				if i == 42 {
					if !sinks.IsPermanent(err) {
						t.Errorf("empty body: %v, want a permanent error", err)
					}
					continue
				}
				if err != nil {
					t.Errorf("event %d: %v", i, err)
				}
			}
			for i := range 99 {
				if _, err := sub.NextMsg(wait); err != nil {
					t.Fatalf("message %d of 99: %v", i+1, err)
				}
			}
			if js {
				if n := streamMsgs(t, stream); n != 99 {
					t.Errorf("stream holds %d messages, want 99", n)
				}
				for i, err := range s.DeliverBatch(context.Background(), evs) {
					if err != nil && i != 42 {
						t.Errorf("re-sent event %d: %v", i, err)
					}
				}
				if n := streamMsgs(t, stream); n != 99 {
					t.Errorf("stream holds %d messages after the re-send, want 99 (duplicates removed)", n)
				}
			}
			stopServer(srv)
			waitFor(t, "the sink disconnected", func() bool {
				errs := s.DeliverBatch(context.Background(), evs[:3])
				return errs[0] != nil
			})
			for i, err := range s.DeliverBatch(context.Background(), evs[:3]) {
				if err == nil || sinks.IsPermanent(err) {
					t.Errorf("event %d to a stopped server: %v, want a retryable error", i, err)
				}
			}
		})
	}
}
