package slack

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/retryafter"
)

// retryAfterTransport rewrites an HTTP-date Retry-After on a 429 into seconds, the only
// form slack-go understands (it would otherwise surface a bare *strconv.NumError and lose
// the delay).
type retryAfterTransport struct {
	base http.RoundTripper
	now  func() time.Time
}

func (t retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		ra := resp.Header.Get("Retry-After")
		if d, ok := retryafter.Parse(ra, t.now()); ok {
			if _, isSeconds := strconv.ParseInt(strings.TrimSpace(ra), 10, 64); isSeconds != nil {
				resp.Header.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
			}
		}
	}
	return resp, nil
}

// hookResponse is what an incoming webhook answered: slack-go keeps only the status.
type hookResponse struct {
	status int
	body   string // Slack's error code ("no_service"), when the body was one
}

// captureTransport records the status and, on failure, the error code in the body.
type captureTransport struct {
	base http.RoundTripper
	out  *hookResponse
}

func (t captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.out.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		t.out.body = errorCode(b)
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	}
	return resp, nil
}

// errorCode returns b when it looks like one of Slack's error codes ("no_service"), else
// "": an arbitrary body (an HTML page from a proxy) is not echoed into errors.
func errorCode(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" || len(s) > 64 {
		return ""
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' {
			return ""
		}
	}
	return s
}
