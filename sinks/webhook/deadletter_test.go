package webhook_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/webhook"
	"github.com/exportbridge/exportbridge/store"
)

// TestTemplateErrorAtDeliveryGoesToTheDeadLetterQueue: through the real dispatcher and
// store, an export the template cannot render is dead-lettered at its first attempt with
// the template error as its last error, and the other exports' events are delivered.
func TestTemplateErrorAtDeliveryGoesToTheDeadLetterQueue(t *testing.T) {
	rec := newRecorder(t, http.StatusOK, "")
	c := webhook.DefaultConfig()
	c.URL = rec.srv.URL
	c.Body = map[string]any{"part": `{{ if contains "-7." (.Export.filename | default "") }}{{ index (splitList "-" .Export.filename) 9 }}{{ end }}{{ .Export.uuid }}`}
	s, err := webhook.New(c, sinks.Deps{Name: "tickets"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	odd, ok1, ok2 := testEvent(t, 7), testEvent(t, 1), testEvent(t, 2)
	if err := st.Enqueue("tickets", odd, ok1, ok2); err != nil {
		t.Fatal(err)
	}
	d := delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: s, InitialInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		dead, err := st.DeadLetters("tickets")
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) == 1 && len(rec.requests()) == 2 {
			r := dead[0]
			if r.Event.ID != odd.ID || r.Attempts != 1 || !strings.Contains(r.LastError, "template body.part: line 1, column 59: error calling index") {
				t.Errorf("dead letter %s after %d attempts, last error %q; want %s after one attempt with the template error", r.Event.ID, r.Attempts, r.LastError, odd.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %d dead letters, %d requests; want the odd export dead-lettered and the other two delivered", len(dead), len(rec.requests()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range rec.requests() {
		if strings.Contains(string(r.Body), "000000000007") {
			t.Errorf("the odd export was sent: %s", r.Body)
		}
	}
}
