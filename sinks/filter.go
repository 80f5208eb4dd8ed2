package sinks

import (
	"fmt"
	"strings"

	"github.com/exportbridge/exportbridge/event"
)

// Filter selects the events a sink wants. The zero Filter matches nothing; use
// ParseFilter.
type Filter struct {
	all    bool
	bridge bool
	names  map[string]bool // short names without the "export." prefix
	spec   string
}

// ParseFilter parses a comma-separated list of short names without the "export." prefix
// ("ready,failed"), "bridge" for the bridge's own events, or "*" for all. Names with the
// "export." prefix and full bridge names ("bridge.poll_failing") are accepted too.
func ParseFilter(spec string) (Filter, error) {
	f := Filter{names: map[string]bool{}, spec: spec}
	for _, raw := range strings.Split(spec, ",") {
		n := strings.ToLower(strings.TrimSpace(raw))
		switch {
		case n == "":
			return Filter{}, fmt.Errorf("empty name in event filter %q (expected names like ready,failed,bridge or *)", spec)
		case n == "*":
			f.all = true
		case n == "bridge" || n == "bridge.*":
			f.bridge = true
		case strings.HasPrefix(n, "bridge."):
			f.names[n] = true
		default:
			n = strings.TrimPrefix(n, "export.")
			if n != event.SanitizeToken(n) {
				return Filter{}, fmt.Errorf("bad name %q in event filter %q (expected a status such as ready, failed, removed, or bridge, or *)", raw, spec)
			}
			f.names[n] = true
		}
	}
	return f, nil
}

// MustFilter is ParseFilter for constants; it panics on a bad spec.
func MustFilter(spec string) Filter {
	f, err := ParseFilter(spec)
	if err != nil {
		panic(err)
	}
	return f
}

// Match reports whether the filter wants an event of short type typ.
func (f Filter) Match(typ string) bool {
	if f.all {
		return true
	}
	if strings.HasPrefix(typ, "bridge.") {
		return f.bridge || f.names[typ]
	}
	return f.names[strings.TrimPrefix(typ, "export.")]
}

func (f Filter) String() string { return f.spec }
