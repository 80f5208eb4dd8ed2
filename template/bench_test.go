package template_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/exportbridge/exportbridge/template"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// BenchmarkRender is the cost per event of what a sink does at delivery: build the data
// of the event (decode its CloudEvent) and render its templates.
//   - body: the webhook body of testdata/body.yaml (16 templated leaves, toJson of the export);
//   - blocks: the Slack text and blocks of testdata/slack.yaml (8 templated leaves),
//     with every API value escaped for Slack;
//   - teams recipe: the body of deploy/templates/teams.yaml as the webhook sink renders it
//     (template.Payload: data, body and the ce-* headers).
func BenchmarkRender(b *testing.B) {
	e := sample(b, "export.ready")
	b.Run("body", func(b *testing.B) {
		body := bodyTemplate(b)
		b.ReportAllocs()
		defer bridgetest.CPUPerOp(b)()
		for b.Loop() {
			d, err := template.NewData(e, "ops", template.Plain)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := body.Render(d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("blocks", func(b *testing.B) {
		text, blocks := slackTemplates(b)
		b.ReportAllocs()
		defer bridgetest.CPUPerOp(b)()
		for b.Loop() {
			d, err := template.NewData(e, "ops", template.Slack)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := text.Render(d); err != nil {
				b.Fatal(err)
			}
			if _, err := blocks.Render(d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("teams recipe", func(b *testing.B) {
		var r recipe
		raw, err := os.ReadFile(filepath.Join("..", "deploy", "templates", "teams.yaml"))
		if err != nil {
			b.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, &r); err != nil {
			b.Fatal(err)
		}
		p, err := template.NewPayload("teams", template.PayloadConfig{Body: r.Sinks[0].Webhook.Body})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		defer bridgetest.CPUPerOp(b)()
		for b.Loop() {
			if _, _, err := p.Render(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("data only", func(b *testing.B) {
		b.ReportAllocs()
		defer bridgetest.CPUPerOp(b)()
		for b.Loop() {
			if _, err := template.NewData(e, "ops", template.Plain); err != nil {
				b.Fatal(err)
			}
		}
	})
}
