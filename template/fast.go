package template

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"text/template/parse"
)

// Most leaves of a payload are plain lookups: "{{ .Export.uuid }}", "*File*\n{{
// .Export.filename | default "-" }}". text/template evaluates those through reflection
// (a few allocations per field); a leaf made only of text and such lookups is rendered
// here instead, straight from the data maps, with the same output (a test holds the two
// paths equal). Anything else goes to text/template.

type fastPart struct {
	text []byte   // literal text, or
	path []string // a field chain from the root of the data
	post []fastFn // then these functions, in order
}

type fastFn struct {
	humanBytes bool
	deflt      string // `default "lit"`
}

// compileFast returns the parts of a leaf that is only text and lookups, or nil.
func compileFast(t *parse.Tree) []fastPart {
	if t == nil || t.Root == nil {
		return nil
	}
	parts := make([]fastPart, 0, len(t.Root.Nodes))
	for _, n := range t.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			parts = append(parts, fastPart{text: n.Text})
		case *parse.ActionNode:
			p, ok := fastAction(n.Pipe)
			if !ok {
				return nil
			}
			parts = append(parts, p)
		case *parse.CommentNode:
		default:
			return nil
		}
	}
	return parts
}

func fastAction(p *parse.PipeNode) (fastPart, bool) {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) == 0 || len(p.Cmds[0].Args) != 1 {
		return fastPart{}, false
	}
	f, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok {
		return fastPart{}, false
	}
	part := fastPart{path: f.Ident}
	for _, c := range p.Cmds[1:] {
		id, ok := c.Args[0].(*parse.IdentifierNode)
		if !ok {
			return fastPart{}, false
		}
		switch {
		case id.Ident == "humanBytes" && len(c.Args) == 1:
			part.post = append(part.post, fastFn{humanBytes: true})
		case id.Ident == "default" && len(c.Args) == 2:
			s, ok := c.Args[1].(*parse.StringNode)
			if !ok {
				return fastPart{}, false
			}
			part.post = append(part.post, fastFn{deflt: s.Text})
		default:
			return fastPart{}, false
		}
	}
	return part, true
}

// renderFast writes the parts with data root to w, within max bytes.
func renderFast(parts []fastPart, root map[string]any, w *bytes.Buffer, max int) error {
	start := w.Len()
	for _, p := range parts {
		if p.text != nil {
			w.Write(p.text)
		} else {
			var v any = root
			for _, k := range p.path {
				m, ok := v.(map[string]any)
				if !ok {
					v = nil
					break
				}
				v = m[k]
			}
			for _, fn := range p.post {
				switch {
				case fn.humanBytes:
					v = HumanBytes(v)
				case isEmpty(v):
					v = fn.deflt
				}
			}
			switch x := v.(type) {
			case nil:
			case string:
				w.WriteString(x)
			case json.Number:
				w.WriteString(string(x))
			default:
				fmt.Fprint(w, x)
			}
		}
		if w.Len()-start > max {
			return ErrTooLarge
		}
	}
	return nil
}

// isEmpty is sprig's `empty`, for the values JSON decodes to.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case json.Number:
		return x == ""
	case bool:
		return !x
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	g := reflect.ValueOf(v)
	switch g.Kind() {
	case reflect.Array, reflect.Slice, reflect.Map, reflect.String:
		return g.Len() == 0
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return g.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return g.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return g.Float() == 0
	case reflect.Pointer, reflect.Interface:
		return g.IsNil()
	}
	return false
}
