// Package nats is the NATS sink: it publishes each event's CloudEvent JSON on
// `<prefix>.<status>.<type>`, as a core NATS publish (delivered once flushed to the
// server) or, in JetStream mode, as a JetStream publish (delivered on the stream's ack,
// de-duplicated by the Nats-Msg-Id header within the stream's duplicate window).
//
// Connection policy. New fails, with a permanent error, on anything a retry cannot fix:
// bad options, unreadable credential or TLS files, an authorization or TLS failure, and
// in JetStream mode a missing stream or JetStream disabled. A server that is merely
// unreachable at start (connection refused, timeout, DNS) is tolerated: New returns a
// Sink that keeps connecting in the background, so the bridge can start, poll and store
// events while NATS is down. Once connected, the connection reconnects forever with
// exponential backoff and jitter. While disconnected, a publish fails at once (nats.go's
// reconnect buffer is disabled) and Deliver returns a retryable error: events wait in
// the bridge's outbox, never in client memory.
package nats

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/template"
)

// Defaults.
const (
	DefaultName           = "nats"
	DefaultPrefix         = "plugchoice.exports"
	DefaultFlushTimeout   = 5 * time.Second
	DefaultConnectTimeout = 5 * time.Second

	// ConnectionName is the client name the server shows for the bridge's connection.
	ConnectionName = "exportbridge"

	// Reconnect backoff: 100ms doubling per round over the server list, capped, with
	// jitter (each delay drawn uniformly from [d/2, d]).
	reconnectBase = 100 * time.Millisecond
	reconnectMax  = 5 * time.Second
)

// Header names set on every message.
const (
	HeaderMsgID       = "Nats-Msg-Id"
	HeaderContentType = "Content-Type"
)

// Options configure the sink. Zero durations take the defaults.
type Options struct {
	Name      string   // sink name in logs and metrics; default "nats"
	URLs      []string // nats://host:port, tls://, ws://, wss://, or host:port
	Prefix    string   // subject prefix; default "plugchoice.exports"
	JetStream bool     // publish to JetStream and wait for the stream's ack

	Token     string // {token}
	User      string // {user}
	Password  string // {password}
	CredsFile string // {creds}: user JWT + seed (.creds)
	NKeyFile  string // {nkey}: NKey user seed file
	CAFile    string // {ca}: CA to verify the server
	CertFile  string // {cert}: client certificate (with KeyFile)
	KeyFile   string // {key}

	FlushTimeout   time.Duration // one publish's flush (core) or ack (JetStream); default 5s
	ConnectTimeout time.Duration // one connection attempt, and the stream check; default 5s

	Logger  *slog.Logger     // default slog.Default()
	Metrics *metrics.Metrics // nil records nothing
	// Setting names a setting (url, token, creds, ...) the way the user wrote it, for
	// messages; nil: "nats.<key>".
	Setting func(key string) string
	// Payload, when set, is published instead of the CloudEvent (the `body` or
	// `body_text` template), with the CloudEvent attributes in ce-* headers.
	Payload *template.Payload
}

// Sink publishes events to NATS. It is safe for concurrent use.
type Sink struct {
	name    string
	prefix  string
	js      jetstream.JetStream // nil in core mode
	nc      *natsgo.Conn
	flushTO time.Duration
	connTO  time.Duration
	urls    string // redacted, for messages
	log     *slog.Logger
	metrics *metrics.Metrics

	mu       sync.Mutex
	up       bool
	known    bool   // up has been set once
	lastErr  string // last connection error seen, for Check
	asyncErr string // last async error logged, to log each distinct one once
	permErr  error  // last publish permission violation acted upon
	closed   bool
	wake     func() // set by the dispatcher (sinks.Waker); called on every (re)connect

	names   *strings.Replacer // {token} and friends -> the user's spelling
	payload *template.Payload
}

var (
	_ sinks.Sink    = (*Sink)(nil)
	_ sinks.Closer  = (*Sink)(nil)
	_ sinks.Checker = (*Sink)(nil)
	_ sinks.Waker   = (*Sink)(nil)
)

// OnRecover registers wake, called whenever the connection comes (back) up, so that
// events waiting for a retry go at once instead of after their backoff.
func (s *Sink) OnRecover(wake func()) {
	s.mu.Lock()
	s.wake = wake
	s.mu.Unlock()
}

// NewSink validates o and connects. It returns a permanent error (sinks.IsPermanent) for bad
// options, authorization or TLS failures, and (JetStream) when no stream captures the
// subjects; when the server is only unreachable it returns a Sink that keeps connecting
// in the background (see the package documentation). ctx bounds the start-up checks.
func NewSink(ctx context.Context, o Options) (*Sink, error) {
	names := settingNames(o.Setting)
	s, err := newSink(ctx, o, names)
	return s, sinks.RenameSettings(err, names)
}

func settingNames(setting func(string) string) *strings.Replacer {
	return sinks.SettingNames(setting, Kind, "url", "subject_prefix", "jetstream", "creds", "nkey", "token",
		"user", "password", "ca", "cert", "key")
}

func newSink(ctx context.Context, o Options, names *strings.Replacer) (*Sink, error) {
	o, err := withDefaults(o)
	if err != nil {
		return nil, sinks.Permanent(err)
	}
	s := &Sink{
		name:    o.Name,
		prefix:  o.Prefix,
		flushTO: o.FlushTimeout,
		connTO:  o.ConnectTimeout,
		urls:    redactURLs(o.URLs),
		log:     o.Logger.With("sink", o.Name),
		metrics: o.Metrics,
		names:   names,
		payload: o.Payload,
	}
	opts, err := s.natsOptions(o)
	if err != nil {
		return nil, sinks.Permanent(err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", s.urls, err)
	}

	nc, err := opts.Connect()
	if err != nil {
		if !isUnreachable(err) {
			return nil, sinks.Permanent(connectError(o, s.urls, err))
		}
		// Server down: keep trying in the background. The state is logged before the
		// retrying connection exists, so its ConnectedCB cannot be overtaken.
		s.recordErr(err)
		s.setState(false, fmt.Sprintf("not reachable at start (%v); connecting in the background", err))
		opts.RetryOnFailedConnect = true
		nc, err = opts.Connect()
		if err != nil {
			return nil, sinks.Permanent(connectError(o, s.urls, err))
		}
	} else {
		s.setState(true, nc.ConnectedUrlRedacted())
	}
	s.nc = nc
	if o.JetStream {
		// Bounded async acks (DeliverBatch): a publish whose ack never comes (the
		// connection dropped) is failed and forgotten instead of stalling later batches.
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(s.flushTO))
		if err != nil {
			_ = s.Close()
			return nil, sinks.Permanent(fmt.Errorf("nats: jetstream: %w", err))
		}
		s.js = js
		if nc.IsConnected() {
			cctx, cancel := context.WithTimeout(ctx, s.connTO)
			_, err := s.findStream(cctx)
			cancel()
			switch {
			case err == nil:
			case sinks.IsPermanent(err):
				_ = s.Close()
				return nil, err
			default:
				// Typically a user allowed to publish on the subjects but not to call the
				// JetStream API ($JS.API.>): publishing still works, so start anyway.
				s.log.Warn("nats: could not verify the JetStream stream at start; publishes will tell",
					"error", err, "server_error", nc.LastError())
			}
		} else {
			s.log.Warn("nats: JetStream stream not verified at start (server not reachable yet)", "urls", s.urls)
		}
	}
	return s, nil
}

func withDefaults(o Options) (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.FlushTimeout == 0 {
		o.FlushTimeout = DefaultFlushTimeout
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var errs []error
	if len(o.URLs) == 0 {
		errs = append(errs, errors.New("nats: no server URL (set {url}, e.g. nats://127.0.0.1:4222)"))
	}
	for _, u := range o.URLs {
		if err := validateURL(u); err != nil {
			errs = append(errs, fmt.Errorf("nats: {url}: %w", err))
		}
	}
	if err := ValidatePrefix(o.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("nats: {subject_prefix}: %w", err))
	}
	if o.FlushTimeout < 0 {
		errs = append(errs, fmt.Errorf("nats: flush timeout %s is negative (expected a positive duration such as 5s)", o.FlushTimeout))
	}
	if o.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("nats: connect timeout %s is negative (expected a positive duration such as 5s)", o.ConnectTimeout))
	}
	methods := 0
	for _, set := range []bool{o.Token != "", o.User != "" || o.Password != "", o.CredsFile != "", o.NKeyFile != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		errs = append(errs, errors.New("nats: more than one authentication method set (expected only one of {token}, {user}/{password}, {creds}, {nkey})"))
	}
	if o.Password != "" && o.User == "" {
		errs = append(errs, errors.New("nats: {password} is set but {user} is empty (expected both)"))
	}
	if o.User != "" && o.Password == "" {
		errs = append(errs, errors.New("nats: {user} is set but {password} is empty (expected both)"))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("nats: {cert} and {key} must be set together (client certificate and its private key)"))
	}
	return o, errors.Join(errs...)
}

func validateURL(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return errors.New("empty server URL (expected nats://host:port)")
	}
	s := raw
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		// url's error quotes the input, which may hold credentials: do not wrap it.
		return fmt.Errorf("server URL %s is not a valid URL (expected nats://host:port or host:port)", redactURL(raw))
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("server URL %s has scheme %q (expected nats://, tls://, ws:// or wss://)", redactURL(raw), u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("server URL %s has no host (expected nats://host:port)", redactURL(raw))
	}
	return nil
}

// ValidatePrefix checks a subject prefix: dot-separated tokens, none empty, no
// wildcards (`*`, `>`), no white space or control characters, not starting with `$`
// (reserved for NATS system subjects such as $JS and $SYS).
func ValidatePrefix(p string) error {
	if p == "" {
		return errors.New("subject prefix is empty (expected dot-separated tokens such as plugchoice.exports)")
	}
	if strings.HasPrefix(p, "$") {
		return fmt.Errorf("subject prefix %q starts with '$', which is reserved for NATS system subjects (expected e.g. plugchoice.exports)", p)
	}
	for i, tok := range strings.Split(p, ".") {
		if tok == "" {
			return fmt.Errorf("subject prefix %q has an empty token at position %d (expected dot-separated tokens with no leading, trailing or double dots)", p, i+1)
		}
		for _, r := range tok {
			switch {
			case r == '*' || r == '>':
				return fmt.Errorf("subject prefix %q contains the wildcard %q (expected literal tokens only)", p, r)
			case unicode.IsSpace(r) || unicode.IsControl(r):
				return fmt.Errorf("subject prefix %q contains white space or a control character %q (expected printable tokens)", p, r)
			}
		}
	}
	return nil
}

// natsOptions builds the nats.go options; file-based credentials are loaded here so
// that a missing or malformed file is reported at start, naming the setting.
func (s *Sink) natsOptions(o Options) (natsgo.Options, error) {
	opts := natsgo.GetDefaultOptions()
	opts.Servers = o.URLs
	opts.Name = ConnectionName
	opts.Timeout = o.ConnectTimeout
	opts.MaxReconnect = -1
	opts.ReconnectBufSize = -1 // a publish while disconnected fails at once
	opts.IgnoreAuthErrorAbort = true
	opts.NoCallbacksAfterClientClose = true
	opts.PingInterval = 20 * time.Second
	opts.MaxPingsOut = 3
	opts.CustomReconnectDelayCB = reconnectDelay
	opts.Token = o.Token
	opts.User = o.User
	opts.Password = o.Password

	opts.ConnectedCB = func(nc *natsgo.Conn) { s.setState(true, nc.ConnectedUrlRedacted()) }
	opts.ReconnectedCB = func(nc *natsgo.Conn) { s.setState(true, nc.ConnectedUrlRedacted()) }
	opts.DisconnectedErrCB = func(_ *natsgo.Conn, err error) {
		reason := "connection lost"
		if err != nil {
			reason = err.Error()
			s.recordErr(err)
		}
		s.setState(false, reason)
	}
	opts.ReconnectErrCB = func(_ *natsgo.Conn, err error) {
		s.recordErr(err)
		s.log.Debug("nats: reconnect attempt failed", "error", err)
	}
	opts.ClosedCB = func(*natsgo.Conn) { s.setState(false, "connection closed") }
	opts.AsyncErrorCB = func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
		s.asyncError(err)
	}

	apply := func(setting string, opt natsgo.Option) error {
		if err := opt(&opts); err != nil {
			return fmt.Errorf("nats: %s: %w", setting, err)
		}
		return nil
	}
	if o.CredsFile != "" {
		if err := readableFile("{creds}", o.CredsFile, "a .creds file with a user JWT and seed"); err != nil {
			return opts, err
		}
		if err := apply("{creds}", natsgo.UserCredentials(o.CredsFile)); err != nil {
			return opts, err
		}
	}
	if o.NKeyFile != "" {
		if err := readableFile("{nkey}", o.NKeyFile, "a file holding an NKey user seed (SU...)"); err != nil {
			return opts, err
		}
		opt, err := natsgo.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return opts, fmt.Errorf("nats: {nkey} file %s: %w (expected an NKey user seed, SU...)", o.NKeyFile, err)
		}
		if err := apply("{nkey}", opt); err != nil {
			return opts, err
		}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return opts, fmt.Errorf("nats: {ca}: read %s: %w", o.CAFile, err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("nats: {ca} file %s holds no PEM certificate (expected a CA certificate in PEM)", o.CAFile)
		}
		if err := apply("{ca}", natsgo.RootCAs(o.CAFile)); err != nil {
			return opts, err
		}
	}
	if o.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile); err != nil {
			return opts, fmt.Errorf("nats: {cert}/{key} (%s, %s): %w (expected a PEM certificate and its private key)", o.CertFile, o.KeyFile, err)
		}
		if err := apply("{cert}", natsgo.ClientCert(o.CertFile, o.KeyFile)); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

func readableFile(setting, path, what string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("nats: %s: read %s: %w (expected %s)", setting, path, err, what)
	}
	empty := len(strings.TrimSpace(string(b))) == 0
	clear(b)
	if empty {
		return fmt.Errorf("nats: %s: file %s is empty (expected %s)", setting, path, what)
	}
	return nil
}

// reconnectDelay is called each time nats.go has tried every server once: exponential
// from reconnectBase to reconnectMax, jittered into [d/2, d].
func reconnectDelay(attempts int) time.Duration {
	d := reconnectMax
	if attempts < 16 {
		d = min(reconnectBase<<max(attempts-1, 0), reconnectMax)
	}
	return d/2 + rand.N(d/2+1)
}

// isUnreachable reports whether a connect error means "no server answered" (worth
// retrying in the background) rather than a refusal (auth, TLS, credentials).
func isUnreachable(err error) bool {
	var ne net.Error
	if errors.Is(err, natsgo.ErrTLS) {
		// The server answered and the handshake failed, or it hung up right after the
		// handshake (a rejected client certificate): only a timeout is worth a retry.
		return errors.As(err, &ne) && ne.Timeout()
	}
	if errors.Is(err, natsgo.ErrNoServers) || errors.Is(err, natsgo.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return false // a TLS alert from the server: it answered, and refused us
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	return errors.As(err, &ne) && ne.Timeout()
}

// connectError rewords a refused connection into an actionable message that names the
// settings to check and never the secrets.
func connectError(o Options, urls string, err error) error {
	var hint string
	switch {
	case o.Token != "":
		hint = "check {token}"
	case o.User != "":
		hint = "check {user}/{password}"
	case o.CredsFile != "":
		hint = "check the credentials file in {creds}"
	case o.NKeyFile != "":
		hint = "check the seed file in {nkey}"
	default:
		hint = "the server requires authentication: set {token}, {user}/{password}, {creds} or {nkey}"
	}
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var op *net.OpError
	switch {
	case errors.Is(err, natsgo.ErrAuthorization):
		return fmt.Errorf("nats: authorization failed for %s: %s (%w)", urls, hint, err)
	case errors.Is(err, natsgo.ErrAuthExpired), errors.Is(err, natsgo.ErrAuthRevoked), errors.Is(err, natsgo.ErrAccountAuthExpired):
		return fmt.Errorf("nats: credentials rejected by %s: %s (%w)", urls, hint, err)
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &hne):
		return fmt.Errorf("nats: TLS: cannot verify the server certificate of %s: check {ca} (%w)", urls, err)
	case errors.As(err, &op) && op.Op == "remote error",
		errors.Is(err, natsgo.ErrTLS) && (errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)):
		return fmt.Errorf("nats: TLS: %s refused the handshake: check {cert}/{key} (client certificate) (%w)", urls, err)
	case errors.Is(err, natsgo.ErrTLS):
		return fmt.Errorf("nats: TLS handshake with %s failed: check {ca} and {cert}/{key} (%w)", urls, err)
	case errors.Is(err, natsgo.ErrSecureConnWanted):
		return fmt.Errorf("nats: TLS is configured but %s does not offer it: use a plain nats:// server or remove the TLS settings (%w)", urls, err)
	case errors.Is(err, natsgo.ErrSecureConnRequired), errors.Is(err, natsgo.ErrClientCertOrRootCAsRequired):
		return fmt.Errorf("nats: %s requires TLS: set {ca} and/or {cert}/{key} (%w)", urls, err)
	case o.CredsFile != "" || o.NKeyFile != "":
		return fmt.Errorf("nats: connect to %s: %w (%s)", urls, err, hint)
	default:
		return fmt.Errorf("nats: connect to %s: %w", urls, err)
	}
}

// redactURLs renders the server list for messages, without credentials.
func redactURLs(urls []string) string {
	r := make([]string, len(urls))
	for i, u := range urls {
		r[i] = redactURL(u)
	}
	return strings.Join(r, ",")
}

func redactURL(u string) string { return logging.SafeURL(u, false) }

// setState records and logs a connection state change, once per change. detail is the
// (redacted) server URL when up, the reason when down.
func (s *Sink) setState(up bool, detail string) {
	s.mu.Lock()
	changed := !s.known || s.up != up
	s.known, s.up = true, up
	if up {
		s.asyncErr = ""
	}
	closed, wake := s.closed, s.wake
	s.mu.Unlock()
	if !changed {
		return
	}
	if up && wake != nil {
		wake()
	}
	s.metrics.Connected(s.name, up)
	switch {
	case up:
		s.log.Info("nats: connected", "server", detail)
	case closed:
		s.log.Info("nats: connection closed")
	default:
		s.log.Warn("nats: disconnected; events wait in the outbox until the connection is back", "urls", s.urls, "reason", detail)
	}
}

func (s *Sink) recordErr(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// asyncError logs each distinct asynchronous error (permission violations, auth errors
// during reconnects) once until the next change.
func (s *Sink) asyncError(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	dup := s.asyncErr == err.Error()
	s.asyncErr = err.Error()
	s.lastErr = err.Error()
	s.mu.Unlock()
	if !dup {
		s.log.Error("nats: server reported an error", "urls", s.urls, "error", err)
	}
}

// Name returns the sink name.
func (s *Sink) Name() string { return s.name }

// Subject returns the subject an event is published on:
// `<prefix>.<status>.<sanitised export type>` for export events (an empty type gives
// `_`), `<prefix>.bridge.<poll_failing|poll_recovered>` for the bridge's own events.
func (s *Sink) Subject(e event.Event) string {
	status := e.Status
	if status == "" {
		status = e.Type[strings.LastIndexByte(e.Type, '.')+1:]
	}
	if e.IsBridge() {
		return s.prefix + ".bridge." + event.SanitizeToken(status)
	}
	return s.prefix + "." + event.SanitizeToken(status) + "." + event.SanitizeToken(e.ExportType)
}

// Deliver publishes e. Core mode: nil once the publish is flushed to a connected
// server. JetStream mode: nil once the stream acknowledged it (a duplicate ack, for a
// re-send within the duplicate window, counts as delivered). Errors are retryable
// unless marked permanent (a message the server can never take).
func (s *Sink) Deliver(ctx context.Context, e event.Event) error {
	if len(e.Body) == 0 {
		return sinks.Permanent(fmt.Errorf("nats: event %s has an empty body", e.ID))
	}
	subj := s.Subject(e)
	if !s.nc.IsConnected() {
		return fmt.Errorf("nats: publish %s to %s: not connected to %s (status %s); will retry", e.ID, subj, s.urls, s.nc.Status())
	}
	msg, err := s.message(e, subj)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.flushTO)
	defer cancel()
	if s.js != nil {
		ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID))
		if err != nil {
			if denied := s.publishDenied(subj); denied != nil {
				err = fmt.Errorf("%w (%w)", err, denied)
			}
			return s.classify(e, subj, err)
		}
		if ack.Duplicate {
			s.log.Debug("nats: duplicate publish removed by the stream", "event_id", e.ID, "stream", ack.Stream, "seq", ack.Sequence)
		}
		return nil
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		return s.classify(e, subj, err)
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return s.classify(e, subj, fmt.Errorf("flush: %w", err))
	}
	// A core publish the server refuses is not refused to the publisher: the server
	// answers -ERR, which nats.go records before it reads the flush's PONG.
	if denied := s.publishDenied(subj); denied != nil {
		return s.classify(e, subj, denied)
	}
	return nil
}

// message is what a publish of e sends: the CloudEvent, or the rendered template with
// the CloudEvent attributes in ce-* headers (binary mode). Nats-Msg-Id stays the event
// id either way, so JetStream removes re-sends. A template that cannot render this event
// is a permanent error.
func (s *Sink) message(e event.Event, subj string) (*natsgo.Msg, error) {
	if s.payload == nil {
		return &natsgo.Msg{Subject: subj, Data: e.Body,
			Header: natsgo.Header{HeaderMsgID: {e.ID}, HeaderContentType: {event.ContentType}}}, nil
	}
	body, ce, err := s.payload.Render(e)
	if err != nil {
		return nil, sinks.Permanent(fmt.Errorf("nats: event %s: template %w", e.ID, err))
	}
	h := natsgo.Header{HeaderMsgID: {e.ID}, HeaderContentType: {s.payload.ContentType()}}
	for _, kv := range ce {
		h[kv[0]] = []string{kv[1]}
	}
	return &natsgo.Msg{Subject: subj, Data: body, Header: h}, nil
}

// publishDenied returns the server's permission violation for publishing on subj, if
// the connection has one. nats.go keeps that error until the next reconnect, so a newly
// seen violation forces a reconnect: a retry after the permission was granted then
// succeeds. Until then every publish on subj counts as failed (a duplicate at worst,
// never a loss).
func (s *Sink) publishDenied(subj string) error {
	err := s.nc.LastError()
	if err == nil || !errors.Is(err, natsgo.ErrPermissionViolation) ||
		!strings.Contains(strings.ToLower(err.Error()), strings.ToLower(`publish to "`+subj+`"`)) {
		return nil
	}
	s.mu.Lock()
	seen := s.permErr == err
	s.permErr = err
	s.mu.Unlock()
	if !seen {
		if rerr := s.nc.ForceReconnect(); rerr != nil {
			s.log.Debug("nats: reconnect after a permission violation", "error", rerr)
		}
	}
	return fmt.Errorf("%w: grant the bridge's NATS user publish permission on %s.>; will retry", err, s.prefix)
}

func (s *Sink) classify(e event.Event, subj string, err error) error {
	err = fmt.Errorf("nats: publish %s to %s: %w", e.ID, subj, err)
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, natsgo.ErrMaxPayload):
		return sinks.Permanent(err)
	case errors.Is(err, natsgo.ErrHeadersNotSupported) && s.nc.IsConnected():
		return sinks.Permanent(fmt.Errorf("%w (the server is too old for message headers: NATS 2.2 or later is needed)", err))
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return fmt.Errorf("%w: %s; will retry", err, s.noStreamAdvice())
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return sinks.Permanent(err)
	case errors.Is(err, natsgo.ErrReconnectBufExceeded), errors.Is(err, natsgo.ErrConnectionReconnecting),
		errors.Is(err, natsgo.ErrConnectionClosed):
		return fmt.Errorf("%w (connection to %s lost; will retry)", err, s.urls)
	default:
		return err
	}
}

// Check reports the connected server and, in JetStream mode, the stream that captures
// the sink's subjects. It sends no message.
func (s *Sink) Check(ctx context.Context) (string, error) {
	detail, err := s.check(ctx)
	return detail, sinks.RenameSettings(err, s.names)
}

func (s *Sink) check(ctx context.Context) (string, error) {
	if !s.nc.IsConnected() {
		s.mu.Lock()
		last := s.lastErr
		s.mu.Unlock()
		if last == "" {
			last = "no answer yet"
		}
		return "", fmt.Errorf("nats: not connected to %s (status %s, last error: %s); reconnecting in the background", s.urls, s.nc.Status(), last)
	}
	ctx, cancel := context.WithTimeout(ctx, s.connTO)
	defer cancel()
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return "", fmt.Errorf("nats: no answer from %s: %w", s.nc.ConnectedUrlRedacted(), err)
	}
	detail := fmt.Sprintf("connected to %s (server %s, version %s), subjects %s.>",
		s.nc.ConnectedUrlRedacted(), s.nc.ConnectedServerName(), s.nc.ConnectedServerVersion(), s.prefix)
	if s.js == nil {
		return detail + ", core NATS", nil
	}
	name, err := s.findStream(ctx)
	if err != nil {
		return "", err
	}
	return detail + ", JetStream stream " + name, nil
}

// findStream returns the name of a stream whose subjects cover every subject the sink
// publishes on (`<prefix>.*.*`), or a permanent error saying which stream to create.
func (s *Sink) findStream(ctx context.Context) (string, error) {
	if _, err := s.js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return "", sinks.Permanent(fmt.Errorf("nats: JetStream is not enabled on %s for this account (%w): enable it on the server, or set {jetstream}=false for core NATS", s.nc.ConnectedUrlRedacted(), err))
		}
		return "", fmt.Errorf("nats: JetStream account info from %s: %w", s.nc.ConnectedUrlRedacted(), err)
	}
	want := s.prefix + ".*.*"
	lister := s.js.ListStreams(ctx, jetstream.WithStreamListSubject(s.prefix+".>"))
	var partial []string
	found := ""
	for info := range lister.Info() {
		if found != "" {
			continue // drain the lister so its goroutine ends
		}
		covers := false
		for _, subj := range info.Config.Subjects {
			if subjectCovers(subj, want) {
				covers = true
				break
			}
		}
		if covers {
			found = info.Config.Name
		} else {
			partial = append(partial, fmt.Sprintf("%s (%s)", info.Config.Name, strings.Join(info.Config.Subjects, ", ")))
		}
	}
	if found != "" {
		return found, nil
	}
	if err := lister.Err(); err != nil {
		return "", fmt.Errorf("nats: list JetStream streams on %s: %w", s.nc.ConnectedUrlRedacted(), err)
	}
	msg := fmt.Sprintf("nats: no JetStream stream captures the subjects %s.> and the bridge never creates streams", s.prefix)
	if len(partial) > 0 {
		msg += fmt.Sprintf(" (stream %s captures only part of them)", strings.Join(partial, "; "))
	}
	return "", sinks.Permanent(errors.New(msg + "; " + s.noStreamAdvice()))
}

func (s *Sink) noStreamAdvice() string {
	return fmt.Sprintf("create a stream that captures %s.>, e.g. `nats stream add %s --subjects '%s.>'` (retention, replicas and limits are yours to choose; keep a duplicate window so re-sends are removed)",
		s.prefix, streamName(s.prefix), s.prefix)
}

// streamName suggests a stream name from the last token of the prefix
// ("plugchoice.exports" -> "EXPORTS").
func streamName(prefix string) string {
	last := prefix[strings.LastIndexByte(prefix, '.')+1:]
	var b strings.Builder
	for _, r := range strings.ToUpper(last) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' || r == '-' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "EXPORTS"
	}
	return b.String()
}

// subjectCovers reports whether every subject matched by pattern is also matched by
// filter (both may hold the * and > wildcards).
func subjectCovers(filter, pattern string) bool {
	f := strings.Split(filter, ".")
	p := strings.Split(pattern, ".")
	for i, ft := range f {
		if ft == ">" {
			return i < len(p)
		}
		if i >= len(p) {
			return false
		}
		switch pt := p[i]; {
		case pt == ">":
			return false
		case ft == "*":
		case pt == "*" || pt != ft:
			return false
		}
	}
	return len(f) == len(p)
}

// Close closes the connection. Deliveries in flight fail with a retryable error.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.nc.Close()
	s.setState(false, "closed")
	return nil
}
