package plugchoice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/retryafter"
)

// Defaults of Options.
const (
	DefaultBaseURL      = "https://app.plugchoice.com/api/v3"
	DefaultTimeout      = 20 * time.Second
	DefaultMaxRetries   = 4
	DefaultMaxRetryWait = 2 * time.Minute
	DefaultRetryInitial = 500 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	DefaultMaxPages     = 100_000
	DefaultUserAgent    = "exportbridge"
)

// maxBody bounds one response body (a page of 100 exports is about 60 kB).
const maxBody = 32 << 20

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// BaseURL is the API base, e.g. https://app.plugchoice.com/api/v3 (absolute http or
	// https, no query). Required.
	BaseURL string
	// Token is the bearer token. It is sent only to BaseURL's host and never logged.
	Token string
	// HTTPClient is used for requests (a copy of it: redirects to another host are
	// refused when it has no CheckRedirect of its own). Default: a new client.
	HTTPClient *http.Client
	// Timeout bounds one HTTP request, body included. Default 20s.
	Timeout time.Duration
	// UserAgent is sent with every request. Default "exportbridge".
	UserAgent string
	// MaxRetries bounds the retries of one page (429, 408, 5xx, timeouts, connection
	// errors). Default 4; negative: no retries.
	MaxRetries int
	// MaxRetryWait caps one Retry-After wait. Default 2m.
	MaxRetryWait time.Duration
	// RetryInitial is the first backoff interval (exponential, with jitter). Default 500ms.
	RetryInitial time.Duration
	// RetryMaxInterval caps one backoff interval. Default 30s.
	RetryMaxInterval time.Duration
	// MaxPages stops List with an error after this many pages. Default 100,000.
	MaxPages int
	// Budget paces requests; nil: no pacing.
	Budget *Budget
	// Metrics records requests; nil records nothing.
	Metrics *metrics.Metrics
	// Logger receives retry warnings and debug lines; nil: discard.
	Logger *slog.Logger
}

// Client lists exports. It is safe for concurrent use.
type Client struct {
	endpoint     string // base URL + "/exports", no query
	host         string // scheme://host of the base URL
	token        string
	hc           *http.Client
	timeout      time.Duration
	userAgent    string
	maxRetries   int
	maxRetryWait time.Duration
	retryInitial time.Duration
	retryMax     time.Duration
	maxPages     int
	budget       *Budget
	metrics      *metrics.Metrics
	log          *slog.Logger

	requests atomic.Int64

	rlMu        sync.Mutex
	rlLimit     int
	rlRemaining int
	rlOK        bool

	// holdMu guards notBefore: the time before which no request of this client (of its
	// token) may be sent, pushed forward by every 429 and 503 that carries a Retry-After.
	holdMu    sync.Mutex
	notBefore time.Time
}

// inputError is a bad argument: nothing was sent.
type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// New validates o and returns a Client.
func New(o Options) (*Client, error) {
	if strings.TrimSpace(o.BaseURL) == "" {
		return nil, errors.New("plugchoice: base URL is empty (expected an absolute http or https URL such as " + DefaultBaseURL + ")")
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("plugchoice: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("plugchoice: base URL %q is not an absolute http or https URL (expected e.g. %s)", u.Redacted(), DefaultBaseURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("plugchoice: base URL %q must not contain user credentials (use the token)", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("plugchoice: base URL %q must not have a query or fragment", u.Redacted())
	}
	if o.MaxRetryWait < 0 || o.Timeout < 0 || o.RetryInitial < 0 || o.RetryMaxInterval < 0 || o.MaxPages < 0 {
		return nil, errors.New("plugchoice: negative timeout, retry wait, retry interval or max pages (expected 0 for the default, or a positive value)")
	}
	c := &Client{
		endpoint:     strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/") + "/exports",
		host:         u.Scheme + "://" + u.Host,
		token:        o.Token,
		timeout:      def(o.Timeout, DefaultTimeout),
		userAgent:    o.UserAgent,
		maxRetries:   o.MaxRetries,
		maxRetryWait: def(o.MaxRetryWait, DefaultMaxRetryWait),
		retryInitial: def(o.RetryInitial, DefaultRetryInitial),
		retryMax:     def(o.RetryMaxInterval, DefaultRetryMax),
		maxPages:     def(o.MaxPages, DefaultMaxPages),
		budget:       o.Budget,
		metrics:      o.Metrics,
		log:          o.Logger,
	}
	switch {
	case o.MaxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case o.MaxRetries < 0:
		c.maxRetries = 0
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	hc := &http.Client{}
	if o.HTTPClient != nil {
		cp := *o.HTTPClient
		hc = &cp
	}
	if hc.CheckRedirect == nil {
		hc.CheckRedirect = c.sameHostOnly
	}
	c.hc = hc
	return c, nil
}

func def[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// sameHostOnly refuses redirects away from the base URL's scheme and host: the token
// is never sent anywhere else.
func (c *Client) sameHostOnly(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme+"://"+req.URL.Host != c.host || len(via) >= 10 {
		return http.ErrUseLastResponse
	}
	return nil
}

// Endpoint returns the exports URL (base URL + "/exports").
func (c *Client) Endpoint() string { return c.endpoint }

// Requests returns the number of HTTP requests made so far, retries included.
func (c *Client) Requests() int64 { return c.requests.Load() }

// RateLimit returns the last X-RateLimit-Limit and X-RateLimit-Remaining seen; ok is
// false until a response carried them.
func (c *Client) RateLimit() (limit, remaining int, ok bool) {
	c.rlMu.Lock()
	defer c.rlMu.Unlock()
	return c.rlLimit, c.rlRemaining, c.rlOK
}

// NotBefore returns the time before which the client sends no request: the end of the
// last Retry-After (429 or 503) it was given, capped by MaxRetryWait. It is in the past
// (or zero) when requests may go.
func (c *Client) NotBefore() time.Time {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	return c.notBefore
}

// hold pushes the not-before time to now + d (never back). The first push of a
// rate-limited period (the previous one had passed) is logged; later pushes of the same
// period are not, however many requests run into them.
func (c *Client) hold(code int, d time.Duration) {
	if d <= 0 {
		return
	}
	now := time.Now()
	until := now.Add(d)
	c.holdMu.Lock()
	if !until.After(c.notBefore) {
		c.holdMu.Unlock()
		return
	}
	fresh := !c.notBefore.After(now)
	c.notBefore = until
	c.holdMu.Unlock()
	c.metrics.RetryAfterUntil(until)
	if fresh {
		c.log.Warn("plugchoice API asked to wait (Retry-After); holding every request of this token until then",
			"status", code, "retry_after", d.String(), "until", until.UTC().Format(time.RFC3339Nano))
	}
}

// waitHold blocks until the not-before time has passed (it may move on while waiting),
// or ctx is done.
func (c *Client) waitHold(ctx context.Context) error {
	for {
		until := c.NotBefore()
		d := time.Until(until)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for the API's Retry-After (until %s): %w", until.UTC().Format(time.RFC3339), ctx.Err())
		case <-t.C:
		}
	}
}

// Query selects exports. Its zero value lists everything.
type Query struct {
	Statuses    []string // filter[status][]
	Types       []string // filter[type][]
	SubjectType string   // filter[subject_type]
	SubjectID   string   // filter[subject_id], an integer
	PerPage     int      // per_page, sent only when > 0
}

// Validate checks q: no empty filter values, an integer subject id, no negative page size.
func (q Query) Validate() error {
	for i, s := range q.Statuses {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("query: status filter %d is empty (expected a status such as pending)", i+1)
		}
	}
	for i, t := range q.Types {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("query: type filter %d is empty (expected an export type)", i+1)
		}
	}
	if q.SubjectID != "" {
		if _, err := strconv.ParseInt(q.SubjectID, 10, 64); err != nil {
			return fmt.Errorf("query: subject id %q is not an integer", q.SubjectID)
		}
	}
	if q.PerPage < 0 {
		return fmt.Errorf("query: per page %d is negative (expected 0 for the API's default, or a positive number)", q.PerPage)
	}
	return nil
}

// Encode returns the query string for page: repeated filter[status][]= and
// filter[type][]=, then filter[subject_type]=, filter[subject_id]=, per_page= (when > 0)
// and page=N, values escaped.
func (q Query) Encode(page int) string {
	var b strings.Builder
	add := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v))
	}
	for _, s := range q.Statuses {
		add("filter%5Bstatus%5D%5B%5D", s)
	}
	for _, t := range q.Types {
		add("filter%5Btype%5D%5B%5D", t)
	}
	if q.SubjectType != "" {
		add("filter%5Bsubject_type%5D", q.SubjectType)
	}
	if q.SubjectID != "" {
		add("filter%5Bsubject_id%5D", q.SubjectID)
	}
	if q.PerPage > 0 {
		add("per_page", strconv.Itoa(q.PerPage))
	}
	add("page", strconv.Itoa(page))
	return b.String()
}

// Listing is the result of List.
type Listing struct {
	// Exports in listing order, de-duplicated by uuid.
	Exports []Export
	// Complete is true when every page up to the last (links.next null) was read.
	Complete bool
	// Pages is the number of pages read.
	Pages int
}

// List reads pages 1..n of q, building every page's URL from q (links.next is never
// followed: its host and its query are ignored), until a page has links.next null.
// An export that appears twice (items shift between pages while the list changes)
// is kept once, in the position of its first appearance, with the later-read object.
// When a page fails after its retries, List returns what it read so far with
// Complete false, and the error ("list exports page 3: ...").
func (c *Client) List(ctx context.Context, q Query) (*Listing, error) {
	l := &Listing{}
	seen := make(map[string]int)
	pages, err := c.Each(ctx, q, func(_ int, exports []Export) error {
		for i := range exports {
			e := &exports[i]
			if j, ok := seen[e.UUID]; ok {
				l.Exports[j] = *e
				continue
			}
			seen[e.UUID] = len(l.Exports)
			l.Exports = append(l.Exports, *e)
		}
		return nil
	})
	l.Pages = pages
	l.Complete = err == nil
	return l, err
}

// Each pages through q like List, calling fn with each page's exports as it arrives
// instead of keeping them: a full listing of 100,000 exports then never holds more than
// one page. fn must not keep the slice (or the exports' Raw bytes) after it returns. An
// error from fn stops the listing and is returned as is. It returns the number of pages
// read; err is nil only when the listing completed (links.next was null).
func (c *Client) Each(ctx context.Context, q Query, fn func(page int, exports []Export) error) (pages int, err error) {
	if err := q.Validate(); err != nil {
		return 0, &inputError{fmt.Errorf("list exports: %w", err)}
	}
	for page := 1; ; page++ {
		if page > c.maxPages {
			return pages, fmt.Errorf("list exports: still a next page after %d pages, stopping (does the API ignore the page parameter?)", c.maxPages)
		}
		p, err := c.fetch(ctx, q, page)
		if err != nil {
			return pages, fmt.Errorf("list exports page %d: %w", page, err)
		}
		pages++
		if err := fn(page, p.Data); err != nil {
			return pages, err
		}
		if p.Links.Next == nil {
			return pages, nil
		}
	}
}

// ListPage fetches one page of q: GET {base}/exports?{query}&page=N with the bearer
// token. Before every attempt it waits until the client's not-before time (see
// NotBefore: a Retry-After holds every request of the token, whatever query, page or
// cycle it belongs to) and for the Budget. It retries 429 (after
// Retry-After, capped by MaxRetryWait, or the backoff when missing), 408, 5xx,
// timeouts and connection errors with exponential backoff and jitter, at most
// MaxRetries times. Other answers are returned at once as *APIError; a body that is not
// a valid page as *DecodeError. Cancelling ctx aborts at once. Errors start with
// "page N: ".
func (c *Client) ListPage(ctx context.Context, q Query, page int) (*Page, error) {
	if err := q.Validate(); err != nil {
		return nil, &inputError{fmt.Errorf("page %d: %w", page, err)}
	}
	p, err := c.fetch(ctx, q, page)
	if err != nil {
		return nil, fmt.Errorf("page %d: %w", page, err)
	}
	return p, nil
}

// retryAfterBackOff returns the server-given delay after an error that carried one,
// else the wrapped backoff's. The wrapped backoff is consulted every time, so its retry
// bound still counts.
type retryAfterBackOff struct {
	backoff.BackOff
	given time.Duration // set by the operation after each failed attempt
}

func (b *retryAfterBackOff) NextBackOff() time.Duration {
	d := b.BackOff.NextBackOff()
	if d != backoff.Stop && b.given > 0 {
		d = b.given
	}
	return d
}

func (c *Client) fetch(ctx context.Context, q Query, page int) (*Page, error) {
	if page < 1 {
		return nil, &inputError{fmt.Errorf("page number %d (expected 1 or more)", page)}
	}
	target := c.endpoint + "?" + q.Encode(page)
	exp := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.retryInitial),
		backoff.WithMaxInterval(c.retryMax),
		backoff.WithMaxElapsedTime(0),
	)
	ra := &retryAfterBackOff{BackOff: backoff.WithMaxRetries(exp, uint64(c.maxRetries))}
	b := backoff.WithContext(ra, ctx)
	attempt := 0
	var lastErr error
	op := func() (*Page, error) {
		if err := c.waitHold(ctx); err != nil {
			return nil, backoff.Permanent(err)
		}
		if c.budget != nil {
			if err := c.budget.Wait(ctx); err != nil {
				return nil, backoff.Permanent(err)
			}
			// A Retry-After may have come meanwhile (another request of the token).
			if err := c.waitHold(ctx); err != nil {
				return nil, backoff.Permanent(err)
			}
		}
		attempt++
		p, retryAfter, err := c.do(ctx, target)
		ra.given = retryAfter
		if err != nil {
			lastErr = err
			if ctx.Err() != nil || !IsRetryable(err) {
				return nil, backoff.Permanent(err)
			}
		}
		return p, err
	}
	notify := func(err error, wait time.Duration) {
		c.log.Warn("plugchoice API request failed, retrying",
			"page", page, "attempt", attempt, "retry_in", wait.String(), "kind", Kind(err), "error", err.Error())
	}
	p, err := backoff.RetryNotifyWithData(op, b, notify)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && lastErr != nil && !errors.Is(lastErr, cerr) {
			err = fmt.Errorf("%w (last error: %v)", cerr, lastErr)
		}
		if attempt > 1 {
			err = fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		return nil, err
	}
	return p, nil
}

// do makes one HTTP request. retryAfter is the capped server-given delay, when any.
func (c *Client) do(ctx context.Context, target string) (p *Page, retryAfter time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, target, nil)
	if err != nil {
		return nil, 0, &inputError{fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	c.requests.Add(1)
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.metrics.APIRequest(0, time.Since(start))
		return nil, 0, c.transportErr(ctx, err)
	}
	defer resp.Body.Close()
	c.observeRate(resp.Header)
	body, err := readBody(resp, maxBody+1)
	c.metrics.APIRequest(resp.StatusCode, time.Since(start))
	if err != nil {
		return nil, 0, c.transportErr(ctx, fmt.Errorf("read response body: %w", err))
	}
	c.log.Debug("plugchoice API request", "url", target, "status", resp.StatusCode,
		"bytes", len(body), "duration", time.Since(start).String())
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := newAPIError(resp.StatusCode, body, c.token)
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			ae.Message = fmt.Sprintf("redirect to %q not followed (the token is only sent to %s)",
				redirectHost(resp.Header.Get("Location")), c.host)
		}
		if d, ok := retryafter.Parse(resp.Header.Get("Retry-After"), time.Now()); ok {
			ae.RetryAfter = d
			retryAfter = min(d, c.maxRetryWait)
			if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
				c.hold(resp.StatusCode, retryAfter)
			}
		}
		return nil, retryAfter, ae
	}
	if len(body) > maxBody {
		return nil, 0, decodeErrf("decode: response body larger than %d bytes", maxBody)
	}
	p, err = DecodePage(body)
	if err != nil {
		return nil, 0, err
	}
	return p, 0, nil
}

func redirectHost(loc string) string {
	u, err := url.Parse(loc)
	if err != nil || u.Host == "" {
		return "(same host)"
	}
	return u.Scheme + "://" + u.Host
}

// transportErr words a failed exchange: a timeout of this attempt, or a connection
// error; the caller's cancellation is returned as it is.
func (c *Client) transportErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if Kind(err) == "timeout" {
		return fmt.Errorf("request timed out after %s: %w", c.timeout, err)
	}
	return fmt.Errorf("request failed: %w", err)
}

func (c *Client) observeRate(h http.Header) {
	ls, rs := h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining")
	if ls == "" || rs == "" {
		return
	}
	limit, err1 := strconv.Atoi(strings.TrimSpace(ls))
	remaining, err2 := strconv.Atoi(strings.TrimSpace(rs))
	if err1 != nil || err2 != nil || limit < 0 {
		c.log.Debug("plugchoice API: unreadable rate-limit headers", "limit", ls, "remaining", rs)
		return
	}
	c.rlMu.Lock()
	c.rlLimit, c.rlRemaining, c.rlOK = limit, remaining, true
	c.rlMu.Unlock()
	if c.metrics != nil {
		c.metrics.APIRateRemaining.Set(float64(remaining))
	}
	if c.budget != nil {
		c.budget.Observe(limit, remaining)
	}
}

// readBody reads at most limit bytes of resp's body into a buffer sized from
// Content-Length when the server sent one (one allocation instead of io.ReadAll's
// doubling: a full listing reads thousands of pages).
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	r := io.LimitReader(resp.Body, limit)
	if n := resp.ContentLength; n > 0 && n < limit {
		buf := bytes.NewBuffer(make([]byte, 0, n+1))
		_, err := buf.ReadFrom(r)
		return buf.Bytes(), err
	}
	return io.ReadAll(r)
}
