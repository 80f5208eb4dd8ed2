package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/store"
)

// read calls fn with up to limit messages of st on filter from sequence start on, in
// order (limit <= 0: all). It uses an ephemeral consumer that it deletes after.
func (s *Store) read(ctx context.Context, st jetstream.Stream, filter string, start uint64, limit int, fn func(jetstream.Msg) error) error {
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     filter,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
	}
	if start > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	c, err := st.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("read %s: create consumer: %w", filter, err)
	}
	info := c.CachedInfo()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
		defer cancel()
		_ = st.DeleteConsumer(dctx, info.Name) // else it goes after InactiveThreshold
	}()
	n := int(info.NumPending)
	if limit > 0 && n > limit {
		n = limit
	}
	for got := 0; got < n; {
		b, err := c.FetchNoWait(min(n-got, 1024))
		if err != nil {
			return fmt.Errorf("read %s: fetch: %w", filter, err)
		}
		k := 0
		for m := range b.Messages() {
			k++
			if got+k > n {
				continue
			}
			if err := fn(m); err != nil {
				return err
			}
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read %s: fetch: %w", filter, err)
		}
		if k == 0 {
			break // deleted since the consumer counted them
		}
		got += k
	}
	return nil
}

// attempts returns the attempt state stored for sink's records, by seq.
func (s *Store) attempts(ctx context.Context, sink string) (map[uint64]attempt, error) {
	out := map[uint64]attempt{}
	prefix := "att." + esc(sink) + "."
	err := s.scan(ctx, prefix+"*", func(key string, v []byte) error {
		seq, err := strconv.ParseUint(key[len(prefix):], 10, 64)
		if err != nil {
			return fmt.Errorf("attempt key %s: %w", key, err)
		}
		var a attempt
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("attempt key %s: %w", key, err)
		}
		out[seq] = a
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Merged, not replaced: a Settle running beside this scan may have added a key.
	s.state.mu.Lock()
	if s.state.attempts[sink] == nil {
		s.state.attempts[sink] = map[uint64]bool{}
	}
	for seq := range out {
		s.state.attempts[sink][seq] = true
	}
	s.state.mu.Unlock()
	return out, nil
}

// Pending returns up to limit records of sink's outbox with seq > afterSeq, ascending,
// with their attempt state. limit <= 0 means no limit.
func (s *Store) Pending(sink string, afterSeq uint64, limit int) ([]store.Record, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var out []store.Record
	var err error
	// A consumer created while the cluster moves a stream's leader can find no
	// responder: a read is repeated a few times before the error is the caller's.
	for try := 0; ; try++ {
		out = out[:0]
		err = s.read(ctx, s.outbox, outboxSubject(sink), afterSeq+1, limit, func(m jetstream.Msg) error {
			rec, _, err := decodeMsg(outboxPrefix, m)
			if err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
		if err == nil || try == 4 || !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pending %s: %w", sink, err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	att, err := s.attempts(ctx, sink)
	if err != nil {
		return nil, fmt.Errorf("pending %s: %w", sink, err)
	}
	for i := range out {
		if a, ok := att[out[i].Seq]; ok {
			a.apply(&out[i])
		}
	}
	return out, nil
}

// getOutbox returns sink's outbox record seq, or ok=false when it is not queued.
func (s *Store) getOutbox(ctx context.Context, sink string, seq uint64) (store.Record, bool, error) {
	m, err := s.outbox.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return store.Record{}, false, nil
	}
	if err != nil {
		return store.Record{}, false, fmt.Errorf("get outbox seq %d: %w", seq, err)
	}
	if m.Subject != outboxSubject(sink) {
		return store.Record{}, false, nil
	}
	rec, err := decodeRecord(sink, seq, m.Header, m.Data)
	return rec, err == nil, err
}

// deleteMsg deletes seq from st; a message already gone is no error.
func deleteMsg(ctx context.Context, st jetstream.Stream, seq uint64) error {
	err := st.DeleteMsg(ctx, seq)
	if err == nil {
		return nil
	}
	if _, gerr := st.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return fmt.Errorf("delete seq %d: %w", seq, err)
}

// deleteWorkers is how many outbox deletes of one settlement are in flight at once
// (each is a JetStream API request).
const deleteWorkers = 8

// deleteAll removes seqs from sink's outbox, and their attempt state, deleteWorkers at a
// time.
func (s *Store) deleteAll(ctx context.Context, sink string, seqs []uint64) error {
	work := make(chan uint64)
	errs := make(chan error, deleteWorkers)
	var wg sync.WaitGroup
	for range min(deleteWorkers, len(seqs)) {
		wg.Go(func() {
			for seq := range work {
				if err := deleteMsg(ctx, s.outbox, seq); err != nil {
					errs <- fmt.Errorf("outbox: %w", err)
					return
				}
				if err := s.dropAttempt(ctx, sink, seq); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for _, seq := range seqs {
		select {
		case work <- seq:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// dropAttempt deletes att.<sink>.<seq> when this store knows of one.
func (s *Store) dropAttempt(ctx context.Context, sink string, seq uint64) error {
	s.state.mu.Lock()
	has := s.state.attempts[sink][seq]
	delete(s.state.attempts[sink], seq)
	s.state.mu.Unlock()
	if !has {
		return nil
	}
	if err := s.kv.Purge(ctx, attKey(sink, seq)); err != nil {
		return fmt.Errorf("delete attempt state of seq %d: %w", seq, err)
	}
	return nil
}

// Settle applies a batch of delivery outcomes for sink: dead letters are written to the
// DLQ stream and then removed from the outbox, acks removed, attempt state saved.
// Attempts of records no longer queued are skipped; a Dead record that is not queued is
// an error (checked before anything is written).
func (s *Store) Settle(sink string, st store.Settlement) error {
	if len(st.Acks)+len(st.Attempts)+len(st.Dead) == 0 {
		return nil
	}
	if err := s.checkFence(); err != nil {
		return fmt.Errorf("settle %s: %w", sink, err)
	}
	ctx, cancel := context.WithTimeout(s.base, s.o.Timeout+time.Duration(len(st.Acks))*time.Millisecond)
	defer cancel()
	if err := s.settle(ctx, sink, st); err != nil {
		return fmt.Errorf("settle %s: %w", sink, err)
	}
	if err := s.recordHealth(ctx, sink, st); err != nil {
		return fmt.Errorf("settle %s: %w", sink, err)
	}
	return nil
}

func (s *Store) settle(ctx context.Context, sink string, st store.Settlement) error {
	dead := make([]store.Record, 0, len(st.Dead))
	for i := range st.Dead {
		cur, ok, err := s.getOutbox(ctx, sink, st.Dead[i].Seq)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("dead-letter seq %d: not in the outbox", st.Dead[i].Seq)
		}
		attemptOf(&st.Dead[i]).apply(&cur)
		if cur.DeadAt.IsZero() {
			cur.DeadAt = time.Now().UTC()
		}
		dead = append(dead, cur)
	}
	b := batch{js: s.js, ctx: ctx}
	for i := range dead {
		m, err := recordMsg(dlqSubject(sink), &dead[i], true)
		if err != nil {
			return err
		}
		m.Header.Set(hdrSeq, strconv.FormatUint(dead[i].Seq, 10))
		id := fmt.Sprintf("dead/%s/%d", esc(sink), dead[i].Seq)
		if err := b.add(m, orderKey(m, &dead[i]), jetstream.WithMsgID(id), jetstream.WithExpectStream(DLQStream)); err != nil {
			return fmt.Errorf("dead-letter seq %d: %w", dead[i].Seq, err)
		}
	}
	if _, err := b.wait(); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	gone := append(slices.Clone(st.Acks), make([]uint64, 0, len(dead))...)
	for i := range dead {
		gone = append(gone, dead[i].Seq)
	}
	if err := s.deleteAll(ctx, sink, gone); err != nil {
		return err
	}
	for i := range st.Attempts {
		r := &st.Attempts[i]
		if _, ok, err := s.getOutbox(ctx, sink, r.Seq); err != nil {
			return err
		} else if !ok {
			continue
		}
		a := attemptOf(r)
		a.DeadAt = time.Time{}
		v, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("save attempt of seq %d: %w", r.Seq, err)
		}
		if _, err := s.kv.Put(ctx, attKey(sink, r.Seq), v); err != nil {
			return fmt.Errorf("save attempt of seq %d: %w", r.Seq, err)
		}
		s.state.mu.Lock()
		if s.state.attempts[sink] == nil {
			s.state.attempts[sink] = map[uint64]bool{}
		}
		s.state.attempts[sink][r.Seq] = true
		s.state.mu.Unlock()
	}
	return nil
}

// ---- dead letters ----

type deadLetter struct {
	rec  store.Record
	dseq uint64 // its sequence in the DLQ stream
}

// deadLetters reads the dead letters of the selected sinks, by sink then queue order.
func (s *Store) deadLetters(ctx context.Context, sel string) ([]deadLetter, error) {
	var out []deadLetter
	filter := dlqPrefix + ">"
	if sel != "" && sel != "webhook" {
		filter = dlqSubject(sel)
	}
	err := s.read(ctx, s.dlq, filter, 0, 0, func(m jetstream.Msg) error {
		rec, dseq, err := decodeMsg(dlqPrefix, m)
		if err != nil {
			return err
		}
		if store.MatchSink(sel, rec.Sink) {
			out = append(out, deadLetter{rec: rec, dseq: dseq})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b deadLetter) int {
		if c := strings.Compare(a.rec.Sink, b.rec.Sink); c != 0 {
			return c
		}
		return int(min(max(int64(a.rec.Seq)-int64(b.rec.Seq), -1), 1))
	})
	return out, nil
}

// DeadLetters lists the dead letters of the selected sinks ("" all, "webhook" every
// webhook sink), by sink name then in queue order.
func (s *Store) DeadLetters(sink string) ([]store.Record, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	dl, err := s.deadLetters(ctx, sink)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	out := make([]store.Record, len(dl))
	for i := range dl {
		out[i] = dl[i].rec
	}
	return out, nil
}

// selectDead returns the selected dead letters (ids are event ids; all takes every one).
// An id that matches no dead letter of the selected sinks is an error wrapping
// store.ErrNotFound.
func (s *Store) selectDead(ctx context.Context, sink string, ids []string, all bool) ([]deadLetter, error) {
	if !all && len(ids) == 0 {
		return nil, errors.New("no event ids given (expected one or more ids, or all)")
	}
	dl, err := s.deadLetters(ctx, sink)
	if err != nil {
		return nil, err
	}
	if all {
		return dl, nil
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = false
	}
	var out []deadLetter
	for _, d := range dl {
		if _, ok := want[d.rec.Event.ID]; ok {
			want[d.rec.Event.ID] = true
			out = append(out, d)
		}
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
		return nil, notFound("no dead letter with event id %s in %s", strings.Join(missing, ", "), where)
	}
	return out, nil
}

// Replay moves dead letters back to the end of their sink's outbox with attempts reset
// and the same event (same id and body); see store.Store.Replay.
func (s *Store) Replay(sink string, ids []string, all bool) (int, error) {
	sctx, scancel := s.ctx()
	dl, err := s.selectDead(sctx, sink, ids, all)
	scancel()
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	ctx, cancel := s.ctxFor(len(dl))
	defer cancel()
	now := time.Now()
	b := batch{js: s.js, ctx: ctx}
	for _, d := range dl {
		rec := store.Record{Event: d.rec.Event, EnqueuedAt: now}
		m, err := recordMsg(outboxSubject(d.rec.Sink), &rec, false)
		if err != nil {
			return 0, fmt.Errorf("replay: %w", err)
		}
		// A fresh id per dead letter: the event's own is in the duplicate window still
		// when the dead-lettering was quick.
		id := fmt.Sprintf("%s/replay/%d", msgID(&d.rec.Event, d.rec.Sink), d.dseq)
		if err := b.add(m, orderKey(m, &rec), jetstream.WithMsgID(id), jetstream.WithExpectStream(OutboxStream)); err != nil {
			return 0, fmt.Errorf("replay: %w", err)
		}
	}
	acks, err := b.wait()
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	refs := map[ringRef]func(*store.Outcome){}
	for i, d := range dl {
		if err := deleteMsg(ctx, s.dlq, d.dseq); err != nil {
			return 0, fmt.Errorf("replay: dead letters: %w", err)
		}
		s.o.Progress(i+1, len(dl)) // a dead letter is replayed once it is deleted
		fresh := acks[i].Sequence
		refs[ringRef{d.rec.Sink, d.rec.Seq}] = func(o *store.Outcome) { *o = store.Outcome{Sink: o.Sink, Seq: fresh} }
	}
	if err := s.followRefs(ctx, refs); err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	return len(dl), nil
}

// Purge deletes dead letters, selected as in Replay, and returns how many.
func (s *Store) Purge(sink string, ids []string, all bool) (int, error) {
	sctx, scancel := s.ctx()
	dl, err := s.selectDead(sctx, sink, ids, all)
	scancel()
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	ctx, cancel := s.ctxFor(len(dl))
	defer cancel()
	refs := map[ringRef]func(*store.Outcome){}
	for i, d := range dl {
		if err := deleteMsg(ctx, s.dlq, d.dseq); err != nil {
			return 0, fmt.Errorf("purge: %w", err)
		}
		s.o.Progress(i+1, len(dl))
		refs[ringRef{d.rec.Sink, d.rec.Seq}] = func(o *store.Outcome) { o.State = store.StatePurged }
	}
	if err := s.followRefs(ctx, refs); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return len(dl), nil
}

// ---- statistics ----

// counts returns the number of messages per sink in st.
func counts(ctx context.Context, st jetstream.Stream, prefix, filter string) (map[string]int, uint64, error) {
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, 0, fmt.Errorf("stream info: %w", err)
	}
	out := map[string]int{}
	for subj, n := range info.State.Subjects {
		sink, err := sinkOf(subj, prefix)
		if err != nil {
			return nil, 0, err
		}
		out[sink] = int(n)
	}
	return out, info.State.Bytes, nil
}

// Depths returns the number of records in sink's outbox and dead-letter queue.
func (s *Store) Depths(sink string) (outbox, dead int, err error) {
	ctx, cancel := s.ctx()
	defer cancel()
	ob, _, err := counts(ctx, s.outbox, outboxPrefix, outboxSubject(sink))
	if err != nil {
		return 0, 0, fmt.Errorf("depths %s: outbox: %w", sink, err)
	}
	dl, _, err := counts(ctx, s.dlq, dlqPrefix, dlqSubject(sink))
	if err != nil {
		return 0, 0, fmt.Errorf("depths %s: dead letters: %w", sink, err)
	}
	return ob[sink], dl[sink], nil
}

// Stats counts the account's exports and every sink's queue depths. FileBytes is the
// bytes the outbox and dead-letter streams hold.
func (s *Store) Stats() (store.Stats, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	st := store.Stats{}
	var err error
	var ob, db uint64
	if st.Outbox, ob, err = counts(ctx, s.outbox, outboxPrefix, outboxPrefix+">"); err != nil {
		return store.Stats{}, fmt.Errorf("stats: outbox: %w", err)
	}
	if st.DeadLetters, db, err = counts(ctx, s.dlq, dlqPrefix, dlqPrefix+">"); err != nil {
		return store.Stats{}, fmt.Errorf("stats: dead letters: %w", err)
	}
	st.FileBytes = int64(ob + db)
	if st.Initialized, err = s.has(ctx, s.initKey()); err != nil {
		return store.Stats{}, fmt.Errorf("stats: %w", err)
	}
	if st.LastPoll, err = s.lastPoll(ctx); err != nil {
		return store.Stats{}, fmt.Errorf("stats: %w", err)
	}
	keys, err := s.kv.ListKeysFiltered(ctx, s.snapPrefix()+">")
	if err != nil {
		return store.Stats{}, fmt.Errorf("stats: count exports: %w", err)
	}
	for range keys.Keys() {
		st.Exports++
	}
	return st, nil
}

// Sinks lists, sorted, every sink name that has an outbox, a dead-letter queue or
// metadata (as store.Store.Sinks: a destination alone does not count).
func (s *Store) Sinks() ([]string, error) {
	st, err := s.Stats()
	if err != nil {
		return nil, fmt.Errorf("sinks: %w", err)
	}
	set := map[string]bool{}
	for n := range st.Outbox {
		set[n] = true
	}
	for n := range st.DeadLetters {
		set[n] = true
	}
	ctx, cancel := s.ctx()
	defer cancel()
	keys, err := s.kv.ListKeysFiltered(ctx, "meta.*.>")
	if err != nil {
		return nil, fmt.Errorf("sinks: %w", err)
	}
	for k := range keys.Keys() {
		tok := strings.Split(k, ".")[1]
		n, err := unesc(tok)
		if err != nil {
			return nil, fmt.Errorf("sinks: %w", err)
		}
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// ---- metadata and destinations ----

// GetMeta returns the value stored for sink and key, or nil, nil when there is none.
func (s *Store) GetMeta(sink, key string) ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	e, err := s.kv.Get(ctx, metaKey(sink, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get meta %s/%s: %w", sink, key, err)
	}
	return append([]byte{}, e.Value()...), nil
}

// PutMeta stores v for sink and key.
func (s *Store) PutMeta(sink, key string, v []byte) error {
	if err := checkSink(sink); err != nil {
		return fmt.Errorf("put meta %s/%s: %w", sink, key, err)
	}
	if key == "" {
		return fmt.Errorf("put meta %s: metadata key is empty (expected e.g. an export uuid)", sink)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.kv.Put(ctx, metaKey(sink, key), v); err != nil {
		return fmt.Errorf("put meta %s/%s: %w", sink, key, err)
	}
	return nil
}

// DeleteMeta removes the value of sink and key; an absent one is no error.
func (s *Store) DeleteMeta(sink, key string) error {
	if sink == "" || key == "" {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.kv.Purge(ctx, metaKey(sink, key)); err != nil {
		return fmt.Errorf("delete meta %s/%s: %w", sink, key, err)
	}
	return nil
}

// Destination returns the destination fingerprint stored for sink ("" when none).
func (s *Store) Destination(sink string) (string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	e, err := s.kv.Get(ctx, destKey(sink))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("destination of %s: %w", sink, err)
	}
	return string(e.Value()), nil
}

// SetDestination stores sink's destination fingerprint.
func (s *Store) SetDestination(sink, fingerprint string) error {
	if err := checkSink(sink); err != nil {
		return fmt.Errorf("set destination of %s: %w", sink, err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.kv.Put(ctx, destKey(sink), []byte(fingerprint)); err != nil {
		return fmt.Errorf("set destination of %s: %w", sink, err)
	}
	return nil
}

// ---- queue move and drop ----

// MoveQueue re-homes the queued events and dead letters of sink from to sink to: the
// same events in the same order, appended after what to holds, with their attempt
// state; from's metadata goes along unless to has a value for the same key. from is then
// empty and forgotten. See store.Store.MoveQueue.
func (s *Store) MoveQueue(from, to string) (queued, dead int, err error) {
	if err := checkSink(from); err != nil {
		return 0, 0, fmt.Errorf("queue move: --from: %w", err)
	}
	if err := checkSink(to); err != nil {
		return 0, 0, fmt.Errorf("queue move: --to: %w", err)
	}
	if from == to {
		return 0, 0, fmt.Errorf("queue move: --from and --to are both %q (expected two different sinks)", from)
	}
	recs, err := s.Pending(from, 0, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
	}
	ctx, cancel := s.ctxFor(len(recs))
	defer cancel()
	dl, err := s.deadLetters(ctx, from)
	if err != nil {
		return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
	}
	if len(recs)+len(dl) == 0 {
		return 0, 0, notFound("queue move %s to %s: sink %s has no queued events or dead letters", from, to, from)
	}
	done, total := 0, len(recs)+len(dl)
	b := batch{js: s.js, ctx: ctx, onAck: func() { done++; s.o.Progress(done, total) }}
	for i := range recs {
		m, err := recordMsg(outboxSubject(to), &recs[i], true)
		if err != nil {
			return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
		}
		id := fmt.Sprintf("%s/move/%d", msgID(&recs[i].Event, to), recs[i].Seq)
		if err := b.add(m, orderKey(m, &recs[i]), jetstream.WithMsgID(id), jetstream.WithExpectStream(OutboxStream)); err != nil {
			return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
		}
	}
	acks, err := b.wait()
	if err != nil {
		return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
	}
	refs := map[ringRef]func(*store.Outcome){}
	for i, a := range acks {
		fresh := a.Sequence
		refs[ringRef{from, recs[i].Seq}] = func(o *store.Outcome) { o.Sink, o.Seq = to, fresh }
	}
	for _, d := range dl { // a moved dead letter keeps its outbox seq
		refs[ringRef{from, d.rec.Seq}] = func(o *store.Outcome) { o.Sink = to }
	}
	// The attempt state of a moved record is carried by its new message's header
	// until the next failure writes a key; write the keys now so Pending sees it.
	for i, a := range acks {
		if at := attemptOf(&recs[i]); !at.zero() {
			v, _ := json.Marshal(at)
			if _, err := s.kv.Put(ctx, attKey(to, a.Sequence), v); err != nil {
				return 0, 0, fmt.Errorf("queue move %s to %s: attempt state: %w", from, to, err)
			}
		}
	}
	for _, d := range dl {
		rec := d.rec
		rec.Sink = to
		m, err := recordMsg(dlqSubject(to), &rec, true)
		if err != nil {
			return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
		}
		m.Header.Set(hdrSeq, strconv.FormatUint(rec.Seq, 10))
		id := fmt.Sprintf("dead/%s/move/%d", esc(to), d.dseq)
		if err := b.add(m, orderKey(m, &rec), jetstream.WithMsgID(id), jetstream.WithExpectStream(DLQStream)); err != nil {
			return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
		}
	}
	if _, err := b.wait(); err != nil {
		return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
	}
	err = s.scan(ctx, "meta."+esc(from)+".>", func(key string, v []byte) error {
		nk := "meta." + esc(to) + key[len("meta."+esc(from)):]
		if _, err := s.kv.Create(ctx, nk, v); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("copy %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("queue move %s to %s: metadata: %w", from, to, err)
	}
	if err := s.followRefs(ctx, refs); err != nil {
		return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
	}
	if _, _, err := s.drop(ctx, from); err != nil {
		return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
	}
	return len(recs), len(dl), nil
}

// DropQueue deletes the queued events, dead letters, metadata and destination of sink.
// It returns how many queued events and dead letters were deleted.
func (s *Store) DropQueue(sink string) (queued, dead int, err error) {
	if err := checkSink(sink); err != nil {
		return 0, 0, fmt.Errorf("queue drop: %w", err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	held, err := s.heldRecent(ctx, sink)
	if err != nil {
		return 0, 0, fmt.Errorf("queue drop %s: %w", sink, err)
	}
	queued, dead, err = s.drop(ctx, sink)
	if err != nil {
		return 0, 0, fmt.Errorf("queue drop %s: %w", sink, err)
	}
	if err := s.followRefs(ctx, held); err != nil { // given up for good
		return 0, 0, fmt.Errorf("queue drop %s: %w", sink, err)
	}
	return queued, dead, nil
}

func (s *Store) drop(ctx context.Context, sink string) (queued, dead int, err error) {
	ob, _, err := counts(ctx, s.outbox, outboxPrefix, outboxSubject(sink))
	if err != nil {
		return 0, 0, err
	}
	dl, _, err := counts(ctx, s.dlq, dlqPrefix, dlqSubject(sink))
	if err != nil {
		return 0, 0, err
	}
	queued, dead = ob[sink], dl[sink]
	lister, err := s.kv.ListKeysFiltered(ctx, "meta."+esc(sink)+".>", "att."+esc(sink)+".*", destKey(sink), healthKey(sink))
	if err != nil {
		return 0, 0, fmt.Errorf("list keys of %s: %w", sink, err)
	}
	var keys []string
	known := queued+dead > 0 // as the bolt store: delivery health alone does not count
	for k := range lister.Keys() {
		keys = append(keys, k)
		known = known || k != healthKey(sink)
	}
	if !known {
		return 0, 0, notFound("sink %s has nothing stored", sink)
	}
	if err := s.outbox.Purge(ctx, jetstream.WithPurgeSubject(outboxSubject(sink))); err != nil {
		return 0, 0, fmt.Errorf("purge outbox of %s: %w", sink, err)
	}
	if err := s.dlq.Purge(ctx, jetstream.WithPurgeSubject(dlqSubject(sink))); err != nil {
		return 0, 0, fmt.Errorf("purge dead letters of %s: %w", sink, err)
	}
	for _, k := range keys {
		if err := s.kv.Purge(ctx, k); err != nil {
			return 0, 0, fmt.Errorf("delete %s: %w", k, err)
		}
	}
	s.state.mu.Lock()
	delete(s.state.attempts, sink)
	s.state.mu.Unlock()
	return queued, dead, nil
}
