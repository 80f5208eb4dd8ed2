package server

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/store"
)

// StatusStore is what the status page reads from the store; *store.Store implements it.
type StatusStore interface {
	Stats() (store.Stats, error)
	DeadLetters(sink string) ([]store.Record, error)
	RecentEvents(limit int) ([]store.RecentEvent, error)
	SinkHealths() (map[string]store.SinkHealth, error)
	InFlight(limit int) ([]store.InFlightExport, int, error)
}

// StatusSink describes one configured sink for its card. Destination may hold a URL:
// the page strips its secrets, userinfo and query before showing it.
type StatusSink struct {
	Name        string
	Kind        string // "webhook", "slack", "nats", "stdout"
	Destination string
	Filter      string // the event filter, as configured ("*", "export.ready,export.failed")
	// Down, when set, is the sink's own report that its destination is unreachable (a
	// lost NATS connection); empty: up or down follows the last delivery outcomes.
	Down string
}

// SinkDirectory lists the configured sinks (cmd fills it from the bridge's sinks).
type SinkDirectory interface {
	StatusSinks() []StatusSink
}

// Status configures the status page at GET / of the admin endpoint.
type Status struct {
	Version   string
	Started   time.Time
	StoreKind string   // "bbolt"
	StorePath string   // the store file, shown under its kind
	Accounts  []string // account names (and the API they poll)
	Store     StatusStore
	Sinks     SinkDirectory // nil: no sink cards but for sinks the store knows
	Polls     *PollRecorder // nil: no poll table or chart
	// Progress returns the progress line of each full listing in progress (the log's
	// line); nil: none shown.
	Progress func() []string
	// Secrets are scrubbed from everything the page shows (the settings' secrets).
	Secrets []string
	// Refresh is how often the page reloads itself (default 10s).
	Refresh time.Duration
	Now     func() time.Time
}

// Limits of the page's lists.
const (
	statusRecentEvents = 100
	statusInFlight     = 50
	statusDeadLetters  = 200
	sessionCookie      = "exportbridge_admin"
	sessionMaxAge      = 12 * time.Hour
)

//go:embed status.html status.css
var statusFiles embed.FS

var statusTmpl = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"ago":   ago,
	"clock": func(t time.Time) string { return clock(t) },
	"pct":   func(f float64) string { return fmt.Sprintf("%.0f %%", f*100) },
}).ParseFS(statusFiles, "status.html"))

// statusCSP forbids every script and any resource not from the bridge: even a value
// that escaped html/template's escaping could not run.
const statusCSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type statusPage struct {
	a       *admin
	st      Status
	csrfKey []byte
	cop     *http.CrossOriginProtection
}

func newStatusPage(a *admin, st Status) *statusPage {
	if st.Refresh <= 0 {
		st.Refresh = 10 * time.Second
	}
	if st.Now == nil {
		st.Now = time.Now
	}
	if st.StoreKind == "" {
		st.StoreKind = "bbolt"
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &statusPage{a: a, st: st, csrfKey: key, cop: http.NewCrossOriginProtection()}
}

// routes registers the page's assets and forms; GET / itself is served by root.
func (p *statusPage) routes(mux *http.ServeMux) {
	route(mux, "/status.css", http.MethodGet, p.css)
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			p.loginForm(w, r)
		case http.MethodPost:
			p.login(w, r)
		default:
			w.Header().Set("Allow", "GET, POST")
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on /login (expected GET or POST)", r.Method))
		}
	})
	route(mux, "/logout", http.MethodPost, p.logout)
	route(mux, "/status/replay", http.MethodPost, p.mutate("replay"))
	route(mux, "/status/purge", http.MethodPost, p.mutate("purge"))
}

// root serves the page at exactly GET /, and 404 elsewhere.
func (p *statusPage) root(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		notFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on / (expected GET)", r.Method))
		return
	}
	p.page(w, r)
}

func (p *statusPage) css(w http.ResponseWriter, r *http.Request) {
	b, _ := statusFiles.ReadFile("status.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(b)
}

// ---- sessions and CSRF ----

// sessionValue is what the cookie holds once the admin token was given: a hash of the
// token, not the token.
func sessionValue(token string) string {
	sum := sha256.Sum256([]byte("exportbridge status session\x00" + token))
	return hex.EncodeToString(sum[:])
}

func (p *statusPage) session(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || p.a.o.AdminToken == "" {
		return "", false
	}
	want := sessionValue(p.a.o.AdminToken)
	return c.Value, subtle.ConstantTimeCompare([]byte(c.Value), []byte(want)) == 1
}

// csrf is the token the page's forms carry: bound to this process and to the session.
func (p *statusPage) csrf(r *http.Request) string {
	sess, _ := p.session(r)
	m := hmac.New(sha256.New, p.csrfKey)
	m.Write([]byte("csrf\x00" + sess))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkForm refuses a cross-origin POST or one without the page's CSRF token.
func (p *statusPage) checkForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		p.fail(w, r, http.StatusBadRequest, "bad form: "+err.Error())
		return false
	}
	if err := p.cop.Check(r); err != nil {
		p.fail(w, r, http.StatusForbidden, "cross-origin request refused: use the buttons of the status page")
		return false
	}
	got := r.PostForm.Get("csrf")
	if got == "" || !hmac.Equal([]byte(got), []byte(p.csrf(r))) {
		p.fail(w, r, http.StatusForbidden, "missing or stale CSRF token: reload the status page and try again")
		return false
	}
	return true
}

// mayMutate returns 0 when r may replay or purge, else the status code and the reason.
func (p *statusPage) mayMutate(r *http.Request) (int, string) {
	if p.a.tokenSum != nil {
		if _, ok := p.session(r); ok {
			return 0, ""
		}
		if code, _ := p.a.authorize(r); code == 0 { // a Bearer header works too
			return 0, ""
		}
		return http.StatusUnauthorized, "admin token required: sign in with EXPORTBRIDGE_ADMIN_TOKEN first"
	}
	return p.a.authorize(r)
}

// canSignIn reports whether the page should offer the token form.
func (p *statusPage) canSignIn() bool { return p.a.tokenSum != nil }

func (p *statusPage) loginForm(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, "login", nil)
}

func (p *statusPage) login(w http.ResponseWriter, r *http.Request) {
	if !p.checkForm(w, r) {
		return
	}
	if p.a.tokenSum == nil {
		p.fail(w, r, http.StatusBadRequest, "no admin token is configured (EXPORTBRIDGE_ADMIN_TOKEN): there is nothing to sign in to")
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("token")))
	if subtle.ConstantTimeCompare(sum[:], p.a.tokenSum) != 1 {
		p.a.log.Warn("status page sign-in refused", "peer", r.RemoteAddr)
		p.fail(w, r, http.StatusUnauthorized, "wrong admin token (expected the value of EXPORTBRIDGE_ADMIN_TOKEN)")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: sessionValue(p.a.o.AdminToken), Path: "/",
		MaxAge: int(sessionMaxAge.Seconds()), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil,
	})
	p.a.log.Info("status page sign-in", "peer", r.RemoteAddr)
	http.Redirect(w, r, "/?done=signed-in", http.StatusSeeOther)
}

func (p *statusPage) logout(w http.ResponseWriter, r *http.Request) {
	if !p.checkForm(w, r) {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/?done=signed-out", http.StatusSeeOther)
}

// mutate serves the Replay and Purge forms: sink and id name one dead letter, all=1
// takes every dead letter (of sink, when given).
func (p *statusPage) mutate(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !p.checkForm(w, r) {
			return
		}
		if code, msg := p.mayMutate(r); code != 0 {
			p.a.log.Warn("status page "+op+" refused", "peer", r.RemoteAddr, "status", code, "reason", msg)
			p.fail(w, r, code, msg)
			return
		}
		if p.a.o.Admin == nil {
			p.fail(w, r, http.StatusServiceUnavailable, "the admin endpoint has no store")
			return
		}
		sink, id, all := r.PostForm.Get("sink"), strings.TrimSpace(r.PostForm.Get("id")), r.PostForm.Get("all") == "1"
		if id == "" && !all {
			p.fail(w, r, http.StatusBadRequest, "name a dead letter (id) or all=1")
			return
		}
		var ids []string
		if !all {
			ids = []string{id}
		}
		f := p.a.o.Admin.Purge
		if op == "replay" {
			f = p.a.o.Admin.Replay
		}
		n, err := f(sink, ids, all)
		if errors.Is(err, store.ErrNotFound) {
			p.fail(w, r, http.StatusNotFound, p.clean(err.Error()))
			return
		}
		if err != nil {
			p.a.log.Error("status page "+op+" failed", "sink", sink, "all", all, "err", err)
			p.fail(w, r, http.StatusInternalServerError, op+" dead letters: "+p.clean(err.Error()))
			return
		}
		p.a.log.Info("status page dlq "+op, "sink", sink, "ids", len(ids), "all", all, "count", n, "peer", r.RemoteAddr)
		if op == "replay" && n > 0 && p.a.o.OnReplay != nil {
			p.a.o.OnReplay()
		}
		http.Redirect(w, r, "/?done="+op+"&n="+strconv.Itoa(n)+"#dead-letters", http.StatusSeeOther)
	}
}

// ---- rendering ----

// clean scrubs a value shown on the page: secrets, URL userinfo and query (logging's
// redactor), then URL paths (a Slack webhook keeps its secret there).
func (p *statusPage) clean(s string) string {
	return logging.RedactURLHosts(logging.Redact(s, p.st.Secrets))
}

// destination scrubs a sink's destination, keeping the path of a URL but neither its
// userinfo, query nor any secret.
func (p *statusPage) destination(s string) string {
	s = logging.Redact(s, p.st.Secrets)
	s = strings.ReplaceAll(s, "?"+logging.Mask, "")
	s = strings.ReplaceAll(s, "://"+logging.Mask+"@", "://")
	if i := strings.IndexByte(s, '#'); i >= 0 && strings.Contains(s, "://") {
		s = s[:i]
	}
	return s
}

func (p *statusPage) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	p.render(w, r, code, "error", map[string]any{"Code": code, "Status": http.StatusText(code), "Message": msg})
}

type pageData struct {
	Refresh    int
	CSRF       string
	Done       string
	Now        time.Time
	Problems   []string
	Bridge     bridgeView
	Polls      []Poll
	Progress   []string
	Chart      *chart
	InFlight   []inFlightView
	InFlightN  int
	Events     []eventView
	Sinks      []sinkView
	Dead       []deadView
	CanMutate  bool
	WhyNot     string
	SignIn     bool
	SignedIn   bool
	Page       string
	Data       any
	HasPollLog bool
	// PollAccounts: the polls name their account (an accounts: list), so the table has
	// a column for it.
	PollAccounts bool
}

type bridgeView struct {
	Version, Uptime, Store, StorePath, Accounts, Ready, ReadyDetail, LastPoll string
	Exports                                                                   int
	IsReady                                                                   bool
}

type inFlightView struct {
	UUID, Type, Label, Status, Age string
}

type eventView struct {
	At                                   time.Time
	ID, Type, Subject, Label, File, Kind string
	Sinks                                []outcomeView
}

type outcomeView struct {
	Sink, State, Detail, Error string
}

type sinkView struct {
	Name, Kind, Destination, Filter, State, LastSuccess, LastError, LastErrorAt string
	Queue, Dead                                                                 int
	Configured                                                                  bool
}

type deadView struct {
	Sink, ID, Type, Subject, Label, Error, DeadAt string
	Attempts                                      int
}

func (p *statusPage) page(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, "status", nil)
}

func (p *statusPage) render(w http.ResponseWriter, r *http.Request, code int, page string, data any) {
	now := p.st.Now()
	d := &pageData{Refresh: int(p.st.Refresh.Seconds()), CSRF: p.csrf(r), Now: now, Page: page, Data: data}
	_, d.SignedIn = p.session(r)
	d.SignIn = p.canSignIn() && !d.SignedIn
	if c, msg := p.mayMutate(r); c == 0 {
		d.CanMutate = true
	} else {
		d.WhyNot = msg
	}
	if page == "status" {
		d.Done = doneMessage(r.URL.Query())
		p.fill(d, now)
	}
	var buf bytes.Buffer
	if err := statusTmpl.Execute(&buf, d); err != nil {
		p.a.log.Error("render status page", "err", err)
		http.Error(w, "render status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func doneMessage(q url.Values) string {
	n, _ := strconv.Atoi(q.Get("n"))
	plural := func(n int) string {
		if n == 1 {
			return "1 dead letter"
		}
		return strconv.Itoa(n) + " dead letters"
	}
	switch q.Get("done") {
	case "replay":
		return "Replayed " + plural(n) + ": back in the outbox, delivery follows."
	case "purge":
		return "Purged " + plural(n) + "."
	case "signed-in":
		return "Signed in: Replay and Purge are enabled."
	case "signed-out":
		return "Signed out."
	}
	return ""
}

// fill reads the bridge's state into d; a part that cannot be read is reported on the
// page, the rest still shown.
func (p *statusPage) fill(d *pageData, now time.Time) {
	st := p.st
	problem := func(what string, err error) {
		p.a.log.Error("status page: "+what, "err", err)
		d.Problems = append(d.Problems, what+": "+p.clean(err.Error()))
	}
	d.Bridge = bridgeView{Version: st.Version, Store: st.StoreKind, StorePath: st.StorePath,
		Accounts: p.destination(strings.Join(st.Accounts, ", "))}
	if !st.Started.IsZero() {
		d.Bridge.Uptime = humanDuration(now.Sub(st.Started))
	}
	if h := p.a.o.Health; h != nil {
		ok, reason := h.Ready()
		d.Bridge.IsReady, d.Bridge.Ready, d.Bridge.ReadyDetail = ok, reason.Reason, p.clean(reason.Detail)
	}
	if st.Store == nil {
		d.Problems = append(d.Problems, "the status page has no store")
		return
	}
	stats, err := st.Store.Stats()
	if err != nil {
		problem("read store statistics", err)
	} else {
		d.Bridge.Store = fmt.Sprintf("%s, %s", st.StoreKind, humanize.IBytes(uint64(max(stats.FileBytes, 0))))
		d.Bridge.Exports = stats.Exports
		if !stats.LastPoll.At.IsZero() {
			d.Bridge.LastPoll = ago(stats.LastPoll.At, now)
		}
	}
	if st.Progress != nil {
		for _, l := range st.Progress() {
			d.Progress = append(d.Progress, p.clean(l))
		}
	}
	if st.Polls != nil {
		d.HasPollLog = true
		d.Polls = st.Polls.Polls()
		for i := range d.Polls {
			d.Polls[i].Error = p.clean(d.Polls[i].Error)
			d.PollAccounts = d.PollAccounts || d.Polls[i].Account != ""
		}
		d.Chart = newChart(st.Polls.Minutes(now), now)
	}
	recent, err := st.Store.RecentEvents(statusRecentEvents)
	if err != nil {
		problem("read recent events", err)
	}
	bySubject := map[string]*store.RecentEvent{}
	byID := map[string]*store.RecentEvent{}
	for i := range recent {
		re := &recent[i]
		if _, ok := bySubject[re.Subject]; !ok && re.Subject != "" {
			bySubject[re.Subject] = re
		}
		byID[re.ID] = re
		d.Events = append(d.Events, p.eventView(re, now))
	}
	inflight, n, err := st.Store.InFlight(statusInFlight)
	if err != nil {
		problem("read exports in flight", err)
	}
	d.InFlightN = n
	for _, e := range inflight {
		v := inFlightView{UUID: e.UUID, Status: e.Status, Age: humanDuration(now.Sub(e.RequestedAt))}
		if re := bySubject[e.UUID]; re != nil {
			v.Type, v.Label = re.ExportType, re.Label
		}
		d.InFlight = append(d.InFlight, v)
	}
	dls, err := st.Store.DeadLetters("")
	if err != nil {
		problem("read dead letters", err)
	}
	for i, r := range dls {
		if i >= statusDeadLetters {
			break
		}
		v := deadView{Sink: r.Sink, ID: r.Event.ID, Type: r.Event.Type, Subject: r.Event.Subject,
			Attempts: r.Attempts, Error: p.clean(errorLine(r.LastError, r.LastStatus)), DeadAt: ago(r.DeadAt, now)}
		if re := byID[r.Event.ID]; re != nil {
			v.Label = labelOf(re)
		}
		d.Dead = append(d.Dead, v)
	}
	healths, err := st.Store.SinkHealths()
	if err != nil {
		problem("read sink health", err)
	}
	d.Sinks = p.sinkViews(stats, healths, now)
}

func labelOf(re *store.RecentEvent) string {
	switch {
	case re.Label != "" && re.Filename != "":
		return re.Label + " · " + re.Filename
	case re.Filename != "":
		return re.Filename
	}
	return re.Label
}

func errorLine(msg string, status int) string {
	if status != 0 && !strings.Contains(msg, strconv.Itoa(status)) {
		return fmt.Sprintf("HTTP %d: %s", status, msg)
	}
	return msg
}

func (p *statusPage) eventView(re *store.RecentEvent, now time.Time) eventView {
	v := eventView{At: re.DetectedAt, ID: re.ID, Type: re.Type, Subject: re.Subject, Kind: re.ExportType,
		Label: re.Label, File: re.Filename}
	for _, o := range re.Sinks {
		ov := outcomeView{Sink: o.Sink, State: o.State}
		attempts := func() string {
			if o.Attempts == 1 {
				return "1 attempt"
			}
			return strconv.Itoa(o.Attempts) + " attempts"
		}
		switch o.State {
		case store.StateDelivered:
			if !o.At.IsZero() { // the JetStream store's ring knows no delivery time
				ov.Detail = clock(o.At) + ", " + attempts()
			}
		case store.StateWaiting:
			ov.Detail = "next " + clock(o.NextAttempt) + ", " + attempts()
			ov.Error = p.clean(errorLine(o.LastError, o.LastStatus))
		case store.StateDead:
			ov.Detail = clock(o.At) + ", " + attempts()
			ov.Error = p.clean(errorLine(o.LastError, o.LastStatus))
		case store.StatePurged:
			ov.Detail = "given up"
		}
		v.Sinks = append(v.Sinks, ov)
	}
	return v
}

func (p *statusPage) sinkViews(stats store.Stats, healths map[string]store.SinkHealth, now time.Time) []sinkView {
	var out []sinkView
	seen := map[string]bool{}
	add := func(s StatusSink, configured bool) {
		seen[s.Name] = true
		v := sinkView{Name: s.Name, Kind: s.Kind, Destination: p.destination(s.Destination), Filter: s.Filter,
			Queue: stats.Outbox[s.Name], Dead: stats.DeadLetters[s.Name], Configured: configured}
		h := healths[s.Name]
		switch {
		case !configured:
			v.State = "not configured"
		case s.Down != "":
			v.State = "down"
			if h.LastError == "" || h.LastErrorAt.Before(h.LastSuccess) {
				h.LastError, h.LastErrorAt = s.Down, now
			}
		case h.LastSuccess.IsZero() && h.LastErrorAt.IsZero():
			v.State = "no deliveries yet"
		case h.LastErrorAt.After(h.LastSuccess):
			v.State = "down"
		default:
			v.State = "up"
		}
		if !h.LastSuccess.IsZero() {
			v.LastSuccess = ago(h.LastSuccess, now)
		}
		if h.LastError != "" {
			v.LastError, v.LastErrorAt = p.clean(h.LastError), ago(h.LastErrorAt, now)
		}
		out = append(out, v)
	}
	if p.st.Sinks != nil {
		for _, s := range p.st.Sinks.StatusSinks() {
			add(s, true)
		}
	}
	var gone []string
	for _, m := range []map[string]int{stats.Outbox, stats.DeadLetters} {
		for name, n := range m {
			if !seen[name] && n > 0 && !slices.Contains(gone, name) {
				gone = append(gone, name)
			}
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		add(StatusSink{Name: name}, false)
	}
	return out
}

// ---- the chart ----

type chart struct {
	W, H, Max        int
	Bars             []bar
	Events           string // polyline points
	Requests, EventN int
	FirstLabel       string
	LastLabel        string
}

type bar struct {
	X, Y, W, H int
	Title      string
}

const (
	chartW     = 600
	chartH     = 120
	chartSlot  = chartW / ChartMinutes
	chartInset = 2
)

func newChart(ms []Minute, now time.Time) *chart {
	c := &chart{W: chartW, H: chartH, Max: 1}
	for _, m := range ms {
		c.Max = max(c.Max, m.Requests, m.Events)
		c.Requests += m.Requests
		c.EventN += m.Events
	}
	scale := func(v int) int { return v * (chartH - 4) / c.Max }
	var pts []string
	for i, m := range ms {
		x := i * chartSlot
		if h := scale(m.Requests); h > 0 {
			c.Bars = append(c.Bars, bar{X: x + chartInset/2, Y: chartH - h, W: chartSlot - chartInset, H: h,
				Title: fmt.Sprintf("%s: %d requests, %d events", m.Start.Format("15:04"), m.Requests, m.Events)})
		}
		pts = append(pts, fmt.Sprintf("%d,%d", x+chartSlot/2, chartH-scale(m.Events)))
	}
	c.Events = strings.Join(pts, " ")
	if len(ms) > 0 {
		c.FirstLabel = ms[0].Start.Format("15:04")
		c.LastLabel = now.Format("15:04")
	}
	return c
}

// ---- formatting ----

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05")
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + humanDuration(-d)
	}
	if d < time.Second {
		return "just now"
	}
	return humanDuration(d) + " ago"
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}
