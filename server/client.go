package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AdminClient calls a running bridge's admin endpoint; the CLI uses it for `dlq` and
// `state` when the store is locked by that bridge.
type AdminClient struct {
	// BaseURL is the endpoint's root, "http://127.0.0.1:9091" (see AdminBaseURL).
	BaseURL string
	// Token is sent as "Authorization: Bearer <Token>" when set.
	Token string
	// HTTP is the client to use; nil: a client with a 30s timeout.
	HTTP *http.Client
}

// StatusError is an error answer of the admin endpoint.
type StatusError struct {
	StatusCode int
	Message    string // the endpoint's {"error"} message, or the start of its body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("admin endpoint answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

var defaultAdminHTTP = &http.Client{Timeout: 30 * time.Second}

// State returns the store statistics of the running bridge.
func (c *AdminClient) State(ctx context.Context) (State, error) {
	var st State
	if err := c.do(ctx, http.MethodGet, "/v1/state", nil, nil, &st); err != nil {
		return State{}, fmt.Errorf("admin state: %w", err)
	}
	return st, nil
}

// DeadLetters lists the dead letters of sink ("" = every sink).
func (c *AdminClient) DeadLetters(ctx context.Context, sink string) ([]DeadLetter, error) {
	var q url.Values
	if sink != "" {
		q = url.Values{"sink": {sink}}
	}
	var resp DeadLettersResponse
	if err := c.do(ctx, http.MethodGet, "/v1/dlq", q, nil, &resp); err != nil {
		return nil, fmt.Errorf("admin dlq list: %w", err)
	}
	return resp.DeadLetters, nil
}

// Replay moves dead letters (ids, or all of them) of sink ("" = every sink) back to
// their outbox queue and returns how many moved.
func (c *AdminClient) Replay(ctx context.Context, sink string, ids []string, all bool) (int, error) {
	var resp CountResponse
	if err := c.do(ctx, http.MethodPost, "/v1/dlq/replay", nil, DLQRequest{Sink: sink, IDs: ids, All: all}, &resp); err != nil {
		return 0, fmt.Errorf("admin dlq replay: %w", err)
	}
	return resp.Count, nil
}

// Purge deletes dead letters (ids, or all of them) of sink ("" = every sink) and returns
// how many were deleted.
func (c *AdminClient) Purge(ctx context.Context, sink string, ids []string, all bool) (int, error) {
	var resp CountResponse
	if err := c.do(ctx, http.MethodPost, "/v1/dlq/purge", nil, DLQRequest{Sink: sink, IDs: ids, All: all}, &resp); err != nil {
		return 0, fmt.Errorf("admin dlq purge: %w", err)
	}
	return resp.Count, nil
}

func (c *AdminClient) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	base, err := url.Parse(c.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("admin base URL %q: expected http://host:port", c.BaseURL)
	}
	u := base.JoinPath(path)
	u.RawQuery = q.Encode()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultAdminHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach admin endpoint %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, u.Redacted(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{StatusCode: resp.StatusCode}
		var er ErrorResponse
		if json.Unmarshal(data, &er) == nil && er.Error != "" {
			se.Message = er.Error
		} else {
			se.Message = snippet(data)
		}
		return se
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s (expected JSON): %w", method, u.Redacted(), err)
	}
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// AdminBaseURL turns a listen address (EXPORTBRIDGE_ADMIN_ADDR, "127.0.0.1:9091",
// ":9091", "[::]:9091") into the base URL a local client reaches it at; an unspecified
// host becomes the loopback address.
func AdminBaseURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("admin address %q: expected host:port such as 127.0.0.1:9091", addr)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
