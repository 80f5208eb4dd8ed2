package nats_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks"
	bnats "github.com/exportbridge/exportbridge/sinks/nats"
)

const source = "https://app.plugchoice.com/api/v3/exports"

func exportEvent(t *testing.T, status, typ string) event.Event {
	t.Helper()
	exp := &plugchoice.Export{UUID: "0b6f3c1e-" + event.SanitizeToken(status+typ), Type: typ, Status: status, RequestedAt: "2026-11-28T10:15:02Z"}
	e, err := event.NewExport(source, "pending", exp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSubjectsAndHeaders(t *testing.T) {
	srv := startServer(t, natsembed.Options{})
	removed, err := event.NewRemoved(source, "6a1d", "ready", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	failing, err := event.NewBridge(source, event.TypePollFailing, event.BridgeData{ErrorKind: "401"}, time.Now(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	recovered, err := event.NewBridge(source, event.TypePollRecovered, event.BridgeData{}, time.Now(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		prefix string
		ev     event.Event
		want   string
	}{
		{"pending", "", exportEvent(t, "pending", "transactions"), "plugchoice.exports.pending.transactions"},
		{"processing", "", exportEvent(t, "processing", "Transactions"), "plugchoice.exports.processing.transactions"},
		{"ready", "", exportEvent(t, "ready", "charging sessions"), "plugchoice.exports.ready.charging_sessions"},
		{"failed", "", exportEvent(t, "failed", "meter.values/v2"), "plugchoice.exports.failed.meter_values_v2"},
		{"cancelled", "", exportEvent(t, "cancelled", "Übersicht Ladevorgänge"), "plugchoice.exports.cancelled._bersicht_ladevorg_nge"},
		{"empty type", "", exportEvent(t, "ready", ""), "plugchoice.exports.ready._"},
		{"wildcards in type", "", exportEvent(t, "ready", "a*b>c"), "plugchoice.exports.ready.a_b_c"},
		{"dash and underscore kept", "", exportEvent(t, "ready", "Meter-Values_v2"), "plugchoice.exports.ready.meter-values_v2"},
		{"unknown status", "", exportEvent(t, "On Hold", "sites"), "plugchoice.exports.on_hold.sites"},
		{"unknown status with dot", "", exportEvent(t, "weird.state", "sites"), "plugchoice.exports.weird_state.sites"},
		{"removed", "", removed, "plugchoice.exports.removed._"},
		{"bridge poll_failing", "", failing, "plugchoice.exports.bridge.poll_failing"},
		{"bridge poll_recovered", "", recovered, "plugchoice.exports.bridge.poll_recovered"},
		{"custom prefix", "acme.prod.exports", exportEvent(t, "ready", "sites"), "acme.prod.exports.ready.sites"},
		{"custom prefix bridge", "acme.prod.exports", failing, "acme.prod.exports.bridge.poll_failing"},
	}
	obs := connect(t, srv.ClientURL())
	sinksByPrefix := map[string]*bnats.Sink{}
	subs := map[string]*natsgo.Subscription{}
	for _, tc := range tests {
		if sinksByPrefix[tc.prefix] != nil {
			continue
		}
		sinksByPrefix[tc.prefix] = newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}, Prefix: tc.prefix})
		p := tc.prefix
		if p == "" {
			p = bnats.DefaultPrefix
		}
		sub, err := obs.SubscribeSync(p + ".>")
		if err != nil {
			t.Fatal(err)
		}
		subs[tc.prefix] = sub
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := sinksByPrefix[tc.prefix]
			if got := s.Subject(tc.ev); got != tc.want {
				t.Errorf("Subject = %q, want %q", got, tc.want)
			}
			if err := s.Deliver(context.Background(), tc.ev); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			msg, err := subs[tc.prefix].NextMsg(wait)
			if err != nil {
				t.Fatalf("subscriber: %v", err)
			}
			if msg.Subject != tc.want {
				t.Errorf("published on %q, want %q", msg.Subject, tc.want)
			}
			if got := msg.Header.Get("Nats-Msg-Id"); got != tc.ev.ID {
				t.Errorf("Nats-Msg-Id = %q, want %q", got, tc.ev.ID)
			}
			if got := msg.Header.Get("Content-Type"); got != "application/cloudevents+json" {
				t.Errorf("Content-Type = %q, want application/cloudevents+json", got)
			}
			if string(msg.Data) != string(tc.ev.Body) {
				t.Errorf("payload = %s, want the event body %s", msg.Data, tc.ev.Body)
			}
		})
	}
}

func TestConnectionNameAndCheckCore(t *testing.T) {
	srv := startServer(t, natsembed.Options{})
	s := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}})
	if s.Name() != "nats" {
		t.Errorf("Name = %q, want nats", s.Name())
	}
	detail, err := s.Check(context.Background())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, want := range []string{"connected to " + srv.ClientURL(), "core NATS", "plugchoice.exports.>"} {
		if !strings.Contains(detail, want) {
			t.Errorf("Check detail %q lacks %q", detail, want)
		}
	}
	cz, err := srv.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cz.Conns) != 1 || cz.Conns[0].Name != "exportbridge" {
		t.Errorf("server sees connections %+v, want one named exportbridge", cz.Conns)
	}
}

// Events of one export reach a core subscriber in the order they were delivered, even
// with several exports delivered concurrently.
func TestCoreOrderPerExport(t *testing.T) {
	srv := startServer(t, natsembed.Options{})
	s := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}})
	obs := connect(t, srv.ClientURL())
	const exports, perExport = 4, 50
	type key struct {
		export string
		seq    int
	}
	byID := map[string]key{}
	all := make([][]event.Event, exports)
	for x := range exports {
		for i := range perExport {
			e := ev(fmt.Sprintf("export-%d", x), []string{"pending", "processing", "ready"}[i%3], "sites", i)
			all[x] = append(all[x], e)
			byID[e.ID] = key{e.Subject, i}
		}
	}
	var mu sync.Mutex
	got := map[string][]int{}
	total := 0
	sub, err := obs.Subscribe("plugchoice.exports.>", func(m *natsgo.Msg) {
		k, ok := byID[m.Header.Get("Nats-Msg-Id")]
		mu.Lock()
		defer mu.Unlock()
		total++
		if ok {
			got[k.export] = append(got[k.export], k.seq)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, exports)
	for x := range exports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range all[x] {
				if err := s.Deliver(context.Background(), e); err != nil {
					errs <- fmt.Errorf("deliver %s: %w", e.ID, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "every event at the subscriber", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return total >= exports*perExport
	})
	mu.Lock()
	defer mu.Unlock()
	if total != exports*perExport {
		t.Errorf("subscriber saw %d messages, want %d", total, exports*perExport)
	}
	for x := range exports {
		seqs := got[fmt.Sprintf("export-%d", x)]
		if len(seqs) != perExport {
			t.Errorf("export-%d: %d events, want %d", x, len(seqs), perExport)
			continue
		}
		for i, sq := range seqs {
			if sq != i {
				t.Errorf("export-%d: event %d arrived at position %d (order %v)", x, sq, i, seqs)
				break
			}
		}
	}
}

func TestJetStreamAckAndDedup(t *testing.T) {
	srv := startServer(t, natsembed.Options{JetStream: true})
	obs := connect(t, srv.ClientURL())
	st := createStream(t, obs, "EXPORTS", "plugchoice.exports.>")
	s := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}, JetStream: true})

	detail, err := s.Check(context.Background())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !strings.Contains(detail, "JetStream stream EXPORTS") {
		t.Errorf("Check detail %q does not name the stream EXPORTS", detail)
	}

	e1, e2 := ev("u1", "ready", "Sites", 1), ev("u2", "failed", "Sites", 2)
	for _, e := range []event.Event{e1, e2} {
		if err := s.Deliver(context.Background(), e); err != nil {
			t.Fatalf("Deliver %s: %v", e.ID, err)
		}
	}
	if n := streamMsgs(t, st); n != 2 {
		t.Fatalf("stream holds %d messages after two deliveries, want 2", n)
	}
	// The same event again, from this sink and from a new one (a restarted bridge
	// re-sending after a crash): the duplicate window removes both.
	if err := s.Deliver(context.Background(), e1); err != nil {
		t.Fatalf("re-Deliver: %v", err)
	}
	s2 := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}, JetStream: true})
	if err := s2.Deliver(context.Background(), e1); err != nil {
		t.Fatalf("re-Deliver after restart: %v", err)
	}
	if n := streamMsgs(t, st); n != 2 {
		t.Errorf("stream holds %d messages after re-sends, want 2 (duplicates removed)", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "plugchoice.exports.ready.sites" || m.Header.Get("Nats-Msg-Id") != e1.ID ||
		m.Header.Get("Content-Type") != "application/cloudevents+json" || string(m.Data) != string(e1.Body) {
		t.Errorf("stored message = %s %v %s, want subject plugchoice.exports.ready.sites, id %s and the event body", m.Subject, m.Header, m.Data, e1.ID)
	}
}

func TestJetStreamStreamCoverage(t *testing.T) {
	tests := []struct {
		name     string
		prefix   string
		streams  map[string][]string
		ok       bool
		contains []string
	}{
		{"exact prefix", "", map[string][]string{"EXPORTS": {"plugchoice.exports.>"}}, true, []string{"JetStream stream EXPORTS"}},
		{"wider stream", "", map[string][]string{"ALL": {"plugchoice.>"}}, true, []string{"JetStream stream ALL"}},
		{"two token wildcards", "", map[string][]string{"W": {"plugchoice.exports.*.*"}}, true, []string{"JetStream stream W"}},
		{"one of several subjects", "", map[string][]string{"MIX": {"other.x", "plugchoice.*.>"}}, true, []string{"JetStream stream MIX"}},
		{"no stream", "", nil, false, []string{
			"no JetStream stream captures the subjects plugchoice.exports.>",
			"`nats stream add EXPORTS --subjects 'plugchoice.exports.>'`"}},
		{"unrelated stream", "", map[string][]string{"OTHER": {"orders.>"}}, false, []string{"no JetStream stream captures"}},
		{"partial stream", "", map[string][]string{"READY": {"plugchoice.exports.ready.>"}}, false, []string{
			"stream READY (plugchoice.exports.ready.>) captures only part of them", "nats stream add EXPORTS"}},
		{"too deep wildcard", "", map[string][]string{"DEEP": {"plugchoice.exports.*.*.*"}}, false, []string{"captures only part"}},
		{"custom prefix advice", "acme.exp", nil, false, []string{"`nats stream add EXP --subjects 'acme.exp.>'`"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, natsembed.Options{JetStream: true})
			obs := connect(t, srv.ClientURL())
			for name, subjects := range tc.streams {
				createStream(t, obs, name, subjects...)
			}
			s, err := bnats.NewSink(context.Background(), bnats.Options{Logger: quiet, URLs: []string{srv.ClientURL()}, Prefix: tc.prefix, JetStream: true})
			if !tc.ok {
				if err == nil {
					_ = s.Close()
					t.Fatal("New succeeded without a stream capturing the subjects")
				}
				if !sinks.IsPermanent(err) {
					t.Errorf("error is not permanent: %v", err)
				}
				for _, want := range tc.contains {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer s.Close()
			detail, err := s.Check(context.Background())
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			for _, want := range tc.contains {
				if !strings.Contains(detail, want) {
					t.Errorf("Check detail %q lacks %q", detail, want)
				}
			}
			if err := s.Deliver(context.Background(), ev("u", "ready", "x", 1)); err != nil {
				t.Errorf("Deliver: %v", err)
			}
		})
	}
}

func TestJetStreamNotEnabled(t *testing.T) {
	srv := startServer(t, natsembed.Options{})
	_, err := bnats.NewSink(context.Background(), bnats.Options{Logger: quiet, URLs: []string{srv.ClientURL()}, JetStream: true})
	if err == nil || !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "JetStream is not enabled") ||
		!strings.Contains(err.Error(), "nats.jetstream=false") {
		t.Fatalf("New = %v, want a permanent error saying JetStream is not enabled", err)
	}
}

// A stream deleted while the bridge runs: Check says which stream to create, Deliver
// keeps the event queued (retryable) with the same advice.
func TestJetStreamStreamDeletedAtRuntime(t *testing.T) {
	srv := startServer(t, natsembed.Options{JetStream: true})
	obs := connect(t, srv.ClientURL())
	st := createStream(t, obs, "EXPORTS", "plugchoice.exports.>")
	s := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}, JetStream: true, FlushTimeout: 3 * time.Second})
	js, _ := jetstream.New(obs)
	if err := js.DeleteStream(context.Background(), st.CachedInfo().Config.Name); err != nil {
		t.Fatal(err)
	}
	_, err := s.Check(context.Background())
	if err == nil || !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "nats stream add EXPORTS") {
		t.Errorf("Check = %v, want a permanent error with the nats stream add advice", err)
	}
	err = s.Deliver(context.Background(), ev("u", "ready", "x", 1))
	if err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "nats stream add EXPORTS") {
		t.Errorf("Deliver = %v, want a retryable error with the nats stream add advice", err)
	}
}

func TestDeliverErrors(t *testing.T) {
	srv := startServer(t, natsembed.Options{JetStream: true, Configure: func(o *server.Options) { o.MaxPayload = 4096 }})
	obs := connect(t, srv.ClientURL())
	js, _ := jetstream.New(obs)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "EXPORTS", Subjects: []string{"plugchoice.exports.>"}, MaxMsgSize: 1024,
	}); err != nil {
		t.Fatal(err)
	}
	core := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}})
	jss := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}, JetStream: true})
	closed := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}})
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	big := ev("u", "ready", "x", 1)
	big.Body = []byte(`{"pad":"` + strings.Repeat("x", 8000) + `"}`)
	mid := ev("u", "ready", "x", 2)
	mid.Body = []byte(`{"pad":"` + strings.Repeat("x", 2000) + `"}`)
	empty := ev("u", "ready", "x", 3)
	empty.Body = nil
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name      string
		sink      *bnats.Sink
		ctx       context.Context
		ev        event.Event
		permanent bool
		contains  string
	}{
		{"empty body", core, context.Background(), empty, true, "empty body"},
		{"over server max payload (core)", core, context.Background(), big, true, "maximum payload"},
		{"over server max payload (jetstream)", jss, context.Background(), big, true, "maximum payload"},
		{"over stream max message size", jss, context.Background(), mid, true, "message size exceeds maximum"},
		{"cancelled context (core)", core, cancelled, ev("u", "ready", "x", 4), false, "context canceled"},
		{"cancelled context (jetstream)", jss, cancelled, ev("u", "ready", "x", 5), false, "context canceled"},
		{"closed sink", closed, context.Background(), ev("u", "ready", "x", 6), false, "not connected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sink.Deliver(tc.ctx, tc.ev)
			if err == nil {
				t.Fatal("Deliver succeeded, want an error")
			}
			if sinks.IsPermanent(err) != tc.permanent {
				t.Errorf("permanent = %v, want %v (%v)", sinks.IsPermanent(err), tc.permanent, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q lacks %q", err, tc.contains)
			}
			if !strings.Contains(err.Error(), tc.ev.ID) {
				t.Errorf("error %q does not name the event %s", err, tc.ev.ID)
			}
		})
	}
	if _, err := closed.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("Check on a closed sink = %v, want a not-connected error", err)
	}
}

func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	emptyFile := filepath.Join(dir, "empty")
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("this is no pem and no seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	url := []string{"nats://127.0.0.1:4222"}
	tests := []struct {
		name     string
		o        bnats.Options
		contains []string
	}{
		{"no URL", bnats.Options{}, []string{"no server URL", "nats.url"}},
		{"empty URL", bnats.Options{URLs: []string{" "}}, []string{"empty server URL"}},
		{"http scheme", bnats.Options{URLs: []string{"http://u:hunter2@127.0.0.1:4222"}}, []string{`scheme "http"`, "http://127.0.0.1:4222"}},
		{"no host", bnats.Options{URLs: []string{"nats://tok-hunter2@:4222"}}, []string{"has no host"}},
		{"bad prefix", bnats.Options{URLs: url, Prefix: "a..b"}, []string{"nats.subject_prefix", "empty token"}},
		{"wildcard prefix", bnats.Options{URLs: url, Prefix: "a.>"}, []string{"wildcard"}},
		{"token and user", bnats.Options{URLs: url, Token: "hunter2", User: "u", Password: "hunter2"}, []string{"more than one authentication method"}},
		{"creds and nkey", bnats.Options{URLs: url, CredsFile: junk, NKeyFile: junk}, []string{"more than one authentication method"}},
		{"password without user", bnats.Options{URLs: url, Password: "hunter2"}, []string{"nats.user is empty"}},
		{"user without password", bnats.Options{URLs: url, User: "bridge"}, []string{"nats.password is empty"}},
		{"cert without key", bnats.Options{URLs: url, CertFile: junk}, []string{"nats.cert and nats.key must be set together"}},
		{"negative flush timeout", bnats.Options{URLs: url, FlushTimeout: -time.Second}, []string{"flush timeout -1s is negative"}},
		{"negative connect timeout", bnats.Options{URLs: url, ConnectTimeout: -time.Second}, []string{"connect timeout -1s is negative"}},
		{"two problems at once", bnats.Options{Prefix: "$SYS"}, []string{"no server URL", "reserved for NATS system subjects"}},
		{"creds file missing", bnats.Options{URLs: url, CredsFile: missing}, []string{"nats.creds", "no such file"}},
		{"creds file empty", bnats.Options{URLs: url, CredsFile: emptyFile}, []string{"nats.creds", "is empty"}},
		{"nkey file missing", bnats.Options{URLs: url, NKeyFile: missing}, []string{"nats.nkey", "no such file"}},
		{"nkey file not a seed", bnats.Options{URLs: url, NKeyFile: junk}, []string{"nats.nkey", "expected an NKey user seed"}},
		{"CA file missing", bnats.Options{URLs: url, CAFile: missing}, []string{"nats.ca", "no such file"}},
		{"CA file not PEM", bnats.Options{URLs: url, CAFile: junk}, []string{"nats.ca", "no PEM certificate"}},
		{"client cert not PEM", bnats.Options{URLs: url, CertFile: junk, KeyFile: junk}, []string{"nats.cert/nats.key", "expected a PEM certificate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := bnats.NewSink(context.Background(), tc.o)
			if err == nil {
				_ = s.Close()
				t.Fatal("New succeeded, want an error")
			}
			if !sinks.IsPermanent(err) {
				t.Errorf("error is not permanent: %v", err)
			}
			for _, want := range tc.contains {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "this is no pem") {
				t.Errorf("error %q reveals a secret or file content", err)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	tests := []struct {
		prefix string
		ok     bool
		msg    string
	}{
		{"plugchoice.exports", true, ""},
		{"exports", true, ""},
		{"acme-prod.plug_choice.v2", true, ""},
		{"ACME.Exports", true, ""},
		{"", false, "is empty"},
		{".exports", false, "empty token at position 1"},
		{"exports.", false, "empty token at position 2"},
		{"a..b", false, "empty token at position 2"},
		{"a.*.b", false, "wildcard '*'"},
		{"a.>", false, "wildcard '>'"},
		{"a.b*", false, "wildcard '*'"},
		{"a b", false, "white space"},
		{"a.b\t", false, "white space"},
		{"a.\x00", false, "control character"},
		{"$JS.exports", false, "reserved for NATS system subjects"},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			err := bnats.ValidatePrefix(tc.prefix)
			if tc.ok {
				if err != nil {
					t.Errorf("ValidatePrefix(%q) = %v, want nil", tc.prefix, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidatePrefix(%q) = nil, want an error", tc.prefix)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "expected") {
				t.Errorf("ValidatePrefix(%q) = %q, want it to say %q and what is expected", tc.prefix, err, tc.msg)
			}
		})
	}
}

func gauge(m *metrics.Metrics) float64 {
	return testutil.ToFloat64(m.SinkConnected.WithLabelValues("nats"))
}

// A server stopped and restarted on the same port: Deliver fails fast and retryably
// while it is down (nothing is buffered in the client), every event arrives in order
// afterwards, and the state change is logged and exported once per change.
func TestCoreServerRestart(t *testing.T) {
	srv := startServer(t, natsembed.Options{})
	port, url := portOf(t, srv), srv.ClientURL()
	logs := &syncBuffer{}
	m := metrics.New(nil)
	s := newSink(t, bnats.Options{URLs: []string{url}, Logger: newLogger(logs), Metrics: m})
	if gauge(m) != 1 {
		t.Fatalf("connected gauge = %v after New, want 1", gauge(m))
	}
	var wakes atomic.Int32 // the dispatcher's wake (sinks.Waker), called on reconnect
	s.OnRecover(func() { wakes.Add(1) })
	reconnected := make(chan struct{}, 1)
	obs := connect(t, url, natsgo.ReconnectHandler(func(*natsgo.Conn) { reconnected <- struct{}{} }))
	sub, err := obs.SubscribeSync("plugchoice.exports.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}

	const n, stopAt = 30, 10
	var events []event.Event
	for i := range n {
		e := ev(fmt.Sprintf("u%d", i%3), "ready", "sites", i)
		events = append(events, e)
		if i == stopAt {
			stopServer(srv)
			waitFor(t, "the sink to notice the outage", func() bool { return gauge(m) == 0 })
			for range 3 {
				err := s.Deliver(context.Background(), e)
				if err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "not connected") {
					t.Fatalf("Deliver while down = %v, want a retryable not-connected error", err)
				}
			}
			if _, err := s.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "not connected") {
				t.Errorf("Check while down = %v, want a not-connected error", err)
			}
			srv = startServer(t, natsembed.Options{Port: port})
			select {
			case <-reconnected:
			case <-time.After(wait):
				t.Fatal("observer did not reconnect")
			}
			if err := obs.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		deliverUntil(t, s, e)
	}
	for i, e := range events {
		msg, err := sub.NextMsg(wait)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if id := msg.Header.Get("Nats-Msg-Id"); id != e.ID {
			t.Fatalf("message %d has id %s, want %s (lost or out of order)", i, id, e.ID)
		}
	}
	if gauge(m) != 1 {
		t.Errorf("connected gauge = %v after reconnect, want 1", gauge(m))
	}
	if c := logs.count(`msg="nats: disconnected`); c != 1 {
		t.Errorf("disconnect logged %d times, want once:\n%s", c, logs)
	}
	if c := logs.count(`msg="nats: connected"`); c != 2 {
		t.Errorf("connect logged %d times, want twice (start, reconnect):\n%s", c, logs)
	}
	if w := wakes.Load(); w != 1 {
		t.Errorf("wake called %d times, want once (the reconnect)", w)
	}
}

// A JetStream server stopped while deliveries are running and restarted on the same
// port and store: every event ends up in the stream exactly once, in order.
func TestJetStreamServerRestart(t *testing.T) {
	store := t.TempDir()
	srv := startServer(t, natsembed.Options{JetStream: true, StoreDir: store})
	port, url := portOf(t, srv), srv.ClientURL()
	obs := connect(t, url)
	createStream(t, obs, "EXPORTS", "plugchoice.exports.>")
	s := newSink(t, bnats.Options{URLs: []string{url}, JetStream: true, FlushTimeout: 2 * time.Second})

	const n = 200
	var events []event.Event
	for i := range n {
		events = append(events, ev(fmt.Sprintf("u%d", i%4), "ready", "sites", i))
	}
	var mu sync.Mutex
	delivered, failures := 0, 0
	done := make(chan error, 1)
	go func() {
		for _, e := range events {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				err := s.Deliver(ctx, e)
				cancel()
				if err == nil {
					break
				}
				if sinks.IsPermanent(err) {
					done <- fmt.Errorf("permanent error for %s: %w", e.ID, err)
					return
				}
				mu.Lock()
				failures++
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			delivered++
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // pace, so the outage lands mid-stream
		}
		done <- nil
	}()
	count := func(p *int) func() int {
		return func() int { mu.Lock(); defer mu.Unlock(); return *p }
	}
	deliveredN, failuresN := count(&delivered), count(&failures)
	waitFor(t, "some deliveries", func() bool { return deliveredN() >= 15 })
	stopServer(srv)
	waitFor(t, "a failed delivery during the outage", func() bool { return failuresN() > 0 })
	srv = startServer(t, natsembed.Options{JetStream: true, StoreDir: store, Port: port})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * wait):
		t.Fatalf("deliveries did not finish (%d of %d)", deliveredN(), n)
	}

	js, err := jetstream.New(obs)
	if err != nil {
		t.Fatal(err)
	}
	var st jetstream.Stream
	waitFor(t, "the stream after restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err = js.Stream(ctx, "EXPORTS")
		return err == nil
	})
	if got := streamMsgs(t, st); got != n {
		t.Fatalf("stream holds %d messages, want %d (none lost, none duplicated); %d failed attempts", got, n, failuresN())
	}
	for i, e := range events {
		m, err := st.GetMsg(context.Background(), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get("Nats-Msg-Id"); id != e.ID {
			t.Fatalf("stream message %d has id %s, want %s", i+1, id, e.ID)
		}
	}
	t.Logf("%d events, %d retryable failures during the outage", n, failuresN())
}

// A server that is down when the bridge starts: New succeeds and connects in the
// background; deliveries fail retryably until the server is up.
func TestServerDownAtStart(t *testing.T) {
	for _, jsMode := range []bool{false, true} {
		t.Run(fmt.Sprintf("jetstream=%v", jsMode), func(t *testing.T) {
			probe := startServer(t, natsembed.Options{})
			port := portOf(t, probe)
			url := probe.ClientURL()
			stopServer(probe)

			logs := &syncBuffer{}
			m := metrics.New(nil)
			s := newSink(t, bnats.Options{URLs: []string{url}, JetStream: jsMode, Logger: newLogger(logs), Metrics: m, ConnectTimeout: time.Second})
			if gauge(m) != 0 {
				t.Errorf("connected gauge = %v while down, want 0", gauge(m))
			}
			e := ev("u", "ready", "x", 1)
			if err := s.Deliver(context.Background(), e); err == nil || sinks.IsPermanent(err) {
				t.Fatalf("Deliver while down = %v, want a retryable error", err)
			}
			_, err := s.Check(context.Background())
			if err == nil || !strings.Contains(err.Error(), "not connected to "+url) || !strings.Contains(err.Error(), "last error") {
				t.Errorf("Check while down = %v, want not connected with the last error", err)
			}
			srv := startServer(t, natsembed.Options{Port: port, JetStream: jsMode})
			if jsMode {
				createStream(t, connect(t, srv.ClientURL()), "EXPORTS", "plugchoice.exports.>")
			}
			deliverUntil(t, s, e)
			if gauge(m) != 1 {
				t.Errorf("connected gauge = %v after connecting, want 1", gauge(m))
			}
			if c := logs.count(`msg="nats: disconnected`); c != 1 {
				t.Errorf("disconnected state logged %d times, want once:\n%s", c, logs)
			}
			if c := logs.count(`msg="nats: connected"`); c != 1 {
				t.Errorf("connected state logged %d times, want once:\n%s", c, logs)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	const token, password = "s3cret-token-value", "pa55-w0rd-secret"
	tokenSrv := startServer(t, natsembed.Options{Token: token})
	userSrv := startServer(t, natsembed.Options{Users: map[string]string{"bridge": password}})
	withCreds := func(u, cred string) string { return strings.Replace(u, "nats://", "nats://"+cred+"@", 1) }
	tests := []struct {
		name     string
		srv      *server.Server
		o        bnats.Options
		url      string
		contains []string // empty: must succeed
	}{
		{"token ok", tokenSrv, bnats.Options{Token: token}, "", nil},
		{"token wrong", tokenSrv, bnats.Options{Token: "wrong-token-value"}, "", []string{"authorization failed for nats://127.0.0.1:", "check nats.token"}},
		{"token missing", tokenSrv, bnats.Options{}, "", []string{"authorization failed", "requires authentication"}},
		{"user/password ok", userSrv, bnats.Options{User: "bridge", Password: password}, "", nil},
		{"password wrong", userSrv, bnats.Options{User: "bridge", Password: "wrong-pa55word"}, "", []string{"authorization failed for nats://127.0.0.1:", "check nats.user/nats.password"}},
		{"user unknown", userSrv, bnats.Options{User: "nobody", Password: password}, "", []string{"authorization failed", "nats.user/nats.password"}},
		{"credentials in URL ok", userSrv, bnats.Options{}, withCreds(userSrv.ClientURL(), "bridge:"+password), nil},
		{"credentials in URL wrong", userSrv, bnats.Options{}, withCreds(userSrv.ClientURL(), "bridge:wrong-url-pa55"), []string{"authorization failed for nats://127.0.0.1:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.URLs = []string{tc.srv.ClientURL()}
			if tc.url != "" {
				o.URLs = []string{tc.url}
			}
			logs := &syncBuffer{}
			o.Logger = newLogger(logs)
			s, err := bnats.NewSink(context.Background(), o)
			if len(tc.contains) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				defer s.Close()
				if err := s.Deliver(context.Background(), ev("u", "ready", "x", 1)); err != nil {
					t.Errorf("Deliver: %v", err)
				}
				if _, err := s.Check(context.Background()); err != nil {
					t.Errorf("Check: %v", err)
				}
			} else {
				if err == nil {
					_ = s.Close()
					t.Fatal("New succeeded, want an authorization error")
				}
				if !sinks.IsPermanent(err) {
					t.Errorf("error is not permanent: %v", err)
				}
				for _, want := range tc.contains {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
			}
			for _, secret := range []string{token, password, "wrong-token-value", "wrong-pa55word", "wrong-url-pa55"} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals a secret", err)
				}
				if strings.Contains(logs.String(), secret) {
					t.Errorf("logs reveal a secret:\n%s", logs)
				}
			}
		})
	}
}

func TestAuthErrorsAreNotConnectionErrors(t *testing.T) {
	// An auth failure must not be mistaken for an unreachable server (which New
	// tolerates): New must fail promptly, not hand back a sink that never connects.
	srv := startServer(t, natsembed.Options{Token: "right"})
	_, err := bnats.NewSink(context.Background(), bnats.Options{Logger: quiet, URLs: []string{srv.ClientURL()}, Token: "wrong"})
	if err == nil || !errors.Is(err, natsgo.ErrAuthorization) {
		t.Fatalf("New = %v, want an error wrapping nats.ErrAuthorization", err)
	}
}

// A core publish the server refuses (no publish permission) must not count as
// delivered, although nats.go's publish and flush both succeed.
func TestPublishPermissionDenied(t *testing.T) {
	limited := &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{"other.>", "$JS.API.>", "_INBOX.>"}}}
	srv := startServer(t, natsembed.Options{JetStream: true, Configure: func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "limited", Password: "pw", Permissions: limited},
			{Username: "admin", Password: "pw"},
		}
	}})
	admin := connect(t, srv.ClientURL(), natsgo.UserInfo("admin", "pw"))
	createStream(t, admin, "EXPORTS", "plugchoice.exports.>")
	url := []string{srv.ClientURL()}

	for _, jsMode := range []bool{false, true} {
		t.Run(fmt.Sprintf("jetstream=%v", jsMode), func(t *testing.T) {
			s := newSink(t, bnats.Options{URLs: url, User: "limited", Password: "pw", JetStream: jsMode, FlushTimeout: time.Second})
			e := ev("u", "ready", "x", 1)
			for attempt := range 2 {
				var err error
				waitFor(t, "a connected sink", func() bool {
					err = s.Deliver(context.Background(), e)
					return err == nil || !strings.Contains(err.Error(), "not connected")
				})
				if err == nil {
					t.Fatalf("attempt %d: Deliver succeeded although the server denies the subject", attempt)
				}
				if sinks.IsPermanent(err) {
					t.Errorf("attempt %d: error is permanent, want retryable (the permission may be granted): %v", attempt, err)
				}
				for _, want := range []string{`Permissions Violation for Publish to "plugchoice.exports.ready.x"`, "grant the bridge's NATS user publish permission on plugchoice.exports.>"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("attempt %d: error %q lacks %q", attempt, err, want)
					}
				}
			}
		})
	}
	t.Run("allowed subject after a denial", func(t *testing.T) {
		s := newSink(t, bnats.Options{URLs: url, User: "limited", Password: "pw", Prefix: "other"})
		if err := s.Deliver(context.Background(), ev("u", "ready", "x", 1)); err != nil {
			t.Errorf("Deliver on an allowed subject: %v", err)
		}
	})
}

func TestServerWithoutHeaders(t *testing.T) {
	srv := startServer(t, natsembed.Options{Configure: func(o *server.Options) { o.NoHeaderSupport = true }})
	s := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}})
	err := s.Deliver(context.Background(), ev("u", "ready", "x", 1))
	if err == nil || !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "too old for message headers") {
		t.Errorf("Deliver = %v, want a permanent error about header support", err)
	}
}

// A least-privilege user may publish on the subjects but not call the JetStream API:
// the stream cannot be verified at start, yet New succeeds (with a warning) and
// deliveries are acknowledged.
func TestJetStreamWithoutAPIPermission(t *testing.T) {
	pubOnly := &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{"plugchoice.exports.>"}}}
	srv := startServer(t, natsembed.Options{JetStream: true, Configure: func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "bridge", Password: "pw", Permissions: pubOnly},
			{Username: "admin", Password: "pw"},
		}
	}})
	st := createStream(t, connect(t, srv.ClientURL(), natsgo.UserInfo("admin", "pw")), "EXPORTS", "plugchoice.exports.>")
	logs := &syncBuffer{}
	s := newSink(t, bnats.Options{URLs: []string{srv.ClientURL()}, User: "bridge", Password: "pw", JetStream: true,
		ConnectTimeout: time.Second, Logger: newLogger(logs)})
	if !strings.Contains(logs.String(), "could not verify the JetStream stream") || !strings.Contains(logs.String(), "Permissions Violation") {
		t.Errorf("no warning about the unverified stream:\n%s", logs)
	}
	if _, err := s.Check(context.Background()); err == nil || sinks.IsPermanent(err) {
		t.Errorf("Check = %v, want a retryable error (stream not verifiable)", err)
	}
	e := ev("u", "ready", "x", 1)
	if err := s.Deliver(context.Background(), e); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if n := streamMsgs(t, st); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}
