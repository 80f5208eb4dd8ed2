package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// got collects what a Receiver passed to onEvent.
type got struct {
	mu   sync.Mutex
	ids  []string
	ces  []*event.CloudEvent
	body [][]byte
}

func (g *got) onEvent(id string, ce *event.CloudEvent, body []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ids = append(g.ids, id)
	g.ces = append(g.ces, ce)
	g.body = append(g.body, body)
}

func (g *got) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.ids)
}

// TestReceiverAcceptsSinkDeliveries: the sink and the receiver agree end to end, the
// receiver accepting any one matching signature among several.
func TestReceiverAcceptsSinkDeliveries(t *testing.T) {
	k1, _ := newKey(t)
	k2, _ := newKey(t)
	tests := []struct {
		name         string
		sinkKeys     [][]byte
		receiverKeys [][]byte
	}{
		{"same single key", [][]byte{k1}, [][]byte{k1}},
		{"receiver knows only the new key", [][]byte{k1, k2}, [][]byte{k2}},
		{"receiver knows only the old key", [][]byte{k1, k2}, [][]byte{k1}},
		{"receiver rotated, sink not yet", [][]byte{k1}, [][]byte{k2, k1}},
		{"unsigned sink, receiver without keys", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g got
			srv := httptest.NewServer(webhook.NewReceiver(tt.receiverKeys, g.onEvent))
			t.Cleanup(srv.Close)
			s := mustNew(t, webhook.Options{URL: srv.URL, Secrets: tt.sinkKeys})
			ev := testEvent(t, 20)
			if err := s.Deliver(context.Background(), ev); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if g.count() != 1 {
				t.Fatalf("onEvent called %d times, want 1", g.count())
			}
			if g.ids[0] != ev.ID || g.ces[0].ID != ev.ID || g.ces[0].Type != "com.plugchoice.export.ready" {
				t.Errorf("onEvent(%q, id=%q type=%q), want id %q", g.ids[0], g.ces[0].ID, g.ces[0].Type, ev.ID)
			}
			if !bytes.Equal(g.body[0], ev.Body) {
				t.Errorf("onEvent body differs from Event.Body")
			}
		})
	}
}

// TestReceiverRejectsSinkDeliveries: deliveries the receiver must refuse, as the sink
// then sees them.
func TestReceiverRejectsSinkDeliveries(t *testing.T) {
	k1, _ := newKey(t)
	k2, _ := newKey(t)
	tests := []struct {
		name     string
		sinkKeys [][]byte
		offset   time.Duration
		wantCode int
	}{
		{"wrong key", [][]byte{k2}, 0, http.StatusUnauthorized},
		{"unsigned", nil, 0, http.StatusBadRequest},
		{"timestamp 10 minutes old", [][]byte{k1}, -10 * time.Minute, http.StatusUnauthorized},
		{"timestamp 10 minutes ahead", [][]byte{k1}, 10 * time.Minute, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g got
			srv := httptest.NewServer(webhook.NewReceiver([][]byte{k1}, g.onEvent))
			t.Cleanup(srv.Close)
			s := mustNew(t, webhook.Options{URL: srv.URL, Secrets: tt.sinkKeys,
				Now: func() time.Time { return time.Now().Add(tt.offset) }})
			err := s.Deliver(context.Background(), testEvent(t, 21))
			if err == nil {
				t.Fatal("receiver accepted the delivery")
			}
			if !sinks.IsPermanent(err) || sinks.StatusCode(err) != tt.wantCode {
				t.Errorf("Deliver = %v (status %d, permanent %v), want permanent %d", err, sinks.StatusCode(err), sinks.IsPermanent(err), tt.wantCode)
			}
			if g.count() != 0 {
				t.Errorf("onEvent called for a rejected delivery")
			}
		})
	}
}

// TestReceiverRequests drives the receiver with hand-made requests signed by the
// reference library (not by our signer).
func TestReceiverRequests(t *testing.T) {
	key, _ := newKey(t)
	other, _ := newKey(t)
	ref, err := standardwebhooks.NewWebhookRaw(key)
	if err != nil {
		t.Fatal(err)
	}
	refOther, _ := standardwebhooks.NewWebhookRaw(other)
	ev := testEvent(t, 22)

	type req struct {
		method string
		body   []byte
		header http.Header
	}
	signed := func(id string, ts time.Time, body []byte, signers ...*standardwebhooks.Webhook) req {
		var sigs []string
		for _, s := range signers {
			sig, err := s.Sign(id, ts, body)
			if err != nil {
				t.Fatal(err)
			}
			sigs = append(sigs, sig)
		}
		h := http.Header{}
		h.Set("Content-Type", event.ContentType)
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
		h.Set("webhook-signature", strings.Join(sigs, " "))
		return req{method: http.MethodPost, body: body, header: h}
	}
	now := time.Now()
	tampered := bytes.Replace(ev.Body, []byte(`"ready"`), []byte(`"failed"`), 1)
	if bytes.Equal(tampered, ev.Body) {
		t.Fatal("tampering changed nothing")
	}
	without := func(r req, name string) req { r.header = r.header.Clone(); r.header.Del(name); return r }
	withHeader := func(r req, name, v string) req { r.header = r.header.Clone(); r.header.Set(name, v); return r }
	good := signed(ev.ID, now, ev.Body, ref)
	otherEvent := testEvent(t, 23)

	tests := []struct {
		name string
		r    req
		want int
	}{
		{"valid", good, http.StatusNoContent},
		{"valid among several signatures", signed(ev.ID, now, ev.Body, refOther, ref), http.StatusNoContent},
		{"valid with an unknown version entry first", withHeader(good, "webhook-signature", "v2,abc "+good.header.Get("webhook-signature")), http.StatusNoContent},
		{"timestamp 4 minutes old", signed(ev.ID, now.Add(-4*time.Minute), ev.Body, ref), http.StatusNoContent},
		{"tampered body", req{http.MethodPost, tampered, good.header}, http.StatusUnauthorized},
		{"truncated body", req{http.MethodPost, ev.Body[:len(ev.Body)-1], good.header}, http.StatusUnauthorized},
		{"old timestamp", signed(ev.ID, now.Add(-6*time.Minute), ev.Body, ref), http.StatusUnauthorized},
		{"future timestamp", signed(ev.ID, now.Add(6*time.Minute), ev.Body, ref), http.StatusUnauthorized},
		{"timestamp changed after signing", withHeader(good, "webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10)), http.StatusUnauthorized},
		{"id changed after signing", withHeader(good, "webhook-id", "other"), http.StatusUnauthorized},
		{"wrong key", signed(ev.ID, now, ev.Body, refOther), http.StatusUnauthorized},
		{"signature not base64", withHeader(good, "webhook-signature", "v1,!!!"), http.StatusUnauthorized},
		{"signature without version", withHeader(good, "webhook-signature", strings.TrimPrefix(good.header.Get("webhook-signature"), "v1,")), http.StatusUnauthorized},
		{"signature with other version", withHeader(good, "webhook-signature", "v1a,"+strings.TrimPrefix(good.header.Get("webhook-signature"), "v1,")), http.StatusUnauthorized},
		{"missing id", without(good, "webhook-id"), http.StatusBadRequest},
		{"missing timestamp", without(good, "webhook-timestamp"), http.StatusBadRequest},
		{"missing signature", without(good, "webhook-signature"), http.StatusBadRequest},
		{"timestamp not a number", withHeader(good, "webhook-timestamp", "yesterday"), http.StatusBadRequest},
		{"body not a CloudEvent", signed(ev.ID, now, []byte(`{"hello":"world"}`), ref), http.StatusBadRequest},
		{"id not the CloudEvent id", signed(ev.ID, now, otherEvent.Body, ref), http.StatusBadRequest},
		{"GET", req{http.MethodGet, nil, good.header}, http.StatusMethodNotAllowed},
		{"body over 1 MiB", signed(ev.ID, now, bytes.Repeat([]byte("x"), 1<<20+1), ref), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g got
			h := webhook.NewReceiver([][]byte{key}, g.onEvent)
			r := httptest.NewRequest(tt.r.method, "/hook", bytes.NewReader(tt.r.body))
			r.Header = tt.r.header.Clone()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status = %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
			if wantCalls := map[bool]int{true: 1, false: 0}[tt.want == http.StatusNoContent]; g.count() != wantCalls {
				t.Errorf("onEvent called %d times, want %d", g.count(), wantCalls)
			}
		})
	}
}

func TestReceiverWithoutSecretsAcceptsUnsigned(t *testing.T) {
	ev := testEvent(t, 24)
	var g got
	h := webhook.NewReceiver(nil, g.onEvent)
	for _, tt := range []struct {
		name string
		id   string
		ts   string
		want int
	}{
		{"unsigned", ev.ID, strconv.FormatInt(time.Now().Unix(), 10), http.StatusNoContent},
		{"still needs an id", "", strconv.FormatInt(time.Now().Unix(), 10), http.StatusBadRequest},
		{"still checks the timestamp", ev.ID, strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10), http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(ev.Body))
			if tt.id != "" {
				r.Header.Set("webhook-id", tt.id)
			}
			r.Header.Set("webhook-timestamp", tt.ts)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("status = %d (%s), want %d", w.Code, w.Body.String(), tt.want)
			}
		})
	}
}
