// Package logging builds the bridge's slog logger and makes it impossible to log a
// secret through it, whatever code logs what: every record's message and every attribute
// value is scrubbed before it reaches the real handler.
//
// The scrub replaces each known secret with [REDACTED], strips the query string of every
// URL (signed download URLs carry their signature there), the userinfo of every URL
// (https://user:pass@host) and the token after "Bearer".
package logging

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Mask replaces whatever is redacted.
const Mask = "[REDACTED]"

// MinSecretLen is the length under which a secret is ignored: redacting every "ab" in
// the logs would hide everything and protect nothing.
const MinSecretLen = 4

var (
	// urlRe matches a URL with a scheme, up to the first character that cannot be part of
	// one in running text, JSON or quoted output.
	urlRe = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>\\{}|^` + "`" + `]+`)
	// bearerRe matches a bearer token in running text ("Authorization: Bearer abc").
	bearerRe = regexp.MustCompile(`(?i)\b(bearer)(\s+)[^\s"'\\,;]+`)
)

// redactor scrubs strings with one fixed set of secrets.
type redactor struct {
	secrets *strings.Replacer // nil: no secrets
}

func newRedactor(secrets []string) *redactor {
	var list []string
	seen := map[string]bool{}
	add := func(s string) {
		if len(s) >= MinSecretLen && !seen[s] {
			seen[s] = true
			list = append(list, s)
		}
	}
	for _, s := range secrets {
		add(s)
		// The same secret as it appears inside JSON output or a URL query.
		add(jsonString(s, true))
		add(jsonString(s, false))
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
	}
	// Longest first: strings.Replacer tries the old strings in argument order, so a
	// secret that contains another is replaced whole.
	slices.SortStableFunc(list, func(a, b string) int { return len(b) - len(a) })
	r := &redactor{}
	if len(list) > 0 {
		pairs := make([]string, 0, 2*len(list))
		for _, s := range list {
			pairs = append(pairs, s, Mask)
		}
		r.secrets = strings.NewReplacer(pairs...)
	}
	return r
}

// jsonString returns s as it appears inside a JSON string, without the quotes.
func jsonString(s string, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(s); err != nil {
		return ""
	}
	b := bytes.TrimSpace(buf.Bytes())
	return string(b[1 : len(b)-1])
}

// Redact returns s with every secret (of at least MinSecretLen bytes) replaced by
// [REDACTED], the query string of every URL replaced by "?[REDACTED]", the userinfo of
// every URL by "[REDACTED]@", and the token after "Bearer" by [REDACTED].
// It is the scrub the slog handler applies, for text printed outside slog (CLI errors).
func Redact(s string, secrets []string) string {
	return newRedactor(secrets).redact(s)
}

func (r *redactor) redact(s string) string {
	if r.secrets != nil {
		s = r.secrets.Replace(s)
	}
	if strings.Contains(s, "://") {
		s = urlRe.ReplaceAllStringFunc(s, scrubURL)
	}
	if containsFold(s, "bearer") {
		s = bearerRe.ReplaceAllString(s, "${1}${2}"+Mask)
	}
	return s
}

// scrubURL strips the userinfo and the query string of one URL found in text.
func scrubURL(u string) string {
	i := strings.Index(u, "://") + len("://")
	rest := u[i:]
	// Authority ends at the first '/', '?' or '#'.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		rest = Mask + rest[at:]
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 && rest[q+1:] != Mask {
		rest = rest[:q+1] + Mask
	}
	return u[:i] + rest
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// Handler is a slog.Handler that scrubs every record before passing it on.
type Handler struct {
	next slog.Handler
	r    *redactor
}

// NewHandler wraps h: every record's message and every attribute value (strings, errors,
// Stringers, groups at any depth, attributes added with WithAttrs, and any other value
// as formatted by fmt or encoding/json) is scrubbed as Redact does before h sees it.
func NewHandler(h slog.Handler, secrets []string) slog.Handler {
	return &Handler{next: h, r: newRedactor(secrets)}
}

// New returns a logger writing to w in format "json" or "text" at level "debug", "info",
// "warn" or "error", scrubbing secrets. An unknown format means json and an unknown level
// means info: the settings are validated before a logger is built (config.Load).
func New(w io.Writer, format, level string, secrets []string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: ParseLevel(level)}
	var h slog.Handler
	if strings.EqualFold(format, "text") {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(NewHandler(h, secrets))
}

// ParseLevel maps "debug", "info", "warn" (or "warning") and "error", in any case, to a
// slog level; anything else is info.
func ParseLevel(level string) slog.Level {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return &Handler{next: h.next.WithAttrs(clean), r: h.r}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(h.r.redact(name)), r: h.r}
}

func (h *Handler) attr(a slog.Attr) slog.Attr {
	a.Key = h.r.redact(a.Key)
	a.Value = h.value(a.Value.Resolve())
	return a
}

func (h *Handler) value(v slog.Value) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(h.r.redact(v.String()))
	case slog.KindGroup:
		attrs := v.Group()
		clean := make([]slog.Attr, len(attrs))
		for i, a := range attrs {
			clean[i] = h.attr(a)
		}
		return slog.GroupValue(clean...)
	case slog.KindAny:
		return h.anyValue(v.Any())
	default: // numbers, bools, durations, times
		return v
	}
}

// anyValue scrubs a value the wrapped handler would format itself. An error becomes its
// scrubbed message. Any other value is kept as it is when none of the ways a handler may
// render it (fmt's %+v, MarshalText, JSON) needs a scrub; otherwise it becomes the
// scrubbed text of the first rendering that needed one, which no longer carries a secret.
func (h *Handler) anyValue(x any) slog.Value {
	switch t := x.(type) {
	case nil:
		return slog.AnyValue(nil)
	case error:
		return slog.StringValue(h.r.redact(t.Error()))
	case []byte:
		return slog.StringValue(h.r.redact(string(t)))
	}
	renderings := []func() (string, bool){
		func() (string, bool) { return fmt.Sprintf("%+v", x), true },
		func() (string, bool) {
			tm, ok := x.(encoding.TextMarshaler)
			if !ok {
				return "", false
			}
			b, err := tm.MarshalText()
			return string(b), err == nil
		},
		func() (string, bool) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false) // as slog.JSONHandler encodes
			if err := enc.Encode(x); err != nil {
				return "", false
			}
			return strings.TrimSuffix(buf.String(), "\n"), true
		},
	}
	for _, render := range renderings {
		text, ok := render()
		if !ok {
			continue
		}
		if clean := h.r.redact(text); clean != text {
			return slog.StringValue(clean)
		}
	}
	return slog.AnyValue(x)
}
