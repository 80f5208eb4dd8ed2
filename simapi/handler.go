package simapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// wireExport is an export as served: the plain fields, without Export's raw
// passthrough.
type wireExport plugchoice.Export

type wireLinks struct {
	First *string `json:"first"`
	Last  *string `json:"last"`
	Prev  *string `json:"prev"`
	Next  *string `json:"next"`
}

type wireMeta struct {
	CurrentPage int    `json:"current_page"`
	From        *int   `json:"from"`
	Path        string `json:"path"`
	PerPage     int    `json:"per_page"`
	To          *int   `json:"to"`
}

type wirePage struct {
	Data  []wireExport `json:"data"`
	Links wireLinks    `json:"links"`
	Meta  wireMeta     `json:"meta"`
}

const garbageBody = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"

var knownStatuses = []string{
	plugchoice.StatusPending, plugchoice.StatusProcessing, plugchoice.StatusReady,
	plugchoice.StatusFailed, plugchoice.StatusCancelled,
}

// ServeHTTP serves GET .../exports.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests++
	hook := a.onRequest
	a.mu.Unlock()
	if hook != nil {
		hook(r)
	}

	f, hasFault := a.nextFault()
	if hasFault && f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	var truncate bool
	if hasFault {
		switch {
		case f.Garbage:
			body := f.Body
			if body == "" {
				body = garbageBody
			}
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(cmp(f.Status, http.StatusOK))
			_, _ = w.Write([]byte(body))
			return
		case f.Truncate:
			truncate = true
		case f.Status != 0:
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			if f.Body != "" {
				writeRaw(w, f.Status, []byte(f.Body))
			} else {
				writeMessage(w, f.Status, http.StatusText(f.Status))
			}
			return
		case f.Body != "":
			writeRaw(w, http.StatusOK, []byte(f.Body))
			return
		}
	}

	status, body, hdr := a.answer(r)
	for k, v := range hdr {
		w.Header()[k] = v
	}
	if truncate {
		body = body[:len(body)/2]
		status = cmp(f.Status, status)
	}
	writeRaw(w, status, body)
}

func cmp(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func messageBody(msg string) []byte {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	return b
}

func writeMessage(w http.ResponseWriter, status int, msg string) {
	writeRaw(w, status, messageBody(msg))
}

func (a *API) nextFault() (Fault, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.faults) == 0 {
		return Fault{}, false
	}
	f := a.faults[0]
	a.faults[0].Count--
	if a.faults[0].Count <= 0 {
		a.faults = a.faults[1:]
	}
	return f, true
}

// answer computes the normal answer to r.
func (a *API) answer(r *http.Request) (int, []byte, http.Header) {
	hdr := http.Header{}
	msg := func(code int, m string) (int, []byte, http.Header) { return code, messageBody(m), hdr }

	a.mu.Lock()
	down, token := a.downAll, a.token
	a.mu.Unlock()
	if down != 0 {
		return msg(down, http.StatusText(down))
	}
	if r.Method != http.MethodGet {
		hdr.Set("Allow", http.MethodGet)
		return msg(http.StatusMethodNotAllowed, fmt.Sprintf("The %s method is not supported for route exports. Supported methods: GET.", r.Method))
	}
	if !strings.HasSuffix(strings.TrimRight(r.URL.Path, "/"), "/exports") {
		return msg(http.StatusNotFound, "Not Found")
	}
	if token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			return msg(http.StatusUnauthorized, "Unauthenticated.")
		}
	}
	if code, ok := a.throttle(hdr); !ok {
		return msg(code, "Too Many Attempts.")
	}
	q, errs := parseQuery(r.URL.Query(), a.perPage)
	if len(errs) > 0 {
		first := errs[slices.Sorted(maps.Keys(errs))[0]][0]
		if len(errs) > 1 {
			first += fmt.Sprintf(" (and %d more errors)", len(errs)-1)
		}
		b, _ := json.Marshal(struct {
			Message string              `json:"message"`
			Errors  map[string][]string `json:"errors"`
		}{first, errs})
		return http.StatusUnprocessableEntity, b, hdr
	}
	body := a.page(r, q)
	hdr.Set("Cache-Control", "no-cache, private")
	return http.StatusOK, body, hdr
}

// throttle counts the request in the current one-minute window and sets the rate-limit
// headers. ok is false (code 429) when the window's limit is spent.
func (a *API) throttle(hdr http.Header) (int, bool) {
	if a.rateLimit < 0 {
		return 0, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.winStart.IsZero() || !now.Before(a.winStart.Add(time.Minute)) {
		a.winStart, a.winHits = now, 0
	}
	hdr.Set("X-RateLimit-Limit", strconv.Itoa(a.rateLimit))
	if a.winHits >= a.rateLimit {
		wait := a.winStart.Add(time.Minute).Sub(now)
		secs := int(math.Ceil(wait.Seconds()))
		hdr.Set("X-RateLimit-Remaining", "0")
		hdr.Set("Retry-After", strconv.Itoa(max(secs, 1)))
		hdr.Set("X-RateLimit-Reset", strconv.FormatInt(a.winStart.Add(time.Minute).Unix(), 10))
		return http.StatusTooManyRequests, false
	}
	a.winHits++
	hdr.Set("X-RateLimit-Remaining", strconv.Itoa(a.rateLimit-a.winHits))
	return 0, true
}

// query is a parsed request.
type query struct {
	statuses    []string // sorted, unique
	types       []string // sorted, unique
	subjectType string
	subjectID   int64
	hasSubject  bool
	perPage     int
	page        int
}

func (q query) key() string {
	return fmt.Sprintf("s=%q t=%q st=%q sid=%v/%d", q.statuses, q.types, q.subjectType, q.hasSubject, q.subjectID)
}

// parseQuery reads the filters; errors are keyed like Laravel's validation errors.
func parseQuery(v url.Values, defPerPage int) (query, map[string][]string) {
	q := query{perPage: defPerPage, page: 1}
	errs := map[string][]string{}
	list := func(name string) []string {
		out := slices.Clone(v["filter["+name+"][]"])
		for _, x := range v["filter["+name+"]"] { // spatie style: comma-separated
			out = append(out, strings.Split(x, ",")...)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	q.statuses = list("status")
	for i, s := range q.statuses {
		if !slices.Contains(knownStatuses, s) {
			k := fmt.Sprintf("filter.status.%d", i)
			errs[k] = append(errs[k], fmt.Sprintf("The selected %s is invalid.", k))
		}
	}
	q.types = list("type")
	q.subjectType = v.Get("filter[subject_type]")
	if s := v.Get("filter[subject_id]"); s != "" {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs["filter.subject_id"] = []string{"The filter.subject_id field must be an integer."}
		}
		q.subjectID, q.hasSubject = id, true
	}
	if s := v.Get("per_page"); s != "" {
		n, err := strconv.Atoi(s)
		switch {
		case err != nil:
			errs["per_page"] = []string{"The per page field must be an integer."}
		case n < 1:
			errs["per_page"] = []string{"The per page field must be at least 1."}
		default:
			q.perPage = min(n, MaxPerPage)
		}
	}
	if n, err := strconv.Atoi(v.Get("page")); err == nil && n > 1 {
		q.page = n
	}
	return q, errs
}

func (q query) match(e *plugchoice.Export) bool {
	if len(q.types) > 0 {
		if _, ok := slices.BinarySearch(q.types, e.Type); !ok {
			return false
		}
	}
	if q.subjectType != "" && (e.Subject == nil || e.Subject.Type != q.subjectType) {
		return false
	}
	if q.hasSubject && (e.Subject == nil || e.Subject.ID != q.subjectID) {
		return false
	}
	return true
}

// list returns the exports q selects, ascending (served from the end); the caller holds
// mu and must not modify the slice.
func (a *API) list(q query) []*rec {
	simple := len(q.types) == 0 && q.subjectType == "" && !q.hasSubject
	if a.order == OrderNewestFirst && simple {
		switch len(q.statuses) {
		case 0:
			return a.all
		case 1:
			return a.byStatus[q.statuses[0]]
		}
	}
	k := q.key()
	if v, ok := a.views[k]; ok && v.version == a.version {
		return v.recs
	}
	var recs []*rec
	if len(q.statuses) == 0 {
		recs = make([]*rec, 0, len(a.all))
		for _, r := range a.all {
			if q.match(&r.exp) {
				recs = append(recs, r)
			}
		}
	} else {
		for _, s := range q.statuses {
			for _, r := range a.byStatus[s] {
				if q.match(&r.exp) {
					recs = append(recs, r)
				}
			}
		}
		slices.SortFunc(recs, cmpRec)
	}
	if a.order == OrderShuffled {
		rng := rand.New(rand.NewPCG(a.version, uint64(len(recs))))
		rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	}
	if len(a.views) >= 64 {
		clear(a.views)
	}
	a.views[k] = &view{version: a.version, recs: recs}
	return recs
}

// page renders page q.page of q.
func (a *API) page(r *http.Request, q query) []byte {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := r.URL.Path
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil { // the path before any StripPrefix
		path = u.Path
	}
	base := scheme + "://" + r.Host + path
	link := func(n int) *string { s := base + "?page=" + strconv.Itoa(n); return &s }

	a.mu.Lock()
	recs := a.list(q)
	n := len(recs)
	from := n
	if q.page <= n/q.perPage+1 {
		from = (q.page - 1) * q.perPage
	}
	var data []wireExport
	if from < n {
		to := min(from+q.perPage, n)
		data = make([]wireExport, 0, to-from)
		a.signSeq++
		expires := a.now().Add(time.Hour).Unix()
		for i := from; i < to; i++ {
			e := wireExport(recs[n-1-i].exp)
			if e.DownloadURL != nil {
				s := a.sign(*e.DownloadURL, expires)
				e.DownloadURL = &s
			}
			data = append(data, e)
		}
	}
	more := from+len(data) < n && len(data) > 0
	if a.shiftOn > 0 && q.page == a.shiftOn {
		a.add(a.generate(plugchoice.StatusPending))
	}
	a.mu.Unlock()

	p := wirePage{
		Data:  data,
		Links: wireLinks{First: link(1)},
		Meta:  wireMeta{CurrentPage: q.page, Path: base, PerPage: q.perPage},
	}
	if p.Data == nil {
		p.Data = []wireExport{}
	}
	if q.page > 1 {
		p.Links.Prev = link(q.page - 1)
	}
	if more {
		p.Links.Next = link(q.page + 1)
	}
	if len(data) > 0 {
		f, t := from+1, from+len(data)
		p.Meta.From, p.Meta.To = &f, &t
	}
	b, err := json.Marshal(p)
	if err != nil { // cannot happen: plain strings and numbers
		return messageBody("encode page: " + err.Error())
	}
	return b
}

// sign returns u with a fresh ?expires=&signature= query: a different value on every
// request, like a re-signed URL. The caller holds mu.
func (a *API) sign(u string, expires int64) string {
	m := hmac.New(sha256.New, a.signKey)
	m.Write([]byte(u))
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(expires))
	binary.BigEndian.PutUint64(b[8:], a.signSeq)
	m.Write(b[:])
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "expires=" + strconv.FormatInt(expires, 10) + "&signature=" + hex.EncodeToString(m.Sum(nil))
}
