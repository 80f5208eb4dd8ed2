package logging

import (
	"net/url"
	"regexp"
	"strings"
)

// SafeURL renders one configured URL for tables, logs and errors: scheme, host and
// path, without userinfo, query string or fragment (they may hold credentials or a
// signature). With hostOnly the path goes too (a Slack incoming-webhook URL keeps its
// secret in the path), replaced by "/..." when there was one. host:port is shown as it
// is; what does not parse as a URL is "(url)".
// It is the one URL redactor of the bridge; Redact and RedactURLHosts apply it to text.
func SafeURL(raw string, hostOnly bool) string {
	raw = strings.TrimSpace(raw)
	if raw != "" && !strings.Contains(raw, "://") && !strings.ContainsAny(raw, "@?#/ ") {
		return raw // host:port, as NATS accepts
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Host == "" && u.Path == "" && u.Scheme == "") {
		return "(url)"
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host}
	if !hostOnly {
		c.Path, c.RawPath = u.Path, u.RawPath
		return c.String()
	}
	out := c.String()
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		out += "/..."
	}
	return out
}

var anyURLRe = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// RedactURLHosts replaces every URL in s by SafeURL(url, true): scheme and host only.
// For text that leaves the bridge for another reader (admin answers, dead-letter
// errors): Go's HTTP errors quote whole URLs, and a Slack webhook URL keeps its secret in
// the path, a signed download URL in its query.
func RedactURLHosts(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return anyURLRe.ReplaceAllStringFunc(s, func(m string) string {
		if u, err := url.Parse(m); err != nil || u.Host == "" {
			return "[url]"
		}
		return SafeURL(m, true)
	})
}
