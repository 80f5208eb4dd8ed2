// Package simapi is a simulated Plugchoice exports API: an http.Handler that serves
// GET /exports like the real API (pagination, filters, links, meta, bearer token,
// per-minute rate limit with X-RateLimit headers and 429), over an in-memory list of
// exports that move through their statuses. It is deterministic given a seed (and the
// order of calls), thread-safe, and has switches to inject faults for tests.
//
// Mount it anywhere: it answers every path that ends in /exports, so both
// httptest.NewServer(sim) with base URL srv.URL and a base URL of srv.URL+"/api/v3"
// work.
package simapi

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// Defaults of Options.
const (
	DefaultRateLimit = 500
	DefaultPerPage   = 25
	MaxPerPage       = 100
)

// Options configure an API. Zero values take the defaults.
type Options struct {
	// Token is the bearer token requests must carry; empty accepts any request.
	Token string
	// Seed makes uuids, types, sizes and Step's choices reproducible.
	Seed int64
	// RateLimit is the number of requests per minute (X-RateLimit-Limit); 0 means 500,
	// negative disables rate limiting (and its headers).
	RateLimit int
	// PerPage is the default page size; 0 means 25. A request's per_page overrides it,
	// capped at 100.
	PerPage int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Order is the order in which the list is served.
type Order int

const (
	// OrderNewestFirst serves exports newest-first by requested_at (the default).
	OrderNewestFirst Order = iota
	// OrderShuffled serves them in an order that is stable while nothing changes but
	// not sorted: it breaks the newest-first assumption.
	OrderShuffled
)

// Transition is one status change made to an export: creation has From "", removal
// has To "".
type Transition struct {
	UUID, From, To string
	At             time.Time
}

// Fault is applied to one request (or Count consecutive requests), in the order
// injected, before authentication and rate limiting:
//   - Delay: wait that long first (ends early when the client gives up); alone, the
//     request is then served normally;
//   - Garbage: answer Status (default 200) with Body (default an HTML error page):
//     not JSON;
//   - Truncate: serve the normal answer (status Status, default as normal) with only
//     the first half of its body;
//   - Status (without Garbage or Truncate): answer that status with Body (default
//     {"message": "<status text>"}) and a Retry-After header when RetryAfter is set;
//   - Body alone: answer 200 with Body.
type Fault struct {
	Status     int
	Body       string
	RetryAfter string
	Truncate   bool
	Garbage    bool
	Delay      time.Duration
	Count      int // requests this fault applies to; 0 means 1
}

// Export types and subjects the simulation draws from.
var (
	exportTypes   = []string{"sessions", "transactions", "charge_points", "meter values", "invoices/monthly"}
	siteLabels    = []string{"Site A", "Site B", "Site C", "Site D", "Site E"}
	errorMessages = []string{
		"Export failed: the query timed out after 300 seconds.",
		"Export failed: too many rows (limit 1,000,000). Narrow the date range.",
		"Export failed: storage unavailable, please try again.",
	}
)

const downloadHost = "https://files.plugchoice.test"

type rec struct {
	exp plugchoice.Export // Raw is nil; DownloadURL is the unsigned URL
	key int64             // requested_at, unix microseconds: the sort key
	seq uint64            // creation order: breaks ties
}

func less(a, b *rec) bool { return a.key < b.key || (a.key == b.key && a.seq < b.seq) }

type view struct {
	version uint64
	recs    []*rec // served from the end: recs[len-1] is the first item
}

// API is the simulated API. Create it with New.
type API struct {
	now       func() time.Time
	perPage   int
	rateLimit int
	signKey   []byte

	mu          sync.Mutex
	token       string
	rng         *rand.Rand
	all         []*rec // ascending by (key, seq)
	byUUID      map[string]*rec
	byStatus    map[string][]*rec // ascending by (key, seq)
	version     uint64
	views       map[string]*view
	transitions []Transition
	lastKey     int64
	seq         uint64
	requests    int
	faults      []Fault
	order       Order
	shiftOn     int
	onRequest   func(*http.Request)
	downAll     int
	winStart    time.Time
	winHits     int
	signSeq     uint64
}

// New returns an empty API.
func New(opts Options) *API {
	a := &API{
		now:       opts.Now,
		perPage:   opts.PerPage,
		rateLimit: opts.RateLimit,
		token:     opts.Token,
		rng:       rand.New(rand.NewPCG(uint64(opts.Seed), 0x9e3779b97f4a7c15)),
		byUUID:    make(map[string]*rec),
		byStatus:  make(map[string][]*rec),
		views:     make(map[string]*view),
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.perPage <= 0 {
		a.perPage = DefaultPerPage
	}
	a.perPage = min(a.perPage, MaxPerPage)
	if a.rateLimit == 0 {
		a.rateLimit = DefaultRateLimit
	}
	k := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("simapi-sign"), uint64(opts.Seed)))
	a.signKey = k[:]
	return a
}

// --- state -------------------------------------------------------------------------

const tsLayout = "2006-01-02T15:04:05.000000Z"

func formatTS(micros int64) string { return time.UnixMicro(micros).UTC().Format(tsLayout) }

// nextKey returns a requested_at later than every one given so far.
func (a *API) nextKey() int64 {
	k := a.now().UnixMicro()
	if k <= a.lastKey {
		k = a.lastKey + 1
	}
	a.lastKey = k
	return k
}

func (a *API) newUUID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.rng.Uint64())
	binary.BigEndian.PutUint64(b[8:], a.rng.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func insertSorted(s []*rec, r *rec) []*rec {
	i, _ := slices.BinarySearchFunc(s, r, cmpRec)
	return slices.Insert(s, i, r)
}

func removeSorted(s []*rec, r *rec) []*rec {
	i, found := slices.BinarySearchFunc(s, r, cmpRec)
	if !found {
		return s
	}
	return slices.Delete(s, i, i+1)
}

func cmpRec(a, b *rec) int {
	switch {
	case less(a, b):
		return -1
	case less(b, a):
		return 1
	}
	return 0
}

func (a *API) record(uuid, from, to string) {
	a.transitions = append(a.transitions, Transition{UUID: uuid, From: from, To: to, At: a.now()})
}

// insert adds r to the indexes; the caller holds mu.
func (a *API) insert(r *rec) {
	a.seq++
	r.seq = a.seq
	a.all = insertSorted(a.all, r)
	a.byUUID[r.exp.UUID] = r
	a.byStatus[r.exp.Status] = insertSorted(a.byStatus[r.exp.Status], r)
	a.version++
	a.record(r.exp.UUID, "", r.exp.Status)
}

// remove drops r from the indexes; the caller holds mu.
func (a *API) remove(r *rec) {
	a.all = removeSorted(a.all, r)
	delete(a.byUUID, r.exp.UUID)
	a.byStatus[r.exp.Status] = removeSorted(a.byStatus[r.exp.Status], r)
	a.version++
}

// Add inserts e (or replaces the export with its uuid). A missing uuid is generated, a
// missing status is pending, and a missing or unreadable requested_at is set to now.
// The download_url given is signed on every request like a generated one.
func (a *API) Add(e plugchoice.Export) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.add(e)
}

func (a *API) add(e plugchoice.Export) *rec {
	e = clone(e)
	if e.UUID == "" {
		e.UUID = a.newUUID()
	}
	if e.Status == "" {
		e.Status = plugchoice.StatusPending
	}
	if old, ok := a.byUUID[e.UUID]; ok {
		a.remove(old)
		a.record(old.exp.UUID, old.exp.Status, "")
	}
	r := &rec{exp: e}
	if t, err := time.Parse(time.RFC3339Nano, e.RequestedAt); err == nil {
		r.key = t.UnixMicro()
		a.lastKey = max(a.lastKey, r.key)
	} else {
		r.key = a.nextKey()
		r.exp.RequestedAt = formatTS(r.key)
	}
	a.insert(r)
	return r
}

// AddN creates n exports with the given status (fields filled as SetStatus would),
// of random types and subjects, each requested after the previous one. It returns
// their uuids in creation order: the last is the newest.
func (a *API) AddN(n int, status string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	uuids := make([]string, 0, n)
	for range n {
		r := a.add(a.generate(status))
		uuids = append(uuids, r.exp.UUID)
	}
	return uuids
}

// generate returns a new export with status, requested now; the caller holds mu.
func (a *API) generate(status string) plugchoice.Export {
	if status == "" {
		status = plugchoice.StatusPending
	}
	key := a.nextKey()
	e := plugchoice.Export{
		UUID:        a.newUUID(),
		Type:        exportTypes[a.rng.IntN(len(exportTypes))],
		Status:      status,
		RequestedAt: formatTS(key),
	}
	if a.rng.IntN(10) > 0 { // 1 in 10 has no subject
		i := a.rng.IntN(len(siteLabels))
		e.Subject = &plugchoice.Subject{Type: "site", ID: int64(i + 1), Label: siteLabels[i]}
	}
	a.fill(&e, key)
	return e
}

// fill sets the fields that go with e's status; the caller holds mu.
func (a *API) fill(e *plugchoice.Export, reqKey int64) {
	at := a.now().UnixMicro()
	if at <= reqKey {
		at = reqKey + int64(time.Second/time.Microsecond)
	}
	switch e.Status {
	case plugchoice.StatusReady:
		ext := "csv"
		if strings.HasPrefix(e.Type, "invoices") {
			ext = "pdf"
		}
		name := fmt.Sprintf("%s-%s.%s", slug(e.Type), time.UnixMicro(at).UTC().Format("2006-01-02-150405"), ext)
		size := 1024 + a.rng.Int64N(50<<20)
		rows := 1 + a.rng.Int64N(500_000)
		ts := formatTS(at)
		dl := downloadHost + "/exports/" + e.UUID + "/" + name
		e.Filename, e.FileSize, e.RowCount, e.CompletedAt, e.DownloadURL = &name, &size, &rows, &ts, &dl
		e.ErrorMessage, e.FailedAt = nil, nil
	case plugchoice.StatusFailed:
		msg := errorMessages[a.rng.IntN(len(errorMessages))]
		ts := formatTS(at)
		e.ErrorMessage, e.FailedAt = &msg, &ts
		e.Filename, e.FileSize, e.RowCount, e.CompletedAt, e.DownloadURL = nil, nil, nil, nil, nil
	case plugchoice.StatusPending, plugchoice.StatusProcessing:
		e.Filename, e.FileSize, e.RowCount, e.CompletedAt, e.DownloadURL = nil, nil, nil, nil, nil
		e.ErrorMessage, e.FailedAt = nil, nil
	case plugchoice.StatusCancelled:
		e.DownloadURL = nil
	}
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

// SetStatus moves the export to status and fills the fields that go with it:
// completed_at, filename, file_size, row_count and download_url for ready; failed_at
// and error_message for failed. It reports whether the uuid exists. Setting the
// current status changes nothing.
func (a *API) SetStatus(uuid, status string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.byUUID[uuid]
	if !ok {
		return false
	}
	a.setStatus(r, status)
	return true
}

func (a *API) setStatus(r *rec, status string) {
	from := r.exp.Status
	if from == status {
		return
	}
	a.byStatus[from] = removeSorted(a.byStatus[from], r)
	r.exp.Status = status
	a.fill(&r.exp, r.key)
	a.byStatus[status] = insertSorted(a.byStatus[status], r)
	a.version++
	a.record(r.exp.UUID, from, status)
}

// Remove deletes the export (recorded as a transition to ""). It reports whether the
// uuid existed.
func (a *API) Remove(uuid string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.byUUID[uuid]
	if !ok {
		return false
	}
	a.remove(r)
	a.record(uuid, r.exp.Status, "")
	return true
}

// Get returns a copy of the export as stored (download_url unsigned).
func (a *API) Get(uuid string) (plugchoice.Export, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.byUUID[uuid]
	if !ok {
		return plugchoice.Export{}, false
	}
	return clone(r.exp), true
}

// Snapshot returns a copy of every export, newest-first (download_url unsigned).
func (a *API) Snapshot() []plugchoice.Export {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]plugchoice.Export, len(a.all))
	for i, r := range a.all {
		out[len(a.all)-1-i] = clone(r.exp)
	}
	return out
}

// clone copies e deeply, so neither the caller nor the API sees the other's changes.
func clone(e plugchoice.Export) plugchoice.Export {
	e.Filename = clonePtr(e.Filename)
	e.FileSize = clonePtr(e.FileSize)
	e.RowCount = clonePtr(e.RowCount)
	e.ErrorMessage = clonePtr(e.ErrorMessage)
	e.CompletedAt = clonePtr(e.CompletedAt)
	e.FailedAt = clonePtr(e.FailedAt)
	e.Subject = clonePtr(e.Subject)
	e.DownloadURL = clonePtr(e.DownloadURL)
	e.Raw = nil
	return e
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Len returns the number of exports.
func (a *API) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.all)
}

// Transitions returns every status change made so far, in order.
func (a *API) Transitions() []Transition {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.transitions)
}

// Step is one step of life: each pending export becomes processing (1 in 2) or is
// cancelled (1 in 20); each export that was processing finishes (2 in 5), failing 1 time
// in 7; and 3 times in 10 a new pending export appears.
func (a *API) Step() {
	a.mu.Lock()
	defer a.mu.Unlock()
	pending := slices.Clone(a.byStatus[plugchoice.StatusPending])
	processing := slices.Clone(a.byStatus[plugchoice.StatusProcessing])
	for _, r := range pending {
		switch x := a.rng.Float64(); {
		case x < 0.05:
			a.setStatus(r, plugchoice.StatusCancelled)
		case x < 0.55:
			a.setStatus(r, plugchoice.StatusProcessing)
		}
	}
	for _, r := range processing {
		if a.rng.Float64() < 0.4 {
			if a.rng.IntN(7) == 0 {
				a.setStatus(r, plugchoice.StatusFailed)
			} else {
				a.setStatus(r, plugchoice.StatusReady)
			}
		}
	}
	if a.rng.Float64() < 0.3 {
		a.add(a.generate(plugchoice.StatusPending))
	}
}

// Run calls Step every interval (default 1s) until ctx is done. It blocks.
func (a *API) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Step()
		}
	}
}

// --- switches ----------------------------------------------------------------------

// InjectFaults queues faults for the next requests, in order.
func (a *API) InjectFaults(f ...Fault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, x := range f {
		if x.Count <= 0 {
			x.Count = 1
		}
		a.faults = append(a.faults, x)
	}
}

// SetOrder sets the order in which the list is served.
func (a *API) SetOrder(o Order) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.order = o
	a.views = make(map[string]*view)
}

// SetShiftOnPage makes every request for page n insert a new pending export at the
// head of the list right after the page is served, so items shift between pages of a
// listing; 0 turns it off.
func (a *API) SetShiftOnPage(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.shiftOn = n
}

// SetOnRequest sets a hook called at the start of every request, before anything else
// (faults included); it may call the API's methods. nil removes it.
func (a *API) SetOnRequest(fn func(r *http.Request)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onRequest = fn
}

// Requests returns the number of requests received.
func (a *API) Requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

// SetToken changes the accepted token (a rotation or a revocation); empty accepts any.
func (a *API) SetToken(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = token
}

// SetDownAll makes every request answer status (with a JSON message) until called
// with 0.
func (a *API) SetDownAll(status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.downAll = status
}
