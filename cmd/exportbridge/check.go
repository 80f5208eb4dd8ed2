package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/metrics"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/registry"
	"github.com/exportbridge/exportbridge/sinks/route"
)

// cmdCheck validates settings, makes one API request and reaches every sink without
// sending a message.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", "check", stderr)
	timeout := fs.Duration("timeout", 20*time.Second, "how long each check may take")
	eventFile := fs.String("event", "", "a CloudEvent or export object (JSON file): say which sinks would receive it, and why the others would not; nothing is checked or sent")
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	command := "check"
	if *eventFile != "" {
		command = "check --event" // needs no API token
	}
	cfg, specs, err := loadSettings(command)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr, specs...)
	if err := printSinkTable(stdout, specs); err != nil {
		return err
	}
	if *eventFile != "" {
		return checkEvent(stdout, cfg, specs, *eventFile)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning: "+w)
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tSTATUS\tDETAIL")
	failed := 0
	row := func(name string, err error, detail string) {
		status := "ok"
		if err != nil {
			status, detail = "FAILED", err.Error()
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, status, oneLine(detail))
	}
	fmt.Fprintf(tw, "settings\tok\tstate dir %s\n", cfg.StateDir)

	for _, a := range cfg.PollAccounts() {
		name := "plugchoice api"
		if a.Named {
			name += " (" + a.Name + ")"
		}
		client, err := plugchoice.New(plugchoice.Options{BaseURL: a.APIURL, Token: a.APIToken, Timeout: cfg.HTTPTimeout,
			UserAgent: userAgent(), Budget: plugchoice.NewBudget(a.APIBudget), Logger: log})
		if err != nil {
			row(name, err, "")
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		pg, err := client.ListPage(cctx, accountQuery(cfg, a), 1)
		cancel()
		detail := ""
		if err == nil {
			detail = fmt.Sprintf("%s: %d exports on page 1", a.APIURL, len(pg.Data))
			if limit, rem, ok := client.RateLimit(); ok {
				detail += fmt.Sprintf(", rate limit %d/min, %d remaining", limit, rem)
			}
		}
		row(name, err, detail)
	}

	built, err := buildSinks(ctx, specs, io.Discard, &memMeta{}, log, metrics.New(nil))
	if err != nil {
		row("sinks", err, "")
	}
	defer closeSinks(built)
	if len(built) == 0 && err == nil {
		fmt.Fprintln(tw, "sinks\twarning\t"+noSinkHint)
	}
	for _, s := range built {
		c, ok := s.sink.(sinks.Checker)
		if !ok {
			row(s.sink.Name(), nil, "nothing to check")
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		detail, err := c.Check(cctx)
		cancel()
		row(s.sink.Name(), err, detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d checks failed", failed)}
	}
	return nil
}

// sampleEvent is the event send-test sends: a ready export that does not exist.
func sampleEvent(src string, now time.Time) (event.Event, error) {
	s := func(v string) *string { return &v }
	n := func(v int64) *int64 { return &v }
	exp := plugchoice.Export{
		UUID: "00000000-0000-4000-8000-000000000000", Type: "sessions", Status: plugchoice.StatusReady,
		Filename: s("sessions-test.csv"), FileSize: n(3_355_443), RowCount: n(12_410),
		RequestedAt: now.Add(-4*time.Minute - 12*time.Second).UTC().Format(time.RFC3339),
		// completed_at to the nanosecond: a fresh event id per send-test, so receivers
		// that de-duplicate show every test.
		CompletedAt: s(now.UTC().Format(time.RFC3339Nano)),
		Subject:     &plugchoice.Subject{Type: "site", ID: 1, Label: "exportbridge send-test"},
		DownloadURL: s("https://example.com/exportbridge-send-test.csv"),
	}
	return event.NewExport(src, plugchoice.StatusProcessing, &exp, now)
}

func cmdSendTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send-test", "send-test [--sink NAME]", stderr)
	sinkName := fs.String("sink", "", "only this sink (webhook selects every webhook sink)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long each delivery may take")
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	cfg, all, err := loadSettings("send-test")
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr, all...)
	if len(all) == 0 {
		return usageErr("%s", noSinkHint)
	}
	all, err = selectSpecs(all, *sinkName)
	if err != nil {
		return err
	}
	specs, err := buildSinks(ctx, all, stdout, &memMeta{}, log, metrics.New(nil))
	if err != nil {
		return err
	}
	defer closeSinks(specs)
	ev, err := sampleEvent(source(cfg), time.Now())
	if err != nil {
		return err
	}
	failed := 0
	for _, s := range specs {
		dctx, cancel := context.WithTimeout(ctx, *timeout)
		err := s.sink.Deliver(dctx, ev)
		cancel()
		if err != nil {
			failed++
			code := ""
			if c := sinks.StatusCode(err); c != 0 {
				code = fmt.Sprintf(" (status %d)", c)
			}
			fmt.Fprintf(stderr, "%s: FAILED%s: %v\n", s.sink.Name(), code, err)
			continue
		}
		fmt.Fprintf(stderr, "%s: sent %s (event id %s)\n", s.sink.Name(), ev.Type, ev.ID)
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d sinks failed", failed, len(specs))}
	}
	return nil
}

// cmdHealthcheck is the container's HEALTHCHECK: GET /healthz on LISTEN_ADDR.
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("healthcheck", "healthcheck", stderr)
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	cfg, err := loadConfig("healthcheck")
	if err != nil {
		return err
	}
	if cfg.ListenAddr == "" {
		return usageErr("EXPORTBRIDGE_LISTEN_ADDR is empty: no health server to ask")
	}
	host, port, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return usageErr("EXPORTBRIDGE_LISTEN_ADDR %q: %v", cfg.ListenAddr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("healthcheck: %w", err)}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &exitError{code: 1, err: fmt.Errorf("healthcheck: /healthz answered %d", resp.StatusCode)}
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// memMeta keeps sink metadata in memory for sends outside the outbox (send-test, check).
type memMeta struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (m *memMeta) GetMeta(sink, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[sink+"\x00"+key], nil
}

func (m *memMeta) PutMeta(sink, key string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string][]byte{}
	}
	m.m[sink+"\x00"+key] = v
	return nil
}

// printSinkTable prints the configured sinks: name, kind, destination (secrets and
// queries stripped) and filter.
func printSinkTable(w io.Writer, specs []registry.Spec) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tKIND\tDESTINATION\tFILTER")
	for _, s := range specs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Kind, oneLine(s.Destination), oneLine(s.Selector.String()))
	}
	if len(specs) == 0 {
		fmt.Fprintln(tw, "(none)\t\t\t")
	}
	return tw.Flush()
}

// checkEvent says, for each sink, whether it would receive the event in file (a
// CloudEvent as the bridge sends it, or an export object as the API returns it).
func checkEvent(w io.Writer, cfg *config.Config, specs []registry.Spec, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return usageErr("--event: %v", err)
	}
	ev, err := eventFromFile(data, source(cfg), time.Now())
	if err != nil {
		return usageErr("--event %s: %v", file, err)
	}
	fmt.Fprintf(w, "\nevent %s (%s, export %s):\n", ev.ID, ev.Type, ev.Subject)
	in := route.NewInput(ev)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tRECEIVES\tWHY NOT")
	for _, s := range specs {
		ok, reason, _ := s.Selector.Decide(in)
		if ok {
			fmt.Fprintf(tw, "%s\tyes\t\n", s.Name)
		} else {
			fmt.Fprintf(tw, "%s\tno\t%s\n", s.Name, oneLine(reason))
		}
	}
	return tw.Flush()
}

// eventFromFile decodes a CloudEvent (it has specversion) or an export object.
func eventFromFile(data []byte, src string, now time.Time) (event.Event, error) {
	var probe struct {
		SpecVersion string `json:"specversion"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return event.Event{}, fmt.Errorf("not JSON: %w (expected a CloudEvent or an export object)", err)
	}
	if probe.SpecVersion != "" {
		ce, err := event.Decode(data)
		if err != nil {
			return event.Event{}, err
		}
		short := strings.TrimPrefix(ce.Type, event.TypePrefix)
		status := short[strings.LastIndex(short, ".")+1:]
		exportType := ""
		if _, exp, err := event.ExportOf(ce); err == nil && exp != nil {
			exportType = exp.Type
		}
		return event.Event{ID: ce.ID, Type: short, Subject: ce.Subject, Status: status, ExportType: exportType, Body: data}, nil
	}
	var exp plugchoice.Export
	if err := json.Unmarshal(data, &exp); err != nil {
		return event.Event{}, fmt.Errorf("not an export object: %w", err)
	}
	if exp.UUID == "" || exp.Status == "" {
		return event.Event{}, fmt.Errorf("the export object has no uuid or status (expected an element of the API's data list, or a CloudEvent)")
	}
	return event.NewExport(src, "", &exp, now)
}
