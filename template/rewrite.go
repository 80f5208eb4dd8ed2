package template

import (
	"reflect"
	"text/template/parse"
)

// The SPEC promises that missing keys render empty. text/template alone prints a
// missing map key as "<no value>" (even with missingkey=zero, for map[string]any) and
// fails on a field of a JSON null (`.Export.subject.label` when subject is null: "nil
// pointer evaluating interface {}.label"). So after parsing, the tree is rewritten:
//   - every field chain (.a.b, $x.a.b, (pipe).a.b) becomes a call of _get, which
//     answers "" for a missing key, a null, or a key on something that is not an object
//     (and reads a method or field of a Go value, as text/template would);
//   - every printing action that can end in a nil gets a final `| _show`, which prints
//     a nil as nothing.
// Positions are kept, so execution errors still point at the user's line and column.

func rewriteTree(t *parse.Tree) {
	if t == nil || t.Root == nil {
		return
	}
	rewriteList(t.Root)
}

func rewriteList(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		rewriteNode(n)
	}
}

func rewriteNode(n parse.Node) {
	switch n := n.(type) {
	case *parse.ActionNode:
		rewritePipe(n.Pipe)
		if len(n.Pipe.Decl) == 0 && mayBeNil(n.Pipe) {
			n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
				NodeType: parse.NodeCommand, Pos: n.Pos,
				Args: []parse.Node{ident(fnShow, n.Pos)},
			})
		}
	case *parse.IfNode:
		rewriteBranch(&n.BranchNode)
	case *parse.RangeNode:
		rewriteBranch(&n.BranchNode)
	case *parse.WithNode:
		rewriteBranch(&n.BranchNode)
	case *parse.TemplateNode:
		rewritePipe(n.Pipe)
	case *parse.ListNode:
		rewriteList(n)
	}
}

func rewriteBranch(b *parse.BranchNode) {
	rewritePipe(b.Pipe)
	rewriteList(b.List)
	rewriteList(b.ElseList)
}

func rewritePipe(p *parse.PipeNode) {
	if p == nil {
		return
	}
	for ci, c := range p.Cmds {
		for i, a := range c.Args {
			// A field chain in the first place of a command that has arguments (or
			// receives the pipeline's value) is a method call, (toDate ...).Format
			// "2006": it keeps Go's own evaluation.
			if i == 0 && (len(c.Args) > 1 || ci > 0) {
				if ch, ok := a.(*parse.ChainNode); ok {
					ch.Node = rewriteArg(ch.Node, true)
				}
				continue
			}
			var nilOK bool
			switch {
			case i > 0:
				nilOK = takesNil(c, i)
			case len(c.Args) == 1 && ci+1 < len(p.Cmds):
				// A lone field whose value the next command receives as its last argument.
				next := p.Cmds[ci+1]
				nilOK = takesNil(next, -1)
			default:
				// The value of the pipeline: printed (through _show), or the condition of
				// an if, with or range, where nil is simply false.
				nilOK = true
			}
			c.Args[i] = rewriteArg(a, nilOK)
		}
	}
}

// takesNil reports whether the function of command c accepts a nil (a missing key, a
// JSON null) as its argument i (-1: the value piped into it) and gives back something
// else. Elsewhere a field is read through _get, which gives "" instead: a nil passed on
// (`default .Export.type` on a bridge event returns it) would fail the next function
// that wants a string, as in `.Export.error_message | trunc 200`.
func takesNil(c *parse.CommandNode, _ int) bool {
	id, ok := c.Args[0].(*parse.IdentifierNode)
	return ok && nilTakers[id.Ident]
}

// nilTakers read a nil for what it is: toJson writes null, the others show nothing or
// compare it.
var nilTakers = map[string]bool{"toJson": true, "mustToJson": true, "humanBytes": true, "humanDuration": true, "eq": true, "ne": true, "not": true}

// rewriteArg returns the node to evaluate in place of a: a lookup for field chains
// (read natively as far as that is safe), the node itself (with its own pipelines
// rewritten) otherwise. nilOK says whether the place of a accepts a nil.
func rewriteArg(a parse.Node, nilOK bool) parse.Node {
	switch a := a.(type) {
	case *parse.FieldNode:
		// text/template reads a field of a map natively (and fast); it fails only on a
		// field of a nil (a JSON null), and gives a nil for a missing key. The first
		// key is read on dot, a map; the second too when the first is one of the data's
		// own names (never null). What follows goes through _get, and so does all of it
		// where a nil is not welcome.
		native := 1
		if len(a.Ident) > 1 && rootNames[a.Ident[0]] {
			native = 2
		}
		if len(a.Ident) <= native && nilOK {
			return a
		}
		if !nilOK {
			dot := &parse.DotNode{NodeType: parse.NodeDot, Pos: a.Pos}
			return lookup(a.Pos, dot, a.Ident)
		}
		head := &parse.FieldNode{NodeType: parse.NodeField, Pos: a.Pos, Ident: a.Ident[:native]}
		return lookup(a.Pos, head, a.Ident[native:])
	case *parse.VariableNode:
		if len(a.Ident) < 2 {
			return a
		}
		root := &parse.VariableNode{NodeType: parse.NodeVariable, Pos: a.Pos, Ident: a.Ident[:1]}
		return lookup(a.Pos, root, a.Ident[1:])
	case *parse.ChainNode:
		return lookup(a.Pos, rewriteArg(a.Node, true), a.Field)
	case *parse.PipeNode:
		rewritePipe(a)
		return a
	}
	return a
}

// rootNames are the keys of the data's root: their values are never nil.
var rootNames = map[string]bool{"Event": true, "Export": true, "Bridge": true, "Sink": true, "Vars": true}

// mayBeNil reports whether a printing pipeline can end in a nil or a missing value: when
// its last command is a function whose result is a concrete type (humanBytes, upper,
// toJson), it cannot, and no _show is needed.
func mayBeNil(p *parse.PipeNode) bool {
	if len(p.Cmds) == 0 {
		return false
	}
	last := p.Cmds[len(p.Cmds)-1]
	id, ok := last.Args[0].(*parse.IdentifierNode)
	if !ok {
		return true
	}
	fn, ok := funcs[id.Ident]
	if !ok {
		return true // a builtin (index, and, or, ...)
	}
	ft := reflect.TypeOf(fn)
	return ft.Kind() != reflect.Func || ft.NumOut() == 0 || ft.Out(0).Kind() == reflect.Interface
}

// lookup builds `(_get root "k1" "k2" ...)`.
func lookup(pos parse.Pos, root parse.Node, keys []string) parse.Node {
	args := make([]parse.Node, 0, len(keys)+2)
	args = append(args, ident(fnGet, pos), root)
	for _, k := range keys {
		args = append(args, &parse.StringNode{NodeType: parse.NodeString, Pos: pos, Quoted: `"` + k + `"`, Text: k})
	}
	return &parse.PipeNode{
		NodeType: parse.NodePipe, Pos: pos,
		Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand, Pos: pos, Args: args}},
	}
}

func ident(name string, pos parse.Pos) *parse.IdentifierNode {
	id := parse.NewIdentifier(name)
	id.Pos = pos
	return id
}
