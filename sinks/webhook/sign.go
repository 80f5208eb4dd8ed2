package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// Sign returns the Standard Webhooks signature of one delivery: "v1," followed by the
// standard base64 of HMAC-SHA256(secret, id + "." + ts + "." + body), where ts is the
// unix time in seconds sent in webhook-timestamp. Several secrets give several such
// values, separated by spaces, in the webhook-signature header.
func Sign(secret []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
