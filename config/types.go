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

// Decode parses `Name:value,Name2:value2`; the webhook sink's Validate checks the names
// and values. Errors name the header's position, never its name or value (a value is
// often a credential).
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
		if name == "" {
			return fmt.Errorf("header #%d has an empty name (expected Name:value,Name2:value2)", i+1)
		}
		out = append(out, Header{Name: http.CanonicalHeaderKey(name), Value: value})
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
