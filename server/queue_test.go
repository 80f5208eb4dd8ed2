package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/store"
)

var _ server.QueueAdmin = (*store.Store)(nil)

// TestQueueMoveThroughRunningBridge: the admin endpoint re-homes an orphaned queue to a
// configured sink, refuses to touch a configured sink's own queue or to move to a sink
// the bridge does not have, and reports orphans in state.
func TestQueueMoveThroughRunningBridge(t *testing.T) {
	backend := seededStore(t) // dead letters on webhook-1 (2) and slack (1)
	woken := 0
	srv := httptest.NewServer(server.AdminHandler(server.Options{
		Admin: backend, Configured: []string{"warehouse", "slack"}, OnReplay: func() { woken++ }, Logger: quietLogger(),
	}))
	defer srv.Close()
	c := &server.AdminClient{BaseURL: srv.URL}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	orphans := server.Orphans(st, st.Configured)
	if len(orphans) != 1 || orphans[0].Sink != "webhook-1" || orphans[0].DeadLetters != 2 {
		t.Fatalf("orphans %+v, want webhook-1 with 2 dead letters", orphans)
	}

	tests := []struct {
		name     string
		call     func() error
		wantCode int
	}{
		{"to an unconfigured sink", func() error { _, _, err := c.MoveQueue(ctx, "webhook-1", "nowhere"); return err }, http.StatusBadRequest},
		{"from a configured sink", func() error { _, _, err := c.MoveQueue(ctx, "slack", "warehouse"); return err }, http.StatusConflict},
		{"drop a configured sink", func() error { _, _, err := c.DropQueue(ctx, "slack"); return err }, http.StatusConflict},
		{"from an unknown sink", func() error { _, _, err := c.MoveQueue(ctx, "ghost", "warehouse"); return err }, http.StatusNotFound},
	}
	for _, tt := range tests {
		var se *server.StatusError
		if err := tt.call(); !errors.As(err, &se) || se.StatusCode != tt.wantCode {
			t.Errorf("%s: %v, want status %d", tt.name, err, tt.wantCode)
		}
	}
	q, d, err := c.MoveQueue(ctx, "webhook-1", "warehouse")
	if err != nil || q != 0 || d != 2 {
		t.Fatalf("MoveQueue = %d, %d, %v; want 0 queued and 2 dead letters", q, d, err)
	}
	if woken != 1 {
		t.Errorf("dispatchers woken %d times, want 1", woken)
	}
	dl, err := backend.DeadLetters("warehouse")
	if err != nil || len(dl) != 2 || dl[0].Event.ID != "ev1" || dl[1].Event.ID != "ev2" {
		t.Fatalf("warehouse dead letters %+v (%v), want ev1, ev2", dl, err)
	}
}

// TestQueueCallsNeedTheTokenBeyondLoopback: like dlq replay, queue move and drop are
// mutating calls.
func TestQueueCallsNeedTheTokenBeyondLoopback(t *testing.T) {
	backend := seededStore(t)
	srv := httptest.NewServer(server.AdminHandler(server.Options{
		Admin: backend, AdminToken: "admin-secret-token", AdminRequireToken: true, Configured: []string{"warehouse"}, Logger: quietLogger(),
	}))
	defer srv.Close()
	ctx := context.Background()
	var se *server.StatusError
	if _, _, err := (&server.AdminClient{BaseURL: srv.URL}).DropQueue(ctx, "webhook-1"); !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("drop without token: %v, want 401", err)
	}
	if n := deadCount(t, backend); n != 3 {
		t.Fatalf("%d dead letters after a refused drop, want 3", n)
	}
	if _, d, err := (&server.AdminClient{BaseURL: srv.URL, Token: "admin-secret-token"}).DropQueue(ctx, "webhook-1"); err != nil || d != 2 {
		t.Fatalf("drop with token: %d, %v", d, err)
	}
}
