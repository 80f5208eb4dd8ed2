package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
)

// Check opens a TCP connection to the sink's host (through the environment's proxy when
// one applies to the URL), and for https completes a verified TLS handshake with the
// endpoint. It sends no HTTP request. detail is a short line for the `check` table.
func (s *Sink) Check(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	addr := hostPort(s.url.Scheme, s.url.Hostname(), s.url.Port())
	if s.transport.Proxy != nil {
		pu, err := s.transport.Proxy(&http.Request{URL: s.url})
		if err != nil {
			return "", fmt.Errorf("webhook %s: check %s: proxy settings: %s", s.name, s.safeURL, redact(err.Error(), s.url))
		}
		if pu != nil {
			paddr := hostPort(pu.Scheme, pu.Hostname(), pu.Port())
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", paddr)
			if err != nil {
				return "", fmt.Errorf("webhook %s: check %s: connect to proxy %s: %w", s.name, s.safeURL, paddr, err)
			}
			_ = conn.Close()
			return fmt.Sprintf("proxy %s reachable (endpoint %s not checked through the proxy)", paddr, s.safeURL), nil
		}
	}

	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("webhook %s: check %s: connect: %w", s.name, s.safeURL, err)
	}
	defer conn.Close()
	if s.url.Scheme != "https" {
		return fmt.Sprintf("connected to %s (%s)", addr, conn.RemoteAddr()), nil
	}
	conf := s.tlsConfig.Clone()
	conf.ServerName = s.url.Hostname()
	tc := tls.Client(conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return "", fmt.Errorf("webhook %s: check %s: TLS handshake: %w", s.name, s.safeURL, err)
	}
	st := tc.ConnectionState()
	_ = tc.Close()
	return fmt.Sprintf("connected to %s (%s, %s)", addr, conn.RemoteAddr(), tls.VersionName(st.Version)), nil
}

func hostPort(scheme, host, port string) string {
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(host, port)
}
