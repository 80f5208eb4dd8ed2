package main

import (
	"strings"
	"testing"
)

// TestRunErrors: bad input is refused with a message naming the thing and what was
// expected.
func TestRunErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no mode", nil, "missing mode"},
		{"unknown mode", []string{"fast"}, `unknown mode "fast"`},
		{"bad sizes", []string{"requests", "-sizes", "10,x"}, `-sizes: "x" is not a positive integer`},
		{"zero size", []string{"requests", "-sizes", "0"}, `-sizes: "0" is not a positive integer`},
		{"resources without bin", []string{"resources"}, "-bin is required"},
		{"unknown sink", []string{"throughput", "-sinks", "kafka", "-events", "10", "-runs", "1"}, `unknown sink "kafka"`},
		{"bad flag", []string{"latency", "-changes", "many"}, "invalid value"},
		{"negative receiver delay", []string{"throughput", "-receiver-delay", "-2ms"}, "-receiver-delay -2ms: expected a duration of 0 or more"},
		{"missing binary", []string{"resources", "-bin", "/nonexistent/exportbridge", "-exports", "30"}, "start /nonexistent/exportbridge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestModesSmall runs each in-process measurement at a tiny size: they must complete
// (every event delivered, every cycle cheap) without error.
func TestModesSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"requests", []string{"requests", "-sizes", "100,300", "-cycles", "3", "-full-cycles", "1"}},
		{"throughput", []string{"throughput", "-events", "60", "-runs", "1"}},
		{"throughput, remote receivers", []string{"throughput", "-events", "60", "-runs", "1", "-sinks", "webhook", "-receiver-delay", "2ms"}},
		{"latency", []string{"latency", "-changes", "3", "-interval", "200ms"}},
		{"latency active", []string{"latency", "-changes", "3", "-interval", "1m", "-active", "200ms"}},
		{"stores", []string{"stores", "-events", "60", "-changes", "3", "-runs", "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := run(tc.args); err != nil {
				t.Fatal(err)
			}
		})
	}
}
