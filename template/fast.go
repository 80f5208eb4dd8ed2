package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"text/template/parse"
)

// Payload templates are mostly lookups, conditions and a few string functions:
// "{{ .Export.filename | default "-" }}", "{{ with .Export.subject.label }} for {{ . }}
// {{ end }}", "{{ .Export.error_message | trunc 1000 }}". text/template evaluates those
// through reflection, several allocations per field and per call; this file renders
// such leaves directly from the data maps. It follows the same rules as the rewritten
// tree (rewrite.go), and whenever a value is not of the exact type the slow path would
// accept (a number given to trunc, a field of a string), or a function fails, it gives
// up (errSlow) and the leaf is rendered by text/template, so the output, errors
// included, is the same (TestFastPathRendersLikeTextTemplate holds the two equal).

var errSlow = errors.New("render this leaf with text/template")

type fNode interface {
	render(st *fState, w *bytes.Buffer, dot any) error
}

type fState struct {
	root  map[string]any
	stack []any // arguments of the calls in progress, reused: a call allocates nothing
}

type fText []byte

func (t fText) render(_ *fState, w *bytes.Buffer, _ any) error { w.Write(t); return nil }

type fAction struct{ p fPipe }

func (a fAction) render(st *fState, w *bytes.Buffer, dot any) error {
	v, err := a.p.eval(st, dot)
	if err != nil {
		return err
	}
	switch x := v.(type) {
	case nil:
	case string:
		w.WriteString(x)
	case json.Number:
		w.WriteString(string(x))
	case bool, map[string]any, []any:
		fmt.Fprint(w, x)
	default:
		return errSlow
	}
	return nil
}

type fBranch struct {
	with        bool
	cond        fPipe
	list, elses []fNode
}

func (b fBranch) render(st *fState, w *bytes.Buffer, dot any) error {
	v, err := b.cond.eval(st, dot)
	if err != nil {
		return err
	}
	t, ok := truth(v)
	if !ok {
		return errSlow
	}
	list := b.elses
	if t {
		list = b.list
		if b.with {
			dot = v
		}
	}
	for _, n := range list {
		if err := n.render(st, w, dot); err != nil {
			return err
		}
	}
	return nil
}

// truth is text/template's truth for the values JSON decodes to.
func truth(v any) (bool, bool) {
	switch x := v.(type) {
	case nil:
		return false, true
	case string:
		return x != "", true
	case json.Number:
		return x != "", true
	case bool:
		return x, true
	case map[string]any:
		return len(x) > 0, true
	case []any:
		return len(x) > 0, true
	}
	return false, false
}

// fPipe is a pipeline: the first command's value is passed to each next one as its last
// argument.
type fPipe []fCmd

func (p fPipe) eval(st *fState, dot any) (any, error) {
	var v any
	for i, c := range p {
		var err error
		if v, err = c.eval(st, dot, v, i > 0); err != nil {
			return nil, err
		}
	}
	return v, nil
}

type fCmd struct {
	fn   *fFunc // nil: a lone operand
	args []fOperand
}

func (c fCmd) eval(st *fState, dot, final any, piped bool) (any, error) {
	if c.fn == nil {
		return c.args[0].eval(st, dot)
	}
	base := len(st.stack)
	var v any
	var err error
	for _, a := range c.args {
		if v, err = a.eval(st, dot); err != nil {
			break
		}
		st.stack = append(st.stack, v)
	}
	if err == nil {
		if piped {
			st.stack = append(st.stack, final)
		}
		v, err = c.fn.call(st.stack[base:])
	}
	clear(st.stack[base:])
	st.stack = st.stack[:base]
	return v, err
}

// fOperand is one argument: a field chain, dot, $, a literal or a parenthesised pipe.
type fOperand struct {
	kind  byte // 'f' field on dot, 'g' _get from dot, 'h' _get from the native head, '.' dot, '$' root, '%' _get from root, 'l' literal, 'p' pipe
	path  []string
	head  []string
	lit   any
	inner fPipe
}

func (o fOperand) eval(st *fState, dot any) (any, error) {
	switch o.kind {
	case 'f':
		return native(dot, o.path)
	case 'g':
		return getPath(dot, o.path), nil
	case 'h':
		h, err := native(dot, o.head)
		if err != nil {
			return nil, err
		}
		return getPath(h, o.path), nil
	case '.':
		return dot, nil
	case '$':
		return st.root, nil
	case '%':
		return getPath(st.root, o.path), nil
	case 'l':
		return o.lit, nil
	case 'p':
		return o.inner.eval(st, dot)
	}
	return nil, errSlow
}

// native is text/template's own field evaluation on maps: a missing key gives nil (the
// rewrite prints it as nothing); a field of anything but a map or nil is left to it.
func native(v any, path []string) (any, error) {
	for _, k := range path {
		switch m := v.(type) {
		case map[string]any:
			v = m[k]
		case nil:
			return nil, nil
		default:
			return nil, errSlow
		}
	}
	return v, nil
}

// getPath is _get for the values JSON decodes to: "" for anything not found.
func getPath(v any, path []string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		if v = m[k]; v == nil {
			return ""
		}
	}
	if v == nil {
		return ""
	}
	return v
}

// fFunc is a function the fast path calls itself, with the argument types text/template
// would accept; anything else is left to text/template.
type fFunc struct {
	name string
	call func(args []any) (any, error)
}

func str(v any) (string, bool) { s, ok := v.(string); return s, ok }

// fastFuncs are built from the very functions of the template's map, so that a result
// can only differ if the arguments are read differently (they are not: exact types).
var fastFuncs = func() map[string]*fFunc {
	m := map[string]*fFunc{}
	str1 := func(name string) {
		if f, ok := funcs[name].(func(string) string); ok {
			m[name] = &fFunc{name, func(a []any) (any, error) {
				if len(a) != 1 {
					return nil, errSlow
				}
				s, ok := str(a[0])
				if !ok {
					return nil, errSlow
				}
				return f(s), nil
			}}
		}
	}
	str1("upper")
	str1("lower")
	str1("trim")
	for _, name := range []string{"hasPrefix", "hasSuffix", "contains"} {
		if f, ok := funcs[name].(func(string, string) bool); ok {
			m[name] = &fFunc{name, func(a []any) (any, error) {
				if len(a) != 2 {
					return nil, errSlow
				}
				s1, ok1 := str(a[0])
				s2, ok2 := str(a[1])
				if !ok1 || !ok2 {
					return nil, errSlow
				}
				return f(s1, s2), nil
			}}
		}
	}
	if f, ok := funcs["replace"].(func(string, string, string) string); ok {
		m["replace"] = &fFunc{"replace", func(a []any) (any, error) {
			if len(a) != 3 {
				return nil, errSlow
			}
			s1, ok1 := str(a[0])
			s2, ok2 := str(a[1])
			s3, ok3 := str(a[2])
			if !ok1 || !ok2 || !ok3 {
				return nil, errSlow
			}
			return f(s1, s2, s3), nil
		}}
	}
	if f, ok := funcs["trunc"].(func(int, string) string); ok {
		m["trunc"] = &fFunc{"trunc", func(a []any) (any, error) {
			if len(a) != 2 {
				return nil, errSlow
			}
			n, ok1 := a[0].(int)
			s, ok2 := str(a[1])
			if !ok1 || !ok2 {
				return nil, errSlow
			}
			return f(n, s), nil
		}}
	}
	if f, ok := funcs["default"].(func(any, ...any) any); ok {
		m["default"] = &fFunc{"default", func(a []any) (any, error) {
			if len(a) != 2 {
				return nil, errSlow
			}
			return f(a[0], a[1]), nil
		}}
	}
	m["humanBytes"] = &fFunc{"humanBytes", func(a []any) (any, error) {
		if len(a) != 1 {
			return nil, errSlow
		}
		return HumanBytes(a[0]), nil
	}}
	m["humanDuration"] = &fFunc{"humanDuration", func(a []any) (any, error) {
		s, err := humanDuration(a...)
		if err != nil {
			return nil, errSlow
		}
		return s, nil
	}}
	m["toJson"] = &fFunc{"toJson", func(a []any) (any, error) {
		if len(a) != 1 {
			return nil, errSlow
		}
		s, err := toJSON(a[0])
		if err != nil {
			return nil, errSlow
		}
		return s, nil
	}}
	// eq, ne and not for the values JSON decodes to; other kinds are left to text/template.
	cmp := func(a, b any) (bool, bool) {
		sa, oka := strKind(a)
		sb, okb := strKind(b)
		switch {
		case oka && okb:
			return sa == sb, true
		case a == nil && okb, b == nil && oka:
			return false, true // text/template: a missing value equals no string
		}
		return false, false
	}
	m["eq"] = &fFunc{"eq", func(a []any) (any, error) {
		if len(a) != 2 {
			return nil, errSlow
		}
		r, ok := cmp(a[0], a[1])
		if !ok {
			return nil, errSlow
		}
		return r, nil
	}}
	m["ne"] = &fFunc{"ne", func(a []any) (any, error) {
		if len(a) != 2 {
			return nil, errSlow
		}
		r, ok := cmp(a[0], a[1])
		if !ok {
			return nil, errSlow
		}
		return !r, nil
	}}
	m["not"] = &fFunc{"not", func(a []any) (any, error) {
		if len(a) != 1 {
			return nil, errSlow
		}
		t, ok := truth(a[0])
		if !ok {
			return nil, errSlow
		}
		return !t, nil
	}}
	return m
}()

func strKind(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	}
	return "", false
}

// ---- compile ----

// compileFast returns the fast form of a leaf's (unrewritten) tree, or nil when it uses
// something the fast path does not do.
func compileFast(t *parse.Tree) []fNode {
	if t == nil || t.Root == nil {
		return nil
	}
	nodes, ok := fastList(t.Root)
	if !ok {
		return nil
	}
	return nodes
}

func fastList(l *parse.ListNode) ([]fNode, bool) {
	if l == nil {
		return nil, true
	}
	out := make([]fNode, 0, len(l.Nodes))
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			out = append(out, fText(n.Text))
		case *parse.CommentNode:
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 {
				return nil, false
			}
			p, ok := fastPipe(n.Pipe)
			if !ok {
				return nil, false
			}
			out = append(out, fAction{p})
		case *parse.IfNode:
			b, ok := fastBranch(&n.BranchNode, false)
			if !ok {
				return nil, false
			}
			out = append(out, b)
		case *parse.WithNode:
			b, ok := fastBranch(&n.BranchNode, true)
			if !ok {
				return nil, false
			}
			out = append(out, b)
		default:
			return nil, false
		}
	}
	return out, true
}

func fastBranch(b *parse.BranchNode, with bool) (fNode, bool) {
	if len(b.Pipe.Decl) > 0 {
		return nil, false
	}
	cond, ok := fastPipe(b.Pipe)
	if !ok {
		return nil, false
	}
	list, ok1 := fastList(b.List)
	elses, ok2 := fastList(b.ElseList)
	if !ok1 || !ok2 {
		return nil, false
	}
	return fBranch{with: with, cond: cond, list: list, elses: elses}, true
}

// fastPipe mirrors rewritePipe: the same places read fields natively or through _get.
func fastPipe(p *parse.PipeNode) (fPipe, bool) {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) == 0 {
		return nil, false
	}
	out := make(fPipe, 0, len(p.Cmds))
	for ci, c := range p.Cmds {
		if len(c.Args) == 0 {
			return nil, false
		}
		if id, ok := c.Args[0].(*parse.IdentifierNode); ok {
			fn := fastFuncs[id.Ident]
			if fn == nil {
				return nil, false
			}
			cmd := fCmd{fn: fn}
			for _, a := range c.Args[1:] {
				o, ok := fastOperand(a, takesNil(c, 1))
				if !ok {
					return nil, false
				}
				cmd.args = append(cmd.args, o)
			}
			out = append(out, cmd)
			continue
		}
		if ci > 0 || len(c.Args) != 1 {
			return nil, false // a method call, or a value given arguments
		}
		nilOK := true
		if len(p.Cmds) > 1 {
			nilOK = takesNil(p.Cmds[1], -1)
		}
		o, ok := fastOperand(c.Args[0], nilOK)
		if !ok {
			return nil, false
		}
		out = append(out, fCmd{args: []fOperand{o}})
	}
	return out, true
}

func fastOperand(a parse.Node, nilOK bool) (fOperand, bool) {
	switch a := a.(type) {
	case *parse.FieldNode:
		n := 1
		if len(a.Ident) > 1 && rootNames[a.Ident[0]] {
			n = 2
		}
		switch {
		case len(a.Ident) <= n && nilOK:
			return fOperand{kind: 'f', path: a.Ident}, true
		case !nilOK:
			return fOperand{kind: 'g', path: a.Ident}, true
		default:
			return fOperand{kind: 'h', head: a.Ident[:n], path: a.Ident[n:]}, true
		}
	case *parse.DotNode:
		return fOperand{kind: '.'}, true
	case *parse.VariableNode:
		if a.Ident[0] != "$" {
			return fOperand{}, false
		}
		if len(a.Ident) == 1 {
			return fOperand{kind: '$'}, true
		}
		return fOperand{kind: '%', path: a.Ident[1:]}, true
	case *parse.StringNode:
		return fOperand{kind: 'l', lit: a.Text}, true
	case *parse.NumberNode:
		if !a.IsInt || a.Int64 != int64(int(a.Int64)) || strings.ContainsAny(a.Text, "'") {
			return fOperand{}, false
		}
		return fOperand{kind: 'l', lit: int(a.Int64)}, true
	case *parse.BoolNode:
		return fOperand{kind: 'l', lit: a.True}, true
	case *parse.PipeNode:
		p, ok := fastPipe(a)
		if !ok {
			return fOperand{}, false
		}
		return fOperand{kind: 'p', inner: p}, true
	}
	return fOperand{}, false
}

// renderFast writes the leaf with data root to w, within max bytes; errSlow when
// text/template must do it.
func renderFast(nodes []fNode, root map[string]any, w *bytes.Buffer, max int, stack *[]any) error {
	st := fState{root: root, stack: (*stack)[:0]}
	defer func() { *stack = st.stack[:0] }()
	start := w.Len()
	for _, n := range nodes {
		if err := n.render(&st, w, root); err != nil {
			return err
		}
		if w.Len()-start > max {
			return ErrTooLarge
		}
	}
	return nil
}

// isEmpty is sprig's `empty`, for the values JSON decodes to (kept for tests).
func isEmpty(v any) bool {
	t, ok := truth(v)
	if ok {
		return !t
	}
	g := reflect.ValueOf(v)
	switch g.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return g.Int() == 0
	}
	return false
}
