// Package natsembed starts an in-process nats-server on the loopback interface, for the
// demo and for tests. It is not meant for production: the server has no clustering,
// logs nothing and ignores signals.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ReadyTimeout bounds how long Start waits for the server to accept connections.
const ReadyTimeout = 10 * time.Second

// Options configure the embedded server. The zero value is a core-NATS server without
// authentication on a random loopback port.
type Options struct {
	// JetStream enables JetStream; StoreDir is then required (its file store lives
	// there, so a server restarted on the same StoreDir recovers its streams).
	JetStream bool
	StoreDir  string
	// Port to listen on, on 127.0.0.1; 0 picks a free port (see Server.Addr()).
	Port int
	// Token requires this token from every client. Token and Users are exclusive.
	Token string
	// Users requires one of these user/password pairs from every client.
	Users map[string]string
	// NKeys requires clients to sign with one of these NKey user public keys ("U...").
	NKeys []string
	// Configure, when set, may adjust the server options just before the server is
	// created (TLS, operator mode, limits).
	Configure func(*server.Options)
}

// Start creates and starts the server on 127.0.0.1 and waits until it accepts
// connections (ReadyTimeout). Stop it with Shutdown and WaitForShutdown. Its URL is
// ClientURL().
func Start(o Options) (*server.Server, error) {
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("natsembed: port %d out of range (expected 0 for a random port, or 1-65535)", o.Port)
	}
	if o.JetStream && o.StoreDir == "" {
		return nil, errors.New("natsembed: JetStream needs a StoreDir (a directory for the stream files)")
	}
	if o.Token != "" && (len(o.Users) > 0 || len(o.NKeys) > 0) {
		return nil, errors.New("natsembed: Token cannot be combined with Users or NKeys (pick one authentication method)")
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// nats-server reports a busy port only after the full ready timeout: check first
		// so the caller gets a clear error at once.
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("natsembed: port %d on 127.0.0.1 is not free: %w", port, err)
		}
		if err := l.Close(); err != nil {
			return nil, fmt.Errorf("natsembed: probe port %d: %w", port, err)
		}
	}
	so := &server.Options{
		Host:          "127.0.0.1",
		Port:          port,
		NoLog:         true,
		NoSigs:        true,
		JetStream:     o.JetStream,
		StoreDir:      o.StoreDir,
		Authorization: o.Token,
	}
	for name, pass := range o.Users {
		so.Users = append(so.Users, &server.User{Username: name, Password: pass})
	}
	for _, k := range o.NKeys {
		so.Nkeys = append(so.Nkeys, &server.NkeyUser{Nkey: k})
	}
	if o.Configure != nil {
		o.Configure(so)
	}
	s, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsembed: create server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(ReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("natsembed: server on 127.0.0.1:%d not ready for connections within %s", o.Port, ReadyTimeout)
	}
	return s, nil
}
