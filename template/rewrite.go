package template

import (
	"text/template/parse"
)

// The SPEC promises that missing keys render empty. text/template alone prints a
// missing map key as "<no value>" (even with missingkey=zero, for map[string]any) and
// fails on a field of a JSON null (`.Export.subject.label` when subject is null: "nil
// pointer evaluating interface {}.label"). So after parsing, the tree is rewritten:
//   - every field chain (.a.b, $x.a.b, (pipe).a.b) becomes a call of _get, which
//     answers "" for a missing key, a null, or a key on something that is not an object
//     (and reads a method or field of a Go value, as text/template would);
//   - every printing action gets a final `| _show`, which prints a nil as nothing.
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
		if len(n.Pipe.Decl) == 0 {
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
					ch.Node = rewriteArg(ch.Node)
				}
				continue
			}
			c.Args[i] = rewriteArg(a)
		}
	}
}

// rewriteArg returns the node to evaluate in place of a: a lookup for field chains, the
// node itself (with its own pipelines rewritten) otherwise.
func rewriteArg(a parse.Node) parse.Node {
	switch a := a.(type) {
	case *parse.FieldNode:
		dot := &parse.DotNode{NodeType: parse.NodeDot, Pos: a.Pos}
		return lookup(a.Pos, dot, a.Ident)
	case *parse.VariableNode:
		if len(a.Ident) < 2 {
			return a
		}
		root := &parse.VariableNode{NodeType: parse.NodeVariable, Pos: a.Pos, Ident: a.Ident[:1]}
		return lookup(a.Pos, root, a.Ident[1:])
	case *parse.ChainNode:
		return lookup(a.Pos, rewriteArg(a.Node), a.Field)
	case *parse.PipeNode:
		rewritePipe(a)
		return a
	}
	return a
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
