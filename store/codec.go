package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/diff"
	"github.com/exportbridge/exportbridge/event"
)

// Binary encodings. Snapshot entries and records are stored in compact hand-rolled
// forms: the snapshot must stay small and fast to load at 100k exports, and the event
// body is already JSON bytes that need no second encoding.

// recordVersion is the first byte of every encoded record.
const recordVersion = 1

var errCorrupt = errors.New("corrupt value")

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func keySeq(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// encodeEntry appends a snapshot entry to buf: varint(At) followed by the status bytes,
// then, only when the export awaits the confirmation of its removal (Missed > 0) or the
// status holds a NUL byte, a NUL byte and Missed. Entries written before Missed existed
// have no NUL (statuses are words) and read as Missed 0: stored snapshots stay valid.
// bbolt keeps a reference to a value until the transaction commits: never reuse buf.
func encodeEntry(buf []byte, e diff.Entry) []byte {
	if buf == nil {
		buf = make([]byte, 0, binary.MaxVarintLen64+len(e.Status)+2)
	}
	buf = binary.AppendVarint(buf, e.At)
	buf = append(buf, e.Status...)
	if e.Missed > 0 || strings.IndexByte(e.Status, 0) >= 0 {
		buf = append(buf, 0, e.Missed)
	}
	return buf
}

// decodeEntry reads a snapshot entry. intern maps status bytes to a shared string so
// that 100k entries do not allocate 100k copies of "ready".
func decodeEntry(v []byte, intern map[string]string) (diff.Entry, error) {
	at, n := binary.Varint(v)
	if n <= 0 {
		return diff.Entry{}, fmt.Errorf("snapshot entry: %w", errCorrupt)
	}
	status := v[n:]
	var missed uint8
	if bytes.IndexByte(status, 0) >= 0 {
		if len(status) < 2 || status[len(status)-2] != 0 {
			return diff.Entry{}, fmt.Errorf("snapshot entry: missed-listings suffix: %w", errCorrupt)
		}
		missed = status[len(status)-1]
		status = status[:len(status)-2]
	}
	st, ok := intern[string(status)]
	if !ok {
		st = string(status)
		if intern != nil {
			intern[st] = st
		}
	}
	return diff.Entry{Status: st, At: at, Missed: missed}, nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendBytes(buf []byte, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

// appendTime writes 0 for the zero time, else 1 and the unix nanoseconds.
func appendTime(buf []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(buf, 0)
	}
	buf = append(buf, 1)
	return binary.AppendVarint(buf, t.UnixNano())
}

// encodeRecord appends everything of r except Seq and Sink (its key and bucket) to buf.
// bbolt keeps a reference to a value until the transaction commits: never reuse buf.
func encodeRecord(buf []byte, r *Record) []byte {
	if buf == nil {
		e := &r.Event
		buf = make([]byte, 0, 1+6*binary.MaxVarintLen64+5*(1+binary.MaxVarintLen64)+
			len(e.ID)+len(e.Type)+len(e.Subject)+len(e.Status)+len(e.ExportType)+len(e.Body)+len(r.LastError))
	}
	buf = append(buf, recordVersion)
	buf = appendString(buf, r.Event.ID)
	buf = appendString(buf, r.Event.Type)
	buf = appendString(buf, r.Event.Subject)
	buf = appendString(buf, r.Event.Status)
	buf = appendString(buf, r.Event.ExportType)
	buf = appendTime(buf, r.Event.DetectedAt)
	buf = appendBytes(buf, r.Event.Body)
	buf = appendTime(buf, r.EnqueuedAt)
	buf = binary.AppendUvarint(buf, uint64(max(r.Attempts, 0)))
	buf = appendTime(buf, r.FirstAttemptAt)
	buf = appendTime(buf, r.NextAttemptAt)
	buf = appendString(buf, r.LastError)
	buf = binary.AppendVarint(buf, int64(r.LastStatus))
	buf = appendTime(buf, r.DeadAt)
	return buf
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }

func (r *reader) time() time.Time {
	if r.err != nil {
		return time.Time{}
	}
	if len(r.b) == 0 {
		r.err = errCorrupt
		return time.Time{}
	}
	flag := r.b[0]
	r.b = r.b[1:]
	switch flag {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(0, r.varint()).UTC()
	default:
		r.err = errCorrupt
		return time.Time{}
	}
}

// decodeRecord decodes a record; the bytes of v are copied (bbolt memory is only valid
// inside its transaction).
func decodeRecord(sink string, seq uint64, v []byte) (Record, error) {
	if len(v) == 0 || v[0] != recordVersion {
		return Record{}, fmt.Errorf("record %s/%d: unknown encoding version: %w", sink, seq, errCorrupt)
	}
	rd := reader{b: v[1:]}
	rec := Record{Seq: seq, Sink: sink}
	// The five leading strings are copied in one allocation and cut from it (a
	// dispatcher reads thousands of records at a time).
	head := rd.b
	var ends [5][2]int
	for i := range ends {
		p := rd.bytes()
		end := len(head) - len(rd.b)
		ends[i] = [2]int{end - len(p), end}
	}
	if rd.err != nil {
		return Record{}, fmt.Errorf("record %s/%d: %w", sink, seq, rd.err)
	}
	hs := string(head[:ends[4][1]])
	rec.Event.ID = hs[ends[0][0]:ends[0][1]]
	rec.Event.Type = hs[ends[1][0]:ends[1][1]]
	rec.Event.Subject = hs[ends[2][0]:ends[2][1]]
	rec.Event.Status = hs[ends[3][0]:ends[3][1]]
	rec.Event.ExportType = hs[ends[4][0]:ends[4][1]]
	rec.Event.DetectedAt = rd.time()
	if body := rd.bytes(); body != nil {
		rec.Event.Body = append([]byte(nil), body...)
	}
	rec.EnqueuedAt = rd.time()
	rec.Attempts = int(rd.uvarint())
	rec.FirstAttemptAt = rd.time()
	rec.NextAttemptAt = rd.time()
	rec.LastError = rd.string()
	rec.LastStatus = int(rd.varint())
	rec.DeadAt = rd.time()
	if rd.err != nil {
		return Record{}, fmt.Errorf("record %s/%d: %w", sink, seq, rd.err)
	}
	return rec, nil
}

// newRecord is the record of a freshly enqueued event.
func newRecord(ev event.Event, now time.Time) Record {
	return Record{Event: ev, EnqueuedAt: now}
}
