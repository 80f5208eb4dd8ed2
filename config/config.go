// Package config reads the bridge's settings from the environment (prefix EXPORTBRIDGE_),
// reads secrets from files named in X_FILE variables, and validates everything at once,
// reporting one problem per bad variable and never a secret's value.
//
// The struct tags follow github.com/kelseyhightower/envconfig (envconfig, default, desc)
// and the settings table is generated from them with envconfig's usage machinery. Load
// reads the variables itself rather than through envconfig.Process, which reads only the
// process environment, stops at the first error, and falls back to the unprefixed name
// of every tagged field (an unrelated API_TOKEN or STDOUT would be picked up).
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/logging"
)

// EnvPrefix is the prefix of every variable, without the trailing underscore.
const EnvPrefix = "EXPORTBRIDGE"

// Prefix is the prefix of every variable, underscore included.
const Prefix = EnvPrefix + "_"

// FileSuffix is appended to a secret setting's name to read it from a file.
const FileSuffix = "_FILE"

// Config holds every setting. Tags: envconfig is the name after the prefix, default the
// value when the variable is unset (a variable set to the empty string is set), secret
// marks values that are never printed and can come from X_FILE, defdoc documents a
// default computed elsewhere, desc is the meaning shown in the table.
type Config struct {
	APIURL            string        `envconfig:"API_URL" default:"https://app.plugchoice.com/api/v3" desc:"Plugchoice API base URL (absolute http(s) URL without query; a trailing slash is dropped)"`
	APIToken          string        `envconfig:"API_TOKEN" secret:"true" defdoc:"(required for run, once, check)" desc:"Plugchoice API bearer token of the one account default (not needed when the config file lists accounts)"`
	FilterTypes       List          `envconfig:"FILTER_TYPES" desc:"only exports of these types (comma list), passed on as the API's type filter"`
	FilterSubjectType string        `envconfig:"FILTER_SUBJECT_TYPE" desc:"only exports of this subject type (the API's subject_type filter)"`
	FilterSubjectID   int64         `envconfig:"FILTER_SUBJECT_ID" desc:"only exports of this subject id, a positive integer (the API's subject_id filter)"`
	PollInterval      time.Duration `envconfig:"POLL_INTERVAL" default:"30s" desc:"time between polls, plus up to 2.5% jitter (at least 1s)"`
	FullSyncInterval  time.Duration `envconfig:"FULL_SYNC_INTERVAL" default:"10m" desc:"time between full listings (at least POLL_INTERVAL)"`
	HTTPTimeout       time.Duration `envconfig:"HTTP_TIMEOUT" default:"20s" desc:"timeout of one API request"`
	PerPage           int           `envconfig:"PER_PAGE" defdoc:"(unset)" desc:"page size to ask the API for (1 to 100), if it honours per_page"`
	APIBudget         int           `envconfig:"API_BUDGET" defdoc:"80% of X-RateLimit-Limit" desc:"API requests per minute this bridge may use (0: automatic)"`
	StateDir          string        `envconfig:"STATE_DIR" default:"./data" desc:"directory of the embedded store (/data in the container image)"`
	EmitExisting      bool          `envconfig:"EMIT_EXISTING" default:"false" desc:"emit events for the exports already there on first start"`
	EmitRemoved       bool          `envconfig:"EMIT_REMOVED" default:"false" desc:"emit export.removed when an export is absent from two consecutive complete listings"`
	ListenAddr        string        `envconfig:"LISTEN_ADDR" default:":9090" desc:"address (host:port) of the health and metrics server; set to empty to disable"`
	AdminAddr         string        `envconfig:"ADMIN_ADDR" default:"127.0.0.1:9091" desc:"address (host:port) of the admin endpoint used by dlq and state against a running bridge; set to empty to disable"`
	AdminToken        string        `envconfig:"ADMIN_TOKEN" secret:"true" desc:"token for mutating admin calls; required when ADMIN_ADDR is not loopback"`
	LogLevel          string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat         string        `envconfig:"LOG_FORMAT" default:"json" desc:"json or text"`
	RetryMaxElapsed   time.Duration `envconfig:"RETRY_MAX_ELAPSED" default:"24h" desc:"how long one event is retried on one sink before it is dead-lettered"`

	NATSURL           List   `envconfig:"NATS_URL" desc:"NATS servers (comma list of nats://, tls://, ws://, wss:// URLs or host:port); enables the NATS sink"`
	NATSSubjectPrefix string `envconfig:"NATS_SUBJECT_PREFIX" default:"plugchoice.exports" desc:"subject prefix: events go to PREFIX.STATUS.TYPE"`
	NATSJetStream     bool   `envconfig:"NATS_JETSTREAM" default:"false" desc:"publish to JetStream and wait for the stream's ack"`
	NATSCreds         string `envconfig:"NATS_CREDS" desc:"NATS credentials file (JWT and NKey seed)"`
	NATSNKey          string `envconfig:"NATS_NKEY" desc:"NATS NKey seed file"`
	NATSToken         string `envconfig:"NATS_TOKEN" secret:"true" desc:"NATS token"`
	NATSUser          string `envconfig:"NATS_USER" desc:"NATS user name (with NATS_PASSWORD)"`
	NATSPassword      string `envconfig:"NATS_PASSWORD" secret:"true" desc:"NATS password (with NATS_USER)"`
	NATSCA            string `envconfig:"NATS_CA" desc:"CA certificate file (PEM) for NATS TLS"`
	NATSCert          string `envconfig:"NATS_CERT" desc:"client certificate file (PEM) for NATS TLS (with NATS_KEY)"`
	NATSKey           string `envconfig:"NATS_KEY" desc:"client key file (PEM) for NATS TLS (with NATS_CERT)"`
	NATSEvents        string `envconfig:"NATS_EVENTS" default:"*" desc:"NATS event filter (names such as ready,failed,bridge; * for all)"`

	SlackWebhookURL string `envconfig:"SLACK_WEBHOOK_URL" secret:"true" desc:"Slack incoming-webhook URL; enables Slack in webhook mode"`
	SlackToken      string `envconfig:"SLACK_TOKEN" secret:"true" desc:"Slack bot token (with SLACK_CHANNEL); enables Slack in bot mode"`
	SlackChannel    string `envconfig:"SLACK_CHANNEL" desc:"Slack channel (name or id) for bot mode"`
	SlackAPIURL     string `envconfig:"SLACK_API_URL" default:"https://slack.com/api/" desc:"Slack Web API base URL override (proxies, tests)"`
	SlackEvents     string `envconfig:"SLACK_EVENTS" default:"ready,failed,bridge" desc:"Slack event filter"`

	WebhookURLs        List          `envconfig:"WEBHOOK_URLS" desc:"webhook endpoints (comma list of http(s) URLs), each its own sink"`
	WebhookSecret      List          `envconfig:"WEBHOOK_SECRET" secret:"true" desc:"Standard Webhooks signing keys (comma list of whsec_ followed by base64), several for rotation"`
	WebhookHeaders     Headers       `envconfig:"WEBHOOK_HEADERS" secret:"true" desc:"extra headers for webhook requests (Name:value,Name2:value2)"`
	WebhookTimeout     time.Duration `envconfig:"WEBHOOK_TIMEOUT" default:"10s" desc:"timeout of one webhook request"`
	WebhookConcurrency int           `envconfig:"WEBHOOK_CONCURRENCY" default:"4" desc:"in-flight deliveries per webhook endpoint (1 to 64; one per export at most)"`
	WebhookCA          string        `envconfig:"WEBHOOK_CA" desc:"extra CA certificate file (PEM) for webhook TLS"`
	WebhookEvents      string        `envconfig:"WEBHOOK_EVENTS" default:"*" desc:"webhook event filter"`

	Stdout               bool          `envconfig:"STDOUT" default:"false" desc:"print each event as one JSON line on standard output"`
	PollFailureThreshold int           `envconfig:"POLL_FAILURE_THRESHOLD" default:"5" desc:"consecutive failed poll cycles before bridge.poll_failing (at least 1)"`
	ShutdownTimeout      time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"10s" desc:"how long in-flight deliveries may finish on SIGTERM"`
	ConfigFile           string        `envconfig:"CONFIG_FILE" desc:"YAML file of sinks, each with its own name, settings and filter (see Config file), and with STORE=nats of accounts (see Many accounts); the NATS_, SLACK_ and WEBHOOK_ settings are then refused"`

	// Sinks are the configured sinks, from CONFIG_FILE or the environment shorthand, in
	// order; the registry (sinks/registry) decodes and validates each kind's block.
	Sinks []SinkEntry `ignored:"true"`
	// Accounts is the config file's accounts: list (STORE=nats only); nil: the one
	// account of API_TOKEN (see PollAccounts).
	Accounts []Account `ignored:"true"`

	PollIntervalActive time.Duration `envconfig:"POLL_INTERVAL_ACTIVE" default:"10s" desc:"time between polls while any export is pending or processing, plus the same jitter (at least 1s, at most POLL_INTERVAL; the default is cut to a shorter POLL_INTERVAL)"`
	SinkFailureAlert   time.Duration `envconfig:"SINK_FAILURE_ALERT" default:"5m" desc:"how long a sink is down (its breaker open) before bridge.sink_failing goes to the other sinks (0 disables)"`

	Store             string        `envconfig:"STORE" default:"bolt" desc:"bolt (embedded file in STATE_DIR) or nats (JetStream, for N replicas; see Scale-out)"`
	StoreNATSURL      List          `envconfig:"STORE_NATS_URL" defdoc:"NATS_URL" desc:"NATS servers holding the state when STORE=nats (comma list; auth and TLS as NATS_*)"`
	StoreNATSReplicas int           `envconfig:"STORE_NATS_REPLICAS" default:"1" desc:"replicas of the bridge's own buckets and streams (1 to 5; 3 in a cluster)"`
	LeaseTTL          time.Duration `envconfig:"LEASE_TTL" default:"15s" desc:"how long a replica's poller and dispatcher leases last without renewal (at least 1s)"`

	// Warnings are things worth logging that do not stop the program: unknown
	// EXPORTBRIDGE_ variables (typos), settings that have no effect.
	Warnings []string `ignored:"true"`
}

// Problem is one bad setting.
type Problem struct {
	Var string // full variable name: EXPORTBRIDGE_POLL_INTERVAL
	Msg string // what is wrong and what is expected; never a secret's value
}

// Error is every problem found in the settings. Error() prints one line per problem.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Var + ": " + p.Msg
	}
	return strings.Join(lines, "\n")
}

// field describes one setting, from its struct tags.
type field struct {
	index  int
	name   string // after the prefix: POLL_INTERVAL
	key    string // full name: EXPORTBRIDGE_POLL_INTERVAL
	def    string
	secret bool
}

var fields = func() []field {
	t := reflect.TypeFor[Config]()
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			continue
		}
		out = append(out, field{
			index:  i,
			name:   name,
			key:    Prefix + name,
			def:    f.Tag.Get("default"),
			secret: f.Tag.Get("secret") == "true",
		})
	}
	return out
}()

// source is where variables come from.
type source struct {
	lookup func(string) (string, bool)
	names  func() []string
}

func mapSource(env map[string]string) source {
	return source{
		lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		names: func() []string {
			out := make([]string, 0, len(env))
			for k := range env {
				out = append(out, k)
			}
			return out
		},
	}
}

func processSource() source {
	return source{
		lookup: os.LookupEnv,
		names: func() []string {
			var out []string
			for _, kv := range os.Environ() {
				k, _, _ := strings.Cut(kv, "=")
				out = append(out, k)
			}
			return out
		},
	}
}

// loader collects problems while reading and validating.
type loader struct {
	src      source
	cfg      *Config
	set      map[string]bool // variable given (directly or through _FILE)
	bad      map[string]bool // variable already has a problem
	problems []Problem
	secrets  []string // raw secret values seen, to scrub problem messages
}

func (l *loader) problem(name, format string, args ...any) {
	l.bad[name] = true
	l.problems = append(l.problems, Problem{Var: Prefix + name, Msg: fmt.Sprintf(format, args...)})
}

// Load reads the settings from env (nil: the process environment), applies defaults and
// validates them. Only EXPORTBRIDGE_-prefixed variables are read. On bad settings it
// returns an *Error with one Problem per bad variable, and no secret value in it.
func Load(env map[string]string) (*Config, error) { return load(env, false) }

// LoadPartial is Load that ignores problems: the Config holds what could be read, so
// that the sinks it defines can be validated and reported together with the problems.
func LoadPartial(env map[string]string) (*Config, error) { return load(env, true) }

func load(env map[string]string, partial bool) (*Config, error) {
	src := processSource()
	if env != nil {
		src = mapSource(env)
	}
	l := &loader{src: src, cfg: &Config{}, set: map[string]bool{}, bad: map[string]bool{}}
	for _, f := range fields {
		l.read(f)
	}
	l.warnUnknown()
	l.validate()
	l.sinkEntries()
	if partial {
		return l.cfg, nil
	}
	if len(l.problems) > 0 {
		for i := range l.problems {
			l.problems[i].Msg = logging.Redact(l.problems[i].Msg, l.secrets)
		}
		return nil, &Error{Problems: l.problems}
	}
	return l.cfg, nil
}

// read looks one setting up (and its _FILE twin for secrets) and decodes it.
func (l *loader) read(f field) {
	value, ok := l.src.lookup(f.key)
	if f.secret {
		if ok {
			l.addSecret(value)
		}
		path, fileOK := l.src.lookup(f.key + FileSuffix)
		if fileOK && path != "" {
			if ok {
				l.problem(f.name, "both %s and %s are set (expected only one)", f.key, f.key+FileSuffix)
				return
			}
			b, err := os.ReadFile(path)
			if err != nil {
				l.problem(f.name+FileSuffix, "cannot read the secret file: %v", err)
				return
			}
			value, ok = strings.TrimSpace(string(b)), true
			l.addSecret(value)
			if value == "" {
				l.problem(f.name+FileSuffix, "the secret file %q is empty", path)
				return
			}
		}
	}
	if ok {
		l.set[f.name] = true
	} else {
		if f.def == "" {
			return
		}
		value = f.def
	}
	if err := decode(l.cfgField(f), value, f.secret); err != nil {
		l.problem(f.name, "%s", err.Error())
	}
}

// cfgField returns a pointer to the Config field of f.
func (l *loader) cfgField(f field) any {
	return reflect.ValueOf(l.cfg).Elem().Field(f.index).Addr().Interface()
}

// addSecret records a raw secret value, its comma-separated items and the values of its
// Name:value items, so that no problem message can show them (a last line of defence:
// messages are written not to quote secret values in the first place).
func (l *loader) addSecret(v string) {
	add := func(s string) {
		if s != whsecPrefix { // a bare prefix is not a secret, and messages name it
			l.secrets = append(l.secrets, s)
		}
	}
	add(v)
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		add(item)
		if _, val, ok := strings.Cut(item, ":"); ok {
			add(strings.TrimSpace(val))
		}
	}
}

// decoder is envconfig's Decoder interface.
type decoder interface{ Decode(string) error }

// decode parses value into ptr. Messages quote the value unless it is secret.
func decode(ptr any, value string, secret bool) error {
	q := strconv.Quote(value)
	if secret {
		q = "the value"
	}
	switch p := ptr.(type) {
	case decoder:
		return p.Decode(value)
	case *string:
		*p = value
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(value))
		if err != nil {
			return fmt.Errorf("%s is not a duration (expected Go syntax such as 30s or 5m)", q)
		}
		*p = d
	case *bool:
		switch strings.ToLower(strings.TrimSpace(value)) {
		case "true", "1":
			*p = true
		case "false", "0":
			*p = false
		default:
			return fmt.Errorf("%s is not a boolean (expected true, false, 1 or 0)", q)
		}
	case *int:
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil {
			return fmt.Errorf("%s is not a whole number", q)
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return fmt.Errorf("%s is not a whole number", q)
		}
		*p = n
	default:
		return fmt.Errorf("unsupported setting type %T", ptr) // a programming error
	}
	return nil
}

// warnUnknown lists EXPORTBRIDGE_ variables that are not settings (typos).
func (l *loader) warnUnknown() {
	known := map[string]bool{}
	for _, f := range fields {
		known[f.key] = true
		if f.secret {
			known[f.key+FileSuffix] = true
		}
	}
	var unknown []string
	for _, k := range l.src.names() {
		if strings.HasPrefix(k, Prefix) && !known[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		l.cfg.Warnings = append(l.cfg.Warnings, k+" is not a setting and is ignored (check the spelling)")
	}
}

// LoadFor is Load followed by Require(command), with every problem of both in one
// *Error: a missing token and a bad interval are reported together.
func LoadFor(env map[string]string, command string) (*Config, error) {
	cfg, err := Load(env)
	var cerr *Error
	switch {
	case err == nil:
		return cfg, cfg.Require(command)
	case errors.As(err, &cerr):
		src := processSource()
		if env != nil {
			src = mapSource(env)
		}
		tok, ok := src.lookup(Prefix + "API_TOKEN")
		_, fileOK := src.lookup(Prefix + "API_TOKEN" + FileSuffix)
		cf, _ := src.lookup(Prefix + "CONFIG_FILE")
		if !fileOK && (!ok || strings.TrimSpace(tok) == "") && (cf == "" || !fileHasAccounts(cf)) {
			if rerr := (&Config{}).Require(command); rerr != nil {
				var re *Error
				if errors.As(rerr, &re) && !slices.ContainsFunc(cerr.Problems, func(p Problem) bool { return p.Var == re.Problems[0].Var }) {
					cerr.Problems = append(re.Problems, cerr.Problems...)
				}
			}
		}
		return nil, cerr
	default:
		return nil, err
	}
}

// Require checks what a command needs beyond valid settings: run, once and check need
// API_TOKEN set and non-empty; other commands (demo, dlq, state, send-test, version,
// healthcheck) need nothing. It returns an *Error or nil.
func (c *Config) Require(command string) error {
	switch command {
	case "run", "once", "check":
		if strings.TrimSpace(c.APIToken) == "" && len(c.Accounts) == 0 {
			return &Error{Problems: []Problem{{
				Var: Prefix + "API_TOKEN",
				Msg: fmt.Sprintf("required by %q but not set (set it, or %s to a file holding it)", command, Prefix+"API_TOKEN"+FileSuffix),
			}}}
		}
	}
	return nil
}

// Secrets returns every secret value currently set, for the log redactor: the API and
// admin tokens, the NATS token and password, the Slack token and webhook URL (and its
// path), each webhook secret (and its base64 key), webhook header values, and the
// userinfo of every configured URL.
func (c *Config) Secrets() []string {
	var out []string
	add := func(s ...string) {
		for _, v := range s {
			if v != "" && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	add(c.APIToken, c.AdminToken, c.NATSToken, c.NATSPassword, c.SlackToken, c.SlackWebhookURL)
	for _, a := range c.Accounts {
		add(a.APIToken)
	}
	if p := urlPath(c.SlackWebhookURL); len(p) > 1 {
		add(p)
	}
	for _, s := range c.WebhookSecret {
		add(s, strings.TrimPrefix(s, whsecPrefix))
	}
	for _, h := range c.WebhookHeaders {
		add(h.Value)
	}
	urls := append([]string{c.APIURL, c.SlackAPIURL}, c.WebhookURLs...)
	urls = append(urls, c.NATSURL...)
	for _, u := range urls {
		userinfo, password := userinfoOf(u)
		add(userinfo, password)
	}
	return out
}

const whsecPrefix = "whsec_"

// AdminIsLoopback reports whether the admin endpoint is reachable only from this machine:
// its host is localhost or a loopback IP. A disabled endpoint (empty ADMIN_ADDR) counts as
// loopback; an empty host (":9091", every interface) does not.
func (c *Config) AdminIsLoopback() bool {
	if c.AdminAddr == "" {
		return true
	}
	host, _, err := net.SplitHostPort(c.AdminAddr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
