package config

import "fmt"

// Strings is a list in the config file that also accepts a single string
// (`url: nats://a:4222` or `url: [nats://a:4222, nats://b:4222]`).
type Strings []string

// UnmarshalYAML accepts a string or a list of strings.
func (s *Strings) UnmarshalYAML(unmarshal func(any) error) error {
	var list []string
	if err := unmarshal(&list); err == nil {
		*s = list
		return nil
	}
	var one string
	if err := unmarshal(&one); err != nil {
		return fmt.Errorf("expected a string or a list of strings")
	}
	*s = Strings{one}
	return nil
}
