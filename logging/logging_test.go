package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/logging"
)

const (
	token     = "tok-7f3a9c1e5b"
	slackHook = "https://hooks.slack.com/services/T0001/B0002/XyZsecretPath"
	whsec     = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	odd       = `p<a>"s&s\w` // needs escaping in JSON
)

var secrets = []string{token, slackHook, whsec, odd, "ab", ""}

func TestRedact(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain text untouched", "polled 25 exports in 1.2s", "polled 25 exports in 1.2s"},
		{"secret", "token is " + token + ".", "token is [REDACTED]."},
		{"secret twice", token + token, "[REDACTED][REDACTED]"},
		{"short secret ignored", "ab cd ab", "ab cd ab"},
		{"whole slack url", "post " + slackHook + ": 404", "post [REDACTED]: 404"},
		{"slack url quoted by net/http", `Post "` + slackHook + `": dial tcp: refused`, `Post "[REDACTED]": dial tcp: refused`},
		{"signed url", "get https://x.example/y/z.csv?signature=abc&expires=1 failed", "get https://x.example/y/z.csv?[REDACTED] failed"},
		{"signed url with fragment", "https://x/y?sig=abc#frag", "https://x/y?[REDACTED]"},
		{"url without query", "https://x.example/y", "https://x.example/y"},
		{"http url in json", `{"u":"http://h/p?k=v"}`, `{"u":"http://h/p?[REDACTED]"}`},
		{"userinfo", "https://user:pass@host.example/p", "https://[REDACTED]@host.example/p"},
		{"userinfo and query", "nats://u:p@h:4222/?x=1", "nats://[REDACTED]@h:4222/?[REDACTED]"},
		{"at in path is not userinfo", "https://h/a@b", "https://h/a@b"},
		{"bearer", "Authorization: Bearer abc.def-ghi", "Authorization: Bearer [REDACTED]"},
		{"bearer lower case", "authorization: bearer xyz123", "authorization: bearer [REDACTED]"},
		{"secret json escaped", `{"v":"p<a>\"s&s\\w"}`, `{"v":"[REDACTED]"}`},
		{"secret url escaped", "https://h/p/" + url.PathEscape(odd), "https://h/p/[REDACTED]"},
		{"secret inside longer secret", "x" + whsec + "x", "x[REDACTED]x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := logging.Redact(tt.in, secrets)
			if got != tt.want {
				t.Fatalf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if again := logging.Redact(got, secrets); again != got {
				t.Fatalf("Redact is not idempotent: %q -> %q", got, again)
			}
		})
	}
}

type stringer struct{ s string }

func (s stringer) String() string { return "stringer(" + s.s + ")" }

type valuer struct{ v string }

func (v valuer) LogValue() slog.Value { return slog.StringValue(v.v) }

type textM struct{}

func (textM) MarshalText() ([]byte, error) { return []byte("text " + token), nil }

type exported struct {
	Name  string
	Token string
}

type unexported struct {
	Name  string
	token string
}

type inner struct{ Secret string }
type outer struct{ In *inner }

// leaks lists every form a secret could take in the output.
func leaks(out string) []string {
	var found []string
	for _, s := range []string{token, slackHook, whsec, odd, `p<a>\"s&s\\w`, `p\u003ca\u003e`, "XyZsecretPath", "signature=abc", "user:pass"} {
		if strings.Contains(out, s) {
			found = append(found, s)
		}
	}
	return found
}

func TestHandlerScrubs(t *testing.T) {
	wrapped := fmt.Errorf("call api: %w", errors.New("401 for token "+token))
	tests := []struct {
		name string
		log  func(l *slog.Logger)
		want string // must appear in the output
	}{
		{"message", func(l *slog.Logger) { l.Info("using " + token) }, "using [REDACTED]"},
		{"string attr", func(l *slog.Logger) { l.Info("m", "token", token) }, "[REDACTED]"},
		{"wrapped error", func(l *slog.Logger) { l.Info("m", "err", wrapped) }, "call api: 401 for token [REDACTED]"},
		{"joined error", func(l *slog.Logger) { l.Info("m", "err", errors.Join(errors.New("a"), errors.New(whsec))) }, "[REDACTED]"},
		{"slog.Any error", func(l *slog.Logger) { l.Info("m", slog.Any("err", wrapped)) }, "[REDACTED]"},
		{"stringer", func(l *slog.Logger) { l.Info("m", "s", stringer{token}) }, "stringer([REDACTED])"},
		{"log valuer", func(l *slog.Logger) { l.Info("m", "v", valuer{token}) }, "[REDACTED]"},
		{"text marshaler", func(l *slog.Logger) { l.Info("m", "v", textM{}) }, "[REDACTED]"},
		{"struct exported field", func(l *slog.Logger) { l.Info("m", "v", exported{"n", token}) }, "[REDACTED]"},
		{"struct unexported field", func(l *slog.Logger) { l.Info("m", "v", unexported{"n", token}) }, "[REDACTED]"},
		{"nested pointer only json shows", func(l *slog.Logger) { l.Info("m", "v", outer{&inner{token}}) }, "m"},
		{"map", func(l *slog.Logger) { l.Info("m", "v", map[string]string{"k": slackHook}) }, "[REDACTED]"},
		{"bytes", func(l *slog.Logger) { l.Info("m", "v", []byte("b "+token)) }, "b [REDACTED]"},
		{"slack webhook url", func(l *slog.Logger) { l.Info("m", "url", slackHook) }, "[REDACTED]"},
		{"signed url", func(l *slog.Logger) {
			l.Info("download", "url", "https://cdn.example/f.csv?signature=abc&expires=9")
		}, "https://cdn.example/f.csv?[REDACTED]"},
		{"url value", func(l *slog.Logger) {
			u, _ := url.Parse("https://cdn.example/f.csv?signature=abc")
			l.Info("download", "url", u)
		}, "https://cdn.example/f.csv?[REDACTED]"},
		{"userinfo", func(l *slog.Logger) { l.Info("m", "url", "https://user:pass@h.example/x") }, "https://[REDACTED]@h.example/x"},
		{"bearer", func(l *slog.Logger) { l.Info("m", "hdr", "Bearer "+token[:5]+"zzz") }, "Bearer [REDACTED]"},
		{"secret needing json escapes", func(l *slog.Logger) { l.Info("m", "v", odd, "w", []string{odd}) }, "[REDACTED]"},
		{"nested groups", func(l *slog.Logger) {
			l.Info("m", slog.Group("a", slog.Group("b", slog.String("c", token), slog.Any("d", wrapped)), slog.Any("e", stringer{whsec})))
		}, "[REDACTED]"},
		{"group key", func(l *slog.Logger) { l.Info("m", slog.Group(token, slog.Int("n", 1))) }, "[REDACTED]"},
		{"with attrs", func(l *slog.Logger) { l.With("token", token, "err", wrapped).Info("m", "x", 1) }, "[REDACTED]"},
		{"with group then attrs", func(l *slog.Logger) {
			l.WithGroup("sink").With(slog.Group("g", "u", slackHook)).Info("m", "v", whsec)
		}, "[REDACTED]"},
		{"with group named by secret", func(l *slog.Logger) { l.WithGroup(token).Info("m", "k", "v") }, "[REDACTED]"},
		{"log attrs", func(l *slog.Logger) {
			l.LogAttrs(context.Background(), slog.LevelWarn, "m", slog.Any("e", wrapped), slog.String("s", token))
		}, "[REDACTED]"},
	}
	for _, format := range []string{"json", "text"} {
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				var buf bytes.Buffer
				tt.log(logging.New(&buf, format, "debug", secrets))
				out := buf.String()
				if out == "" {
					t.Fatal("nothing logged")
				}
				if l := leaks(out); len(l) > 0 {
					t.Fatalf("output leaks %q:\n%s", l, out)
				}
				if !strings.Contains(out, tt.want) {
					t.Fatalf("output lacks %q:\n%s", tt.want, out)
				}
			})
		}
	}
}

func TestHandlerKeepsCleanValues(t *testing.T) {
	var buf bytes.Buffer
	l := logging.New(&buf, "json", "info", secrets)
	l.Info("poll done", "exports", 25, "ok", true, "v", exported{Name: "n", Token: "fine"},
		slog.Group("g", "k", "v"), "url", "https://app.example/api/v3/exports")
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON line: %v\n%s", err, buf.String())
	}
	if got["msg"] != "poll done" || got["exports"] != float64(25) || got["ok"] != true {
		t.Fatalf("plain values changed: %v", got)
	}
	if v, ok := got["v"].(map[string]any); !ok || v["Token"] != "fine" {
		t.Fatalf("a clean struct should stay a JSON object, got %#v", got["v"])
	}
	if g, ok := got["g"].(map[string]any); !ok || g["k"] != "v" {
		t.Fatalf("group changed: %#v", got["g"])
	}
	if got["url"] != "https://app.example/api/v3/exports" {
		t.Fatalf("url without query changed: %v", got["url"])
	}
}

func TestNewLevelAndFormat(t *testing.T) {
	tests := []struct {
		format, level string
		logAt         slog.Level
		wantOut       bool
		wantJSON      bool
	}{
		{"json", "info", slog.LevelDebug, false, true},
		{"json", "info", slog.LevelInfo, true, true},
		{"json", "debug", slog.LevelDebug, true, true},
		{"text", "warn", slog.LevelInfo, false, false},
		{"text", "warn", slog.LevelWarn, true, false},
		{"text", "ERROR", slog.LevelWarn, false, false},
		{"TEXT", "error", slog.LevelError, true, false},
		{"", "", slog.LevelInfo, true, true}, // unknown: json, info
		{"json", "bogus", slog.LevelDebug, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.level+"/"+tt.logAt.String(), func(t *testing.T) {
			var buf bytes.Buffer
			logging.New(&buf, tt.format, tt.level, nil).Log(context.Background(), tt.logAt, "hello")
			if got := buf.Len() > 0; got != tt.wantOut {
				t.Fatalf("logged = %v, want %v (%q)", got, tt.wantOut, buf.String())
			}
			if tt.wantOut {
				if isJSON := json.Valid(buf.Bytes()); isJSON != tt.wantJSON {
					t.Fatalf("JSON output = %v, want %v: %q", isJSON, tt.wantJSON, buf.String())
				}
			}
		})
	}
}

// failing is a handler whose Handle fails, to show errors pass through.
type failing struct{ slog.Handler }

func (failing) Handle(context.Context, slog.Record) error { return errors.New("disk full") }

func TestHandlerPassesErrorsAndEnabled(t *testing.T) {
	inner := slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn})
	h := logging.NewHandler(failing{inner}, secrets)
	if h.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("Enabled(info) = true under a warn handler")
	}
	if !h.Enabled(context.Background(), slog.LevelError) {
		t.Fatal("Enabled(error) = false under a warn handler")
	}
	err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelError, "m", 0))
	if err == nil || err.Error() != "disk full" {
		t.Fatalf("Handle error = %v, want the inner handler's", err)
	}
}

// BenchmarkLog measures one typical record, plain and through the redacting handler.
func BenchmarkLog(b *testing.B) {
	for _, tc := range []struct {
		name string
		l    *slog.Logger
	}{
		{"plain", slog.New(slog.NewJSONHandler(io.Discard, nil))},
		{"redacting", logging.New(io.Discard, "json", "info", secrets)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			err := fmt.Errorf("deliver: %w", errors.New("503 from https://h.example/hook"))
			for b.Loop() {
				tc.l.Info("delivery failed", "sink", "webhook-1", "event_id", "0123456789abcdef", "attempt", 3, "err", err)
			}
		})
	}
}
