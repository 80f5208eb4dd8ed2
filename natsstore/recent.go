package natsstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/store"
)

// The ring of recent events (the status page's "last events"): the last
// store.DefaultRecent events queued by CommitCycle, kept in the state bucket in
// DefaultRecent slots (recent.<slot>). Each entry is numbered (recent_head counts the
// entries ever written), so a new entry overwrites the oldest with no listing or delete.
// An entry holds the event's fields and, per sink, the outbox seq of its message.
//
// The delivery state is not written by each settlement (the dispatcher's hot path):
// RecentEvents reads it from the queues. An outcome is queued or waiting (with the
// attempt state) while its seq is in the outbox, dead while a dead letter of that seq is
// in the DLQ, and delivered once it is in neither. Replay, Purge, queue move and queue
// drop, rare and deliberate, rewrite the entries they touch: a replayed or moved record
// is followed to its new seq, a purged or dropped one is marked purged for good. A
// delivered event's time and attempt count are not known (the bolt store's ring has
// them): the status page shows "delivered" with no time.

const (
	ringPrefix  = "recent."
	ringHeadKey = "recent_head"
)

// ringEntries returns the ring entries of a committed cycle: the last
// DefaultRecent events whose outbox messages were new (a repeat, dropped by the stream,
// was recorded by the commit that first queued it). acks are the outbox acks, in the
// order of evs and their sinks.
func ringEntries(evs []store.Routed, acks []*jetstream.PubAck) ([]store.RecentEvent, error) {
	starts := make([]int, len(evs)+1) // evs[i]'s acks are acks[starts[i]:starts[i+1]]
	for i := range evs {
		starts[i+1] = starts[i] + len(evs[i].Sinks)
	}
	if starts[len(evs)] != len(acks) {
		return nil, fmt.Errorf("recent events: %d outbox acks for %d messages", len(acks), starts[len(evs)])
	}
	var out []store.RecentEvent
	for i := len(evs) - 1; i >= 0 && len(out) < store.DefaultRecent; i-- {
		r, a := &evs[i], acks[starts[i]:starts[i+1]]
		fresh := len(a) == 0
		for _, x := range a {
			fresh = fresh || !x.Duplicate
		}
		if !fresh {
			continue
		}
		re := store.NewRecentEvent(&r.Event)
		for j, sink := range r.Sinks {
			re.Sinks = append(re.Sinks, store.Outcome{Sink: sink, Seq: a[j].Sequence})
		}
		slices.SortFunc(re.Sinks, func(a, b store.Outcome) int { return strings.Compare(a.Sink, b.Sink) })
		out = append(out, re)
	}
	slices.Reverse(out)
	return out, nil
}

type ringEntry struct {
	key string
	rev uint64
	ev  ringValue
}

// ringValue is a stored entry: its number (1 for the first entry ever written) and the
// event.
type ringValue struct {
	N uint64 `json:"n"`
	store.RecentEvent
}

// addRecent writes entries into the next slots of the ring. The slots are claimed by a
// compare-and-set of recent_head first, so that the pollers of several accounts (on
// several replicas) never write the same slots.
func (s *Store) addRecent(ctx context.Context, entries []store.RecentEvent) error {
	if len(entries) == 0 {
		return nil
	}
	head, err := s.claimRecent(ctx, len(entries))
	if err != nil {
		return err
	}
	b := batch{js: s.js, ctx: ctx}
	for i := range entries {
		n := head + uint64(i) + 1
		v, err := json.Marshal(ringValue{N: n, RecentEvent: entries[i]})
		if err != nil {
			return fmt.Errorf("recent events: encode: %w", err)
		}
		if err := b.add(kvPut(fmt.Sprintf("%s%d", ringPrefix, n%store.DefaultRecent), v), ""); err != nil {
			return fmt.Errorf("recent events: %w", err)
		}
	}
	if _, err := b.wait(); err != nil {
		return fmt.Errorf("recent events: %w", err)
	}
	return nil
}

// claimRecent moves recent_head on by n and returns its value before.
func (s *Store) claimRecent(ctx context.Context, n int) (uint64, error) {
	for try := 0; ; try++ {
		var head, rev uint64
		e, err := s.kv.Get(ctx, ringHeadKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return 0, fmt.Errorf("recent events: %w", err)
		default:
			if head, err = strconv.ParseUint(string(e.Value()), 10, 64); err != nil {
				return 0, fmt.Errorf("recent events: %s: %w", ringHeadKey, err)
			}
			rev = e.Revision()
		}
		next := strconv.AppendUint(nil, head+uint64(n), 10)
		if rev == 0 {
			_, err = s.kv.Create(ctx, ringHeadKey, next)
		} else {
			_, err = s.kv.Update(ctx, ringHeadKey, next, rev)
		}
		if err == nil {
			return head, nil
		}
		if try == 4 || !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("recent events: claim slots: %w", err)
		}
	}
}

// ring reads the entries, oldest first.
func (s *Store) ring(ctx context.Context) ([]ringEntry, error) {
	var out []ringEntry
	w, err := s.kv.Watch(ctx, ringPrefix+"*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("recent events: watch: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("recent events: watch closed before the initial values were read")
			}
			if e == nil {
				slices.SortFunc(out, func(a, b ringEntry) int { return cmp.Compare(a.ev.N, b.ev.N) })
				return out, nil
			}
			re := ringEntry{key: e.Key(), rev: e.Revision()}
			if err := json.Unmarshal(e.Value(), &re.ev); err != nil {
				return nil, fmt.Errorf("recent event %s: %w", e.Key(), err)
			}
			out = append(out, re)
		case <-ctx.Done():
			return nil, fmt.Errorf("recent events: %w", ctx.Err())
		}
	}
}

// followRecent calls change with the outcome of every sink of every ring entry that is
// not purged, and rewrites the entries where it returned true (an entry evicted
// meanwhile stays evicted).
func (s *Store) followRecent(ctx context.Context, change func(o *store.Outcome) bool) error {
	entries, err := s.ring(ctx)
	if err != nil {
		return err
	}
	for _, e := range entries {
		changed := false
		for i := range e.ev.Sinks {
			if o := &e.ev.Sinks[i]; o.State != store.StatePurged && change(o) {
				changed = true
			}
		}
		if !changed {
			continue
		}
		slices.SortFunc(e.ev.Sinks, func(a, b store.Outcome) int { return strings.Compare(a.Sink, b.Sink) })
		v, err := json.Marshal(e.ev)
		if err != nil {
			return fmt.Errorf("recent events: encode: %w", err)
		}
		if _, err := s.kv.Update(ctx, e.key, v, e.rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("recent event %s: %w", e.key, err)
		}
	}
	return nil
}

// followRefs is followRecent for the outcomes named in refs.
func (s *Store) followRefs(ctx context.Context, refs map[ringRef]func(o *store.Outcome)) error {
	if len(refs) == 0 {
		return nil
	}
	return s.followRecent(ctx, func(o *store.Outcome) bool {
		change := refs[ringRef{o.Sink, o.Seq}]
		if change != nil {
			change(o)
		}
		return change != nil
	})
}

// heldRecent returns, as refs that mark them purged, the outcomes of the ring at sink
// whose records sink's outbox or dead-letter queue still holds.
func (s *Store) heldRecent(ctx context.Context, sink string) (map[ringRef]func(*store.Outcome), error) {
	entries, err := s.ring(ctx)
	if err != nil {
		return nil, err
	}
	refs := map[ringRef]func(*store.Outcome){}
	st := queueStates{s: s, ctx: ctx}
	for _, e := range entries {
		for _, o := range e.ev.Sinks {
			if o.Sink != sink {
				continue
			}
			if err := st.resolve(&o); err != nil {
				return nil, err
			}
			if o.State != store.StateDelivered && o.State != store.StatePurged {
				refs[ringRef{o.Sink, o.Seq}] = func(o *store.Outcome) { o.State = store.StatePurged }
			}
		}
	}
	return refs, nil
}

type ringRef struct {
	sink string
	seq  uint64
}

// RecentEvents returns up to limit of the last events queued, newest first, with the
// delivery state of each at each sink read from the queues (limit <= 0: all of them).
func (s *Store) RecentEvents(limit int) ([]store.RecentEvent, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	entries, err := s.ring(ctx)
	if err != nil {
		return nil, err
	}
	slices.Reverse(entries)
	if limit > 0 && len(entries) > limit {
		entries = entries[:limit]
	}
	out := make([]store.RecentEvent, 0, len(entries))
	st := queueStates{s: s, ctx: ctx}
	for _, e := range entries {
		re := e.ev.RecentEvent
		for i := range re.Sinks {
			if err := st.resolve(&re.Sinks[i]); err != nil {
				return nil, fmt.Errorf("recent events: %w", err)
			}
		}
		out = append(out, re)
	}
	return out, nil
}

// queueStates reads each sink's attempt state and dead letters once per RecentEvents.
type queueStates struct {
	s        *Store
	ctx      context.Context
	attempts map[string]map[uint64]attempt
	dead     map[string]map[uint64]store.Record // by outbox seq
}

func (q *queueStates) resolve(o *store.Outcome) error {
	if o.State == store.StatePurged {
		return nil
	}
	rec, queued, err := q.s.getOutbox(q.ctx, o.Sink, o.Seq)
	if err != nil {
		return err
	}
	if queued {
		if q.attempts == nil {
			q.attempts = map[string]map[uint64]attempt{}
		}
		att, ok := q.attempts[o.Sink]
		if !ok {
			if att, err = q.s.attempts(q.ctx, o.Sink); err != nil {
				return err
			}
			q.attempts[o.Sink] = att
		}
		if a, ok := att[o.Seq]; ok {
			a.apply(&rec)
		}
		o.State = store.StateQueued
		if rec.Attempts > 0 {
			o.State, o.Attempts, o.NextAttempt = store.StateWaiting, rec.Attempts, rec.NextAttemptAt
			o.LastError, o.LastStatus = rec.LastError, rec.LastStatus
		}
		return nil
	}
	if q.dead == nil {
		q.dead = map[string]map[uint64]store.Record{}
	}
	dl, ok := q.dead[o.Sink]
	if !ok {
		all, err := q.s.deadLetters(q.ctx, o.Sink)
		if err != nil {
			return err
		}
		dl = map[uint64]store.Record{}
		for _, d := range all {
			if d.rec.Sink == o.Sink {
				dl[d.rec.Seq] = d.rec
			}
		}
		q.dead[o.Sink] = dl
	}
	if r, ok := dl[o.Seq]; ok {
		o.State, o.Attempts, o.At = store.StateDead, r.Attempts, r.DeadAt
		o.LastError, o.LastStatus = r.LastError, r.LastStatus
		return nil
	}
	o.State = store.StateDelivered
	return nil
}
