package webhook_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// TestUserinfoInTheURLIsSentAsBasicAuth: credentials in the webhook URL reach the
// receiver as HTTP Basic authentication (as net/http's client sends them), unless an
// extra Authorization header is configured, which wins.
func TestUserinfoInTheURLIsSentAsBasicAuth(t *testing.T) {
	for _, tt := range []struct {
		name    string
		headers [][2]string
		want    string
	}{
		{"userinfo only", nil, "Basic Ym9iOnMzY3JldA=="}, // bob:s3cret
		{"extra Authorization header wins", [][2]string{{"Authorization", "Bearer abc"}}, "Bearer abc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, http.StatusNoContent, "")
			u := strings.Replace(rec.srv.URL, "http://", "http://bob:s3cret@", 1) + "/hook"
			s := mustNew(t, webhook.Options{URL: u, Headers: tt.headers})
			if err := s.Deliver(context.Background(), testEvent(t, 1)); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if got := rec.only(t).Header.Values("Authorization"); len(got) != 1 || got[0] != tt.want {
				t.Errorf("Authorization = %q, want [%q]", got, tt.want)
			}
			// `template render` shows the configured headers, not the URL's credentials.
			h, _, err := s.Preview(testEvent(t, 2))
			if err != nil {
				t.Fatal(err)
			}
			if got := h.Get("Authorization"); strings.HasPrefix(got, "Basic") {
				t.Errorf("Preview shows Authorization %q from the URL's userinfo", got)
			}
		})
	}
}
