package template

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/Masterminds/sprig/v3"
)

// Functions sprig's hermetic map still holds although their result depends on the clock,
// the random source or the machine's time zone. They are removed so that a render is a
// pure function of the event: a retry or replay sends the same bytes as the first attempt.
var notDeterministic = []string{
	"ago", "durationRound", // time.Since
	"randInt", "shuffle", // math/rand
	"bcrypt", "htpasswd", "encryptAES", // random salt or IV
	"genPrivateKey", "genCA", "genCAWithKey", "genSelfSignedCert", "genSelfSignedCertWithKey",
	"genSignedCert", "genSignedCertWithKey",
}

// Names of the helpers the rewrite of a parse tree inserts (see rewrite.go). They are
// valid identifiers, so a user may call them too; that is harmless.
const (
	fnGet  = "_get"
	fnShow = "_show"
)

// funcs is built once: sprig's map is large and every template shares it.
var funcs = buildFuncs()

func buildFuncs() texttemplate.FuncMap {
	m := sprig.HermeticTxtFuncMap()
	for _, name := range notDeterministic {
		delete(m, name)
	}
	// sprig parses in time.Local: the machine's zone would change the result.
	m["toDate"] = func(layout, s string) time.Time { t, _ := time.ParseInLocation(layout, s, time.UTC); return t }
	m["mustToDate"] = func(layout, s string) (time.Time, error) { return time.ParseInLocation(layout, s, time.UTC) }
	// sprig's toJson swallows errors and escapes < > & as \u003c...: ours reports the
	// error and writes the characters as they are (in Slack mode they are already &lt;).
	m["toJson"] = toJSON
	m["mustToJson"] = toJSON
	m["humanBytes"] = HumanBytes
	m["humanDuration"] = humanDuration
	m[fnGet] = get
	m[fnShow] = show
	return m
}

// get looks keys up from root, one level per key: the rewrite turns every field chain
// (.Export.subject.label) into a call of get, so that a missing key, a JSON null or a
// key on something that is not an object renders empty instead of failing. On a Go
// value (a time.Time from toDate) a key is a method without arguments or a field, as
// text/template would read it.
func get(root any, keys ...string) (any, error) {
	v := root
	for _, k := range keys {
		if m, ok := v.(map[string]any); ok {
			v = m[k]
		} else {
			var err error
			if v, err = member(v, k); err != nil {
				return nil, err
			}
		}
		if v == nil {
			return "", nil
		}
	}
	return v, nil
}

var errorType = reflect.TypeFor[error]()

// member is .k of a Go value: a method without arguments, an exported struct field or
// an entry of a map with string keys; nil when it has none.
func member(v any, k string) (any, error) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil, nil
	}
	if m := rv.MethodByName(k); m.IsValid() {
		mt := m.Type()
		if mt.NumIn() != 0 || mt.NumOut() == 0 || mt.NumOut() > 2 || (mt.NumOut() == 2 && mt.Out(1) != errorType) {
			return nil, fmt.Errorf("%s of %T takes arguments or gives more than a value", k, v)
		}
		out := m.Call(nil)
		if len(out) == 2 && !out[1].IsNil() {
			return nil, out[1].Interface().(error)
		}
		return out[0].Interface(), nil
	}
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return nil, nil
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.Struct:
		if f, ok := rv.Type().FieldByName(k); ok && f.IsExported() {
			return rv.FieldByIndex(f.Index).Interface(), nil
		}
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			if e := rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key())); e.IsValid() {
				return e.Interface(), nil
			}
		}
	}
	return nil, nil
}

// show is appended to every printing action: a nil (an `index` of a missing key, a null
// seen through range) prints as nothing rather than "<no value>".
func show(v any) any {
	if v == nil {
		return ""
	}
	return v
}

func toJSON(v any) (string, error) {
	if b, ok := appendJSON(make([]byte, 0, 512), v); ok {
		return string(b), nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("toJson: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// number reads v as a float: Go numbers, json.Number and numeric strings. ok is false
// for anything else, the empty string included.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		return f, err == nil
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case time.Duration:
		return n.Seconds(), true
	}
	return 0, false
}

var byteUnits = [...]string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}

// HumanBytes shows a byte count in SI units the way the Slack message does
// ("3.2 MB", "12 MB", "512 B"; the same figures as go-humanize's Bytes). It takes a
// number, a json.Number or a numeric string; anything else (a null, a missing key, a
// negative count) shows as "".
func HumanBytes(v any) string {
	f, ok := number(v)
	if !ok || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return ""
	}
	if f < 10 {
		return fmt.Sprintf("%d B", int64(f))
	}
	e := math.Floor(math.Log(f) / math.Log(1000))
	if int(e) >= len(byteUnits) {
		e = float64(len(byteUnits) - 1)
	}
	val := math.Floor(f/math.Pow(1000, e)*10+0.5) / 10
	format := "%.0f %s"
	if val < 10 {
		format = "%.1f %s"
	}
	return fmt.Sprintf(format, val, byteUnits[int(e)])
}

// HumanDuration shows d the way people read it: "42s", "4m 12s", "2h 3m", "1d 2h".
func HumanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm %ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh %dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd %dh", s/86400, s%86400/3600)
	}
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"}

func parseTime(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, !t.IsZero()
	case string:
		for _, l := range timeLayouts {
			if p, err := time.Parse(l, t); err == nil {
				return p, true
			}
		}
	}
	return time.Time{}, false
}

// humanDuration is the template function. With one argument: seconds (a number or a
// numeric string), a time.Duration or a Go duration string ("90s"). With two: the time
// from the first timestamp to the second (`humanDuration .Export.requested_at
// .Export.completed_at`). Anything it cannot read (a null, a missing key) shows as "".
func humanDuration(args ...any) (string, error) {
	switch len(args) {
	case 1:
		switch v := args[0].(type) {
		case time.Duration:
			return HumanDuration(v), nil
		case string:
			if d, err := time.ParseDuration(strings.TrimSpace(v)); err == nil {
				return HumanDuration(d), nil
			}
		}
		f, ok := number(args[0])
		if !ok || math.IsNaN(f) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
			return "", nil
		}
		return HumanDuration(time.Duration(f * float64(time.Second))), nil
	case 2:
		from, ok1 := parseTime(args[0])
		to, ok2 := parseTime(args[1])
		if !ok1 || !ok2 {
			return "", nil
		}
		return HumanDuration(to.Sub(from)), nil
	default:
		return "", fmt.Errorf("humanDuration: %d arguments (expected seconds, a duration, or two timestamps)", len(args))
	}
}
