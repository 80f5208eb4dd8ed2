package slack

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	slackapi "github.com/slack-go/slack"

	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/sinks"
)

// settingNames replaces the {token}, {webhook_url}, {channel} and {api_url} placeholders
// of a fix with the settings as the user wrote them.
func (s *Sink) settingNames(fix string) string {
	if s.names == nil {
		return fix
	}
	return s.names.Replace(fix)
}

// codeClass says how to treat one of Slack's error codes (Web API `error`, or the text
// body of an incoming-webhook failure) and what the user should do about it.
type codeClass struct {
	retry bool   // transient on Slack's side: retried
	fix   string // what to do; %s is replaced by the channel for bot mode
}

const (
	fixToken   = "check {token} (a bot token, xoxb-...)"
	fixReissue = "reinstall the Slack app and set the new bot token in {token}"
	fixInvite  = "invite the bot to the channel: /invite @yourbot"
	fixHook    = "create a new incoming webhook and set it in {webhook_url}"
	fixBug     = "Slack rejected the message exportbridge built; please report this as a bug"
)

var codes = map[string]codeClass{
	// Authentication and the app's installation.
	"invalid_auth":           {fix: "the Slack token is not valid: " + fixToken},
	"not_authed":             {fix: "no Slack token was sent: " + fixToken},
	"account_inactive":       {fix: "the bot's user or workspace is deactivated: " + fixReissue},
	"token_revoked":          {fix: "the Slack token was revoked: " + fixReissue},
	"token_expired":          {fix: "the Slack token expired: " + fixReissue},
	"not_allowed_token_type": {fix: "this token type cannot post messages: use a bot token (xoxb-...) in {token}"},
	"missing_scope":          {fix: "the Slack app lacks a scope: add chat:write (and channels:read for check), then reinstall the app"},
	"no_permission":          {fix: "the token may not post here: " + fixInvite},
	"ekm_access_denied":      {fix: "a Slack administrator suspended posting (EKM)"},
	"restricted_action":      {fix: "a workspace setting prevents the bot from posting in this channel: ask a Slack admin or choose another channel"},
	"team_access_not_granted": {
		fix: "the token has no access to this workspace: reinstall the app in the workspace of the channel"},
	"posting_to_general_channel_denied": {fix: "only admins may post in this channel: choose another channel"},
	// The channel.
	"channel_not_found":   {fix: "the channel %s does not exist or the bot cannot see it: check {channel} (a private channel needs the bot invited: /invite @yourbot)"},
	"not_in_channel":      {fix: fixInvite + " (channel %s)"},
	"is_archived":         {fix: "the channel %s is archived: unarchive it or set {channel} to another channel"},
	"channel_is_archived": {fix: "the channel is archived: unarchive it, or " + fixHook + " for another channel"},
	// Incoming webhooks (text bodies with 4xx statuses).
	"no_service":        {fix: "the incoming webhook was removed or disabled: " + fixHook},
	"no_team":           {fix: "the webhook's workspace no longer exists: " + fixHook},
	"team_disabled":     {fix: "the webhook's workspace is disabled: " + fixHook},
	"invalid_token":     {fix: "the webhook URL is not valid: " + fixHook},
	"action_prohibited": {fix: "a workspace admin restricted this webhook: ask a Slack admin, or " + fixHook},
	"user_not_found":    {fix: "the webhook's user no longer exists: " + fixHook},
	// Our message.
	"invalid_blocks":                          {fix: fixBug},
	"invalid_blocks_format":                   {fix: fixBug},
	"invalid_payload":                         {fix: fixBug},
	"invalid_arguments":                       {fix: fixBug},
	"msg_too_long":                            {fix: fixBug},
	"msg_blocks_too_long":                     {fix: fixBug},
	"no_text":                                 {fix: fixBug},
	"too_many_attachments":                    {fix: fixBug},
	"missing_text_or_fallback_or_attachments": {fix: fixBug},
	// Transient on Slack's side.
	"internal_error":      {retry: true},
	"fatal_error":         {retry: true},
	"service_unavailable": {retry: true},
	"request_timeout":     {retry: true},
	"ratelimited":         {retry: true},
	"rate_limited":        {retry: true},
	"rollup_error":        {retry: true},
	"team_added_to_org":   {retry: true},
}

// Codes on chat.update meaning the stored message cannot be edited: a new one is posted.
var repostCodes = map[string]bool{
	"message_not_found":   true,
	"cant_update_message": true,
	"edit_window_closed":  true,
}

// slackCode returns the Web API error code carried by err, if any.
func slackCode(err error) (string, bool) {
	var se slackapi.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err, true
	}
	return "", false
}

// classify turns an error of a Slack call into the sinks error classes: RetryAfter for
// 429, Permanent for errors that no retry can fix (with a message naming the fix), plain
// (retryable) for 5xx, network errors and timeouts. It classifies by error type and by
// HTTP status code; hook is the webhook response when there was one.
func (s *Sink) classify(op string, err error, hook *hookResponse) error {
	if err == nil {
		return nil
	}
	err = s.redact(err)

	code := 0
	var sce slackapi.StatusCodeError
	if errors.As(err, &sce) {
		code = sce.Code
	}
	body := ""
	if hook != nil {
		if hook.status != 0 {
			code = hook.status
		}
		body = hook.body
	}

	// 429: honour Retry-After.
	var rl *slackapi.RateLimitedError
	if errors.As(err, &rl) {
		return sinks.WithStatus(sinks.RetryAfter(fmt.Errorf("%s: %w", op, err), rl.RetryAfter), http.StatusTooManyRequests)
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		// slack-go could not parse a Retry-After header: a 429 all the same.
		return sinks.WithStatus(fmt.Errorf("%s: slack rate limit with an unreadable Retry-After header: %w", op, err), http.StatusTooManyRequests)
	}

	// An error code from Slack: the Web API's `error`, or a webhook's text body.
	if c, ok := slackCode(err); ok {
		return s.byCode(op, c, err, code)
	}
	if body != "" {
		if _, known := codes[body]; known {
			return s.byCode(op, body, err, code)
		}
	}

	if code != 0 {
		return s.byStatus(op, code, body, err)
	}
	// Network errors, timeouts, a cancelled context, an answer that is not Slack's
	// JSON: retried (a cancelled attempt leaves the event queued).
	return fmt.Errorf("%s: %w", op, err)
}

func (s *Sink) byCode(op, c string, err error, status int) error {
	// what names the code once: the Web API error prints as the bare code.
	what := func(rest string) error {
		if err.Error() == c {
			return fmt.Errorf("%s: slack error %w%s", op, err, rest)
		}
		return fmt.Errorf("%s: slack error %s%s: %w", op, c, rest, err)
	}
	cl, known := codes[c]
	switch {
	case known && cl.retry:
		return sinks.WithStatus(what(" (temporary)"), status)
	case known:
		fix := cl.fix
		if s.webhook != "" && c == "channel_not_found" {
			fix = "the webhook's channel no longer exists: " + fixHook
		}
		fix = s.settingNames(fix)
		if strings.Contains(fix, "%s") {
			fix = fmt.Sprintf(fix, strconv.Quote(s.channel))
		}
		if c == "missing_scope" {
			var se slackapi.SlackErrorResponse
			if errors.As(err, &se) && se.Needed != "" {
				fix += " (needed: " + se.Needed + ")"
			}
		}
		return sinks.WithStatus(sinks.Permanent(what(": "+fix)), status)
	default:
		// Slack documents its transient errors (above); any other code is a request
		// that a retry will not fix. It goes to the dead-letter queue, from where it
		// can be replayed once fixed.
		return sinks.WithStatus(sinks.Permanent(what(" (not one of Slack's temporary errors: not retried)")), status)
	}
}

func (s *Sink) byStatus(op string, code int, body string, err error) error {
	detail := ""
	if body != "" {
		detail = fmt.Sprintf(" (slack said %q)", body)
	}
	switch {
	case code >= 500, code == http.StatusTooManyRequests, code == http.StatusRequestTimeout, code == http.StatusTooEarly:
		return sinks.WithStatus(fmt.Errorf("%s: slack answered HTTP %d%s: %w", op, code, detail, err), code)
	case code == http.StatusNotFound || code == http.StatusGone:
		fix := "check {api_url}"
		if s.webhook != "" {
			fix = "the incoming webhook no longer exists: " + fixHook
		}
		fix = s.settingNames(fix)
		return sinks.WithStatus(sinks.Permanent(fmt.Errorf("%s: slack answered HTTP %d%s: %s: %w", op, code, detail, fix, err)), code)
	case code >= 300 && code < 400:
		return sinks.WithStatus(sinks.Permanent(fmt.Errorf("%s: slack answered a redirect (HTTP %d), which is not followed: check the Slack URL: %w", op, code, err)), code)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		fix := fixToken
		if s.webhook != "" {
			fix = fixHook
		}
		fix = s.settingNames(fix)
		return sinks.WithStatus(sinks.Permanent(fmt.Errorf("%s: slack answered HTTP %d%s: %s: %w", op, code, detail, fix, err)), code)
	default:
		return sinks.WithStatus(sinks.Permanent(fmt.Errorf("%s: slack answered HTTP %d%s: %w", op, code, detail, err)), code)
	}
}

// redact removes the webhook URL (a secret: its path is the credential) from err.
func (s *Sink) redact(err error) error {
	if s.webhook == "" {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: s.webhookShown, Err: ue.Err}
	}
	return err
}

// shownURL is a webhook URL fit for logs and errors: scheme and host only (its path
// is the credential).
func shownURL(raw string) string { return logging.SafeURL(raw, true) }
