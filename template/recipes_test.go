package template_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/exportbridge/exportbridge/template"
)

// recipe is a config-file snippet of deploy/templates: one webhook sink, in the config
// file's format (decoded strictly, so a typo in a recipe's keys fails here).
type recipe struct {
	Sinks []struct {
		Name    string   `yaml:"name"`
		Kind    string   `yaml:"kind"`
		Events  []string `yaml:"events"`
		Webhook struct {
			URL         string            `yaml:"url"`
			ContentType string            `yaml:"content_type"`
			Vars        map[string]string `yaml:"vars"`
			Body        any               `yaml:"body"`
		} `yaml:"webhook"`
	} `yaml:"sinks"`
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// TestRecipesRenderAsTheirDestinationsExpect renders each recipe for the events its
// filter takes (golden files: testdata/golden/recipes/), after the checks the bridge
// makes at start.
func TestRecipesRenderAsTheirDestinationsExpect(t *testing.T) {
	env := map[string]string{"PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY0123456789abcdefabcdef"}
	recipes := map[string][]string{
		"teams":     {"export.ready", "export.failed"},
		"discord":   {"export.ready", "export.failed"},
		"pagerduty": {"export.failed", "bridge.poll_failing", "bridge.poll_recovered", "bridge.sink_failing", "bridge.sink_recovered"},
	}
	files, err := filepath.Glob(filepath.Join("..", "deploy", "templates", "*.yaml"))
	if err != nil || len(files) != len(recipes) {
		t.Fatalf("recipes %v (%v), want one file per recipe of this test: %d", files, err, len(recipes))
	}
	for name, types := range recipes {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("..", "deploy", "templates", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var r recipe
			if err := yaml.NewDecoder(bytes.NewReader(b), yaml.DisallowUnknownField()).Decode(&r); err != nil {
				t.Fatalf("%s.yaml: %s", name, yaml.FormatError(err, false, true))
			}
			if len(r.Sinks) != 1 || r.Sinks[0].Name != name || r.Sinks[0].Kind != "webhook" || r.Sinks[0].Webhook.Body == nil {
				t.Fatalf("%s.yaml: want one webhook sink named %s with a body, got %+v", name, name, r.Sinks)
			}
			s := r.Sinks[0]
			vars := map[string]string{}
			for k, v := range s.Webhook.Vars {
				// As the config file does for a secret: ${NAME} from the environment.
				vars[k] = envRef.ReplaceAllStringFunc(v, func(ref string) string {
					val, ok := env[envRef.FindStringSubmatch(ref)[1]]
					if !ok {
						t.Fatalf("%s refers to %s, not set in this test", k, ref)
					}
					return val
				})
			}
			body, err := template.Structure("webhook.body", s.Webhook.Body, template.Plain)
			if err != nil {
				t.Fatal(err)
			}
			if err := template.Check(s.Name, body); err != nil {
				t.Fatalf("Check: %v", err)
			}
			for _, typ := range types {
				if short := typ[len("export."):]; typ[:7] == "export." && !slices.Contains(s.Events, short) {
					t.Fatalf("%s is not in the recipe's events %v", typ, s.Events)
				}
				d := data(t, sample(t, typ), template.Plain)
				d.SetVars(vars)
				out, err := body.Render(d)
				if err != nil {
					t.Fatalf("%s: %v", typ, err)
				}
				golden(t, filepath.Join("recipes", name, typ+".json"), indent(t, out))
			}
		})
	}
}
