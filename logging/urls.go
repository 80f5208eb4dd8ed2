package logging

import (
	"net/url"
	"regexp"
	"strings"
)

// SafeURL renders one configured URL for tables, logs and errors: scheme, host and
// path, without userinfo, query string or fragment (they may hold credentials or a
// signature). The path stops before its first segment that looks like a credential
// (PathSecrets: a Discord or Teams webhook keeps its token there), replaced by "/...".
// With hostOnly the path goes too (a Slack incoming-webhook URL keeps its
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
		secret := PathSecrets(u.Path)
		if len(secret) == 0 {
			c.Path, c.RawPath = u.Path, u.RawPath
			return c.String()
		}
		c.Path = strings.TrimSuffix(u.Path[:strings.Index(u.Path, secret[0])], "/")
		return c.String() + "/..."
	}
	out := c.String()
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		out += "/..."
	}
	return out
}

// PathSecrets returns the segments of a URL path that look like a credential: at least
// 20 characters with both letters and digits (the token of a Discord webhook, the key of
// a Slack or legacy Teams one). A short or plain-word segment (/hooks/plugchoice, a
// numeric id) is not one.
func PathSecrets(path string) []string {
	var out []string
	for seg := range strings.SplitSeq(path, "/") {
		if len(seg) >= 20 && strings.ContainsAny(seg, "0123456789") && strings.IndexFunc(seg, isLetter) >= 0 {
			out = append(out, seg)
		}
	}
	return out
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

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
