package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// SinkEntry is one configured sink before its kind decodes its block: an entry of the
// config file's `sinks:` list, or a sink of the environment shorthand.
type SinkEntry struct {
	Name   string
	Kind   string
	Events []string // event filter names; nil: the kind's default
	Match  Match
	When   string // expr-lang expression; "" matches every event
	// Where names the entry for messages: "config.yaml:12:5 sinks[2]" or "environment".
	Where string
	// keys are the file positions of the entry's own keys (events, when, match).
	keys map[string]string
	// Block holds the kind's own settings.
	Block Block
}

// At names one of the entry's own keys (events, match, when) for messages: its file
// position and path, or Where and the key.
func (e SinkEntry) At(key string) string {
	if p, ok := e.keys[key]; ok {
		return p
	}
	return e.Where + "." + key
}

// Match narrows a sink to some exports; every key given must hold, values in a list are
// alternatives.
type Match struct {
	Types        []string `yaml:"types"`
	SubjectTypes []string `yaml:"subject_types"`
	SubjectIDs   []int64  `yaml:"subject_ids"`
	Accounts     []string `yaml:"accounts"`
}

// Block is a sink kind's settings, decoded into the kind's Config by the registry.
type Block interface {
	// Decode fills into (a pointer to the kind's Config, holding its defaults) strictly:
	// an unknown key or a wrong type is an error naming the setting. Secret fields
	// (tagged secret:"true") are resolved from x_file or ${ENV_NAME}.
	Decode(into any) error
	// Setting is how the user wrote the block's key: "EXPORTBRIDGE_WEBHOOK_TIMEOUT", or
	// "config.yaml:14:7 sinks[2].webhook.timeout".
	Setting(key string) string
	// Secrets are the secret values Decode resolved, for the log redactor.
	Secrets() []string
	// Warnings are things Decode noticed that do not stop the program (a literal secret).
	Warnings() []string
}

// SinkNameRE is what a sink name must look like: it is a durable store key.
var SinkNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// fileDecoder reads the config file.
type fileDecoder struct {
	path     string
	lookup   func(string) (string, bool) // the environment, for ${NAME}
	problems []Problem
}

func (d *fileDecoder) problem(where, format string, args ...any) {
	d.problems = append(d.problems, Problem{Var: where, Msg: fmt.Sprintf(format, args...)})
}

// pos renders a node's position as "file:line:col".
func (d *fileDecoder) pos(n ast.Node) string {
	if n == nil || n.GetToken() == nil {
		return d.path
	}
	p := n.GetToken().Position
	return fmt.Sprintf("%s:%d:%d", d.path, p.Line, p.Column)
}

// yamlProblem turns a goccy/go-yaml error into one problem at its position, naming the
// key path.
func (d *fileDecoder) yamlProblem(path string, err error, within ...ast.Node) {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		p := ye.GetToken().Position
		if len(within) > 0 {
			path += keyAt(within[0], p.Line, p.Column)
		}
		msg := ye.GetMessage()
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msg = fmt.Sprintf("got %s, expected %s", te.SrcType, friendlyType(te.DstType))
		}
		d.problem(fmt.Sprintf("%s:%d:%d %s", d.path, p.Line, p.Column, path), "%s", msg)
		return
	}
	d.problem(d.path+" "+path, "%v", err)
}

// keyAt returns ".key" for the pair of mapping n whose key or value starts at line:col
// (or, failing that, on that line), "" when none does.
func keyAt(n ast.Node, line, col int) string {
	pairs, ok := mappingPairs(n)
	if !ok {
		return ""
	}
	onLine := ""
	for _, kv := range pairs {
		for _, part := range []ast.Node{kv.Key, kv.Value} {
			if part == nil || part.GetToken() == nil {
				continue
			}
			p := part.GetToken().Position
			if p.Line == line && p.Column == col {
				return "." + keyOf(kv)
			}
			if p.Line == line && onLine == "" {
				onLine = "." + keyOf(kv)
			}
		}
	}
	return onLine
}

// friendlyType says what a Go type means to someone writing YAML.
func friendlyType(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration such as 10s"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Map, t.Kind() == reflect.Struct:
		return "a mapping of keys to values"
	}
	return t.String()
}

// mappingPairs returns the key/value pairs of a mapping node.
func mappingPairs(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, true
	case *ast.TagNode:
		return mappingPairs(m.Value)
	}
	return nil, false
}

func keyOf(kv *ast.MappingValueNode) string {
	return strings.TrimSpace(kv.Key.String())
}

// fileContents is what the config file holds.
type fileContents struct {
	sinks []SinkEntry
	// accounts is the accounts: list; accountsAt names its key ("config.yaml:1:1
	// accounts"), empty when the file has none.
	accounts   []Account
	accountsAt string
	warnings   []string
}

// readFile decodes the config file into sink entries and accounts (defaultURL is the
// accounts' default api_url). Every problem is collected.
func readFile(path string, lookup func(string) (string, bool), defaultURL string) (fileContents, []Problem) {
	var fc fileContents
	d := &fileDecoder{path: path, lookup: lookup}
	data, err := os.ReadFile(path)
	if err != nil {
		return fc, []Problem{{Var: Prefix + "CONFIG_FILE", Msg: fmt.Sprintf("cannot read the config file: %v", err)}}
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		d.yamlProblem("", err)
		return fc, d.problems
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		d.problem(path, "expected one YAML document with a sinks: list")
		return fc, d.problems
	}
	pairs, ok := mappingPairs(f.Docs[0].Body)
	if !ok {
		d.problem(d.pos(f.Docs[0].Body), "the file is not a mapping (expected a top-level sinks: list)")
		return fc, d.problems
	}
	seenSinks := false
	for _, kv := range pairs {
		switch k := keyOf(kv); k {
		case "sinks":
			seenSinks = true
			fc.sinks = d.sinks(kv.Value)
		case "accounts":
			fc.accountsAt = d.pos(kv.Key) + " accounts"
			fc.accounts, fc.warnings = d.accounts(kv.Value, defaultURL)
		default:
			d.problem(d.pos(kv.Key)+" "+k, "unknown key (expected sinks, accounts)")
		}
	}
	if !seenSinks && len(d.problems) == 0 {
		d.problem(path, "no sinks: list (expected sinks: with at least one entry)")
	}
	return fc, d.problems
}

func (d *fileDecoder) sinks(n ast.Node) []SinkEntry {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.problem(d.pos(n)+" sinks", "expected a list of sinks (- name: ...)")
		return nil
	}
	var out []SinkEntry
	names := map[string]string{}
	for i, item := range seq.Values {
		e, ok := d.sink(i, item)
		if !ok {
			continue
		}
		if first, dup := names[e.Name]; dup {
			d.problem(e.Where+".name", "duplicate sink name %q (first at %s; expected each name once: it is the sink's durable key)", e.Name, first)
			continue
		}
		names[e.Name] = e.Where
		out = append(out, e)
	}
	return out
}

func (d *fileDecoder) sink(i int, n ast.Node) (SinkEntry, bool) {
	path := fmt.Sprintf("sinks[%d]", i)
	e := SinkEntry{Where: d.pos(n) + " " + path}
	pairs, ok := mappingPairs(n)
	if !ok {
		d.problem(e.Where, "expected a mapping with name, kind and the kind's block")
		return e, false
	}
	if len(pairs) > 0 {
		e.Where = d.pos(pairs[0].Key) + " " + path // where the entry's first key starts
	}
	before := len(d.problems)
	var kindNode, blockNode ast.Node
	var blockKey *ast.MappingValueNode
	extra := map[string]*ast.MappingValueNode{}
	e.keys = map[string]string{}
	for _, kv := range pairs {
		k := keyOf(kv)
		at := d.pos(kv.Value) + " " + path + "." + k
		e.keys[k] = d.pos(kv.Key) + " " + path + "." + k
		switch k {
		case "name":
			if err := yaml.NodeToValue(kv.Value, &e.Name); err != nil {
				d.yamlProblem(path+".name", err)
			} else if !SinkNameRE.MatchString(e.Name) {
				d.problem(at, "%q is not a sink name (expected [a-z0-9][a-z0-9_-]{0,62}: lower-case letters, digits, _ and -, at most 63)", e.Name)
			}
		case "kind":
			kindNode = kv.Value
			if err := yaml.NodeToValue(kv.Value, &e.Kind); err != nil {
				d.yamlProblem(path+".kind", err)
			}
		case "events":
			var evs Strings
			if err := yaml.NodeToValue(kv.Value, &evs); err != nil {
				d.yamlProblem(path+".events", err)
			} else if len(evs) == 0 {
				d.problem(at, "is empty (expected event names such as [ready, failed, bridge], or [\"*\"])")
			}
			e.Events = evs
		case "match":
			if err := yaml.NodeToValue(kv.Value, &e.Match, yaml.DisallowUnknownField()); err != nil {
				d.yamlProblem(path+".match", err)
			}
		case "when":
			if err := yaml.NodeToValue(kv.Value, &e.When); err != nil {
				d.yamlProblem(path+".when", err)
			}
		default:
			extra[k] = kv
		}
	}
	switch {
	case e.Name == "" && len(d.problems) == before:
		d.problem(e.Where, "name is missing (expected name: a unique name such as ops-alerts)")
	case kindNode == nil:
		d.problem(e.Where, "kind is missing (expected kind: slack, webhook, nats or stdout)")
	}
	for k, kv := range extra {
		if k == e.Kind {
			blockNode, blockKey = kv.Value, kv
			continue
		}
		d.problem(d.pos(kv.Key)+" "+path+"."+k, "unknown key (expected name, kind, events, match, when, and the block named after the kind, %q)", e.Kind)
	}
	if len(d.problems) > before {
		return e, false
	}
	b := &fileBlock{d: d, path: path + "." + e.Kind, node: blockNode}
	if blockKey != nil {
		b.where = d.pos(blockKey.Key)
	} else {
		b.where = d.pos(n)
	}
	e.Block = b
	return e, true
}

// fileBlock is a kind's block in the config file.
type fileBlock struct {
	d        *fileDecoder
	path     string // sinks[2].webhook
	where    string // file:line:col of the block
	node     ast.Node
	keyPos   map[string]string
	secrets  []string
	warnings []string
}

func (b *fileBlock) Setting(key string) string {
	if p, ok := b.keyPos[key]; ok {
		return p + " " + b.path + "." + key
	}
	return b.where + " " + b.path + "." + key
}

func (b *fileBlock) Secrets() []string  { return b.secrets }
func (b *fileBlock) Warnings() []string { return b.warnings }

// Decode decodes the block strictly into into, resolving secret fields: `x_file: PATH`
// reads the file (content trimmed), `x: ${NAME}` reads the environment, and a literal
// secret is kept with a warning.
func (b *fileBlock) Decode(into any) error {
	b.keyPos = map[string]string{}
	if b.node == nil {
		return nil
	}
	if _, isNull := b.node.(*ast.NullNode); isNull {
		return nil
	}
	pairs, ok := mappingPairs(b.node)
	if !ok {
		return &Error{Problems: []Problem{{Var: b.d.pos(b.node) + " " + b.path, Msg: "expected a mapping of the kind's settings"}}}
	}
	secret := secretKeys(into)
	var keep []*ast.MappingValueNode
	files := map[string]*ast.MappingValueNode{}
	for _, kv := range pairs {
		k := keyOf(kv)
		b.keyPos[k] = b.d.pos(kv.Key)
		if base, ok := strings.CutSuffix(k, FileSuffix2); ok && secret[base] {
			files[base] = kv
			continue
		}
		keep = append(keep, kv)
	}
	var probs []Problem
	node := &ast.MappingNode{BaseNode: &ast.BaseNode{}, Values: keep}
	if m, ok := b.node.(*ast.MappingNode); ok {
		c := *m
		c.Values = keep
		node = &c
	}
	if len(keep) > 0 {
		if err := yaml.NodeToValue(node, into, yaml.DisallowUnknownField()); err != nil {
			before := len(b.d.problems)
			b.d.yamlProblem(b.path, err, node)
			probs = append(probs, b.d.problems[before:]...)
			b.d.problems = b.d.problems[:before]
			return &Error{Problems: probs}
		}
	}
	v := reflect.ValueOf(into).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key := yamlKey(f)
		if !secret[key] {
			continue
		}
		fv := v.Field(i)
		if kv, ok := files[key]; ok {
			at := b.Setting(key + FileSuffix2)
			if !isZero(fv) {
				probs = append(probs, Problem{Var: at, Msg: fmt.Sprintf("both %s and %s%s are set (expected one)", key, key, FileSuffix2)})
				continue
			}
			var p string
			if err := yaml.NodeToValue(kv.Value, &p); err != nil || strings.TrimSpace(p) == "" {
				probs = append(probs, Problem{Var: at, Msg: "expected the path of a file holding the secret"})
				continue
			}
			raw, err := os.ReadFile(p)
			if err != nil {
				probs = append(probs, Problem{Var: at, Msg: fmt.Sprintf("cannot read the secret file: %v", err)})
				continue
			}
			val := strings.TrimSpace(string(raw))
			if val == "" {
				probs = append(probs, Problem{Var: at, Msg: fmt.Sprintf("the secret file %q is empty", p)})
				continue
			}
			if err := setSecret(fv, val); err != nil {
				probs = append(probs, Problem{Var: at, Msg: err.Error()})
				continue
			}
			b.secrets = append(b.secrets, secretParts(val)...)
			continue
		}
		literal, missing := b.expand(fv, f.Tag.Get("secret") == "optional")
		for _, name := range missing {
			probs = append(probs, Problem{Var: b.Setting(key), Msg: fmt.Sprintf("refers to ${%s}, which is not set in the environment", name)})
		}
		if literal && f.Tag.Get("secret") == "true" {
			b.warnings = append(b.warnings, fmt.Sprintf("%s holds a literal secret: prefer %s%s or ${ENV_NAME}", b.Setting(key), key, FileSuffix2))
		}
	}
	if len(probs) > 0 {
		return &Error{Problems: probs}
	}
	return nil
}

// FileSuffix2 is the config file's suffix of a key read from a file (`token_file`).
const FileSuffix2 = "_file"

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces ${NAME} in a secret field (a string, each item of a list, each value
// of a map), recording the secrets; literal reports a non-empty value with no reference.
// An optional secret's literal value is not recorded: it is ordinary configuration.
func (b *fileBlock) expand(fv reflect.Value, optional bool) (literal bool, missing []string) {
	one := func(s string) string {
		if s == "" {
			return s
		}
		if !envRef.MatchString(s) {
			literal = true
			if !optional {
				b.secrets = append(b.secrets, secretParts(s)...)
			}
			return s
		}
		out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v, ok := b.d.lookup(name)
			if !ok {
				missing = append(missing, name)
			}
			return v
		})
		b.secrets = append(b.secrets, secretParts(out)...)
		return out
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(one(fv.String()))
	case reflect.Slice:
		for i := range fv.Len() {
			if e := fv.Index(i); e.Kind() == reflect.String {
				e.SetString(one(e.String()))
			}
		}
	case reflect.Map:
		for _, k := range fv.MapKeys() {
			if e := fv.MapIndex(k); e.Kind() == reflect.String {
				fv.SetMapIndex(k, reflect.ValueOf(one(e.String())).Convert(e.Type()))
			}
		}
	}
	return literal, missing
}

// secretParts is a secret value and its comma-separated items (several keys).
func secretParts(v string) []string {
	out := []string{v}
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" && item != v {
			out = append(out, item)
		}
	}
	return out
}

// setSecret stores a secret read from a file: a string as is, a list split on commas
// and line breaks.
func setSecret(fv reflect.Value, val string) error {
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(val)
	case reflect.Slice:
		items := strings.FieldsFunc(val, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' })
		s := reflect.MakeSlice(fv.Type(), 0, len(items))
		for _, it := range items {
			if it = strings.TrimSpace(it); it != "" {
				s = reflect.Append(s, reflect.ValueOf(it).Convert(fv.Type().Elem()))
			}
		}
		fv.Set(s)
	default:
		return fmt.Errorf("cannot be read from a file (expected the values inline, with ${ENV_NAME} for secrets)")
	}
	return nil
}

func isZero(v reflect.Value) bool {
	if v.Kind() == reflect.Slice || v.Kind() == reflect.Map {
		return v.Len() == 0
	}
	return v.IsZero()
}

// secretKeys lists the yaml keys of into's fields tagged secret:"true", and of those
// tagged secret:"optional" (a value that may hold a credential, such as a URL with a
// token in its path: it may come from x_file or ${ENV_NAME} like a secret, but a literal
// one is ordinary and not warned about).
func secretKeys(into any) map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeOf(into)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("secret") == "true" || f.Tag.Get("secret") == "optional" {
			out[yamlKey(f)] = true
		}
	}
	return out
}

// yamlKey is a field's key in YAML.
func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if k == "" {
		k = strings.ToLower(f.Name)
	}
	return k
}

// BlockKeys lists the yaml keys of a kind's Config (a struct or a pointer to one).
func BlockKeys(cfg any) []string {
	t := reflect.TypeOf(cfg)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		out = append(out, yamlKey(t.Field(i)))
	}
	return out
}
