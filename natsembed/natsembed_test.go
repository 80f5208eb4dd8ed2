package natsembed_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"

	"github.com/exportbridge/exportbridge/natsembed"
)

func start(t *testing.T, o natsembed.Options) *server.Server {
	t.Helper()
	s, err := natsembed.Start(o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func TestStart(t *testing.T) {
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}()
	tests := []struct {
		name    string
		o       natsembed.Options
		connect []natsgo.Option
		refused []natsgo.Option // connecting with these must fail
	}{
		{"plain", natsembed.Options{}, nil, nil},
		{"fixed port", natsembed.Options{Port: free}, nil, nil},
		{"jetstream", natsembed.Options{JetStream: true, StoreDir: t.TempDir()}, nil, nil},
		{"token", natsembed.Options{Token: "tok"}, []natsgo.Option{natsgo.Token("tok")}, []natsgo.Option{natsgo.Token("bad")}},
		{"users", natsembed.Options{Users: map[string]string{"a": "pw"}}, []natsgo.Option{natsgo.UserInfo("a", "pw")}, []natsgo.Option{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.o)
			if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") {
				t.Errorf("ClientURL = %q, want a loopback URL", s.ClientURL())
			}
			if tc.o.Port != 0 && s.Addr().(*net.TCPAddr).Port != tc.o.Port {
				t.Errorf("listening on %v, want port %d", s.Addr(), tc.o.Port)
			}
			if s.JetStreamEnabled() != tc.o.JetStream {
				t.Errorf("JetStreamEnabled = %v, want %v", s.JetStreamEnabled(), tc.o.JetStream)
			}
			nc, err := natsgo.Connect(s.ClientURL(), tc.connect...)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			nc.Close()
			if tc.refused != nil {
				if nc, err := natsgo.Connect(s.ClientURL(), tc.refused...); err == nil {
					nc.Close()
					t.Error("connect with wrong credentials succeeded")
				} else if !errors.Is(err, natsgo.ErrAuthorization) {
					t.Errorf("connect with wrong credentials: %v, want an authorization violation", err)
				}
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		o    natsembed.Options
		want string
	}{
		{"jetstream without store", natsembed.Options{JetStream: true}, "JetStream needs a StoreDir"},
		{"token and users", natsembed.Options{Token: "t", Users: map[string]string{"a": "b"}}, "Token cannot be combined"},
		{"negative port", natsembed.Options{Port: -1}, "port -1 out of range"},
		{"port too large", natsembed.Options{Port: 70000}, "port 70000 out of range"},
		{"busy port", natsembed.Options{Port: busy.Addr().(*net.TCPAddr).Port}, "is not free"},
		{"bad server options", natsembed.Options{Configure: func(o *server.Options) { o.ServerName = "bad name" }}, "create server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := natsembed.Start(tc.o)
			if err == nil {
				s.Shutdown()
				t.Fatalf("Start succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start error %q lacks %q", err, tc.want)
			}
		})
	}
}
