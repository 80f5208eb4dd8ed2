// Package retryafter reads the HTTP Retry-After header (RFC 9110 10.2.3), the one parser
// the API client and the HTTP sinks share.
package retryafter

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Max bounds a parsed delay: a server asking for more than a day is treated as asking
// for a day (callers cap further as they see fit).
const Max = 24 * time.Hour

// Parse reads a Retry-After value: delay-seconds ("120") or an HTTP date ("Wed, 21 Oct
// 2015 07:28:00 GMT", relative to now). ok is false when v is empty or malformed, or a
// negative number; a date in the past is a zero delay ("retry now"), and so is "0".
func Parse(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(Max/time.Second) {
			return Max, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), Max), true
}
