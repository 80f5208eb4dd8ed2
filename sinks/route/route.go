// Package route decides which sinks want an event: each sink's event filter, its
// optional match on the export (types, subject types and ids, accounts) and its optional
// `when` expression (github.com/expr-lang/expr), compiled and type-checked at start.
package route

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/template"
)

// Match narrows a sink to some exports; every list given must hold, values in a list are
// alternatives.
type Match struct {
	Types        []string
	SubjectTypes []string
	SubjectIDs   []int64
	Accounts     []string
}

func (m Match) empty() bool {
	return len(m.Types)+len(m.SubjectTypes)+len(m.SubjectIDs)+len(m.Accounts) == 0
}

// Selector is one sink's whole filter.
type Selector struct {
	Events sinks.Filter
	Match  Match
	when   *vm.Program
	src    string

	errOnce sync.Once
}

// Input is one event as the filters see it, decoded at most once for all sinks.
type Input struct {
	Event event.Event
	once  sync.Once
	env   map[string]any
	err   error
}

// NewInput wraps e.
func NewInput(e event.Event) *Input { return &Input{Event: e} }

// Env is the data `when` sees: `event` (id, type, short_type, status, previous_status,
// time, observed_at, account) and `export` (the export object as the API wrote it; empty for
// bridge events): template.NewData's .Event and .Export, with numbers as numbers.
func (in *Input) Env() (map[string]any, error) {
	in.once.Do(func() { in.env, in.err = envOf(in.Event) })
	return in.env, in.err
}

func envOf(e event.Event) (map[string]any, error) {
	d, err := template.NewData(e, "", template.Plain)
	if err != nil {
		return nil, err
	}
	root := d.Map()
	// expr compares numbers, not the API's digits: json.Number becomes float64.
	return map[string]any{"event": numbers(root["Event"]), "export": numbers(root["Export"])}, nil
}

// numbers turns every json.Number in v into a float64 (integers that large are exact to
// 2^53, beyond any row count or file size).
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = numbers(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = numbers(e)
		}
		return out
	}
	return v
}

// eventKeys and exportKeys are the fields `when` may name: a name outside them is a typo
// caught at start.
var (
	eventKeys  = []string{"id", "type", "short_type", "status", "previous_status", "time", "observed_at", "account"}
	exportKeys = []string{"uuid", "type", "status", "filename", "file_size", "row_count", "error_message",
		"requested_at", "completed_at", "failed_at", "subject", "download_url"}
	subjectKeys = []string{"type", "id", "label"}
)

// New compiles a selector. when may be empty. Errors say what is wrong with the
// expression, with its line:column.
func New(events sinks.Filter, m Match, when string) (*Selector, error) {
	s := &Selector{Events: events, Match: m, src: when}
	if strings.TrimSpace(when) == "" {
		return s, nil
	}
	sample := map[string]any{
		"event":  map[string]any{"id": "", "type": "", "short_type": "", "status": "", "previous_status": "", "time": "", "observed_at": "", "account": ""},
		"export": map[string]any{},
	}
	var fc fieldCheck
	prog, err := expr.Compile(when, expr.Env(sample), expr.AsBool(), expr.Patch(&fc))
	if err != nil {
		return nil, fmt.Errorf("when %q: %v", when, err)
	}
	if fc.err != nil {
		return nil, fmt.Errorf("when %q: %v", when, fc.err)
	}
	// Run it once on a complete sample: a result that is not a boolean is caught here,
	// not on the first real event.
	if _, err := expr.Run(prog, fullSample); err != nil {
		return nil, fmt.Errorf("when %q on a sample ready export: %v", when, err)
	}
	s.when = prog
	return s, nil
}

// fullSample is a ready export with every field set, as `when` sees it.
var fullSample = map[string]any{
	"event": map[string]any{"id": "0123456789abcdef0123456789abcdef", "type": "com.plugchoice.export.ready", "short_type": "export.ready",
		"status": "ready", "previous_status": "processing", "time": "2026-11-28T10:15:02Z", "observed_at": "2026-11-28T10:15:04Z", "account": "default"},
	"export": map[string]any{"uuid": "00000000-0000-4000-8000-000000000000", "type": "sessions", "status": "ready",
		"filename": "sessions.csv", "file_size": 3355443.0, "row_count": 12410.0, "error_message": "none",
		"requested_at": "2026-11-28T10:11:00Z", "completed_at": "2026-11-28T10:15:02Z", "failed_at": "2026-11-28T10:15:02Z",
		"subject": map[string]any{"type": "site", "id": 12.0, "label": "Site A"}, "download_url": "https://files.example/x.csv"},
}

// fieldCheck is an AST visitor that refuses `event.x` and `export.x` (and
// `export.subject.x`) for a name x the data does not have.
type fieldCheck struct{ err error }

func (f *fieldCheck) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok || f.err != nil {
		return
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		return
	}
	var known []string
	what := ""
	switch base := m.Node.(type) {
	case *ast.IdentifierNode:
		switch base.Value {
		case "event":
			known, what = eventKeys, "event"
		case "export":
			known, what = exportKeys, "export"
		}
	case *ast.MemberNode:
		if id, ok := base.Node.(*ast.IdentifierNode); ok && id.Value == "export" {
			if p, ok := base.Property.(*ast.StringNode); ok && p.Value == "subject" {
				known, what = subjectKeys, "export.subject"
			}
		}
	}
	if known != nil && !slices.Contains(known, prop.Value) {
		f.err = fmt.Errorf("unknown field %s.%s at column %d (expected one of %s)", what, prop.Value, m.Location().From+1, strings.Join(known, ", "))
	}
}

// Decide reports whether the sink wants the event and, when not, which part of the
// filter said no. An evaluation error of `when` counts as no match; it is returned so
// the caller can log it once and count it.
func (s *Selector) Decide(in *Input) (ok bool, reason string, err error) {
	e := in.Event
	if !s.Events.Match(e.Type) {
		return false, fmt.Sprintf("events %q does not include %s", s.Events.String(), e.Type), nil
	}
	if e.IsBridge() {
		return true, "", nil // match and when are about exports
	}
	if !s.Match.empty() || s.when != nil {
		env, derr := in.Env()
		if derr != nil {
			return false, "the event could not be decoded", derr
		}
		if r := s.Match.refuse(env); r != "" {
			return false, r, nil
		}
		if s.when != nil {
			out, rerr := expr.Run(s.when, env)
			if rerr != nil {
				return false, fmt.Sprintf("when %q failed: %v", s.src, rerr), rerr
			}
			if b, _ := out.(bool); !b {
				return false, fmt.Sprintf("when %q is false", s.src), nil
			}
		}
	}
	return true, "", nil
}

// ErrOnce runs fn the first time only (one log line per sink for evaluation errors).
func (s *Selector) ErrOnce(fn func()) { s.errOnce.Do(fn) }

// When is the expression, for tables.
func (s *Selector) When() string { return s.src }

func (m Match) refuse(env map[string]any) string {
	exp, _ := env["export"].(map[string]any)
	str := func(v any) string { s, _ := v.(string); return s }
	if len(m.Types) > 0 && !slices.Contains(m.Types, str(exp["type"])) {
		return fmt.Sprintf("match.types %v does not include %q", m.Types, str(exp["type"]))
	}
	subj, _ := exp["subject"].(map[string]any)
	if len(m.SubjectTypes) > 0 && !slices.Contains(m.SubjectTypes, str(subj["type"])) {
		return fmt.Sprintf("match.subject_types %v does not include %q", m.SubjectTypes, str(subj["type"]))
	}
	if len(m.SubjectIDs) > 0 {
		id, ok := subj["id"].(float64)
		if !ok || !slices.Contains(m.SubjectIDs, int64(id)) {
			return fmt.Sprintf("match.subject_ids %v does not include the export's subject id", m.SubjectIDs)
		}
	}
	if len(m.Accounts) > 0 {
		ev, _ := env["event"].(map[string]any)
		acct := str(ev["account"])
		if acct == "" {
			acct = event.DefaultAccount
		}
		if !slices.Contains(m.Accounts, acct) {
			return fmt.Sprintf("match.accounts %v does not include the account %s", m.Accounts, acct)
		}
	}
	return ""
}

// String describes the filter for tables: events, then match and when when given.
func (s *Selector) String() string {
	parts := []string{s.Events.String()}
	if len(s.Match.Types) > 0 {
		parts = append(parts, fmt.Sprintf("types=%s", strings.Join(s.Match.Types, "|")))
	}
	if len(s.Match.SubjectTypes) > 0 {
		parts = append(parts, fmt.Sprintf("subject_types=%s", strings.Join(s.Match.SubjectTypes, "|")))
	}
	if len(s.Match.SubjectIDs) > 0 {
		ids := make([]string, len(s.Match.SubjectIDs))
		for i, id := range s.Match.SubjectIDs {
			ids[i] = fmt.Sprint(id)
		}
		parts = append(parts, "subject_ids="+strings.Join(ids, "|"))
	}
	if len(s.Match.Accounts) > 0 {
		parts = append(parts, "accounts="+strings.Join(s.Match.Accounts, "|"))
	}
	if s.src != "" {
		parts = append(parts, "when "+s.src)
	}
	return strings.Join(parts, " ")
}
