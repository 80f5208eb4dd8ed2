package sinks

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/metrics"
)

// Deps is what the bridge gives every sink it builds, besides the sink's own Config.
type Deps struct {
	// Name is the sink's name: its durable key in the store, and its label in logs and
	// metrics.
	Name string
	// Setting returns how the user wrote the setting key of this sink's block, for
	// messages: "EXPORTBRIDGE_NATS_TOKEN" from the environment, or
	// "config.yaml:14:7 sinks[2].nats.token" from the config file. Nil: the key itself.
	Setting func(key string) string
	// Logger is the bridge's redacting logger; nil: slog.Default().
	Logger *slog.Logger
	// Metrics records sink-level figures; nil records nothing.
	Metrics *metrics.Metrics
	// Meta keeps small per-sink values across restarts (Slack message ids). Nil where
	// nothing is kept (send-test, check).
	Meta MetaStore
	// Out is where the stdout sink writes.
	Out io.Writer
	// UserAgent is sent by HTTP sinks: "exportbridge/<version>".
	UserAgent string
}

// SettingName returns how the user wrote key (see Deps.Setting).
func (d Deps) SettingName(key string) string {
	if d.Setting == nil {
		return key
	}
	return d.Setting(key)
}

// Log returns d.Logger, or slog.Default() when it is nil.
func (d Deps) Log() *slog.Logger {
	if d.Logger == nil {
		return slog.Default()
	}
	return d.Logger
}

// MetaStore keeps small values per sink (the store implements it).
type MetaStore interface {
	GetMeta(sink, key string) ([]byte, error) // nil, nil when absent
	PutMeta(sink, key string, v []byte) error
}

// FieldError is one problem with one setting of a sink's Config, named by its key in the
// config file's kind block ("timeout", "url"). The config layer turns the key into the
// user's spelling (the environment variable or the file's key path).
type FieldError struct {
	Key string // the block key: "subject_prefix"
	Msg string // what is wrong and what is expected; never a secret's value
}

// FieldErrors is every problem a Config.Validate found.
type FieldErrors []FieldError

func (fe FieldErrors) Error() string {
	lines := make([]string, len(fe))
	for i, e := range fe {
		lines[i] = e.Key + ": " + e.Msg
	}
	return strings.Join(lines, "\n")
}

// Add records a problem with key.
func (fe *FieldErrors) Add(key, format string, args ...any) {
	*fe = append(*fe, FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Err returns fe as an error, or nil when it is empty.
func (fe FieldErrors) Err() error {
	if len(fe) == 0 {
		return nil
	}
	return fe
}

// Strings is a list setting that also accepts a single string in the config file
// (`url: nats://a:4222` or `url: [nats://a:4222, nats://b:4222]`).
type Strings = config.Strings

// SettingNames turns the "{key}" placeholders in a sink's messages into the settings as
// the user wrote them (Deps.Setting); without one, into "kind.key".
func SettingNames(setting func(string) string, kind string, keys ...string) *strings.Replacer {
	if setting == nil {
		setting = func(k string) string { return kind + "." + k }
	}
	pairs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, "{"+k+"}", setting(k))
	}
	return strings.NewReplacer(pairs...)
}

// RenameSettings returns err with its message's "{key}" placeholders replaced by names;
// the result still unwraps to err, so its class (Permanent, RetryAfter) is kept.
func RenameSettings(err error, names *strings.Replacer) error {
	if err == nil || names == nil {
		return err
	}
	msg := err.Error()
	if renamed := names.Replace(msg); renamed != msg {
		return &renamedError{msg: renamed, err: err}
	}
	return err
}

type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }
