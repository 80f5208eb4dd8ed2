package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// bktDest holds each sink's destination fingerprint: sink -> fingerprint.
var bktDest = []byte("destinations")

// ErrNoStore is wrapped by Open's error when Options.MustExist is set and there is no
// store in the directory.
var ErrNoStore = errors.New("no store")

type noStoreError struct{ dir, path string }

func (e *noStoreError) Error() string {
	return fmt.Sprintf("there is no store at %s (nothing has run with STATE_DIR %q); set EXPORTBRIDGE_STATE_DIR to the directory of the bridge's store", e.path, e.dir)
}

func (e *noStoreError) Unwrap() error { return ErrNoStore }

// checkExists is Open's check for Options.MustExist: read-only commands must not
// create a store as a side effect.
func checkExists(dir string) error {
	path := filepath.Join(dir, FileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return &noStoreError{dir: dir, path: path}
	} else if err != nil {
		return fmt.Errorf("open store %s: %w", path, err)
	}
	return nil
}

// MoveQueue re-homes the queued events and dead letters of sink from to sink to, in one
// transaction: the same events (same ids and bodies) in the same order, appended after
// what to already holds, with their attempt state; the Slack message ids and other
// metadata of from go along unless to has a value for the same key. from is then empty
// and forgotten. It returns how many queued events and dead letters moved.
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
	var rg *ring
	err = s.db.Update(func(tx *bolt.Tx) error {
		q := queues{tx: tx}
		var err error
		if rg, err = s.ringOf(tx); err != nil {
			return err
		}
		total := 0
		for _, parent := range [][]byte{bktOutbox, bktDead} {
			if b := tx.Bucket(parent).Bucket([]byte(from)); b != nil {
				total += b.Stats().KeyN
			}
		}
		if ob := tx.Bucket(bktOutbox).Bucket([]byte(from)); ob != nil {
			if err := ob.ForEach(func(k, v []byte) error {
				rec, err := decodeRecord(from, keySeq(k), v)
				if err != nil {
					return err
				}
				seq, err := q.append(to, &rec)
				if err != nil {
					return err
				}
				queued++
				s.report(queued, total)
				if rg != nil {
					return rg.moved(from, keySeq(k), to, seq)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		if db := tx.Bucket(bktDead).Bucket([]byte(from)); db != nil {
			target, err := q.sub(bktDead, to, true)
			if err != nil {
				return err
			}
			// Dead letters are keyed by their outbox sequence: take fresh numbers from
			// to's outbox sequence so they cannot collide with to's own.
			ob, err := q.sub(bktOutbox, to, true)
			if err != nil {
				return err
			}
			if err := db.ForEach(func(k, v []byte) error {
				rec, err := decodeRecord(from, keySeq(k), v)
				if err != nil {
					return err
				}
				seq, err := ob.NextSequence()
				if err != nil {
					return err
				}
				rec.Seq, rec.Sink = seq, to
				dead++
				s.report(queued+dead, total)
				if rg != nil {
					if err := rg.moved(from, keySeq(k), to, seq); err != nil {
						return err
					}
				}
				return target.Put(seqKey(seq), encodeRecord(nil, &rec))
			}); err != nil {
				return err
			}
		}
		if mb := tx.Bucket(bktMeta).Bucket([]byte(from)); mb != nil {
			target, err := q.sub(bktMeta, to, true)
			if err != nil {
				return err
			}
			if err := mb.ForEach(func(k, v []byte) error {
				if target.Get(k) != nil {
					return nil
				}
				return target.Put(append([]byte(nil), k...), append([]byte{}, v...))
			}); err != nil {
				return err
			}
		}
		if queued == 0 && dead == 0 {
			return fmt.Errorf("sink %s has no queued events or dead letters: %w", from, ErrNotFound)
		}
		if err := dropSink(tx, from); err != nil {
			return err
		}
		if rg != nil {
			return rg.flush()
		}
		return nil
	})
	ringFailed(rg, err)
	if err != nil {
		return 0, 0, fmt.Errorf("queue move %s to %s: %w", from, to, err)
	}
	return queued, dead, nil
}

// DropQueue deletes the queued events, dead letters, metadata and destination of sink.
// It returns how many queued events and dead letters were deleted.
func (s *Store) DropQueue(sink string) (queued, dead int, err error) {
	if err := checkSink(sink); err != nil {
		return 0, 0, fmt.Errorf("queue drop: %w", err)
	}
	var rg *ring
	err = s.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bktOutbox).Bucket([]byte(sink)); b != nil {
			queued = b.Stats().KeyN
		}
		if b := tx.Bucket(bktDead).Bucket([]byte(sink)); b != nil {
			dead = b.Stats().KeyN
		}
		known := tx.Bucket(bktMeta).Bucket([]byte(sink)) != nil || queued+dead > 0
		if !known {
			return fmt.Errorf("sink %s has nothing stored: %w", sink, ErrNotFound)
		}
		if err := dropSink(tx, sink); err != nil {
			return err
		}
		var err error
		if rg, err = s.ringOf(tx); err != nil || rg == nil {
			return err
		}
		if err := rg.dropped(sink); err != nil {
			return err
		}
		return rg.flush()
	})
	ringFailed(rg, err)
	if err != nil {
		return 0, 0, fmt.Errorf("queue drop %s: %w", sink, err)
	}
	return queued, dead, nil
}

func dropSink(tx *bolt.Tx, sink string) error {
	for _, p := range [][]byte{bktOutbox, bktDead, bktMeta} {
		if tx.Bucket(p).Bucket([]byte(sink)) != nil {
			if err := tx.Bucket(p).DeleteBucket([]byte(sink)); err != nil {
				return fmt.Errorf("delete %s of %s: %w", p, sink, err)
			}
		}
	}
	if b := tx.Bucket(bktDest); b != nil {
		return b.Delete([]byte(sink))
	}
	return nil
}

// Destination returns the destination fingerprint stored for sink ("" when none).
func (s *Store) Destination(sink string) (string, error) {
	var out string
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bktDest); b != nil {
			out = string(b.Get([]byte(sink)))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("destination of %s: %w", sink, err)
	}
	return out, nil
}

// SetDestination stores sink's destination fingerprint.
func (s *Store) SetDestination(sink, fingerprint string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := checkSink(sink); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bktDest)
		if err != nil {
			return err
		}
		return b.Put([]byte(sink), []byte(fingerprint))
	})
	if err != nil {
		return fmt.Errorf("set destination of %s: %w", sink, err)
	}
	return nil
}
