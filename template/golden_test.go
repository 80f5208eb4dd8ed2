package template_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/exportbridge/exportbridge/template"
)

var update = flag.Bool("update", false, "rewrite the golden files of the template tests")

// loadYAML reads a YAML file the way the config file is read (goccy/go-yaml, strict).
func loadYAML(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.NewDecoder(bytes.NewReader(b), yaml.DisallowUnknownField()).Decode(&v); err != nil {
		t.Fatalf("%s: %s", path, yaml.FormatError(err, false, true))
	}
	return v
}

// golden compares got with testdata/golden/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./template -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n got %s\nwant %s", name, got, want)
	}
}

func indent(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatalf("rendered body is not JSON: %v\n%s", err, b)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// slackTemplates compiles testdata/slack.yaml: the text and the blocks of a Slack sink.
func slackTemplates(t testing.TB) (text, blocks *template.Template) {
	t.Helper()
	y := loadYAML(t, filepath.Join("testdata", "slack.yaml"))
	src, _ := y["text"].(string)
	text, err := template.Text("slack.text", src, template.Slack)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err = template.Structure("slack.blocks", y["blocks"], template.Slack)
	if err != nil {
		t.Fatal(err)
	}
	return text, blocks
}

func bodyTemplate(t testing.TB) *template.Template {
	t.Helper()
	y := loadYAML(t, filepath.Join("testdata", "body.yaml"))
	body, err := template.Structure("webhook.body", y["body"], template.Plain)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestGoldenRenderOfEveryEventType(t *testing.T) {
	body := bodyTemplate(t)
	text, blocks := slackTemplates(t)
	if err := template.Check("ops", body); err != nil {
		t.Fatalf("Check body: %v", err)
	}
	if err := template.Check("ops", text, blocks); err != nil {
		t.Fatalf("Check slack: %v", err)
	}
	n := 0
	for _, e := range template.Samples() {
		t.Run(e.Type, func(t *testing.T) {
			out, err := body.Render(data(t, e, template.Plain))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("body", e.Type+".json"), indent(t, out))

			d := data(t, e, template.Slack)
			txt, err := text.Render(d)
			if err != nil {
				t.Fatal(err)
			}
			bl, err := blocks.Render(d)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := json.Marshal(map[string]json.RawMessage{"text": mustJSON(t, string(txt)), "blocks": bl})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("slack", e.Type+".json"), indent(t, msg))
			n++
		})
	}
	if n < 11 {
		t.Fatalf("rendered %d sample types, want every status and bridge event (11)", n)
	}
}

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
