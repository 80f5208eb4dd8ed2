// Package stdout is the sink that prints each event as one JSON line (the CloudEvent)
// on a writer, standard output by default. Logs go to standard error, so the output can
// be piped into jq.
package stdout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
)

// Name is the sink's name.
const Name = "stdout"

// Sink writes events to a writer, one line each.
type Sink struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	name string
}

// NewSink returns the sink writing to w (os.Stdout when w is nil).
func NewSink(w io.Writer) *Sink {
	if w == nil {
		w = os.Stdout
	}
	return &Sink{w: w, name: Name}
}

// Name returns the sink's name ("stdout" unless the config file names it).
func (s *Sink) Name() string { return s.name }

// Deliver writes the event's body and a newline in one write. A write error is
// retryable; an event without a JSON body is a permanent error.
func (s *Sink) Deliver(ctx context.Context, e event.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stdout: event %s: %w", e.ID, err)
	}
	if len(e.Body) == 0 {
		return sinks.Permanent(fmt.Errorf("stdout: event %s has an empty body", e.ID))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = s.buf[:0]
	if bytes.IndexByte(e.Body, '\n') >= 0 {
		// One event, one line, even if a body was ever indented.
		var b bytes.Buffer
		if err := json.Compact(&b, e.Body); err != nil {
			return sinks.Permanent(fmt.Errorf("stdout: event %s: body is not JSON: %w", e.ID, err))
		}
		s.buf = append(s.buf, b.Bytes()...)
	} else {
		s.buf = append(s.buf, e.Body...)
	}
	s.buf = append(s.buf, '\n')
	n, err := s.w.Write(s.buf)
	if err == nil && n < len(s.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("stdout: write event %s: %w", e.ID, err)
	}
	return nil
}
