package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/event"
)

// ReceiverTolerance is how far a delivery's webhook-timestamp may be from the receiver's
// clock, either way.
const ReceiverTolerance = 5 * time.Minute

// receiverMaxBody bounds the body a Receiver reads.
const receiverMaxBody = 1 << 20

// NewReceiver returns an http.Handler that accepts Standard Webhooks deliveries of
// CloudEvents, as the demo's local endpoint and for end-to-end tests. It verifies the
// signature itself (independently of Sign): the request must carry webhook-id,
// webhook-timestamp within ReceiverTolerance of now, and a webhook-signature of which at
// least one v1 entry matches one of secrets (compared in constant time). The body must be
// a CloudEvent whose id is the webhook-id.
//
// Answers: 204 on success, after calling onEvent (when non-nil) with the id, the decoded
// event and the exact body; 400 for missing or malformed headers or body; 401 for a stale
// timestamp or no matching signature; 405 for a method other than POST; 413 for a body
// over 1 MiB. With no secrets, signatures are not checked (unsigned deliveries accepted).
func NewReceiver(secrets [][]byte, onEvent func(id string, ce *event.CloudEvent, body []byte)) http.Handler {
	keys := make([][]byte, 0, len(secrets))
	for _, k := range secrets {
		keys = append(keys, append([]byte(nil), k...))
	}
	return &receiver{keys: keys, onEvent: onEvent, now: time.Now}
}

type receiver struct {
	keys    [][]byte
	onEvent func(id string, ce *event.CloudEvent, body []byte)
	now     func() time.Time
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: webhook deliveries are POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, receiverMaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("body larger than %d bytes", receiverMaxBody), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	id := r.Header.Get(HeaderID)
	tsHeader := r.Header.Get(HeaderTimestamp)
	sigHeader := r.Header.Get(HeaderSignature)
	switch {
	case id == "":
		http.Error(w, "missing webhook-id header", http.StatusBadRequest)
		return
	case tsHeader == "":
		http.Error(w, "missing webhook-timestamp header", http.StatusBadRequest)
		return
	case sigHeader == "" && len(rc.keys) > 0:
		http.Error(w, "missing webhook-signature header", http.StatusBadRequest)
		return
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		http.Error(w, "webhook-timestamp is not unix seconds", http.StatusBadRequest)
		return
	}
	now := rc.now().Unix()
	tol := int64(ReceiverTolerance / time.Second)
	if ts < now-tol || ts > now+tol {
		http.Error(w, "webhook-timestamp outside the 5 minute tolerance", http.StatusUnauthorized)
		return
	}
	if len(rc.keys) > 0 && !rc.verified(id, tsHeader, body, sigHeader) {
		http.Error(w, "no matching signature", http.StatusUnauthorized)
		return
	}
	ce, err := event.Decode(body)
	if err != nil {
		http.Error(w, "body is not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	if ce.ID != id {
		http.Error(w, "webhook-id does not match the CloudEvent id", http.StatusBadRequest)
		return
	}
	if rc.onEvent != nil {
		rc.onEvent(id, ce, body)
	}
	w.WriteHeader(http.StatusNoContent)
}

// verified reports whether any v1 entry of the space-separated signature header is the
// HMAC-SHA256 of "id.timestamp.body" under any key.
func (rc *receiver) verified(id, ts string, body []byte, header string) bool {
	signed := make([]byte, 0, len(id)+len(ts)+2+len(body))
	signed = append(signed, id...)
	signed = append(signed, '.')
	signed = append(signed, ts...)
	signed = append(signed, '.')
	signed = append(signed, body...)
	want := make([][]byte, len(rc.keys))
	for i, k := range rc.keys {
		m := hmac.New(sha256.New, k)
		m.Write(signed)
		want[i] = m.Sum(nil)
	}
	ok := false
	for _, entry := range strings.Fields(header) {
		version, sig, found := strings.Cut(entry, ",")
		if !found || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		for _, w := range want {
			if hmac.Equal(got, w) {
				ok = true // keep going: no early exit that depends on which entry matched
			}
		}
	}
	return ok
}
