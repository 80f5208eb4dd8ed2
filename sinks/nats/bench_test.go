package nats_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	bnats "github.com/exportbridge/exportbridge/sinks/nats"
)

// benchEvents returns n events with distinct ids (JetStream would otherwise remove
// them as duplicates) and a body of about 800 bytes, the size of a typical CloudEvent.
func benchEvents(n int) []event.Event {
	pad := strings.Repeat("x", 600)
	evs := make([]event.Event, n)
	for i := range evs {
		e := ev(fmt.Sprintf("export-%d", i%50), "ready", "Charging Sessions", i)
		e.Body = []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"data":{"pad":%q}}`, e.ID, pad))
		evs[i] = e
	}
	return evs
}

func msgOf(e event.Event, subject string) *natsgo.Msg {
	return &natsgo.Msg{Subject: subject, Data: e.Body,
		Header: natsgo.Header{"Nats-Msg-Id": {e.ID}, "Content-Type": {event.ContentType}}}
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func benchSink(b *testing.B, jsMode bool) {
	srv := startServer(b, natsembed.Options{JetStream: jsMode})
	if jsMode {
		createStream(b, connect(b, srv.ClientURL()), "EXPORTS", "plugchoice.exports.>")
	}
	s := newSink(b, bnats.Options{URLs: []string{srv.ClientURL()}, JetStream: jsMode})
	evs := benchEvents(b.N)
	ctx := context.Background()
	b.ResetTimer()
	for _, e := range evs {
		if err := s.Deliver(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b)
}

// BenchmarkDeliverCore: one Deliver per event, each flushed to the server.
func BenchmarkDeliverCore(b *testing.B) { benchSink(b, false) }

// BenchmarkDeliverJetStream: one Deliver per event, each waiting for the stream's ack.
func BenchmarkDeliverJetStream(b *testing.B) { benchSink(b, true) }

// BenchmarkPlainPublishCore: the same payloads with a bare nats.go publish + flush.
func BenchmarkPlainPublishCore(b *testing.B) {
	srv := startServer(b, natsembed.Options{})
	nc := connect(b, srv.ClientURL())
	evs := benchEvents(b.N)
	b.ResetTimer()
	for _, e := range evs {
		if err := nc.PublishMsg(msgOf(e, "plugchoice.exports.ready.charging_sessions")); err != nil {
			b.Fatal(err)
		}
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b)
}

// BenchmarkPlainPublishJetStream: the same payloads with a bare jetstream publish,
// waiting for each ack.
func BenchmarkPlainPublishJetStream(b *testing.B) {
	srv := startServer(b, natsembed.Options{JetStream: true})
	nc := connect(b, srv.ClientURL())
	createStream(b, nc, "EXPORTS", "plugchoice.exports.>")
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	evs := benchEvents(b.N)
	b.ResetTimer()
	for _, e := range evs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.PublishMsg(ctx, msgOf(e, "plugchoice.exports.ready.charging_sessions"), jetstream.WithMsgID(e.ID))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b)
}
