package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"sync"
)

// Sign returns the Standard Webhooks signature of one delivery: "v1," followed by the
// standard base64 of HMAC-SHA256(secret, id + "." + ts + "." + body), where ts is the
// unix time in seconds sent in webhook-timestamp. Several secrets give several such
// values, separated by spaces, in the webhook-signature header.
func Sign(secret []byte, id string, ts int64, body []byte) string {
	st := &signState{h: hmac.New(sha256.New, secret)}
	return string(st.append(nil, id, ts, body))
}

// signer signs with one secret, reusing keyed HMAC states (a Reset restores the key's
// state without hashing the key again) and scratch buffers across deliveries.
type signer struct{ pool sync.Pool }

type signState struct {
	h   hash.Hash
	buf []byte
}

func newSigner(secret []byte) *signer {
	s := &signer{}
	s.pool.New = func() any { return &signState{h: hmac.New(sha256.New, secret)} }
	return s
}

// appendSign appends Sign(secret, id, ts, body) to dst.
func (s *signer) appendSign(dst []byte, id string, ts int64, body []byte) []byte {
	st := s.pool.Get().(*signState)
	dst = st.append(dst, id, ts, body)
	s.pool.Put(st)
	return dst
}

// append appends the signature to dst; st.h is freshly keyed or Reset.
func (st *signState) append(dst []byte, id string, ts int64, body []byte) []byte {
	st.h.Reset()
	b := append(st.buf[:0], id...)
	b = append(b, '.')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, '.')
	st.h.Write(b)
	st.h.Write(body)
	b = st.h.Sum(b[:0])
	dst = append(dst, "v1,"...)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	st.buf = b[:0]
	return dst
}
