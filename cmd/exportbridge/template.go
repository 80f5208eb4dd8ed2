package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	natssink "github.com/exportbridge/exportbridge/sinks/nats"
	"github.com/exportbridge/exportbridge/sinks/registry"
	"github.com/exportbridge/exportbridge/sinks/route"
	slacksink "github.com/exportbridge/exportbridge/sinks/slack"
	stdoutsink "github.com/exportbridge/exportbridge/sinks/stdout"
	"github.com/exportbridge/exportbridge/sinks/webhook"
	"github.com/exportbridge/exportbridge/template"
)

// cmdTemplate is `exportbridge template render`: the headers and body one sink would
// send for a sample event (or the given export), printed, nothing sent.
func cmdTemplate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "render" {
		return usageErr("template: expected `template render --sink NAME [--event TYPE] [--export FILE]`")
	}
	fs := newFlags("template render", "template render --sink NAME [--event TYPE] [--export FILE]", stderr)
	sinkName := fs.String("sink", "", "the sink whose request to show (required)")
	typ := fs.String("event", "", "sample event: "+strings.Join(template.SampleTypes(), ", ")+" (or a status: ready); default the first the sink's filter takes")
	exportFile := fs.String("export", "", "an export object (as the API returns it) or a CloudEvent (JSON file) to render instead of a sample")
	if err := fs.Parse(args[1:]); err != nil {
		return usageFlagErr(err)
	}
	if *sinkName == "" {
		return usageErr("template render: --sink is required")
	}
	cfg, specs, err := loadSettings("template")
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr, specs...)
	var spec *registry.Spec
	for i := range specs {
		if specs[i].Name == *sinkName {
			spec = &specs[i]
		}
	}
	if spec == nil {
		return usageErr("--sink %q: no such sink (configured: %s)", *sinkName, strings.Join(registry.Names(specs), ", "))
	}

	var ev event.Event
	switch {
	case *exportFile != "":
		data, err := os.ReadFile(*exportFile)
		if err != nil {
			return usageErr("--export: %v", err)
		}
		if ev, err = eventFromFile(data, source(cfg), time.Now()); err != nil {
			return usageErr("--export %s: %v", *exportFile, err)
		}
	case *typ != "":
		var ok bool
		if ev, ok = template.Sample(*typ); !ok {
			return usageErr("--event %q: no such sample (expected one of %s)", *typ, strings.Join(template.SampleTypes(), ", "))
		}
	default:
		ev = firstSample(spec.Selector)
	}

	deps := sinks.Deps{Name: spec.Name, Logger: log, Meta: &memMeta{}, Out: stdout, UserAgent: userAgent()}
	fmt.Fprintf(stderr, "sink %s (%s), event %s %s; nothing is sent\n", spec.Name, spec.Kind, ev.Type, ev.ID)
	switch c := spec.Config.(type) {
	case webhook.Config:
		s, err := webhook.New(c, deps)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("sink %s: %w", spec.Name, err)}
		}
		defer s.Close()
		h, body, err := s.Preview(ev)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		fmt.Fprintf(stdout, "POST %s\n", spec.Destination)
		printHeaders(stdout, h)
		fmt.Fprintf(stdout, "\n%s\n", body)
	case natssink.Config:
		subj, h, body, err := c.Preview(spec.Name, ev)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		fmt.Fprintf(stdout, "PUB %s\n", subj)
		printHeaders(stdout, h)
		fmt.Fprintf(stdout, "\n%s\n", body)
	case slacksink.Config:
		s, err := slacksink.New(c, deps)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("sink %s: %w", spec.Name, err)}
		}
		what, body, err := s.Preview(ev)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		fmt.Fprintf(stdout, "%s\n\n%s", what, body)
	case stdoutsink.Config:
		fmt.Fprintf(stdout, "%s\n", ev.Body)
	default:
		return fmt.Errorf("template render: sinks of kind %s cannot be shown", spec.Kind)
	}
	return nil
}

// firstSample is the sample of the first event the sink would receive (export.ready
// when it takes that), so that a sink of failures shows a failure.
func firstSample(sel *route.Selector) event.Event {
	takes := func(e event.Event) bool {
		if sel == nil {
			return true
		}
		ok, _, _ := sel.Decide(route.NewInput(e))
		return ok
	}
	if e, ok := template.Sample("export.ready"); ok && takes(e) {
		return e
	}
	samples := template.Samples()
	for _, bridge := range []bool{false, true} { // exports first
		for _, e := range samples {
			if e.IsBridge() == bridge && takes(e) {
				return e
			}
		}
	}
	e, _ := template.Sample("export.ready")
	return e
}

func printHeaders(w io.Writer, h map[string][]string) {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range h[k] {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
}
