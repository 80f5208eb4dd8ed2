package plugchoice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// APIError is an error answer of the API (any status other than 2xx), built from the
// JSON body's `message` and, for 422, its `errors` map of field -> messages.
type APIError struct {
	StatusCode int
	Message    string
	Errors     map[string][]string
	// RetryAfter is the server-given delay (429, 503), 0 when none was given.
	RetryAfter time.Duration
}

// Error reads like "plugchoice API: 401 Unauthenticated."; a 422 lists its field
// messages.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("plugchoice API: ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if msg != "" {
		b.WriteByte(' ')
		b.WriteString(msg)
	}
	if len(e.Errors) > 0 {
		fields := make([]string, 0, len(e.Errors))
		for f := range e.Errors {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		b.WriteString(" (")
		for i, f := range fields {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(f)
			b.WriteString(": ")
			b.WriteString(strings.Join(e.Errors[f], " "))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// maxSnippet bounds how much of a non-JSON error body goes into an error.
const maxSnippet = 200

// newAPIError builds the error for an answer with status code, reading the API's JSON
// error body. A non-JSON body gives a message with its first 200 bytes. secret (the
// token) is cut out of anything taken from the body.
func newAPIError(code int, body []byte, secret string) *APIError {
	e := &APIError{StatusCode: code}
	var jb struct {
		Message *string             `json:"message"`
		Errors  map[string][]string `json:"errors"`
	}
	if err := json.Unmarshal(body, &jb); err == nil && (jb.Message != nil || jb.Errors != nil) {
		if jb.Message != nil {
			e.Message = redact(*jb.Message, secret)
		}
		if len(jb.Errors) > 0 {
			e.Errors = make(map[string][]string, len(jb.Errors))
			for f, msgs := range jb.Errors {
				red := make([]string, len(msgs))
				for i, m := range msgs {
					red[i] = redact(m, secret)
				}
				e.Errors[redact(f, secret)] = red
			}
		}
		return e
	}
	text := http.StatusText(code)
	if text == "" {
		text = "unexpected status"
	}
	s := strings.TrimSpace(string(body))
	if s == "" {
		e.Message = text + " (empty body)"
		return e
	}
	if len(s) > maxSnippet {
		s = strings.ToValidUTF8(s[:maxSnippet], "") + "..."
	}
	e.Message = fmt.Sprintf("%s (non-JSON body: %q)", text, redact(s, secret))
	return e
}

func redact(s, secret string) string {
	if secret == "" || !strings.Contains(s, secret) {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

// IsAuth reports whether err is the API refusing the token (401 or 403).
func IsAuth(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden)
}

// IsRetryable reports whether a later attempt may succeed: 429, 408 and 5xx answers,
// timeouts and connection errors. Other 4xx answers, undecodable pages and a cancelled
// context are not.
func IsRetryable(err error) bool {
	switch Kind(err) {
	case "rate_limited", "server", "timeout", "network":
		return true
	}
	return false
}

// Kind classifies err into a short bounded label for logs, metrics and the bridge's
// poll_failing event: "auth" (401, 403), "rate_limited" (429), "server" (5xx, 408),
// "client" (other answers, or a bad argument: nothing was sent), "decode" (a body that is not a valid page), "timeout",
// "network" (connection errors), "canceled" (the caller's context was cancelled). It
// returns "" for nil.
func Kind(err error) string {
	if err == nil {
		return ""
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden:
			return "auth"
		case ae.StatusCode == http.StatusTooManyRequests:
			return "rate_limited"
		case ae.StatusCode >= 500 || ae.StatusCode == http.StatusRequestTimeout:
			return "server"
		default:
			return "client"
		}
	}
	var de *DecodeError
	if errors.As(err, &de) {
		return "decode"
	}
	var ie *inputError
	if errors.As(err, &ie) {
		return "client"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "network"
}
