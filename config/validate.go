package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/logging"
)

// validate checks values and combinations, skipping variables that already failed to
// decode, and normalises a few (URLs, level and format case).
func (l *loader) validate() {
	c := l.cfg
	ok := func(name string) bool { return !l.bad[name] }

	if ok("API_URL") {
		if u, err := parseHTTPURL(c.APIURL); err != nil {
			l.problem("API_URL", "%s %v", quoteURL(c.APIURL), err)
		} else if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			l.problem("API_URL", "%s has a query or fragment (expected a base URL such as https://app.plugchoice.com/api/v3)", quoteURL(c.APIURL))
		} else if u.User != nil {
			l.problem("API_URL", "has credentials in it (expected a base URL without user:password@; the token goes in EXPORTBRIDGE_API_TOKEN)")
		} else {
			c.APIURL = strings.TrimRight(c.APIURL, "/")
		}
	}
	if l.set["FILTER_SUBJECT_ID"] && ok("FILTER_SUBJECT_ID") && c.FilterSubjectID < 1 {
		l.problem("FILTER_SUBJECT_ID", "%d is not a subject id (expected a positive integer)", c.FilterSubjectID)
	}

	l.positive("POLL_INTERVAL", c.PollInterval, time.Second)
	l.positive("POLL_INTERVAL_ACTIVE", c.PollIntervalActive, time.Second)
	if ok("POLL_INTERVAL") && ok("POLL_INTERVAL_ACTIVE") && c.PollIntervalActive > c.PollInterval {
		if l.set["POLL_INTERVAL_ACTIVE"] {
			l.problem("POLL_INTERVAL_ACTIVE", "%s is longer than EXPORTBRIDGE_POLL_INTERVAL %s (expected at most the poll interval)", c.PollIntervalActive, c.PollInterval)
		} else {
			c.PollIntervalActive = c.PollInterval // the default, on a shorter POLL_INTERVAL
		}
	}
	if ok("POLL_INTERVAL") && ok("FULL_SYNC_INTERVAL") && c.FullSyncInterval < c.PollInterval {
		l.problem("FULL_SYNC_INTERVAL", "%s is shorter than EXPORTBRIDGE_POLL_INTERVAL %s (expected at least the poll interval)", c.FullSyncInterval, c.PollInterval)
	}
	l.positive("HTTP_TIMEOUT", c.HTTPTimeout, 0)
	l.positive("RETRY_MAX_ELAPSED", c.RetryMaxElapsed, 0)
	l.positive("SHUTDOWN_TIMEOUT", c.ShutdownTimeout, 0)
	if ok("SINK_FAILURE_ALERT") && c.SinkFailureAlert < 0 {
		l.problem("SINK_FAILURE_ALERT", "%s is negative (expected a duration such as 5m, or 0 to send no alert)", c.SinkFailureAlert)
	}

	if l.set["PER_PAGE"] {
		l.intRange("PER_PAGE", c.PerPage, 1, 100)
	}
	if ok("API_BUDGET") && c.APIBudget < 0 {
		l.problem("API_BUDGET", "%d is negative (expected requests per minute, at least 1, or 0 for 80%% of X-RateLimit-Limit)", c.APIBudget)
	}
	if ok("POLL_FAILURE_THRESHOLD") && c.PollFailureThreshold < 1 {
		l.problem("POLL_FAILURE_THRESHOLD", "%d is too small (expected at least 1)", c.PollFailureThreshold)
	}
	if strings.TrimSpace(c.StateDir) == "" {
		l.problem("STATE_DIR", "is empty (expected a directory such as ./data)")
	}

	if c.ListenAddr != "" {
		if err := checkHostPort(c.ListenAddr); err != nil {
			l.problem("LISTEN_ADDR", "%q %v (or empty to disable the server)", c.ListenAddr, err)
		}
	}
	if c.AdminAddr != "" {
		if err := checkHostPort(c.AdminAddr); err != nil {
			l.problem("ADMIN_ADDR", "%q %v (or empty to disable the admin endpoint)", c.AdminAddr, err)
		} else if !c.AdminIsLoopback() && strings.TrimSpace(c.AdminToken) == "" && l.noProblem("ADMIN_TOKEN", "ADMIN_TOKEN_FILE") {
			l.problem("ADMIN_TOKEN", "is required because EXPORTBRIDGE_ADMIN_ADDR %q is not a loopback address (set a token, or listen on 127.0.0.1)", c.AdminAddr)
		}
	}

	switch lv := strings.ToLower(strings.TrimSpace(c.LogLevel)); lv {
	case "debug", "info", "warn", "error":
		c.LogLevel = lv
	default:
		l.problem("LOG_LEVEL", "%q is not a log level (expected debug, info, warn or error)", c.LogLevel)
	}
	switch f := strings.ToLower(strings.TrimSpace(c.LogFormat)); f {
	case "json", "text":
		c.LogFormat = f
	default:
		l.problem("LOG_FORMAT", "%q is not a log format (expected json or text)", c.LogFormat)
	}

	l.validateStore()
	l.validateSinks()
}

// validateSinks checks what the environment shorthand needs beyond each sink's own
// Validate (run by the registry over the sink entries): webhook URLs given once, and
// warnings for settings of a sink that is not enabled. With CONFIG_FILE, the sink
// settings of the shorthand are refused: a sink is defined in one place.
func (l *loader) validateSinks() {
	c := l.cfg
	if c.ConfigFile != "" {
		var given []string
		for _, f := range fields {
			if l.set[f.name] && isShorthandSink(f.name) && !(c.Store == "nats" && storeConnection[f.name]) {
				given = append(given, f.key)
			}
		}
		for _, k := range given {
			l.problem(strings.TrimPrefix(k, Prefix), "defines a sink, and EXPORTBRIDGE_CONFIG_FILE is set (expected sinks in the config file only; only EXPORTBRIDGE_STDOUT may be added)")
		}
		return
	}
	seen := map[string]int{}
	for i, s := range c.WebhookURLs {
		if j, dup := seen[s]; dup {
			l.problem("WEBHOOK_URLS", "URL #%d is the same as URL #%d (expected each endpoint once)", i+1, j)
			break
		}
		seen[s] = i + 1
	}
	if len(c.NATSURL) == 0 {
		l.unused([]string{"NATS_CREDS", "NATS_NKEY", "NATS_TOKEN", "NATS_USER", "NATS_PASSWORD", "NATS_CA", "NATS_CERT", "NATS_KEY", "NATS_EVENTS", "NATS_JETSTREAM", "NATS_SUBJECT_PREFIX"}, "NATS_URL")
	}
	if c.SlackToken == "" && c.SlackWebhookURL == "" {
		l.unused([]string{"SLACK_CHANNEL", "SLACK_EVENTS", "SLACK_API_URL"}, "SLACK_WEBHOOK_URL or EXPORTBRIDGE_SLACK_TOKEN")
	}
	if len(c.WebhookURLs) == 0 {
		l.unused([]string{"WEBHOOK_SECRET", "WEBHOOK_HEADERS", "WEBHOOK_CA", "WEBHOOK_EVENTS", "WEBHOOK_TIMEOUT", "WEBHOOK_CONCURRENCY"}, "WEBHOOK_URLS")
	}
}

// storeConnection are the NATS_* settings that also make the connection of STORE=nats
// (its servers, when STORE_NATS_URL is not set, and its authentication and TLS): with
// STORE=nats they stay allowed beside CONFIG_FILE.
var storeConnection = map[string]bool{
	"NATS_URL": true, "NATS_CREDS": true, "NATS_NKEY": true, "NATS_TOKEN": true, "NATS_USER": true,
	"NATS_PASSWORD": true, "NATS_CA": true, "NATS_CERT": true, "NATS_KEY": true,
}

// isShorthandSink reports whether a setting defines or configures a sink of the
// environment shorthand (NATS_*, SLACK_*, WEBHOOK_*).
func isShorthandSink(name string) bool {
	return strings.HasPrefix(name, "NATS_") || strings.HasPrefix(name, "SLACK_") || strings.HasPrefix(name, "WEBHOOK_")
}

// noProblem reports whether none of the named variables has a problem yet.
func (l *loader) noProblem(names ...string) bool {
	for _, n := range names {
		if l.bad[n] {
			return false
		}
	}
	return true
}

// unused warns about settings given for a sink that is not enabled.
func (l *loader) unused(names []string, enabler string) {
	for _, n := range names {
		if l.set[n] {
			l.cfg.Warnings = append(l.cfg.Warnings, fmt.Sprintf("%s%s has no effect without %s%s", Prefix, n, Prefix, enabler))
		}
	}
}

func (l *loader) positive(name string, d time.Duration, min time.Duration) {
	if l.bad[name] {
		return
	}
	if min > 0 && d < min {
		l.problem(name, "%s is too short (expected at least %s)", d, min)
	} else if d <= 0 {
		l.problem(name, "%s is not positive (expected a duration such as 10s)", d)
	}
}

func (l *loader) intRange(name string, n, lo, hi int) {
	if !l.bad[name] && (n < lo || n > hi) {
		l.problem(name, "%d is out of range (expected %d to %d)", n, lo, hi)
	}
}

// parseHTTPURL parses an absolute http or https URL with a host.
func parseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("is not an absolute http(s) URL (expected such as https://host/path)")
	}
	return u, nil
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("is not host:port (expected such as :9090 or 127.0.0.1:9091)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("has a bad port (expected a number from 0 to 65535)")
	}
	return nil
}

// quoteURL quotes a URL for a message without its userinfo or query string, which may
// hold credentials.
func quoteURL(s string) string {
	return strconv.Quote(logging.Redact(s, nil))
}

// urlPath returns the path of a URL, or "" when s does not parse.
func urlPath(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.EscapedPath()
}

// userinfoOf returns the userinfo ("user:pass") of a URL and its password, if any.
func userinfoOf(s string) (userinfo, password string) {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return "", ""
	}
	p, _ := u.User.Password()
	return u.User.String(), p
}
