package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/store"
)

// LoadSnapshot returns the account's stored snapshot and whether a cycle was ever
// committed for it.
func (s *Store) LoadSnapshot() (diff.Snapshot, bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	initialized, err := s.has(ctx, s.initKey())
	if err != nil {
		return nil, false, fmt.Errorf("load snapshot: %w", err)
	}
	snap := diff.Snapshot{}
	intern := map[string]string{}
	prefix := s.snapPrefix()
	err = s.scan(ctx, prefix+">", func(key string, v []byte) error {
		uuid, err := unesc(key[len(prefix):])
		if err != nil {
			return err
		}
		e, err := decodeEntry(v, intern)
		if err != nil {
			return fmt.Errorf("export %q: %w", uuid, err)
		}
		snap[uuid] = e
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("load snapshot: %w", err)
	}
	return snap, initialized, nil
}

// scan calls fn with every live key matching filter and its value.
func (s *Store) scan(ctx context.Context, filter string, fn func(key string, v []byte) error) error {
	w, err := s.kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch %s: %w", filter, err)
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: closed before the initial values were read", filter)
			}
			if e == nil {
				return nil // the initial values are read
			}
			if err := fn(e.Key(), e.Value()); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("watch %s: %w", filter, ctx.Err())
		}
	}
}

func (s *Store) has(ctx context.Context, key string) (bool, error) {
	_, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	return true, nil
}

// batch publishes messages asynchronously and waits for their acks, at most
// maxInFlight at a time (past the client's limit of pending acks a publish stalls).
//
// Pipelined publishes can be stored out of order when a server fails over (the client
// re-sends one that got no answer after later ones went through), so a batch never has
// two messages of one ordering key in flight: adding a second waits for the first.
type batch struct {
	js   jetstream.JetStream
	ctx  context.Context
	futs []jetstream.PubAckFuture
	acks []*jetstream.PubAck
	keys map[string]bool // ordering keys in flight
	// onAck, when set, is called after each acknowledged publish (progress).
	onAck func()
}

const maxInFlight = 1024

// orderKey is the ordering key of a queued record: its subject (sink) and export.
func orderKey(m *nats.Msg, r *store.Record) string { return m.Subject + " " + r.Event.OrderKey() }

// add publishes m; key, when not empty, is its ordering key (see batch).
func (b *batch) add(m *nats.Msg, key string, opts ...jetstream.PublishOpt) error {
	if len(b.futs) >= maxInFlight || key != "" && b.keys[key] {
		if err := b.drain(); err != nil {
			return err
		}
	}
	if key != "" {
		if b.keys == nil {
			b.keys = map[string]bool{}
		}
		b.keys[key] = true
	}
	f, err := b.js.PublishMsgAsync(m, opts...)
	if err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	b.futs = append(b.futs, f)
	return nil
}

func (b *batch) drain() error {
	for _, f := range b.futs {
		select {
		case a := <-f.Ok():
			b.acks = append(b.acks, a)
			if b.onAck != nil {
				b.onAck()
			}
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-b.ctx.Done():
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, b.ctx.Err())
		}
	}
	b.futs = b.futs[:0]
	clear(b.keys)
	return nil
}

// wait returns the acks of everything added since the last wait, in order, or the
// first error.
func (b *batch) wait() ([]*jetstream.PubAck, error) {
	if err := b.drain(); err != nil {
		return nil, err
	}
	acks := b.acks
	b.acks = nil
	return acks, nil
}

func kvPut(key string, v []byte) *nats.Msg {
	m := nats.NewMsg(kvPrefix + key)
	m.Data = v
	return m
}

func kvDel(key string) *nats.Msg {
	m := nats.NewMsg(kvPrefix + key)
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	return m
}

// msgID is the Nats-Msg-Id of an event queued for sink.
func msgID(ev *event.Event, sink string) string { return ev.ID + "@" + sink }

// CommitCycle writes a poll cycle: first every event into the outbox of each of its
// sinks (Nats-Msg-Id "<event id>@<sink>", so a repeat within the duplicate window is
// dropped), then the snapshot changes, then the poll facts and the "initialized" flag.
// A crash between the steps leaves events queued whose snapshot change is missing: the
// next cycle detects the same transitions with the same ids and the stream drops them.
func (s *Store) CommitCycle(c store.Cycle) error {
	poll, err := json.Marshal(c.Poll)
	if err != nil {
		return fmt.Errorf("commit cycle: encode poll: %w", err)
	}
	// A cycle of a first baseline holds every export: allow time in proportion.
	ctx, cancel := context.WithTimeout(s.base, s.o.Timeout+time.Duration(len(c.Upserts)+len(c.Events))*time.Millisecond)
	defer cancel()
	if err := s.checkFence(); err != nil {
		return fmt.Errorf("commit cycle: %w", err)
	}
	now := time.Now()
	b := batch{js: s.js, ctx: ctx}
	for _, r := range c.Events {
		for _, sink := range r.Sinks {
			if err := checkSink(sink); err != nil {
				return fmt.Errorf("commit cycle: %w", err)
			}
			rec := store.Record{Event: r.Event, EnqueuedAt: now}
			m, err := recordMsg(outboxSubject(sink), &rec, false)
			if err != nil {
				return fmt.Errorf("commit cycle: %w", err)
			}
			if err := b.add(m, orderKey(m, &rec), jetstream.WithMsgID(msgID(&r.Event, sink)), jetstream.WithExpectStream(OutboxStream)); err != nil {
				return fmt.Errorf("commit cycle: outbox: %w", err)
			}
		}
	}
	acks, err := b.wait()
	if err != nil {
		return fmt.Errorf("commit cycle: outbox: %w", err)
	}
	if err := s.checkFence(); err != nil {
		return fmt.Errorf("commit cycle: events queued, snapshot not written: %w", err)
	}
	keys := make([]string, 0, len(c.Upserts))
	for uuid := range c.Upserts {
		keys = append(keys, uuid)
	}
	slices.Sort(keys)
	prefix := s.snapPrefix()
	for _, uuid := range keys {
		if err := b.add(kvPut(prefix+esc(uuid), encodeEntry(c.Upserts[uuid])), ""); err != nil {
			return fmt.Errorf("commit cycle: snapshot: %w", err)
		}
	}
	for _, uuid := range c.Removes {
		if uuid == "" {
			continue
		}
		if err := b.add(kvDel(prefix+esc(uuid)), ""); err != nil {
			return fmt.Errorf("commit cycle: snapshot: %w", err)
		}
	}
	if _, err := b.wait(); err != nil {
		return fmt.Errorf("commit cycle: snapshot: %w", err)
	}
	recent, err := ringEntries(c.Events, acks)
	if err == nil {
		err = s.addRecent(ctx, recent)
	}
	if err != nil {
		return fmt.Errorf("commit cycle: %w", err)
	}
	if _, err := s.kv.Put(ctx, s.pollKey(), poll); err != nil {
		return fmt.Errorf("commit cycle: put poll: %w", err)
	}
	if _, err := s.kv.Put(ctx, s.initKey(), []byte{'1'}); err != nil {
		return fmt.Errorf("commit cycle: put initialized: %w", err)
	}
	s.polled(c.Poll)
	return nil
}

// SavePoll records the facts of a poll (a failed cycle) alone.
func (s *Store) SavePoll(p store.PollInfo) error {
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("save poll: encode: %w", err)
	}
	if err := s.checkFence(); err != nil {
		return fmt.Errorf("save poll: %w", err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.kv.Put(ctx, s.pollKey(), v); err != nil {
		return fmt.Errorf("save poll: %w", err)
	}
	s.polled(p)
	return nil
}

// LastPoll returns the facts of the account's last poll (zero when none was recorded).
func (s *Store) LastPoll() (store.PollInfo, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	p, err := s.lastPoll(ctx)
	if err != nil {
		return store.PollInfo{}, fmt.Errorf("last poll: %w", err)
	}
	return p, nil
}

func (s *Store) lastPoll(ctx context.Context) (store.PollInfo, error) {
	var p store.PollInfo
	e, err := s.kv.Get(ctx, s.pollKey())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("get %s: %w", s.pollKey(), err)
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return p, fmt.Errorf("decode poll: %w", err)
	}
	return p, nil
}

// Enqueue appends events to sink's outbox (outside a poll cycle), de-duplicated like
// CommitCycle's.
func (s *Store) Enqueue(sink string, evs ...event.Event) error {
	if err := checkSink(sink); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	if err := s.checkFence(); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	now := time.Now()
	b := batch{js: s.js, ctx: ctx}
	for i := range evs {
		rec := store.Record{Event: evs[i], EnqueuedAt: now}
		m, err := recordMsg(outboxSubject(sink), &rec, false)
		if err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		if err := b.add(m, orderKey(m, &rec), jetstream.WithMsgID(msgID(&evs[i], sink)), jetstream.WithExpectStream(OutboxStream)); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	if _, err := b.wait(); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	return nil
}
