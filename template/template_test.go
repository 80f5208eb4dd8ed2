package template_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/template"
)

const source = "https://app.plugchoice.com/api/v3/exports"

var observed = time.Date(2026, 11, 28, 10, 15, 20, 0, time.UTC)

// exportEvent builds the event of an export given as the API's JSON object.
func exportEvent(t testing.TB, prev, raw string) event.Event {
	t.Helper()
	var exp plugchoice.Export
	if err := json.Unmarshal([]byte(raw), &exp); err != nil {
		t.Fatalf("export %s: %v", raw, err)
	}
	exp.Raw = json.RawMessage(raw)
	ev, err := event.NewExport(source, prev, &exp, observed)
	if err != nil {
		t.Fatalf("NewExport: %v", err)
	}
	return ev
}

func sample(t testing.TB, typ string) event.Event {
	t.Helper()
	e, ok := template.Sample(typ)
	if !ok {
		t.Fatalf("no sample %s (have %v)", typ, template.SampleTypes())
	}
	return e
}

func data(t testing.TB, e event.Event, mode template.Mode) *template.Data {
	t.Helper()
	d, err := template.NewData(e, "ops", mode)
	if err != nil {
		t.Fatalf("NewData: %v", err)
	}
	return d
}

func renderText(t testing.TB, src string, e event.Event, mode template.Mode) (string, error) {
	t.Helper()
	tp, err := template.Text("body_text", src, mode)
	if err != nil {
		t.Fatalf("Text(%q): %v", src, err)
	}
	out, err := tp.Render(data(t, e, mode))
	return string(out), err
}

func TestTemplatesSeeTheDataModelOfTheSpec(t *testing.T) {
	ready := sample(t, "export.ready")
	failing := sample(t, "bridge.poll_failing")
	sinkFailing := sample(t, "bridge.sink_failing")
	odd := exportEvent(t, "processing", `{"uuid":"u-1","type":"meter values","status":"On Hold","requested_at":"2026-11-28T10:11:00Z",
		"row_count":9007199254740993,"weight":1.5e6,"ratio":0.1,"subject":null,"tags":["a","b"],"extra":{"deep":{"x":"y"}}}`)
	tests := []struct {
		name string
		e    event.Event
		src  string
		want string
	}{
		{"event id", ready, "{{ .Event.id }}", ready.ID},
		{"event type is the CloudEvents type", ready, "{{ .Event.type }}", "com.plugchoice.export.ready"},
		{"short type is what filters use", ready, "{{ .Event.short_type }}", "export.ready"},
		{"status", ready, "{{ .Event.status }}", "ready"},
		{"previous status", ready, "{{ .Event.previous_status }}", "processing"},
		{"previous status of a new export is empty", sample(t, "export.pending"), "[{{ .Event.previous_status }}]", "[]"},
		{"time is the export's own time for the status", ready, "{{ .Event.time }}", "2026-11-28T10:15:12Z"},
		{"observed at", ready, "{{ .Event.observed_at }}", "2026-11-28T10:15:20Z"},
		{"export fields under the API's keys", ready, "{{ .Export.type }} {{ .Export.subject.label }} #{{ .Export.subject.id }}", "sessions Acme Depot Rotterdam #12"},
		{"unknown fields of the export are kept", ready, "{{ .Export.region }}", "eu-west"},
		{"unknown status forwarded", odd, "{{ .Event.status }} / {{ .Export.status }}", "on_hold / On Hold"},
		{"numbers render as the API wrote them", ready, "{{ .Export.row_count }} {{ .Export.file_size }}", "1234567 3200000"},
		{"a number beyond float64 precision is not rounded", odd, "{{ .Export.row_count }}", "9007199254740993"},
		{"a float keeps its spelling", odd, "{{ .Export.weight }} {{ .Export.ratio }}", "1.5e6 0.1"},
		{"lists and nested objects", odd, "{{ index .Export.tags 1 }} {{ .Export.extra.deep.x }}", "b y"},
		{"missing key renders empty", ready, "[{{ .Export.nope }}]", "[]"},
		{"key under a missing key renders empty", ready, "[{{ .Export.nope.deeper }}]", "[]"},
		{"null renders empty", ready, "[{{ .Export.error_message }}]", "[]"},
		{"key under a null renders empty", odd, "[{{ .Export.subject.label }}]", "[]"},
		{"key under a string renders empty", ready, "[{{ .Export.type.x }}]", "[]"},
		{"index of a missing key renders empty", ready, `[{{ index .Export "nope" }}]`, "[]"},
		{"null seen through range renders empty", sample(t, "export.failed"), `{{ range $k, $v := .Export }}{{ if eq $k "filename" }}[{{ $v }}]{{ end }}{{ end }}`, "[]"},
		{"variables and parentheses are nil-safe too", odd, "{{ $e := .Export }}[{{ $e.subject.label }}][{{ (.Export).extra.deep.x }}][{{ $.Export.nope.x }}]", "[][y][]"},
		{"default fills a null", odd, `{{ .Export.subject.label | default "no subject" }}`, "no subject"},
		{"a missing value passes to a string function", ready, `[{{ .Export.nope | upper }}]`, "[]"},
		{"if on a null is false", ready, `{{ if .Export.error_message }}error{{ else }}fine{{ end }}`, "fine"},
		{"numbers compare after int", ready, `{{ if gt (int .Export.row_count) 1000 }}big{{ end }}`, "big"},
		{"sink name", ready, "{{ .Sink.name }}", "ops"},
		{"bridge fields", failing, "{{ .Bridge.kind }}: {{ .Bridge.message }} ({{ .Bridge.count }} since {{ .Bridge.since }})", "unauthorized: Unauthenticated. (5 since 2026-11-28T10:12:20Z)"},
		{"bridge data keeps its own names", failing, "{{ .Bridge.error_kind }} {{ .Bridge.consecutive_failures }}", "unauthorized 5"},
		{"sink events name the sink", sinkFailing, "{{ .Bridge.sink }} ({{ .Bridge.kind }}) {{ .Bridge.queued }} queued: {{ .Bridge.message }}", "warehouse (webhook) 42 queued: POST https://etl.example.com/hooks/plugchoice: 503 Service Unavailable"},
		{"bridge events have an empty export", failing, "[{{ .Export.uuid }}][{{ toJson .Export }}]", "[][{}]"},
		{"export events have an empty bridge", ready, "[{{ .Bridge.kind }}]", "[]"},
		{"toJson keeps numbers and characters", odd, "{{ toJson .Export.extra }} {{ toJson .Export.row_count }} {{ toJson \"<a&b>\" }}", `{"deep":{"x":"y"}} 9007199254740993 "<a&b>"`},
		{"humanBytes", ready, "{{ .Export.file_size | humanBytes }}", "3.2 MB"},
		{"humanBytes of a null is empty", sample(t, "export.failed"), "[{{ .Export.file_size | humanBytes }}]", "[]"},
		{"humanDuration between two timestamps", ready, "{{ humanDuration .Export.requested_at .Export.completed_at }}", "4m 12s"},
		{"humanDuration of seconds", ready, "{{ humanDuration 7380 }} {{ humanDuration \"90s\" }} {{ humanDuration 42 }}", "2h 3m 1m 30s 42s"},
		{"humanDuration with a null end is empty", sample(t, "export.pending"), "[{{ humanDuration .Export.requested_at .Export.completed_at }}]", "[]"},
		{"sprig functions", ready, `{{ .Export.type | upper }} {{ .Export.filename | trunc 8 }} {{ list 1 2 3 | join "," }}`, "SESSIONS sessions 1,2,3"},
		{"methods of Go values still work", ready, `{{ (toDate "2006-01-02" "2026-11-28").Format "Jan 2" }} {{ (toDate "2006-01-02" "2026-11-28").Year }}`, "Nov 28 2026"},
		{"toDate parses in UTC", ready, `{{ (toDate "2006-01-02 15:04" "2026-11-28 10:15").Unix }}`, "1795860900"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderText(t, tt.src, tt.e, template.Plain)
			if err != nil {
				t.Fatalf("render %q: %v", tt.src, err)
			}
			if got != tt.want {
				t.Errorf("render %q = %q, want %q", tt.src, got, tt.want)
			}
		})
	}
}

func TestFunctionsThatDependOnTheClockTheMachineOrChanceAreAbsent(t *testing.T) {
	for _, fn := range []string{"now", "env", "expandenv", "randInt", "randAlpha", "uuidv4", "ago", "durationRound", "shuffle", "genPrivateKey", "bcrypt", "encryptAES", "getHostByName"} {
		t.Run(fn, func(t *testing.T) {
			_, err := template.Text("body_text", "{{ "+fn+" }}", template.Plain)
			if err == nil || !strings.Contains(err.Error(), `function "`+fn+`" not defined`) {
				t.Fatalf("%s: got %v, want function not defined", fn, err)
			}
		})
	}
}

func TestRenderingIsDeterministic(t *testing.T) {
	tp, err := template.Structure("body", map[string]any{
		"a": "{{ toJson .Export }}", "b": []any{"{{ .Event.id }}", "{{ dict \"x\" 1 \"y\" 2 \"z\" 3 | toJson }}"},
		"c": map[string]any{"z": 1, "y": "{{ .Export.subject | toJson }}", "x": true},
	}, template.Plain)
	if err != nil {
		t.Fatal(err)
	}
	e := sample(t, "export.ready")
	first, err := tp.Render(data(t, e, template.Plain))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		again, err := tp.Render(data(t, e, template.Plain))
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(first) {
			t.Fatalf("render %d differs:\n%s\nfirst:\n%s", i, again, first)
		}
	}
}

func TestBodyIsAlwaysValidJSON(t *testing.T) {
	nasty := exportEvent(t, "", `{"uuid":"u\"1","type":"a\"b\\c\nd\te\u0001f\u2028g</script>","status":"pending","requested_at":"x",
		"filename":"\u00e9t\u00e9 \ud83d\ude00 \"quoted\" {{ .Export.uuid }}"}`)
	body := map[string]any{
		"title":  "Export {{ .Export.type }}",
		"file":   "{{ .Export.filename }}",
		"static": "no template here: \" \\ \n",
		"rows":   "{{ .Export.row_count }}",
		"n":      42, "f": 1.5, "yes": true, "none": nil,
		"list":                   []any{"{{ .Export.uuid }}", 1, map[string]any{"k": "{{ .Event.status }}"}},
		"odd key \"with\" quote": "{{ .Event.id }}",
		"invalid utf8":           "{{ \"\\xff\" }}{{ .Export.uuid | b64enc | b64dec }}",
	}
	tp, err := template.Structure("body", body, template.Plain)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tp.Render(data(t, nasty, template.Plain))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, out)
	}
	want := map[string]any{
		"title":  "Export a\"b\\c\nd\te\u0001f\u2028g</script>",
		"file":   "été 😀 \"quoted\" {{ .Export.uuid }}", // a value is data, never a template
		"static": "no template here: \" \\ \n",
		"rows":   "",
		"n":      float64(42), "f": 1.5, "yes": true, "none": nil,
		"list":                   []any{"u\"1", float64(1), map[string]any{"k": "pending"}},
		"odd key \"with\" quote": nasty.ID,
		"invalid utf8":           "\ufffdu\"1",
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("body\n got %s\nwant %s", gb, wb)
	}
	if !strings.HasPrefix(string(out), `{"f":1.5,"file":`) {
		t.Errorf("keys are not sorted: %s", out)
	}
}

func TestBodyTextIsSentAsRendered(t *testing.T) {
	got, err := renderText(t, "{{ .Event.status }} {{ .Export.uuid }}\n<&>\"", sample(t, "export.ready"), template.Plain)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ready 9b2c6a1e-5d1f-4c3e-8a7b-0123456789ab\n<&>\""; got != want {
		t.Errorf("body_text = %q, want %q", got, want)
	}
}

func TestSlackTemplatesSeeEscapedValues(t *testing.T) {
	e := exportEvent(t, "<b>", `{"uuid":"u-1","type":"a&b","status":"failed","requested_at":"2026-11-28T10:11:00Z",
		"filename":"<!channel>","error_message":"x < y > z","subject":{"label":"<@U123>","type":"site","id":1},
		"<key>":"<#C999>","tags":["<!here>"]}`)
	tests := []struct {
		src        string
		slack, raw string
	}{
		{"{{ .Export.filename }}", "&lt;!channel&gt;", "<!channel>"},
		{"{{ .Export.type }}", "a&amp;b", "a&b"},
		{"{{ .Export.subject.label }}", "&lt;@U123&gt;", "<@U123>"},
		{"{{ .Export.error_message }}", "x &lt; y &gt; z", "x < y > z"},
		{"{{ index .Export.tags 0 }}", "&lt;!here&gt;", "<!here>"},
		{`{{ index .Export "&lt;key&gt;" }}`, "&lt;#C999&gt;", ""},
		{"{{ .Event.previous_status }}", "&lt;b&gt;", "<b>"},
		{"{{ toJson .Export.subject }}", `{"id":1,"label":"&lt;@U123&gt;","type":"site"}`, `{"id":1,"label":"<@U123>","type":"site"}`},
		{"{{ .Export.filename | upper }}", "&LT;!CHANNEL&GT;", "<!CHANNEL>"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			got, err := renderText(t, tt.src, e, template.Slack)
			if err != nil {
				t.Fatalf("slack render: %v", err)
			}
			if got != tt.slack {
				t.Errorf("slack render = %q, want %q", got, tt.slack)
			}
			if got, err := renderText(t, tt.src, e, template.Plain); err != nil || got != tt.raw {
				t.Errorf("plain render = %q, %v, want %q", got, err, tt.raw)
			}
		})
	}
}

func TestSlackRenderRefusesAMentionTheTemplateDoesNotWrite(t *testing.T) {
	// A value placed right after a literal "<" could form <!channel> although every value
	// is escaped: the render is refused. A template that writes a mention itself keeps it.
	e := exportEvent(t, "", `{"uuid":"u-1","type":"sessions","status":"ready","requested_at":"x","download_url":"!channel","filename":"IWNoYW5uZWw+"}`)
	tests := []struct {
		name, src string
		wantErr   bool
	}{
		{"value after a literal <", "<{{ .Export.download_url }}|Download>", true},
		{"value decoded into a mention", "<{{ .Export.filename | b64dec }}", true},
		{"the template's own mention", "<!here> export {{ .Export.uuid }}", false},
		{"a link of the template", "<https://example.com/{{ .Export.uuid }}|open>", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderText(t, tt.src, e, template.Slack)
			if tt.wantErr != (err != nil) {
				t.Fatalf("render %q: err %v, want error %v", tt.src, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "mention") {
				t.Errorf("error %q does not say why", err)
			}
		})
	}
}

func TestDataOfOneModeIsRefusedByATemplateOfTheOther(t *testing.T) {
	tp, err := template.Text("slack.text", "{{ .Export.filename }}", template.Slack)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Render(data(t, sample(t, "export.ready"), template.Plain)); err == nil {
		t.Fatal("a Slack template rendered unescaped data")
	}
}

func TestBadTemplatesNameTheKeyAndTheLine(t *testing.T) {
	tests := []struct {
		name      string
		body      any
		wantKey   string
		wantLine  int
		wantCol   int
		wantInMsg string
	}{
		{"unclosed action", map[string]any{"title": "a\n{{ .Export.type "}, "webhook.body.title", 2, 0, "unclosed action"},
		{"unknown function", map[string]any{"card": map[string]any{"text": "x\ny\n{{ .Export.type | shout }}"}}, "webhook.body.card.text", 3, 0, `function "shout" not defined`},
		{"in a list", map[string]any{"blocks": []any{"ok", map[string]any{"text": "{{ if }}"}}}, "webhook.body.blocks[1].text", 1, 0, "missing value for if"},
		{"odd key", map[string]any{"a b": "{{ end }}"}, `webhook.body["a b"]`, 1, 0, "unexpected {{end}}"},
		{"not JSON", map[string]any{"x": 1.0 / zero()}, "webhook.body.x", 0, 0, "finite number"},
		{"a type YAML cannot give", map[string]any{"x": struct{}{}}, "webhook.body.x", 0, 0, "cannot be sent as JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := template.Structure("webhook.body", tt.body, template.Plain)
			var te *template.Error
			if !errors.As(err, &te) {
				t.Fatalf("Structure: %v, want a *template.Error", err)
			}
			if te.Key != tt.wantKey || te.Line != tt.wantLine || te.Column != tt.wantCol || !strings.Contains(te.Msg, tt.wantInMsg) {
				t.Errorf("error %+v, want key %s line %d column %d and %q", te, tt.wantKey, tt.wantLine, tt.wantCol, tt.wantInMsg)
			}
			if !strings.HasPrefix(err.Error(), tt.wantKey+":") {
				t.Errorf("message %q does not start with the key", err)
			}
		})
	}
}

func zero() float64 { return 0 }

func TestCheckFindsATemplateThatFailsOnSomeEvent(t *testing.T) {
	tests := []struct {
		name, src  string
		wantSample string
		wantLine   int
		wantCol    int
	}{
		{"fails on bridge events", "ok\n  {{ if not .Export.uuid }}{{ fail \"no export uuid\" }}{{ end }}", "bridge.poll_failing", 2, 31},
		{"fails on a failed export", "{{ if .Export.error_message }}{{ fail \"boom\" }}{{ end }}", "export.failed", 1, 34},
		{"index out of range on every export", "{{ index .Export.subject.label 99 }}", "bridge.poll_failing", 1, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, err := template.Text("webhook.body_text", tt.src, template.Plain)
			if err != nil {
				t.Fatal(err)
			}
			err = template.Check("warehouse", tp)
			var te *template.Error
			if !errors.As(err, &te) {
				t.Fatalf("Check: %v, want a *template.Error", err)
			}
			if te.Sample != tt.wantSample || te.Line != tt.wantLine || te.Column != tt.wantCol || te.Key != "webhook.body_text" {
				t.Errorf("Check error %+v (%q), want sample %s at %d:%d", te, err, tt.wantSample, tt.wantLine, tt.wantCol)
			}
			for _, want := range []string{"webhook.body_text", "line", tt.wantSample} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err, want)
				}
			}
		})
	}
	ok, err := template.Text("slack.text", "{{ .Export.filename | default .Bridge.message }}", template.Slack)
	if err != nil {
		t.Fatal(err)
	}
	if err := template.Check("ops", ok, nil); err != nil {
		t.Errorf("Check of a good template: %v", err)
	}
}

func TestSamplesCoverEveryStatusAndBridgeEvent(t *testing.T) {
	want := []string{"bridge.poll_failing", "bridge.poll_recovered", "bridge.sink_failing", "bridge.sink_recovered",
		"export.archived", "export.cancelled", "export.failed", "export.pending", "export.processing", "export.ready", "export.removed"}
	got := template.SampleTypes()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("sample types %v, want %v", got, want)
	}
	for _, e := range template.Samples() {
		if _, err := event.Decode(e.Body); err != nil {
			t.Errorf("sample %s: %v", e.Type, err)
		}
	}
	if e, ok := template.Sample("failed"); !ok || e.Type != "export.failed" {
		t.Errorf("Sample(failed) = %s, %v", e.Type, ok)
	}
}

func TestARenderOver1MiBIsRefused(t *testing.T) {
	e := sample(t, "export.ready")
	tests := []struct {
		name string
		tpl  func() (*template.Template, error)
	}{
		{"body_text", func() (*template.Template, error) {
			return template.Text("body_text", `{{ repeat 1100000 "x" }}`, template.Plain)
		}},
		{"a runaway range", func() (*template.Template, error) {
			return template.Text("body_text", `{{ range until 2000000 }}{{ $.Export.uuid }}{{ end }}`, template.Plain)
		}},
		{"one leaf of a body", func() (*template.Template, error) {
			return template.Structure("body", map[string]any{"a": `{{ repeat 1100000 "x" }}`}, template.Plain)
		}},
		{"leaves that add up", func() (*template.Template, error) {
			return template.Structure("body", map[string]any{"a": `{{ repeat 600000 "x" }}`, "b": `{{ repeat 600000 "y" }}`}, template.Plain)
		}},
		{"escaping that grows past the limit", func() (*template.Template, error) {
			return template.Structure("body", map[string]any{"a": `{{ repeat 600000 "\n" }}`}, template.Plain)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, err := tt.tpl()
			if err != nil {
				t.Fatal(err)
			}
			out, err := tp.Render(data(t, e, template.Plain))
			if !errors.Is(err, template.ErrTooLarge) {
				t.Fatalf("render of %d bytes: %v, want ErrTooLarge", len(out), err)
			}
			var te *template.Error
			if !errors.As(err, &te) || te.Key == "" {
				t.Errorf("error %v does not name the key", err)
			}
		})
	}
	tp, err := template.Text("body_text", `{{ repeat 1000000 "x" }}`, template.Plain)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Render(data(t, e, template.Plain)); err != nil || len(out) != 1000000 {
		t.Errorf("a render just under the limit: %d bytes, %v", len(out), err)
	}
}

func TestRenderErrorAtDeliveryIsTyped(t *testing.T) {
	tp, err := template.Structure("webhook.body", map[string]any{"first_tag": "{{ index .Export.tags 0 }}"}, template.Plain)
	if err != nil {
		t.Fatal(err)
	}
	odd := exportEvent(t, "", `{"uuid":"u-1","type":"t","status":"ready","requested_at":"x","tags":[]}`)
	_, err = tp.Render(data(t, odd, template.Plain))
	var te *template.Error
	if !errors.As(err, &te) {
		t.Fatalf("render: %v, want a *template.Error", err)
	}
	if want := "webhook.body.first_tag: line 1, column 4: error calling index: reflect: slice index out of range"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestHumanBytesShowsTheFiguresOfTheSlackMessage(t *testing.T) {
	for _, n := range []int64{0, 1, 9, 10, 999, 1000, 1023, 1499, 1500, 9950, 9999, 10_000, 999_999, 3_200_000, 12_400_000, 1 << 40, 1<<63 - 1} {
		if got, want := template.HumanBytes(n), humanize.Bytes(uint64(n)); got != want {
			t.Errorf("HumanBytes(%d) = %q, go-humanize says %q", n, got, want)
		}
		if got, want := template.HumanBytes(json.Number(strings.TrimSpace(humanize.Comma(n)))), ""; n >= 1000 && got != want {
			t.Errorf("HumanBytes of %q = %q, want %q (not a number)", humanize.Comma(n), got, want)
		}
	}
	for _, v := range []any{nil, "", "x", -1, json.Number("-5")} {
		if got := template.HumanBytes(v); got != "" {
			t.Errorf("HumanBytes(%#v) = %q, want empty", v, got)
		}
	}
}
