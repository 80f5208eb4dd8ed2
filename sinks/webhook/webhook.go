// Package webhook is the HTTP webhook sink: it POSTs each event's CloudEvent JSON to one
// URL, signed per Standard Webhooks (https://www.standardwebhooks.com), and classifies the
// outcome for the dispatcher (delivered, retryable with an optional Retry-After, or
// permanent). It also provides a verifying receiver (NewReceiver) for the demo and for
// end-to-end tests.
//
// Nothing this package returns or logs contains a secret: error messages name the
// endpoint without its userinfo and query string, and never carry signing keys or the
// values of the extra headers.
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/retryafter"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/template"
)

// Defaults for Options fields left zero.
const (
	DefaultName        = "webhook"
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 4
	DefaultUserAgent   = "exportbridge"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// bodyExcerptLimit is how much of an error response's body goes into the error message.
const bodyExcerptLimit = 1024

// drainLimit bounds how much of a response body is read (and discarded) so that the
// connection can be reused; a larger body makes the transport close the connection.
const drainLimit = 256 << 10

// Options configures one webhook sink (one URL).
type Options struct {
	Name        string        // "webhook" or "webhook-N"; default "webhook"
	URL         string        // http or https URL the events are POSTed to
	Secrets     [][]byte      // decoded signing keys (config decodes whsec_...); empty = unsigned
	Headers     [][2]string   // extra headers in the configured order
	Timeout     time.Duration // per request; default 10s
	CAFile      string        // extra CA (PEM) added to the system pool; TLS verify always on
	Concurrency int           // sizes the Transport (MaxConnsPerHost/MaxIdleConnsPerHost); default 4
	UserAgent   string        // "exportbridge/<version>"; default "exportbridge"
	Now         func() time.Time
	// Payload, when set, is sent instead of the CloudEvent (the `body` or `body_text`
	// template), with the CloudEvent attributes in ce-* headers (binary mode).
	Payload *template.Payload
}

// Sink delivers events to one webhook URL. It is safe for concurrent use.
type Sink struct {
	name      string
	url       *url.URL
	safeURL   string // scheme://host/path: no userinfo, no query, no fragment
	secrets   [][]byte
	headers   [][2]string
	timeout   time.Duration
	userAgent string
	now       func() time.Time
	tlsConfig *tls.Config
	transport *http.Transport
	client    *http.Client
	payload   *template.Payload
	signers   []*signer
	urlString string
	// static are the headers every request carries (the content type, the User-Agent,
	// the extra headers), set once; their value slices are shared by every request and
	// never written.
	static    http.Header
	basicAuth []string // Authorization from the URL's userinfo (nil: none)
}

var _ interface {
	sinks.Sink
	sinks.Closer
	sinks.Checker
} = (*Sink)(nil)

// NewSink validates o and builds the sink with its own HTTP client. It fails on a URL that
// is not http(s), an unreadable or empty CA file, an empty signing key, an invalid or
// reserved extra header, or a negative timeout or concurrency.
func NewSink(o Options) (*Sink, error) {
	name := o.Name
	if name == "" {
		name = DefaultName
	}
	u, safe, err := parseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook sink %s: %w", name, err)
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("webhook sink %s: timeout %s is negative (expected a positive duration such as 10s)", name, o.Timeout)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if o.Concurrency < 0 {
		return nil, fmt.Errorf("webhook sink %s: concurrency %d is negative (expected a positive number)", name, o.Concurrency)
	}
	conc := o.Concurrency
	if conc == 0 {
		conc = DefaultConcurrency
	}
	secrets := make([][]byte, 0, len(o.Secrets))
	for i, k := range o.Secrets {
		if len(k) == 0 {
			return nil, fmt.Errorf("webhook sink %s: signing secret #%d is empty (expected whsec_ followed by a non-empty base64 key)", name, i+1)
		}
		secrets = append(secrets, bytes.Clone(k))
	}
	headers, err := checkHeaders(o.Headers)
	if err != nil {
		return nil, fmt.Errorf("webhook sink %s: %w", name, err)
	}
	tlsConf, err := newTLSConfig(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("webhook sink %s: %w", name, err)
	}
	ua := o.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}

	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          conc,
		MaxIdleConnsPerHost:   conc,
		MaxConnsPerHost:       conc,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// No ResponseHeaderTimeout: Deliver's context bounds the whole request (dial,
		// write, headers and body) by timeout already, and a second timer per request
		// is cost without effect.
	}
	s := &Sink{
		name:      name,
		url:       u,
		safeURL:   safe,
		secrets:   secrets,
		headers:   headers,
		timeout:   timeout,
		userAgent: ua,
		now:       now,
		tlsConfig: tlsConf,
		transport: tr,
		payload:   o.Payload,
	}
	s.client = &http.Client{
		Transport: tr,
		// Redirects are never followed: a 3xx is reported as a permanent error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, k := range secrets {
		s.signers = append(s.signers, newSigner(k))
	}
	s.urlString = u.String()
	s.static = s.staticHeaders()
	s.basicAuth = basicAuth(u)
	return s, nil
}

// staticHeaders are the headers that do not depend on the event or the attempt, in the
// order of precedence of setHeaders: the content type, the User-Agent, then the extra
// headers (the first occurrence of a name replaces a default, later ones add values).
func (s *Sink) staticHeaders() http.Header {
	h := http.Header{}
	ct := event.ContentType
	if s.payload != nil {
		ct = s.payload.ContentType()
	}
	h.Set("Content-Type", ct)
	h.Set("User-Agent", s.userAgent)
	seen := make(map[string]bool, len(s.headers))
	for _, kv := range s.headers {
		k := http.CanonicalHeaderKey(kv[0])
		if seen[k] {
			h.Add(k, kv[1])
		} else {
			h.Set(k, kv[1]) // the first occurrence replaces a default (User-Agent)
			seen[k] = true
		}
	}
	return h
}

// basicAuth is the Authorization header of the URL's userinfo (nil without one), sent
// unless an extra header sets Authorization, as http.Client does. It is added at
// delivery, not in the headers Preview shows.
func basicAuth(u *url.URL) []string {
	if u.User == nil {
		return nil
	}
	p, _ := u.User.Password()
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(u.User.Username(), p)
	return r.Header["Authorization"]
}

// Name returns the sink name ("webhook" or "webhook-N").
func (s *Sink) Name() string { return s.name }

// Close closes idle connections. The sink remains usable.
func (s *Sink) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// Deliver POSTs e.Body to the sink's URL, signed with a timestamp of this attempt.
// It returns nil on a 2xx answer. Network errors, timeouts, 408, 425, 429 and 5xx are
// retryable (with sinks.RetryAfter when the answer carries Retry-After); every other
// answer, including a redirect, is sinks.Permanent. Errors carry the status code and the
// first 1 KiB of the response body.
func (s *Sink) Deliver(ctx context.Context, e event.Event) error {
	if len(e.Body) == 0 {
		return sinks.Permanent(fmt.Errorf("webhook %s: event %q has no body to send", s.name, e.ID))
	}
	if e.ID == "" {
		return sinks.Permanent(fmt.Errorf("webhook %s: event has no id (the webhook-id header needs one)", s.name))
	}
	body, h, err := s.message(e)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.urlString, bytes.NewReader(body))
	if err != nil {
		// The URL was validated in New; this cannot depend on the event.
		return sinks.Permanent(fmt.Errorf("webhook %s: build request for POST %s: %s", s.name, s.safeURL, redact(err.Error(), s.url)))
	}
	req.Header = h
	if s.basicAuth != nil && h["Authorization"] == nil {
		h["Authorization"] = s.basicAuth
	}

	// The transport directly, not the client: the client would only copy the headers
	// for redirects, which are never followed (a 3xx comes back as it is, as with
	// http.ErrUseLastResponse), and set Authorization from the URL (basicAuth does).
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return s.transportError(ctx, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		drain(resp.Body)
		return nil
	}
	excerpt := redact(readExcerpt(resp.Body), s.url) // a receiver may echo the URL
	drain(resp.Body)
	return s.statusError(resp, excerpt)
}

// message is what one attempt sends for e: the body (the CloudEvent, or the rendered
// template) and the headers, signed over exactly that body. A template that cannot
// render this event is a permanent error: it would fail the same way on every retry.
func (s *Sink) message(e event.Event) ([]byte, http.Header, error) {
	if s.payload == nil {
		return e.Body, s.setHeaders(e.ID, e.Body, nil), nil
	}
	body, ce, err := s.payload.Render(e)
	if err != nil {
		return nil, nil, sinks.Permanent(fmt.Errorf("webhook %s: event %s: template %w", s.name, e.ID, err))
	}
	return body, s.setHeaders(e.ID, body, ce), nil
}

// Preview returns the body and headers Deliver would send for e now, without sending
// (`exportbridge template render`).
func (s *Sink) Preview(e event.Event) (http.Header, []byte, error) {
	body, h, err := s.message(e)
	return h.Clone(), body, err // a copy: the static values are shared by every request
}

// setHeaders returns the headers of one attempt: the static ones (content type,
// User-Agent, extra headers), the CloudEvents attributes of a templated body (ce), and
// the Standard Webhooks headers of this attempt, signed over exactly body.
func (s *Sink) setHeaders(id string, body []byte, ce [][2]string) http.Header {
	h := make(http.Header, len(s.static)+len(ce)+3)
	for k, v := range s.static {
		h[k] = v
	}
	ts := s.now().Unix()
	// One allocation for the value slices of the ce-* headers, the id, the timestamp
	// and the signatures.
	vals := make([]string, len(ce)+3)
	for i, kv := range ce {
		vals[3+i] = kv[1]
		h[kv[0]] = vals[3+i : 4+i : 4+i] // lower-case as the binding writes them
	}
	vals[0], vals[1] = id, strconv.FormatInt(ts, 10)
	h[HeaderID], h[HeaderTimestamp] = vals[0:1:1], vals[1:2:2]
	if len(s.signers) > 0 {
		sig := make([]byte, 0, len(s.signers)*48)
		for i, sg := range s.signers {
			if i > 0 {
				sig = append(sig, ' ')
			}
			sig = sg.appendSign(sig, id, ts, body)
		}
		vals[2] = string(sig)
		h[HeaderSignature] = vals[2:3:3]
	}
	return h
}

// transportError classifies an error from Client.Do: always retryable (the event stays
// queued), with the endpoint named without its query string or userinfo.
func (s *Sink) transportError(parent context.Context, err error) error {
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err // url.Error's message repeats the whole URL
	}
	msg := redact(inner.Error(), s.url)
	switch {
	case parent.Err() != nil:
		// Shutdown or the dispatcher gave up on this attempt: not the endpoint's fault.
		return &safeError{msg: fmt.Sprintf("webhook %s: POST %s abandoned: %s", s.name, s.safeURL, redact(parent.Err().Error(), s.url)), err: parent.Err()}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &safeError{msg: fmt.Sprintf("webhook %s: POST %s timed out after %s: %s", s.name, s.safeURL, s.timeout, msg), err: inner}
	default:
		return &safeError{msg: fmt.Sprintf("webhook %s: POST %s: %s", s.name, s.safeURL, msg), err: inner}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusError classifies a non-2xx answer.
func (s *Sink) statusError(resp *http.Response, excerpt string) error {
	code := resp.StatusCode
	status := fmt.Sprintf("HTTP %d", code)
	if t := http.StatusText(code); t != "" {
		status += " " + t
	}
	bodyPart := ""
	if excerpt != "" {
		bodyPart = ": body: " + excerpt
	}
	switch {
	case code >= 300 && code < 400:
		target := "(no Location header)"
		if loc := resp.Header.Get("Location"); loc != "" {
			target = safeLocation(s.url, loc)
		}
		return sinks.Permanent(sinks.Errorf(code, "webhook %s: POST %s: %s: redirect to %s not followed; configure the final URL%s",
			s.name, s.safeURL, status, target, bodyPart))
	case retryableStatus(code):
		err := sinks.Errorf(code, "webhook %s: POST %s: %s%s", s.name, s.safeURL, status, bodyPart)
		if d, ok := retryafter.Parse(resp.Header.Get("Retry-After"), s.now()); ok && d > 0 {
			return sinks.RetryAfter(err, d)
		}
		return err
	default:
		return sinks.Permanent(sinks.Errorf(code, "webhook %s: POST %s: %s%s", s.name, s.safeURL, status, bodyPart))
	}
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return code >= 500 && code < 600
}

// readExcerpt reads up to bodyExcerptLimit bytes of r and returns them as one line of
// valid UTF-8 (control characters become spaces), marked when the body was longer.
func readExcerpt(r io.Reader) string {
	buf, _ := io.ReadAll(io.LimitReader(r, bodyExcerptLimit+1))
	truncated := len(buf) > bodyExcerptLimit
	if truncated {
		buf = buf[:bodyExcerptLimit]
		// Do not cut a rune in half: drop an incomplete trailing rune.
		for i := len(buf) - 1; i >= 0 && i >= len(buf)-utf8.UTFMax; i-- {
			if utf8.RuneStart(buf[i]) {
				if !utf8.FullRune(buf[i:]) {
					buf = buf[:i]
				}
				break
			}
		}
	}
	s := strings.ToValidUTF8(string(buf), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if truncated {
		s += " …(truncated)"
	}
	return s
}

// drain discards what is left of a body (bounded) so the connection can be reused.
func drain(r io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, drainLimit))
}

// parseURL validates a webhook URL and returns it with a printable form that has no
// userinfo, query string or fragment.
func parseURL(raw string) (*url.URL, string, error) {
	const want = "expected an absolute http:// or https:// URL such as https://example.com/hooks/plugchoice"
	if strings.TrimSpace(raw) == "" {
		return nil, "", fmt.Errorf("webhook URL is empty (%s)", want)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error repeats the whole URL, which may hold a secret: not shown.
		return nil, "", fmt.Errorf("webhook URL cannot be parsed (%s)", want)
	}
	safe := safeString(u)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", fmt.Errorf("webhook URL %s has scheme %q (%s)", safe, u.Scheme, want)
	}
	if u.Hostname() == "" {
		return nil, "", fmt.Errorf("webhook URL %s has no host (%s)", safe, want)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, "", fmt.Errorf("webhook URL %s has port %q (expected 1-65535)", safe, p)
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u, safe, nil
}

// safeString renders u without userinfo, query string and fragment.
func safeString(u *url.URL) string { return logging.SafeURL(u.String(), false) }

// safeLocation resolves a redirect target against base and renders it without userinfo,
// query string and fragment.
func safeLocation(base *url.URL, loc string) string {
	lu, err := url.Parse(loc)
	if err != nil {
		if i := strings.IndexAny(loc, "?#"); i >= 0 {
			loc = loc[:i]
		}
		if i := strings.Index(loc, "@"); i >= 0 {
			loc = loc[i+1:]
		}
		return strconv.Quote(loc)
	}
	return safeString(base.ResolveReference(lu))
}

// redact removes u's query string, userinfo and path tokens from msg, in case a lower layer or the
// receiver quoted them. Longer strings go first; a user name shorter than 4 bytes is left
// alone (not a secret, and replacing it would garble the message).
func redact(msg string, u *url.URL) string {
	olds := logging.PathSecrets(u.Path)
	if u.RawQuery != "" {
		olds = append(olds, u.RawQuery)
		if q, err := url.QueryUnescape(u.RawQuery); err == nil && q != u.RawQuery {
			olds = append(olds, q)
		}
	}
	if u.User != nil {
		olds = append(olds, u.User.String())
		if p, ok := u.User.Password(); ok && p != "" {
			olds = append(olds, p)
		}
		if n := u.User.Username(); len(n) >= 4 {
			olds = append(olds, n)
		}
	}
	sort.Slice(olds, func(i, j int) bool { return len(olds[i]) > len(olds[j]) })
	for _, o := range olds {
		msg = strings.ReplaceAll(msg, o, "REDACTED")
	}
	return msg
}

// safeError is an error whose message has been scrubbed of secrets; it still unwraps to
// the underlying error so callers can test it with errors.Is/As.
type safeError struct {
	msg string
	err error
}

func (e *safeError) Error() string { return e.msg }
func (e *safeError) Unwrap() error { return e.err }

// reservedHeaders may not be set through the extra headers: the sink owns them.
var reservedHeaders = map[string]bool{
	"Content-Type":      true,
	"Content-Length":    true,
	"Transfer-Encoding": true,
	"Connection":        true,
	"Host":              true,
	"Webhook-Id":        true,
	"Webhook-Timestamp": true,
	"Webhook-Signature": true,
}

// checkHeaders validates extra headers. Messages name the header, never its value (a
// value may be a credential).
func checkHeaders(hs [][2]string) ([][2]string, error) {
	out := make([][2]string, 0, len(hs))
	for i, kv := range hs {
		name, value := strings.TrimSpace(kv[0]), strings.TrimSpace(kv[1])
		if name == "" {
			return nil, fmt.Errorf("extra header #%d has an empty name (expected Name:value)", i+1)
		}
		if !validToken(name) {
			return nil, fmt.Errorf("extra header #%d name %q is not a valid HTTP header name (expected letters, digits and !#$%%&'*+-.^_`|~)", i+1, name)
		}
		if reservedHeaders[http.CanonicalHeaderKey(name)] {
			return nil, fmt.Errorf("extra header %q is set by the webhook sink itself and cannot be overridden", name)
		}
		for _, r := range value {
			if r == '\r' || r == '\n' || r == 0 {
				return nil, fmt.Errorf("extra header %q has a value with a line break or NUL byte (expected a single line)", name)
			}
		}
		out = append(out, [2]string{name, value})
	}
	return out, nil
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// newTLSConfig returns the client TLS settings: verification always on, TLS 1.2 at
// least, the system roots plus the CA file when one is given.
func newTLSConfig(caFile string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read webhook CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("webhook CA file %s holds no PEM certificate (expected one or more -----BEGIN CERTIFICATE----- blocks)", caFile)
	}
	conf.RootCAs = pool
	return conf, nil
}
