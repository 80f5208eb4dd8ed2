// Package natsstore is the bridge's state on NATS JetStream (STORE=nats): the same
// contract as the embedded store (package store), shared by N replicas of the bridge.
//
// Everything lives in the bridge's own bucket and streams, which it creates and upgrades
// itself with Options.Replicas replicas:
//   - the KeyValue bucket exportbridge_state: per account the snapshot entries
//     (acct.<account>.snap.<uuid>), the poll facts (acct.<account>.poll) and the
//     "initialized" flag; per sink the metadata such as Slack message ids
//     (meta.<sink>.<key>), the destination fingerprint (dest.<sink>) and the attempt
//     state of each queued record that failed at least once (att.<sink>.<seq>); the
//     ring of recent events for the status page (recent.<slot>, recent_head);
//   - the stream EXPORTBRIDGE_OUTBOX, one subject per sink (exportbridge.outbox.<sink>),
//     one message per queued event (data: the CloudEvent body; headers: the event's
//     fields); a record's Seq is its stream sequence;
//   - the stream EXPORTBRIDGE_DLQ, one subject per sink (exportbridge.dlq.<sink>).
//
// A poll cycle is written events first, then snapshot (CommitCycle). Each outbox message
// carries Nats-Msg-Id "<event id>@<sink>" (the event id alone would make the second sink
// of one event a duplicate of the first, since JetStream de-duplicates per stream): a
// cycle re-detected after a crash between the two writes, by this replica or a new
// leader, is dropped by the stream's duplicate window (Options.Duplicates).
//
// Names that are not plain tokens ([A-Za-z0-9_-]) are stored base64url-encoded behind a
// '=' so that any sink name or metadata key is a valid subject token and KV key.
//
// A Store is safe for concurrent use. Its methods take no context (they implement the
// bridge's store interfaces): each call is bounded by Options.Timeout, and Close cancels
// calls in flight.
package natsstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/store"
)

// Names of the bridge's own JetStream state (SPEC "Scale-out").
const (
	Bucket       = "exportbridge_state"
	OutboxStream = "EXPORTBRIDGE_OUTBOX"
	DLQStream    = "EXPORTBRIDGE_DLQ"
	outboxPrefix = "exportbridge.outbox."
	dlqPrefix    = "exportbridge.dlq."
	kvPrefix     = "$KV." + Bucket + "."
)

// DefaultAccount is the account of API_TOKEN when no accounts are configured.
const DefaultAccount = "default"

// Defaults of Options.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultDuplicates = 2 * time.Minute
)

// schemaVersion is written on first open; state written by a newer layout is refused.
const schemaVersion = "1"

// ErrFenced is wrapped by the error of a write refused by Options.Fence (the lease
// that allowed the write is no longer held).
var ErrFenced = errors.New("fenced: lease no longer held")

// Options tune Open.
type Options struct {
	// Replicas of the bucket and streams (STORE_NATS_REPLICAS, default 1). An existing
	// bucket or stream is updated to it.
	Replicas int
	// Duplicates is the outbox stream's duplicate window (default 2 minutes); set it to
	// cover LEASE_TTL plus a poll cycle.
	Duplicates time.Duration
	// Account names the snapshot and poll facts this Store reads and writes (default
	// "default").
	Account string
	// Timeout bounds each call (default 10s). The calls on many records (MoveQueue,
	// Replay, Purge, Migrate) get 10 ms more per record.
	Timeout time.Duration
	// Progress, when set, is told how far the long operations on many records have
	// come (MoveQueue, Replay, Purge, Migrate): done of total records, as each one is
	// written. The commands give it to a progress.Meter.
	Progress func(done, total int)
}

// Store is the open JetStream store.
type Store struct {
	nc      *nats.Conn
	ownConn bool
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	outbox  jetstream.Stream
	dlq     jetstream.Stream
	o       Options
	acct    string // escaped account
	base    context.Context
	cancel  context.CancelFunc
	fence   func() error
	state   *shared
	hook    *pollHook
}

// shared is what the fenced views of one Store have in common.
type shared struct {
	mu sync.Mutex
	// attempts holds, per sink, the seqs that have an att.<sink>.<seq> key, so that an
	// ack deletes the key only when there is one (a delete is a write).
	attempts map[string]map[uint64]bool
}

// OpenURL connects to url (nats.Option for auth and TLS) and opens the store; Close
// closes the connection too.
func OpenURL(ctx context.Context, url string, o Options, nopts ...nats.Option) (*Store, error) {
	if url == "" {
		return nil, errors.New("open JetStream store: STORE_NATS_URL is empty (expected nats://host:4222)")
	}
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("exportbridge-store")}, nopts...)...)
	if err != nil {
		return nil, fmt.Errorf("open JetStream store: connect to %s: %w", redactURL(url), err)
	}
	s, err := Open(ctx, nc, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.ownConn = true
	return s, nil
}

// redactURL renders a NATS URL list for messages with logging.SafeURL (the one URL
// redactor): no userinfo, token or query.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		parts[i] = logging.SafeURL(p, false)
	}
	return strings.Join(parts, ",")
}

// Open creates or upgrades the bucket and streams on nc and returns the store. The
// connection stays the caller's.
func Open(ctx context.Context, nc *nats.Conn, o Options) (*Store, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return nil, fmt.Errorf("open JetStream store: STORE_NATS_REPLICAS is %d (expected 1 to 5)", o.Replicas)
	}
	if o.Duplicates <= 0 {
		o.Duplicates = DefaultDuplicates
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Account == "" {
		o.Account = DefaultAccount
	}
	if o.Progress == nil {
		o.Progress = func(int, int) {}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream store: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "exportbridge state: snapshots, poll facts, Slack message ids, sink destinations, attempt state",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open JetStream store: create or update bucket %s: %w", Bucket, err)
	}
	outbox, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        OutboxStream,
		Description: "exportbridge outbox: one subject per sink, Nats-Msg-Id <event id>@<sink>",
		Subjects:    []string{outboxPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  o.Duplicates,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew, // never drop a queued event to make room
	})
	if err != nil {
		return nil, fmt.Errorf("open JetStream store: create or update stream %s: %w", OutboxStream, err)
	}
	dlq, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "exportbridge dead letters: one subject per sink",
		Subjects:    []string{dlqPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  o.Duplicates,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("open JetStream store: create or update stream %s: %w", DLQStream, err)
	}
	if err := checkSchema(ctx, kv); err != nil {
		return nil, err
	}
	base, stop := context.WithCancel(context.WithoutCancel(ctx))
	return &Store{
		nc: nc, js: js, kv: kv, outbox: outbox, dlq: dlq, o: o,
		acct: esc(o.Account), base: base, cancel: stop,
		state: &shared{attempts: map[string]map[uint64]bool{}}, hook: &pollHook{},
	}, nil
}

func checkSchema(ctx context.Context, kv jetstream.KeyValue) error {
	e, err := kv.Get(ctx, "schema")
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if _, err := kv.Create(ctx, "schema", []byte(schemaVersion)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("open JetStream store: write schema version: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("open JetStream store: read schema version: %w", err)
	case string(e.Value()) > schemaVersion:
		return fmt.Errorf("open JetStream store: bucket %s has schema version %q, newer than this exportbridge understands (%s): upgrade exportbridge", Bucket, e.Value(), schemaVersion)
	}
	return nil
}

// Fenced returns a view of s whose writes (CommitCycle, SavePoll, Settle, Enqueue)
// first call check and are refused, with an error wrapping ErrFenced and check's error,
// when it fails: the poller's and dispatcher's commits are checked against their lease.
func (s *Store) Fenced(check func() error) *Store {
	v := *s
	v.fence = check
	return &v
}

func (s *Store) checkFence() error {
	if s.fence == nil {
		return nil
	}
	if err := s.fence(); err != nil {
		return fmt.Errorf("%w: %w", ErrFenced, err)
	}
	return nil
}

// Close cancels calls in flight and, when OpenURL made the connection, drains it.
// Fenced views share the parent's Close.
func (s *Store) Close() error {
	s.cancel()
	if s.ownConn {
		if err := s.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("close JetStream store: %w", err)
		}
	}
	return nil
}

// Conn is the store's NATS connection (leases use it too).
func (s *Store) Conn() *nats.Conn { return s.nc }

// JetStream is the store's JetStream context.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.base, s.o.Timeout)
}

// perRecord is how much longer than Timeout a call on many records may take per
// record: deleting a dead letter is one JetStream request (about 1 ms on a loaded
// 2-core machine, race detector on), so ten leave room for a slow server without
// letting a stuck one hang the command for long.
const perRecord = 10 * time.Millisecond

// ctxFor bounds a call on n records: Timeout plus perRecord per record.
func (s *Store) ctxFor(n int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.base, s.o.Timeout+time.Duration(n)*perRecord)
}

// ---- names ----

// Token is esc exported: s as one subject token and KV key token (lease keys use it).
func Token(s string) string { return esc(s) }

// esc makes s a single subject token and KV key token: plain tokens as they are, any
// other string (and one starting with '=') as '=' + base64url.
func esc(s string) string {
	plain := s != "" && s[0] != '='
	for i := 0; plain && i < len(s); i++ {
		c := s[i]
		plain = c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	if plain {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

func unesc(t string) (string, error) {
	if !strings.HasPrefix(t, "=") {
		return t, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(t[1:])
	if err != nil {
		return "", fmt.Errorf("name token %q: %w", t, err)
	}
	return string(b), nil
}

func checkSink(sink string) error {
	if sink == "" {
		return errors.New("sink name is empty (expected stdout, nats, slack, webhook or webhook-N)")
	}
	if len(sink) > 200 {
		return fmt.Errorf("sink name %.20q... is %d bytes long (expected at most 200)", sink, len(sink))
	}
	return nil
}

func outboxSubject(sink string) string { return outboxPrefix + esc(sink) }
func dlqSubject(sink string) string    { return dlqPrefix + esc(sink) }

// sinkOf returns the sink of an outbox or dead-letter subject.
func sinkOf(subject, prefix string) (string, error) {
	tok, ok := strings.CutPrefix(subject, prefix)
	if !ok || tok == "" || strings.Contains(tok, ".") {
		return "", fmt.Errorf("subject %q is not under %s", subject, prefix)
	}
	return unesc(tok)
}

func (s *Store) snapPrefix() string         { return "acct." + s.acct + ".snap." }
func (s *Store) pollKey() string            { return "acct." + s.acct + ".poll" }
func (s *Store) initKey() string            { return "acct." + s.acct + ".init" }
func metaKey(sink, key string) string       { return "meta." + esc(sink) + "." + esc(key) }
func destKey(sink string) string            { return "dest." + esc(sink) }
func attKey(sink string, seq uint64) string { return fmt.Sprintf("att.%s.%d", esc(sink), seq) }

// notFound wraps store.ErrNotFound, so that callers match one error for both stores.
func notFound(format string, a ...any) error {
	return fmt.Errorf(format+": %w", append(a, store.ErrNotFound)...)
}

// ForAccount returns a view of s that reads and writes the snapshot, poll facts and
// "initialized" flag of account (acct.<account>.*); the outbox, dead letters and sink
// metadata are shared by every account, as is s's fence (set one with Fenced).
func (s *Store) ForAccount(account string) *Store {
	v := *s
	if account == "" {
		account = DefaultAccount
	}
	v.o.Account = account
	v.acct = esc(account)
	return &v
}
