package slack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	slackapi "github.com/slack-go/slack"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/template"
)

// templates are a sink's own `text` and `blocks` (SPEC "Templates"): text replaces the
// headline (the first section's text) and the fallback text, blocks replace the blocks.
// Both render in template.Slack mode: every value from the API is escaped before a
// template sees it.
type templates struct {
	name   string
	text   *template.Template
	blocks *template.Template
}

// compileTemplates compiles and checks the templates of a sink (nil when it has none).
// Errors are *template.Error named "text" or "blocks...".
func compileTemplates(name, text string, blocks any) (*templates, error) {
	if text == "" && blocks == nil {
		return nil, nil
	}
	t := &templates{name: name}
	var err error
	if text != "" {
		if t.text, err = template.Text("text", text, template.Slack); err != nil {
			return nil, err
		}
	}
	if blocks != nil {
		list, ok := blocks.([]any)
		if !ok {
			return nil, &template.Error{Key: "blocks", Msg: fmt.Sprintf("is a %T (expected a list of Block Kit blocks)", blocks)}
		}
		if len(list) > MaxBlocks {
			return nil, &template.Error{Key: "blocks", Msg: fmt.Sprintf("has %d blocks (Slack takes at most %d)", len(list), MaxBlocks)}
		}
		for i, b := range list {
			if m, ok := b.(map[string]any); !ok || m["type"] == nil {
				return nil, &template.Error{Key: fmt.Sprintf("blocks[%d]", i), Msg: "is not a block (expected a mapping with a type, such as {type: section, text: {type: mrkdwn, text: ...}})"}
			}
		}
		if t.blocks, err = template.Structure("blocks", blocks, template.Slack); err != nil {
			return nil, err
		}
	}
	for _, e := range template.Samples() {
		if _, err := t.apply(e, Message{}); err != nil {
			var te *template.Error
			if errors.As(err, &te) {
				c := *te
				c.Sample = e.Type
				return nil, &c
			}
			return nil, fmt.Errorf("rendering a sample %s event: %w", e.Type, err)
		}
	}
	return t, nil
}

// apply renders the templates for e into msg, the message Render built, and into its
// thread reply (a failed export's, in bot mode) the same way: text replaces the
// headline and the fallback text, blocks replace the blocks.
func (t *templates) apply(e event.Event, msg Message) (Message, error) {
	d, err := template.NewData(e, t.name, template.Slack)
	if err != nil {
		return msg, err
	}
	var text []byte
	if t.text != nil {
		if text, err = t.text.Render(d); err != nil {
			return msg, err
		}
	}
	var blocks []slackapi.Block
	if t.blocks != nil {
		b, err := t.blocks.Render(d)
		if err != nil {
			return msg, err
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(b, &raws); err != nil {
			return msg, &template.Error{Key: "blocks", Msg: fmt.Sprintf("did not render a list: %v", err)}
		}
		blocks = make([]slackapi.Block, len(raws))
		for i, r := range raws {
			var head struct {
				Type    string `json:"type"`
				BlockID string `json:"block_id"`
			}
			if err := json.Unmarshal(r, &head); err != nil || head.Type == "" {
				return msg, &template.Error{Key: fmt.Sprintf("blocks[%d]", i), Msg: "did not render a block with a type"}
			}
			blocks[i] = rawBlock{typ: head.Type, id: head.BlockID, raw: r}
		}
	}
	msg = t.put(msg, text, blocks)
	if msg.Reply != nil {
		r := t.put(*msg.Reply, text, blocks)
		msg.Reply = &r
	}
	return msg, nil
}

// put writes rendered templates into one message: text (when the sink has a text
// template) as the fallback text and the first section's text, blocks (when it has a
// blocks template) as the blocks.
func (t *templates) put(msg Message, text []byte, blocks []slackapi.Block) Message {
	if t.text != nil {
		msg.Text = clipOurs(string(text), MaxFallback)
		for i, blk := range msg.Blocks {
			if sec, ok := blk.(*slackapi.SectionBlock); ok && sec.Text != nil {
				c := *sec
				c.Text = mrkdwn(clipOurs(string(text), MaxSectionText))
				msg.Blocks = append(append(msg.Blocks[:i:i], &c), msg.Blocks[i+1:]...)
				break
			}
		}
	}
	if t.blocks != nil {
		msg.Blocks = blocks
	}
	return msg
}

// rawBlock is a rendered block sent as written: slack-go's own block types would drop
// any field they do not know.
type rawBlock struct {
	typ, id string
	raw     json.RawMessage
}

func (b rawBlock) BlockType() slackapi.MessageBlockType { return slackapi.MessageBlockType(b.typ) }
func (b rawBlock) ID() string                           { return b.id }
func (b rawBlock) MarshalJSON() ([]byte, error)         { return b.raw, nil }

// Preview returns what Deliver would send for e, without sending (`exportbridge
// template render`): the request (chat.postMessage, or the incoming webhook) and its
// JSON, then the thread reply a failed export adds in bot mode.
func (s *Sink) Preview(e event.Event) (what string, payload []byte, err error) {
	_, msg, err := s.message(e)
	if err != nil {
		return "", nil, err
	}
	body := map[string]any{"text": msg.Text, "blocks": msg.Blocks}
	what = "POST incoming webhook " + s.webhookShown
	if s.webhook == "" {
		what = "POST chat.postMessage (chat.update when the export already has a message)"
		body["channel"] = s.channel
	}
	out := []any{body}
	if msg.Reply != nil && s.webhook == "" {
		out = append(out, map[string]any{"thread_reply": true, "text": msg.Reply.Text, "blocks": msg.Reply.Blocks})
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	for _, o := range out {
		if err := enc.Encode(o); err != nil {
			return "", nil, fmt.Errorf("slack: encode the message of event %s: %w", e.ID, err)
		}
	}
	return what, b.Bytes(), nil
}
