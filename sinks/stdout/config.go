package stdout

import "github.com/exportbridge/exportbridge/sinks"

// Kind is the sink kind's name in the config file.
const Kind = "stdout"

// DefaultEvents is the filter of a stdout sink that sets no `events`.
const DefaultEvents = "*"

// Config is the stdout sink's settings: it has none (`stdout: {}` in the config file).
type Config struct{}

// DefaultConfig is the Config a block starts from.
func DefaultConfig() Config { return Config{} }

// Validate has nothing to check.
func (Config) Validate() error { return nil }

// Destination is standard output.
func (Config) Destination() (shown, identity string) { return "standard output", "stdout" }

// Secrets: none.
func (Config) Secrets() []string { return nil }

// New builds the sink writing to d.Out (standard output when nil).
func New(_ Config, d sinks.Deps) (*Sink, error) {
	s := NewSink(d.Out)
	if d.Name != "" {
		s.name = d.Name
	}
	return s, nil
}
