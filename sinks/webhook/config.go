package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/template"
)

// Kind is the sink kind's name in the config file.
const Kind = "webhook"

// DefaultEvents is the filter of a webhook sink that sets no `events`.
const DefaultEvents = "*"

// Config is one webhook sink's settings: the `webhook:` block of a config-file entry, or
// the environment shorthand WEBHOOK_* (one Config per URL). Keys are the environment
// names in snake_case without the WEBHOOK_ prefix.
type Config struct {
	URL         string            `yaml:"url" secret:"optional"` // url_file or ${ENV} when its path holds a token
	Secret      sinks.Strings     `yaml:"secret" secret:"true"`  // whsec_ keys, several for rotation
	Headers     map[string]string `yaml:"headers" secret:"true"` // values may be credentials
	Timeout     time.Duration     `yaml:"timeout"`
	Concurrency int               `yaml:"concurrency"`
	CA          string            `yaml:"ca"`
	// Templates (SPEC "Templates"): body (a YAML structure whose string leaves are
	// templates, sent as JSON) or body_text (sent as rendered), their content_type, and
	// vars, values of the user's own that templates see as .Vars (secrets: ${ENV} works).
	Body        any               `yaml:"body"`
	BodyText    string            `yaml:"body_text"`
	ContentType string            `yaml:"content_type"`
	Vars        map[string]string `yaml:"vars" secret:"true"`
}

// payload is the template part of c.
func (c Config) payload() template.PayloadConfig {
	return template.PayloadConfig{Body: c.Body, BodyText: c.BodyText, ContentType: c.ContentType, Vars: c.Vars}
}

// DefaultConfig is the Config a block starts from: the defaults of the shorthand.
func DefaultConfig() Config {
	return Config{Timeout: DefaultTimeout, Concurrency: DefaultConcurrency}
}

const whsecPrefix = "whsec_"

// Validate reports every problem, each under its key. It reads the CA file.
func (c Config) Validate() error {
	var fe sinks.FieldErrors
	if _, _, err := parseURL(c.URL); err != nil {
		fe.Add("url", "%v", err)
	}
	for i, s := range c.Secret {
		if _, err := decodeWhsec(s); err != nil {
			fe.Add("secret", "secret #%d is not whsec_ followed by base64 (%v)", i+1, err)
		}
	}
	if _, err := checkHeaders(c.headerList()); err != nil {
		fe.Add("headers", "%v", err)
	}
	if c.Timeout <= 0 {
		fe.Add("timeout", "%s is not positive (expected a duration such as 10s)", c.Timeout)
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		fe.Add("concurrency", "%d is out of range (expected 1 to 64)", c.Concurrency)
	}
	if c.CA != "" {
		if _, err := newTLSConfig(c.CA); err != nil {
			fe.Add("ca", "%v", err)
		}
	}
	for _, p := range c.payload().Validate(DefaultName) {
		fe.Add(p.Key, "%s", p.Msg)
	}
	return fe.Err()
}

// Destination is the endpoint for tables and logs (no userinfo, query or fragment), and
// identity what the store fingerprints to notice a sink pointed elsewhere.
func (c Config) Destination() (shown, identity string) {
	_, safe, err := parseURL(c.URL)
	if err != nil {
		return "(invalid URL)", c.URL
	}
	return safe, c.URL
}

// Secrets returns the values to keep out of logs: each key, its base64 part, the
// header values, and the URL's path segments that look like a token (Discord, Teams).
func (c Config) Secrets() []string {
	var out []string
	if u, err := url.Parse(c.URL); err == nil {
		out = append(out, logging.PathSecrets(u.Path)...)
	}
	for _, s := range c.Secret {
		out = append(out, s, strings.TrimPrefix(s, whsecPrefix))
	}
	for _, v := range c.Headers {
		out = append(out, v)
	}
	for _, v := range c.Vars {
		out = append(out, v)
	}
	return out
}

// headerList is Headers in a stable order (by name).
func (c Config) headerList() [][2]string {
	names := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([][2]string, 0, len(names))
	for _, k := range names {
		out = append(out, [2]string{k, c.Headers[k]})
	}
	return out
}

// templateError names a template error by the setting as the user wrote it.
func templateError(err error, d sinks.Deps) error {
	var te *template.Error
	if errors.As(err, &te) && te.Key != "" {
		return fmt.Errorf("%s: %s", d.SettingName(te.Key), te.Detail())
	}
	return err
}

func decodeWhsec(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), whsecPrefix)
	if !ok {
		return nil, errors.New("missing whsec_ prefix")
	}
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	if len(k) == 0 {
		return nil, errors.New("empty key")
	}
	return k, nil
}

// New validates c and builds the sink named d.Name.
func New(c Config, d sinks.Deps) (*Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	secrets := make([][]byte, 0, len(c.Secret))
	for _, s := range c.Secret {
		k, err := decodeWhsec(s)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err) // Validate saw it; cannot happen
		}
		secrets = append(secrets, k)
	}
	payload, err := template.NewPayload(d.Name, c.payload())
	if err != nil {
		return nil, templateError(err, d) // Validate saw it
	}
	return NewSink(Options{
		Name: d.Name, URL: c.URL, Secrets: secrets, Headers: c.headerList(), Timeout: c.Timeout,
		CAFile: c.CA, Concurrency: c.Concurrency, UserAgent: d.UserAgent, Payload: payload,
	})
}
