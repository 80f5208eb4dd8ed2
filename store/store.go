// Package store is the bridge's embedded durable state: the export snapshot, one outbox
// queue and one dead-letter queue per sink, per-sink metadata and the facts of the last
// poll, all in one bbolt file (exportbridge.db in STATE_DIR).
//
// A poll cycle is committed in ONE transaction (CommitCycle): the snapshot changes and the
// events appended to each sink's outbox are durable together or not at all. Every commit
// costs an fsync, so callers batch: one commit per poll cycle, and the dispatcher settles
// many deliveries per commit (Settle).
//
// A Store is safe for concurrent use.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
)

// FileName is the name of the store file inside STATE_DIR.
const FileName = "exportbridge.db"

// schemaVersion is written on first open; a store written by a newer layout is refused.
const schemaVersion = 1

// allocSize is the step by which the file grows.
const allocSize = 4 << 20

// DefaultLockTimeout is how long Open waits for another process to release the file.
const DefaultLockTimeout = time.Second

// ErrLocked is wrapped by Open's error when another process holds the store.
var ErrLocked = errors.New("store locked")

// ErrNotFound is wrapped when a record, dead letter or sink asked for does not exist.
var ErrNotFound = errors.New("not found")

// Bucket names.
var (
	bktSnapshot = []byte("snapshot") // uuid -> encodeEntry
	bktState    = []byte("state")    // keyInitialized, keyPoll, keySchema
	bktOutbox   = []byte("outbox")   // sink -> (seq -> record)
	bktDead     = []byte("dead")     // sink -> (original seq -> record)
	bktMeta     = []byte("meta")     // sink -> (key -> value)

	keyInitialized = []byte("initialized")
	keyPoll        = []byte("poll")
	keySchema      = []byte("schema")
)

// Options tune Open.
type Options struct {
	// LockTimeout is how long Open waits for a store held by another process
	// (default 1s).
	LockTimeout time.Duration
	// MustExist makes Open fail (wrapping ErrNoStore) instead of creating a store:
	// read-only commands (state, dlq list) must not write.
	MustExist bool
	// Recent is how many recent events the ring of the status page keeps (default
	// DefaultRecent, at most MaxRecent; negative: no ring).
	Recent int
	// Progress, when set, is told how far the long operations on many records have
	// come (MoveQueue, Replay, Purge): done of total records, as each one is handled
	// (the commit at the end is not counted). The commands give it to a progress.Meter.
	Progress func(done, total int)
}

// Store is the open store.
type Store struct {
	db      *bolt.DB
	dir     string
	path    string
	recent  int                            // ring capacity; 0: no ring
	ringIdx ringIndex                      // see ringIndex
	onPoll  atomic.Pointer[func(PollInfo)] // see OnPoll
	report  func(done, total int)          // Options.Progress, or nothing
}

type lockedError struct{ dir, path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("another exportbridge is using STATE_DIR %q (store %s is locked); stop it or choose another EXPORTBRIDGE_STATE_DIR", e.dir, e.path)
}

func (e *lockedError) Unwrap() error { return ErrLocked }

// Open opens (creating dir and the file if needed) the store in dir. When another
// process holds the file, the error wraps ErrLocked.
func Open(dir string, opt Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open store: STATE_DIR is empty (expected a directory path)")
	}
	if opt.LockTimeout <= 0 {
		opt.LockTimeout = DefaultLockTimeout
	}
	if opt.MustExist {
		if err := checkExists(dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: create STATE_DIR %q: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opt.LockTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &lockedError{dir: dir, path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// bbolt grows the file 16 MB at a time by default; smaller steps keep a small
	// store's file small, at the cost of a few more (rare) file extensions.
	db.AllocSize = allocSize
	s := &Store{db: db, dir: dir, path: path, recent: min(opt.Recent, MaxRecent), report: opt.Progress}
	if s.report == nil {
		s.report = func(int, int) {}
	}
	if opt.Recent == 0 {
		s.recent = DefaultRecent
	}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bktSnapshot, bktState, bktOutbox, bktDead, bktMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if err := initRecent(tx); err != nil {
			return err
		}
		st := tx.Bucket(bktState)
		if v := st.Get(keySchema); v != nil {
			if len(v) != 1 || v[0] > schemaVersion {
				return fmt.Errorf("schema version %v is newer than this exportbridge understands (%d): upgrade exportbridge", v, schemaVersion)
			}
			return nil
		}
		return st.Put(keySchema, []byte{schemaVersion})
	})
	if err != nil {
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	return nil
}

// Close closes the store file and releases its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Path is the store file's path.
func (s *Store) Path() string { return s.path }

// ---- snapshot and cycles ----

// LoadSnapshot returns the stored snapshot and whether a cycle was ever committed.
func (s *Store) LoadSnapshot() (diff.Snapshot, bool, error) {
	var (
		snap        diff.Snapshot
		initialized bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		initialized = tx.Bucket(bktState).Get(keyInitialized) != nil
		b := tx.Bucket(bktSnapshot)
		snap = make(diff.Snapshot, b.Stats().KeyN)
		intern := map[string]string{}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e, err := decodeEntry(v, intern)
			if err != nil {
				return fmt.Errorf("export %q: %w", k, err)
			}
			snap[string(k)] = e
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("load snapshot: %w", err)
	}
	return snap, initialized, nil
}

// Routed is an event and the sinks whose filter wants it.
type Routed struct {
	Event event.Event
	Sinks []string
}

// PollInfo are the facts of one poll cycle.
type PollInfo struct {
	// Account is the accounts: entry that polled (config file, STORE=nats); empty for
	// the one account of API_TOKEN.
	Account       string    `json:"account,omitempty"`
	At            time.Time `json:"at"`
	OK            bool      `json:"ok"`
	Error         string    `json:"error,omitempty"`
	Full          bool      `json:"full"`
	Exports       int       `json:"exports"`
	Events        int       `json:"events"`
	Requests      int       `json:"requests"`
	RateRemaining int       `json:"rate_remaining"`
	// LastFull is when the last complete full listing was taken, so a restart does not
	// need a full listing (4,000 requests at 100k exports) before its first cheap cycle.
	LastFull time.Time `json:"last_full,omitzero"`
}

// Cycle is everything one successful poll cycle changes.
type Cycle struct {
	Upserts map[string]diff.Entry
	Removes []string
	Events  []Routed
	Poll    PollInfo
}

// CommitCycle writes, in ONE transaction, the snapshot changes, each event appended to
// the outbox of each of its sinks, the poll facts and the "initialized" flag. Either all
// of it is durable or none of it.
func (s *Store) CommitCycle(c Cycle) error {
	poll, err := json.Marshal(c.Poll)
	if err != nil {
		return fmt.Errorf("commit cycle: encode poll: %w", err)
	}
	now := time.Now()
	var rg *ring // the ring is not touched by a cycle without events
	err = s.db.Update(func(tx *bolt.Tx) error {
		snap := tx.Bucket(bktSnapshot)
		// Sorted keys: bbolt inserts in key order cheaply, in random order (map
		// iteration) it splits pages over and over (more than 10x slower for a first
		// cycle of 100k exports: BenchmarkBaselineCommit100k, BENCHMARKS.md finding B).
		keys := make([]string, 0, len(c.Upserts))
		for uuid := range c.Upserts {
			keys = append(keys, uuid)
		}
		slices.Sort(keys)
		for _, uuid := range keys {
			// A fresh value per Put: bbolt keeps it until the transaction ends.
			if err := snap.Put([]byte(uuid), encodeEntry(nil, c.Upserts[uuid])); err != nil {
				return fmt.Errorf("put snapshot %q: %w", uuid, err)
			}
		}
		for _, uuid := range c.Removes {
			if uuid == "" {
				continue
			}
			if err := snap.Delete([]byte(uuid)); err != nil {
				return fmt.Errorf("delete snapshot %q: %w", uuid, err)
			}
		}
		q := queues{tx: tx}
		if len(c.Events) > 0 {
			var err error
			if rg, err = s.ringOf(tx); err != nil {
				return err
			}
		}
		var seqs []uint64
		for i, r := range c.Events {
			seqs = seqs[:0]
			for _, sink := range r.Sinks {
				rec := newRecord(r.Event, now)
				seq, err := q.append(sink, &rec)
				if err != nil {
					return err
				}
				seqs = append(seqs, seq)
			}
			if rg != nil && i >= len(c.Events)-rg.cap {
				if err := rg.add(&c.Events[i].Event, r.Sinks, seqs); err != nil {
					return err
				}
			}
		}
		st := tx.Bucket(bktState)
		if err := st.Put(keyPoll, poll); err != nil {
			return fmt.Errorf("put poll: %w", err)
		}
		if err := st.Put(keyInitialized, []byte{1}); err != nil {
			return fmt.Errorf("put initialized: %w", err)
		}
		if rg != nil {
			return rg.flush()
		}
		return nil
	})
	ringFailed(rg, err)
	if err != nil {
		return fmt.Errorf("commit cycle: %w", err)
	}
	s.polled(c.Poll)
	return nil
}

// OnPoll registers fn, called after each poll's facts are committed (CommitCycle and
// SavePoll), on the committing goroutine: it must be quick and must not call the store.
// It feeds the status page's in-memory record of recent polls. nil unregisters.
func (s *Store) OnPoll(fn func(PollInfo)) {
	if fn == nil {
		s.onPoll.Store(nil)
		return
	}
	s.onPoll.Store(&fn)
}

func (s *Store) polled(p PollInfo) {
	if fn := s.onPoll.Load(); fn != nil {
		(*fn)(p)
	}
}

// SavePoll records the facts of a poll (a failed cycle) alone.
func (s *Store) SavePoll(p PollInfo) error {
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("save poll: encode: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bktState).Put(keyPoll, v)
	})
	if err != nil {
		return fmt.Errorf("save poll: %w", err)
	}
	s.polled(p)
	return nil
}

// LastPoll returns the facts of the last poll (zero PollInfo when none was recorded).
func (s *Store) LastPoll() (PollInfo, error) {
	var p PollInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		return readPoll(tx, &p)
	})
	if err != nil {
		return PollInfo{}, fmt.Errorf("last poll: %w", err)
	}
	return p, nil
}

func readPoll(tx *bolt.Tx, p *PollInfo) error {
	v := tx.Bucket(bktState).Get(keyPoll)
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(v, p); err != nil {
		return fmt.Errorf("decode poll: %w", err)
	}
	return nil
}

// ---- outbox ----

// Record is one event in one sink's outbox or dead-letter queue.
type Record struct {
	Seq            uint64 // per-sink sequence number: FIFO order of the outbox
	Sink           string
	Event          event.Event
	EnqueuedAt     time.Time
	Attempts       int
	FirstAttemptAt time.Time
	NextAttemptAt  time.Time
	LastError      string
	LastStatus     int
	DeadAt         time.Time
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

// queues gives the per-sink buckets of one write transaction.
type queues struct {
	tx     *bolt.Tx
	outbox map[string]*bolt.Bucket
}

func (q *queues) sub(parent []byte, sink string, create bool) (*bolt.Bucket, error) {
	if err := checkSink(sink); err != nil {
		return nil, err
	}
	p := q.tx.Bucket(parent)
	if !create {
		return p.Bucket([]byte(sink)), nil
	}
	b, err := p.CreateBucketIfNotExists([]byte(sink))
	if err != nil {
		return nil, fmt.Errorf("create %s bucket %s: %w", parent, sink, err)
	}
	return b, nil
}

// append adds rec at the end of sink's outbox, setting rec.Seq and rec.Sink.
func (q *queues) append(sink string, rec *Record) (uint64, error) {
	b := q.outbox[sink]
	if b == nil {
		var err error
		if b, err = q.sub(bktOutbox, sink, true); err != nil {
			return 0, fmt.Errorf("put outbox %s: %w", sink, err)
		}
		// Keys only ever grow: full pages keep the file compact.
		b.FillPercent = 1.0
		if q.outbox == nil {
			q.outbox = map[string]*bolt.Bucket{}
		}
		q.outbox[sink] = b
	}
	seq, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("put outbox %s: next sequence: %w", sink, err)
	}
	rec.Seq, rec.Sink = seq, sink
	if err := b.Put(seqKey(seq), encodeRecord(nil, rec)); err != nil {
		return 0, fmt.Errorf("put outbox %s: %w", sink, err)
	}
	return seq, nil
}

// Enqueue appends events to sink's outbox in one transaction (outside a poll cycle).
func (s *Store) Enqueue(sink string, evs ...event.Event) error {
	now := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		q := queues{tx: tx}
		for _, ev := range evs {
			rec := newRecord(ev, now)
			if _, err := q.append(sink, &rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	return nil
}

// Pending returns up to limit records of sink's outbox with seq > afterSeq, ascending.
// limit <= 0 means no limit.
func (s *Store) Pending(sink string, afterSeq uint64, limit int) ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktOutbox).Bucket([]byte(sink))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		// Count first, then decode into a slice of that size: a dispatcher reads
		// thousands of records at a time, and growing the slice would copy them over and
		// over.
		n := 0
		for k, _ := c.Seek(seqKey(afterSeq + 1)); k != nil && (limit <= 0 || n < limit); k, _ = c.Next() {
			n++
		}
		out = make([]Record, 0, n)
		for k, v := c.Seek(seqKey(afterSeq + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			rec, err := decodeRecord(sink, keySeq(k), v)
			if err != nil {
				return err
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pending %s: %w", sink, err)
	}
	return out, nil
}

// Settlement is the outcome of a batch of delivery attempts for one sink, written in
// one transaction by Settle.
type Settlement struct {
	Acks     []uint64 // delivered: removed from the outbox
	Attempts []Record // failed, to be retried: attempt state saved
	Dead     []Record // given up: moved to the dead-letter queue
}

// Settle applies a batch of delivery outcomes for sink in one transaction. Records of
// Attempts that are no longer in the outbox are skipped; a Dead record that is not in
// the outbox is an error (nothing of the batch is written then).
func (s *Store) Settle(sink string, st Settlement) error {
	if len(st.Acks)+len(st.Attempts)+len(st.Dead) == 0 {
		return nil
	}
	if err := s.settle(sink, st, true); err != nil {
		return fmt.Errorf("settle %s: %w", sink, err)
	}
	return nil
}

// settle applies st in one write transaction and records the outcomes in the ring of
// recent events.
func (s *Store) settle(sink string, st Settlement, skipMissing bool) error {
	var rg *ring
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := settle(tx, sink, st, skipMissing); err != nil {
			return err
		}
		var err error
		if rg, err = s.ringOf(tx); err != nil || rg == nil {
			return err
		}
		if err := rg.settled(sink, st, time.Now().UTC()); err != nil {
			return err
		}
		return rg.flush()
	})
	ringFailed(rg, err)
	return err
}

func settle(tx *bolt.Tx, sink string, st Settlement, skipMissing bool) error {
	q := queues{tx: tx}
	ob, err := q.sub(bktOutbox, sink, false)
	if err != nil {
		return err
	}
	if ob == nil {
		if len(st.Dead) == 0 && (skipMissing || len(st.Attempts) == 0) {
			return nil // nothing queued: acks are idempotent
		}
		return fmt.Errorf("outbox %s: %w", sink, ErrNotFound)
	}
	for _, seq := range st.Acks {
		if err := ob.Delete(seqKey(seq)); err != nil {
			return fmt.Errorf("ack seq %d: %w", seq, err)
		}
	}
	for i := range st.Attempts {
		r := &st.Attempts[i]
		v := ob.Get(seqKey(r.Seq))
		if v == nil {
			if skipMissing {
				continue
			}
			return fmt.Errorf("save attempt of seq %d: %w", r.Seq, ErrNotFound)
		}
		cur, err := decodeRecord(sink, r.Seq, v)
		if err != nil {
			return err
		}
		cur.Attempts, cur.FirstAttemptAt, cur.NextAttemptAt = r.Attempts, r.FirstAttemptAt, r.NextAttemptAt
		cur.LastError, cur.LastStatus = r.LastError, r.LastStatus
		if err := ob.Put(seqKey(r.Seq), encodeRecord(nil, &cur)); err != nil {
			return fmt.Errorf("save attempt of seq %d: %w", r.Seq, err)
		}
	}
	if len(st.Dead) == 0 {
		return nil
	}
	dq, err := q.sub(bktDead, sink, true)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for i := range st.Dead {
		r := &st.Dead[i]
		k := seqKey(r.Seq)
		v := ob.Get(k)
		if v == nil {
			return fmt.Errorf("dead-letter seq %d: not in the outbox: %w", r.Seq, ErrNotFound)
		}
		cur, err := decodeRecord(sink, r.Seq, v)
		if err != nil {
			return err
		}
		cur.Attempts, cur.FirstAttemptAt, cur.NextAttemptAt = r.Attempts, r.FirstAttemptAt, r.NextAttemptAt
		cur.LastError, cur.LastStatus = r.LastError, r.LastStatus
		cur.DeadAt = r.DeadAt
		if cur.DeadAt.IsZero() {
			cur.DeadAt = now
		}
		if err := dq.Put(k, encodeRecord(nil, &cur)); err != nil {
			return fmt.Errorf("dead-letter seq %d: put: %w", r.Seq, err)
		}
		if err := ob.Delete(k); err != nil {
			return fmt.Errorf("dead-letter seq %d: delete from outbox: %w", r.Seq, err)
		}
	}
	return nil
}

// ---- dead letters ----

// MatchSink reports whether the sink name matches a selection: "" selects every sink,
// "webhook" selects "webhook" and every "webhook-N", any other value selects that sink.
func MatchSink(sel, name string) bool {
	switch {
	case sel == "":
		return true
	case sel == "webhook":
		return name == "webhook" || strings.HasPrefix(name, "webhook-")
	default:
		return sel == name
	}
}

// forSinks calls fn for each sub-bucket of parent whose name matches sel.
func forSinks(tx *bolt.Tx, parent []byte, sel string, fn func(sink string, b *bolt.Bucket) error) error {
	p := tx.Bucket(parent)
	var names []string
	err := p.ForEachBucket(func(k []byte) error {
		if MatchSink(sel, string(k)) {
			names = append(names, string(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := fn(n, p.Bucket([]byte(n))); err != nil {
			return err
		}
	}
	return nil
}

// DeadLetters lists the dead letters of the selected sinks ("" all, "webhook" every
// webhook sink), by sink name then in queue order.
func (s *Store) DeadLetters(sink string) ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return forSinks(tx, bktDead, sink, func(name string, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				rec, err := decodeRecord(name, keySeq(k), v)
				if err != nil {
					return err
				}
				out = append(out, rec)
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// takeDead removes the selected dead letters (ids are event ids; all takes every one)
// and calls fn with each. An id that matches no dead letter of the selected sinks fails
// the whole operation with an error wrapping ErrNotFound.
func takeDead(tx *bolt.Tx, sink string, ids []string, all bool, report func(done, total int), fn func(rec Record) error) (int, error) {
	if !all && len(ids) == 0 {
		return 0, errors.New("no event ids given (expected one or more ids, or all)")
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = false
	}
	n, total := 0, 0
	err := forSinks(tx, bktDead, sink, func(name string, b *bolt.Bucket) error {
		var keys [][]byte
		var recs []Record
		err := b.ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(name, keySeq(k), v)
			if err != nil {
				return err
			}
			if _, ok := want[rec.Event.ID]; ok || all {
				want[rec.Event.ID] = true
				keys = append(keys, append([]byte(nil), k...))
				recs = append(recs, rec)
			}
			return nil
		})
		if err != nil {
			return err
		}
		total += len(keys)
		for i, k := range keys {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("delete dead letter %s/%d: %w", name, keySeq(k), err)
			}
			if err := fn(recs[i]); err != nil {
				return err
			}
			n++
			report(n, total)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var missing []string
	for _, id := range ids {
		if !want[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		where := "any sink"
		if sink != "" {
			where = "sink " + sink
		}
		return 0, fmt.Errorf("no dead letter with event id %s in %s: %w", strings.Join(missing, ", "), where, ErrNotFound)
	}
	return n, nil
}

// Replay moves dead letters back to the END of their sink's outbox with attempts reset
// and the same event (same id and body). ids are event ids; all=true takes every one;
// sink selects as in DeadLetters. It returns how many records were moved. An unknown id
// fails the whole replay (nothing moved) with an error wrapping ErrNotFound.
func (s *Store) Replay(sink string, ids []string, all bool) (int, error) {
	var n int
	now := time.Now()
	var rg *ring
	err := s.db.Update(func(tx *bolt.Tx) error {
		q := queues{tx: tx}
		var err error
		if rg, err = s.ringOf(tx); err != nil {
			return err
		}
		n, err = takeDead(tx, sink, ids, all, s.report, func(rec Record) error {
			fresh := newRecord(rec.Event, now)
			seq, err := q.append(rec.Sink, &fresh)
			if err != nil || rg == nil {
				return err
			}
			return rg.taken(rec, seq)
		})
		if err != nil || rg == nil {
			return err
		}
		return rg.flush()
	})
	ringFailed(rg, err)
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	return n, nil
}

// Purge deletes dead letters, selected as in Replay, and returns how many.
func (s *Store) Purge(sink string, ids []string, all bool) (int, error) {
	var n int
	var rg *ring
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if rg, err = s.ringOf(tx); err != nil {
			return err
		}
		n, err = takeDead(tx, sink, ids, all, s.report, func(rec Record) error {
			if rg == nil {
				return nil
			}
			return rg.taken(rec, 0)
		})
		if err != nil || rg == nil {
			return err
		}
		return rg.flush()
	})
	ringFailed(rg, err)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return n, nil
}

// ---- statistics ----

// Stats are the store's figures for `state` and the admin endpoint.
type Stats struct {
	Exports     int
	Initialized bool
	Outbox      map[string]int
	DeadLetters map[string]int
	LastPoll    PollInfo
	FileBytes   int64
}

// Stats counts exports and queue depths. Counting walks the pages of each bucket: cheap
// enough for a status page, not for a per-event hot path.
func (s *Store) Stats() (Stats, error) {
	st := Stats{Outbox: map[string]int{}, DeadLetters: map[string]int{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		st.Exports = tx.Bucket(bktSnapshot).Stats().KeyN
		st.Initialized = tx.Bucket(bktState).Get(keyInitialized) != nil
		if err := readPoll(tx, &st.LastPoll); err != nil {
			return err
		}
		if err := forSinks(tx, bktOutbox, "", func(name string, b *bolt.Bucket) error {
			st.Outbox[name] = b.Stats().KeyN
			return nil
		}); err != nil {
			return err
		}
		return forSinks(tx, bktDead, "", func(name string, b *bolt.Bucket) error {
			st.DeadLetters[name] = b.Stats().KeyN
			return nil
		})
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	st.FileBytes = fi.Size()
	return st, nil
}

// Depths returns the number of records in sink's outbox and dead-letter queue.
func (s *Store) Depths(sink string) (outbox, dead int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bktOutbox).Bucket([]byte(sink)); b != nil {
			outbox = b.Stats().KeyN
		}
		if b := tx.Bucket(bktDead).Bucket([]byte(sink)); b != nil {
			dead = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("depths %s: %w", sink, err)
	}
	return outbox, dead, nil
}

// Sinks lists, sorted, every sink name that has an outbox, a dead-letter queue or
// metadata (also sinks no longer configured, whose dead letters still need attention).
func (s *Store) Sinks() ([]string, error) {
	set := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, p := range [][]byte{bktOutbox, bktDead, bktMeta} {
			if err := tx.Bucket(p).ForEachBucket(func(k []byte) error {
				set[string(k)] = true
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sinks: %w", err)
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// ---- per-sink metadata ----

func checkMetaKey(key string) error {
	if key == "" {
		return errors.New("metadata key is empty (expected e.g. an export uuid)")
	}
	if len(key) > bolt.MaxKeySize {
		return fmt.Errorf("metadata key is %d bytes long (expected at most %d)", len(key), bolt.MaxKeySize)
	}
	return nil
}

// GetMeta returns the value stored for sink and key, or nil, nil when there is none.
func (s *Store) GetMeta(sink, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktMeta).Bucket([]byte(sink))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			out = append([]byte{}, v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get meta %s/%s: %w", sink, key, err)
	}
	return out, nil
}

// PutMeta stores v for sink and key.
func (s *Store) PutMeta(sink, key string, v []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := checkMetaKey(key); err != nil {
			return err
		}
		q := queues{tx: tx}
		b, err := q.sub(bktMeta, sink, true)
		if err != nil {
			return err
		}
		if v == nil {
			v = []byte{}
		}
		return b.Put([]byte(key), v)
	})
	if err != nil {
		return fmt.Errorf("put meta %s/%s: %w", sink, key, err)
	}
	return nil
}

// DeleteMeta removes the value of sink and key; an absent one is no error.
func (s *Store) DeleteMeta(sink, key string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktMeta).Bucket([]byte(sink))
		if b == nil || key == "" {
			return nil
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("delete meta %s/%s: %w", sink, key, err)
	}
	return nil
}
