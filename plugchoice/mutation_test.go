package plugchoice_test

// Tests that kill mutants scripts/mutation.sh found alive in ./plugchoice (issue 17).
// Each was seen failing on its mutant applied by hand (RELIABILITY.md, "Mutation testing").

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// TestSameHostRedirectIsFollowed: a redirect to another path of the API's own host is
// followed (with the token); only other hosts are refused.
func TestSameHostRedirectIsFollowed(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if !strings.HasPrefix(r.URL.Path, "/api/v3/moved/") {
			http.Redirect(w, r, "/api/v3/moved/exports?"+r.URL.RawQuery, http.StatusFound)
			return
		}
		writeJSON(w, 200, pageOf([]string{"a", "b"}, "ready", ""))
	})
	p, err := newClient(t, f.URL, nil).ListPage(ctxT(t), plugchoice.Query{}, 1)
	if err != nil {
		t.Fatalf("ListPage across a same-host redirect: %v", err)
	}
	if got := uuidsOf(p.Data); len(got) != 2 {
		t.Fatalf("page after the redirect holds %v, want [a b]", got)
	}
	reqs := f.requests()
	if len(reqs) != 2 || reqs[1].Header.Get("Authorization") != "Bearer "+token {
		t.Fatalf("%d requests, the redirected one with Authorization %q; want 2, the second with the token",
			len(reqs), reqs[len(reqs)-1].Header.Get("Authorization"))
	}
}

// TestGivingUpOnRetriesNamesTheLastError: when the caller's deadline ends the retries
// of a failing page, the error says what the API last answered, not only "deadline
// exceeded".
func TestGivingUpOnRetriesNamesTheLastError(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 503, `{"message":"Down for maintenance."}`)
	})
	c := newClient(t, f.URL, func(o *plugchoice.Options) { o.RetryInitial = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.ListPage(ctx, plugchoice.Query{}, 1)
	want := "page 1: context deadline exceeded (last error: plugchoice API: 503 Down for maintenance.)"
	if err == nil || err.Error() != want {
		t.Fatalf("error\n %v\nwant\n %s", err, want)
	}
	if k := plugchoice.Kind(err); k != "timeout" {
		t.Fatalf("Kind %q, want timeout", k)
	}
}

// pageOfSize is a valid page of one export, padded (inside a field of the export, so a
// cut anywhere breaks the JSON) to exactly n bytes.
func pageOfSize(t *testing.T, n int) string {
	t.Helper()
	head := `{"data":[{"uuid":"big","type":"sessions","status":"ready","requested_at":"2026-11-28T10:00:00Z","pad":"`
	tail := `"}],"links":{"next":null},"meta":{"current_page":1,"per_page":25}}`
	pad := n - len(head) - len(tail)
	if pad < 0 {
		t.Fatalf("page of %d bytes is too small", n)
	}
	return head + strings.Repeat("x", pad) + tail
}

// TestResponseBodyBound: a page of exactly 32 MiB is read; one byte more is a decode
// error saying the body is too large (not retried), whether or not the server
// announced its length; a Content-Length far beyond the bound is not allocated.
func TestResponseBodyBound(t *testing.T) {
	const limit = 32 << 20
	tests := []struct {
		name    string
		size    int
		chunked bool   // no Content-Length
		wantErr string // "" for a page read
	}{
		{"exactly the bound", limit, false, ""},
		{"one byte over, chunked", limit + 1, true, "page 1: decode: response body larger than 33554432 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := pageOfSize(t, tt.size)
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Content-Type", "application/json")
				if !tt.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				}
				_, _ = w.Write([]byte(body))
			})
			c := newClient(t, f.URL, nil)
			p, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1)
			if tt.wantErr == "" {
				if err != nil || len(p.Data) != 1 || p.Data[0].UUID != "big" {
					t.Fatalf("page of %d bytes: error %v", tt.size, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error\n %v\nwant\n %s", err, tt.wantErr)
			}
			if k := plugchoice.Kind(err); k != "decode" || f.count() != 1 {
				t.Fatalf("Kind %q after %d requests, want decode after 1", k, f.count())
			}
		})
	}
	t.Run("huge Content-Length", func(t *testing.T) {
		// A broken proxy announces 4 EiB and sends one page: the client reads what
		// comes, within its bound, instead of sizing a buffer from the header.
		f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				int64(1)<<62, pageOf([]string{"a"}, "ready", ""))
			buf.Flush()
			conn.Close()
		})
		c := newClient(t, f.URL, func(o *plugchoice.Options) { o.MaxRetries = -1 })
		_, err := c.ListPage(ctxT(t), plugchoice.Query{}, 1)
		if err == nil || !strings.Contains(err.Error(), "read response body") || plugchoice.Kind(err) != "network" {
			t.Fatalf("error %v (kind %q), want a network error reading the body", err, plugchoice.Kind(err))
		}
	})
}

// TestStatusTimeIsTheStatusOwnTimestamp: the timestamp an event's id and time come
// from (SPEC: completed_at for ready, failed_at for failed, else requested_at), "" when
// the API gave none.
func TestStatusTimeIsTheStatusOwnTimestamp(t *testing.T) {
	s := func(v string) *string { return &v }
	const req, done, failed = "2026-11-28T10:00:00Z", "2026-11-28T10:05:00Z", "2026-11-28T10:06:00Z"
	tests := []struct {
		name string
		e    plugchoice.Export
		want string
	}{
		{"ready", plugchoice.Export{Status: "ready", RequestedAt: req, CompletedAt: s(done)}, done},
		{"ready without completed_at", plugchoice.Export{Status: "ready", RequestedAt: req}, ""},
		{"failed", plugchoice.Export{Status: "failed", RequestedAt: req, FailedAt: s(failed)}, failed},
		{"failed without failed_at", plugchoice.Export{Status: "failed", RequestedAt: req}, ""},
		{"pending", plugchoice.Export{Status: "pending", RequestedAt: req}, req},
		{"processing", plugchoice.Export{Status: "processing", RequestedAt: req, CompletedAt: s(done)}, req},
		{"cancelled", plugchoice.Export{Status: "cancelled", RequestedAt: req, FailedAt: s(failed)}, req},
	}
	for _, tt := range tests {
		if got := tt.e.StatusTime(); got != tt.want {
			t.Errorf("%s: StatusTime = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestExportWithoutRawMarshalsItsFields: an export built in code (send-test's sample
// event) has no raw bytes; it encodes as its fields.
func TestExportWithoutRawMarshalsItsFields(t *testing.T) {
	name := "sessions.csv"
	e := plugchoice.Export{UUID: "u1", Type: "sessions", Status: "ready", Filename: &name, RequestedAt: "2026-11-28T10:00:00Z"}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("Marshal of an export without raw bytes: %v", err)
	}
	var back plugchoice.Export
	if err := json.Unmarshal(b, &back); err != nil || back.UUID != "u1" || back.Status != "ready" ||
		back.Filename == nil || *back.Filename != name || back.RequestedAt != e.RequestedAt {
		t.Fatalf("Marshal = %s (decoded back: %+v, %v), want the export's fields", b, back, err)
	}
}
