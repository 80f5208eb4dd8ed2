package chaos

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
)

// natsBox is an embedded NATS server with JetStream on a fixed port and store
// directory, so it can be stopped and started again with its streams, and a stream
// capturing the bridge's subjects.
type natsBox struct {
	t     *testing.T
	dir   string
	port  int
	token string

	mu  sync.Mutex
	srv *server.Server
}

const streamName = "EXPORTS"

func newNATS(t *testing.T) *natsBox {
	t.Helper()
	b := &natsBox{t: t, dir: filepath.Join(t.TempDir(), "js"), token: newSecret("natstoken")}
	s, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: b.dir, Token: b.token})
	if err != nil {
		t.Fatal(err)
	}
	b.srv = s
	b.port = s.Addr().(*net.TCPAddr).Port
	t.Cleanup(b.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js := b.connect()
	defer nc.Close()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: streamName, Subjects: []string{"plugchoice.exports.>"}, Storage: jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return b
}

func (b *natsBox) URL() string { return b.srv.ClientURL() }

func (b *natsBox) connect() (*natsgo.Conn, jetstream.JetStream) {
	b.t.Helper()
	nc, err := natsgo.Connect(b.URL(), natsgo.Token(b.token), natsgo.Timeout(10*time.Second))
	if err != nil {
		b.t.Fatalf("connect to nats: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		b.t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

func (b *natsBox) stop() {
	b.mu.Lock()
	s := b.srv
	b.mu.Unlock()
	if s != nil && s.Running() {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// restart starts the server again on the same port and store directory.
func (b *natsBox) restart() {
	b.t.Helper()
	var s *server.Server
	var err error
	for i := 0; i < 100; i++ {
		s, err = natsembed.Start(natsembed.Options{JetStream: true, StoreDir: b.dir, Token: b.token, Port: b.port})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("restart nats on port %d: %v", b.port, err)
	}
	b.mu.Lock()
	b.srv = s
	b.mu.Unlock()
}

// deliveries reads every message of the stream, in stream order. A message's arrival
// time is the stream's timestamp.
func (b *natsBox) deliveries() []delivery {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js := b.connect()
	defer nc.Close()
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		b.t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		b.t.Fatalf("stream info: %v", err)
	}
	var out []delivery
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			b.t.Fatalf("get message %d: %v", seq, err)
		}
		ce, err := event.Decode(m.Data)
		if err != nil {
			b.t.Errorf("nats: message %d is not a CloudEvent: %v", seq, err)
			continue
		}
		id := m.Header.Get("Nats-Msg-Id")
		if id != ce.ID {
			b.t.Errorf("nats: message %d has Nats-Msg-Id %q but event id %q", seq, id, ce.ID)
		}
		out = append(out, newDelivery(id, ce, m.Data, m.Time))
	}
	return out
}

// count returns the number of messages in the stream (-1 when it cannot tell).
func (b *natsBox) count() int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := natsgo.Connect(b.URL(), natsgo.Token(b.token), natsgo.Timeout(5*time.Second))
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return -1
	}
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return -1
	}
	info, err := st.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// natsEnv adds the NATS sink (JetStream, token auth) to env.
func natsEnv(env map[string]string, b *natsBox, events string) map[string]string {
	env["EXPORTBRIDGE_NATS_URL"] = b.URL()
	env["EXPORTBRIDGE_NATS_TOKEN"] = b.token
	env["EXPORTBRIDGE_NATS_JETSTREAM"] = "true"
	if events != "" {
		env["EXPORTBRIDGE_NATS_EVENTS"] = events
	}
	return env
}
