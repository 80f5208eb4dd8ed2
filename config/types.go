package config

import (
	"fmt"
	"net/http"
	"strings"
)

// List is a comma-separated list setting. Each item is trimmed of surrounding white
// space; an empty item ("a,,b" or a trailing comma) is an error. An empty or blank value
// is an empty list. It implements envconfig.Decoder.
type List []string

// Decode parses a comma-separated list. Errors name the item's position, never its
// value (list settings may hold secrets).
func (l *List) Decode(s string) error {
	if strings.TrimSpace(s) == "" {
		*l = nil
		return nil
	}
	parts := strings.Split(s, ",")
	out := make(List, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return fmt.Errorf("item #%d of %d is empty (expected a comma-separated list such as a,b)", i+1, len(parts))
		}
		out = append(out, p)
	}
	*l = out
	return nil
}

// String joins the list with commas.
func (l List) String() string { return strings.Join(l, ",") }

// Header is one extra HTTP header for webhook requests.
type Header struct {
	Name  string
	Value string
}

// Headers is the WEBHOOK_HEADERS setting: `Name:value,Name2:value2`, in the order given.
// It implements envconfig.Decoder.
type Headers []Header

// headers the webhook sink sets itself: overriding them would break delivery or signing.
var reservedHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Host": true, "Transfer-Encoding": true,
	"Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
}

// Decode parses `Name:value,Name2:value2`. Names must be valid HTTP header names and not
// one the bridge sets itself; values must not contain CR, LF or NUL. Errors name the
// header's position, never its name or value (a value is often a credential).
func (h *Headers) Decode(s string) error {
	var items List
	if err := items.Decode(s); err != nil {
		return err
	}
	out := make(Headers, 0, len(items))
	for i, it := range items {
		name, value, ok := strings.Cut(it, ":")
		if !ok {
			return fmt.Errorf("header #%d has no ':' (expected Name:value,Name2:value2)", i+1)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !validHeaderName(name) {
			return fmt.Errorf("header #%d: the name is not a valid HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)", i+1)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return fmt.Errorf("header #%d: the value contains CR, LF or NUL", i+1)
		}
		canon := http.CanonicalHeaderKey(name)
		if reservedHeaders[canon] {
			return fmt.Errorf("header #%d: %s is set by the bridge and cannot be overridden", i+1, canon)
		}
		out = append(out, Header{Name: canon, Value: value})
	}
	*h = out
	return nil
}

// HTTP returns the headers as an http.Header.
func (h Headers) HTTP() http.Header {
	out := make(http.Header, len(h))
	for _, x := range h {
		out.Add(x.Name, x.Value)
	}
	return out
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
