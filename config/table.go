package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/kelseyhightower/envconfig"
)

// The templates run over envconfig's own view of Config (envconfig.Usaget), so the
// variable names shown are the ones envconfig derives from the tags.
var tmplFuncs = template.FuncMap{
	"def": func(tags reflect.StructTag) string {
		if d := tags.Get("default"); d != "" {
			return "`" + d + "`"
		}
		return tags.Get("defdoc")
	},
	"plaindef": func(tags reflect.StructTag) string {
		if d := tags.Get("default"); d != "" {
			return d
		}
		return tags.Get("defdoc")
	},
	"secret": func(tags reflect.StructTag) string {
		if tags.Get("secret") == "true" {
			return "yes (or `_FILE`)"
		}
		return ""
	},
	"secretmark": func(tags reflect.StructTag) string {
		if tags.Get("secret") == "true" {
			return "yes"
		}
		return ""
	},
	"cell": func(s string) string { return strings.ReplaceAll(s, "|", `\|`) },
}

var tableTmpl = template.Must(template.New("table").Funcs(tmplFuncs).Parse(
	"| variable | default | secret | meaning |\n" +
		"|---|---|---|---|\n" +
		"{{range .}}| `{{.Key}}` | {{cell (def .Tags)}} | {{secret .Tags}} | {{cell (.Tags.Get \"desc\")}} |\n{{end}}"))

var usageTmpl = template.Must(template.New("usage").Funcs(tmplFuncs).Parse(
	"VARIABLE\tDEFAULT\tSECRET\tMEANING\n" +
		"{{range .}}{{.Key}}\t{{plaindef .Tags}}\t{{secretmark .Tags}}\t{{.Tags.Get \"desc\"}}\n{{end}}"))

// Table returns the settings table in Markdown (variable, default, secret, meaning),
// generated from Config's struct tags. The README embeds it.
func Table() string {
	var b strings.Builder
	if err := envconfig.Usaget(EnvPrefix, &Config{}, &b, tableTmpl); err != nil {
		panic(fmt.Sprintf("config: settings table: %v", err)) // the template is constant
	}
	return b.String()
}

// Usage writes the settings as a plain-text table, for --help.
func Usage(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "Settings are read from the environment. A secret setting X can instead be read\nfrom the file named in X_FILE (trimmed). Durations use Go syntax (30s, 5m).\n\n"); err != nil {
		return fmt.Errorf("write settings usage: %w", err)
	}
	tw := tabwriter.NewWriter(w, 1, 0, 2, ' ', 0)
	if err := envconfig.Usaget(EnvPrefix, &Config{}, tw, usageTmpl); err != nil {
		return fmt.Errorf("write settings usage: %w", err)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write settings usage: %w", err)
	}
	return nil
}
