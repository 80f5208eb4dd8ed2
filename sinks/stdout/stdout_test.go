package stdout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/stdout"
)

// writes records each Write call separately.
type writes struct {
	mu    sync.Mutex
	calls []string
	err   error
	short bool
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.calls = append(w.calls, string(p))
	if w.short {
		return len(p) - 1, nil
	}
	return len(p), nil
}

func ev(id, body string) event.Event {
	return event.Event{ID: id, Type: "export.ready", Body: []byte(body)}
}

func TestDeliver(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		w         *writes
		ev        event.Event
		wantWrite string
		wantErr   string
		permanent bool
	}{
		{"one line per event", context.Background(), &writes{}, ev("e1", `{"id":"e1"}`), "{\"id\":\"e1\"}\n", "", false},
		{"indented body is compacted", context.Background(), &writes{}, ev("e2", "{\n  \"id\": \"e2\"\n}"), "{\"id\":\"e2\"}\n", "", false},
		{"write error is retryable", context.Background(), &writes{err: errors.New("broken pipe")}, ev("e3", `{}`), "", "stdout: write event e3: broken pipe", false},
		{"short write", context.Background(), &writes{short: true}, ev("e4", `{}`), "{}\n", "short write", false},
		{"cancelled", cancelled, &writes{}, ev("e5", `{}`), "", "context canceled", false},
		{"empty body", context.Background(), &writes{}, ev("e6", ""), "", "event e6 has an empty body", true},
		{"bad multi-line body", context.Background(), &writes{}, ev("e7", "{\n"), "", "body is not JSON", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := stdout.NewSink(tt.w)
			err := s.Deliver(tt.ctx, tt.ev)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Deliver error = %v, want %q", err, tt.wantErr)
				}
				if sinks.IsPermanent(err) != tt.permanent {
					t.Errorf("IsPermanent(%v) = %v, want %v", err, !tt.permanent, tt.permanent)
				}
			}
			if tt.wantWrite != "" && (len(tt.w.calls) != 1 || tt.w.calls[0] != tt.wantWrite) {
				t.Errorf("writes = %q, want one write %q", tt.w.calls, tt.wantWrite)
			}
			if tt.wantWrite == "" && len(tt.w.calls) != 0 {
				t.Errorf("writes = %q, want none", tt.w.calls)
			}
		})
	}
}

func TestConcurrentDeliveriesDoNotInterleave(t *testing.T) {
	w := &writes{}
	s := stdout.NewSink(w)
	if s.Name() != "stdout" {
		t.Errorf("Name() = %q", s.Name())
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				body := fmt.Sprintf(`{"id":"%d-%d","pad":"%s"}`, g, i, strings.Repeat("x", 100*g))
				if err := s.Deliver(context.Background(), ev("x", body)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(w.calls) != 400 {
		t.Fatalf("%d writes, want 400", len(w.calls))
	}
	for _, c := range w.calls {
		if strings.Count(c, "\n") != 1 || !strings.HasSuffix(c, "}\n") || !strings.HasPrefix(c, `{"id":`) {
			t.Fatalf("write %q is not one whole line", c)
		}
	}
}

func TestNilWriterIsStdout(t *testing.T) {
	// Only checks it does not panic and has the right name; output goes to the test log.
	if stdout.NewSink(nil).Name() != "stdout" {
		t.Error("bad name")
	}
	var _ sinks.Sink = stdout.NewSink(io.Discard)
}
