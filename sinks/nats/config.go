package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/template"
)

// Kind is the sink kind's name in the config file.
const Kind = "nats"

// DefaultEvents is the filter of a NATS sink that sets no `events`.
const DefaultEvents = "*"

// Config is one NATS sink's settings: the `nats:` block of a config-file entry, or the
// environment shorthand (NATS_*). Keys are the environment names in snake_case without
// the NATS_ prefix.
type Config struct {
	URL           sinks.Strings `yaml:"url"`
	SubjectPrefix string        `yaml:"subject_prefix"`
	JetStream     bool          `yaml:"jetstream"`
	Creds         string        `yaml:"creds"`      // credentials file (user JWT and seed)
	CredsFile     string        `yaml:"creds_file"` // the same, under the name of the SPEC's example
	NKey          string        `yaml:"nkey"`       // NKey seed file
	Token         string        `yaml:"token" secret:"true"`
	User          string        `yaml:"user"`
	Password      string        `yaml:"password" secret:"true"`
	CA            string        `yaml:"ca"`
	Cert          string        `yaml:"cert"`
	Key           string        `yaml:"key"`
	// Templates (SPEC "Templates"), as for a webhook: body or body_text, content_type,
	// and vars (.Vars in templates; secrets, so ${ENV} works).
	Body        any               `yaml:"body"`
	BodyText    string            `yaml:"body_text"`
	ContentType string            `yaml:"content_type"`
	Vars        map[string]string `yaml:"vars" secret:"true"`
}

func (c Config) payload() template.PayloadConfig {
	return template.PayloadConfig{Body: c.Body, BodyText: c.BodyText, ContentType: c.ContentType, Vars: c.Vars}
}

// DefaultConfig is the Config a block starts from.
func DefaultConfig() Config { return Config{SubjectPrefix: DefaultPrefix} }

func (c Config) options() Options {
	creds := c.Creds
	if creds == "" {
		creds = c.CredsFile
	}
	return Options{
		URLs: c.URL, Prefix: c.SubjectPrefix, JetStream: c.JetStream,
		Token: c.Token, User: c.User, Password: c.Password, CredsFile: creds, NKeyFile: c.NKey,
		CAFile: c.CA, CertFile: c.Cert, KeyFile: c.Key,
	}
}

// Validate reports every problem, each under its key, including credential and TLS
// files that cannot be read (their content is checked by New).
func (c Config) Validate() error {
	var fe sinks.FieldErrors
	for _, f := range []struct{ key, path, what string }{
		{"creds", c.Creds, "a .creds file with a user JWT and seed"},
		{"creds_file", c.CredsFile, "a .creds file with a user JWT and seed"},
		{"nkey", c.NKey, "a file holding an NKey user seed (SU...)"},
		{"ca", c.CA, "a CA certificate in PEM"},
		{"cert", c.Cert, "a client certificate in PEM"},
		{"key", c.Key, "the client certificate's private key in PEM"},
	} {
		if f.path != "" {
			if err := readableFile("{"+f.key+"}", f.path, f.what); err != nil {
				fe.Add(f.key, "%s", strings.TrimPrefix(err.Error(), "nats: {"+f.key+"}: "))
			}
		}
	}
	if c.Creds != "" && c.CredsFile != "" {
		fe.Add("creds_file", "is set together with {creds} (expected one of them: both name the credentials file)")
	}
	o := c.options()
	if len(o.URLs) == 0 {
		fe.Add("url", "is not set (expected one or more servers such as nats://127.0.0.1:4222)")
	}
	for i, u := range o.URLs {
		if err := validateURL(u); err != nil {
			fe.Add("url", "server #%d: %v", i+1, err)
		}
	}
	if err := ValidatePrefix(c.SubjectPrefix); err != nil {
		fe.Add("subject_prefix", "%v", err)
	}
	var auth []string
	for _, a := range []struct{ key, v string }{{"creds", o.CredsFile}, {"nkey", c.NKey}, {"token", c.Token}, {"user", c.User + c.Password}} {
		if a.v != "" {
			auth = append(auth, "{"+a.key+"}")
		}
	}
	if len(auth) > 1 {
		fe.Add("token", "several authentication methods are set (%s); expected one of {creds}, {nkey}, {token}, or {user} with {password}", strings.Join(auth, ", "))
	}
	if (c.User == "") != (c.Password == "") {
		fe.Add("user", "{user} and {password} go together (expected both or neither)")
	}
	if (c.Cert == "") != (c.Key == "") {
		fe.Add("cert", "{cert} and {key} go together (expected a client certificate and its private key, or neither)")
	}
	for _, p := range c.payload().Validate(DefaultName) {
		fe.Add(p.Key, "%s", p.Msg)
	}
	return fe.Err()
}

// Destination is the servers (without userinfo) for tables and logs, and identity what
// the store fingerprints (servers and subject prefix).
func (c Config) Destination() (shown, identity string) {
	shown = redactURLs(c.URL)
	return shown, shown + " " + c.SubjectPrefix
}

// Secrets returns the values to keep out of logs.
func (c Config) Secrets() []string {
	out := []string{c.Token, c.Password}
	for _, v := range c.Vars {
		out = append(out, v)
	}
	return out
}

// New validates c and connects (see NewSink).
func New(ctx context.Context, c Config, d sinks.Deps) (*Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	o := c.options()
	o.Name, o.Logger, o.Metrics, o.Setting = d.Name, d.Logger, d.Metrics, d.Setting
	payload, err := template.NewPayload(d.Name, c.payload())
	if err != nil {
		var te *template.Error
		if errors.As(err, &te) && te.Key != "" {
			return nil, fmt.Errorf("%s: %s", d.SettingName(te.Key), te.Detail()) // Validate saw it
		}
		return nil, err
	}
	o.Payload = payload
	return NewSink(ctx, o)
}

// Preview returns what a sink of c named name would publish for e (subject, headers,
// payload) without connecting (`exportbridge template render`).
func (c Config) Preview(name string, e event.Event) (subject string, h map[string][]string, body []byte, err error) {
	payload, err := template.NewPayload(name, c.payload())
	if err != nil {
		return "", nil, nil, err
	}
	prefix := c.SubjectPrefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Sink{name: name, prefix: prefix, payload: payload}
	msg, err := s.message(e, s.Subject(e))
	if err != nil {
		return "", nil, nil, err
	}
	return msg.Subject, msg.Header, msg.Data, nil
}
