package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/store"
)

// Admin is what the admin endpoint needs from the store; *store.Store implements it.
// Replay and Purge report an unknown event id with an error wrapping store.ErrNotFound.
type Admin interface {
	// DeadLetters lists the dead letters of the selected sinks ("" = every sink,
	// "webhook" = every webhook sink).
	DeadLetters(sink string) ([]store.Record, error)
	// Replay moves dead letters back to their outbox queue; it returns how many moved.
	Replay(sink string, ids []string, all bool) (int, error)
	// Purge deletes dead letters; it returns how many were deleted.
	Purge(sink string, ids []string, all bool) (int, error)
	// Stats returns the store statistics.
	Stats() (store.Stats, error)
}

// Options configures Handler and AdminHandler.
type Options struct {
	// Health answers /readyz; nil makes /readyz answer 503 "not_configured".
	Health *Health
	// Registry is gathered by /metrics (a *prometheus.Registry); nil: /metrics is 404.
	Registry prometheus.Gatherer
	// Admin serves the admin endpoint; nil: every admin call answers 503.
	Admin Admin
	// AdminToken, when set, is required (Authorization: Bearer <token>) for every
	// mutating admin call, whoever the peer is.
	AdminToken string
	// AdminRequireToken is true when the admin endpoint listens beyond loopback. With no
	// AdminToken it refuses every mutating call; when false and no AdminToken is set,
	// only loopback peers may mutate.
	AdminRequireToken bool
	// OnReplay is called after a replay that moved at least one dead letter, or a queue
	// move (it wakes the dispatchers). It must not block.
	OnReplay func()
	// Configured names the sinks the running bridge has configured: `state` reports
	// the others that still hold events, and queue move/drop check against them.
	Configured []string
	// Status, when set, serves the status page at GET / of the admin endpoint (only
	// there, never on Handler's LISTEN_ADDR): its Replay and Purge forms are authorised
	// like the mutating admin calls, with the admin token kept in a cookie once given.
	Status *Status
	// Logger; nil: slog.Default().
	Logger *slog.Logger
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Handler serves GET /healthz, /readyz and /metrics.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	route(mux, "/healthz", http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	route(mux, "/readyz", http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		if o.Health == nil {
			writeJSON(w, http.StatusServiceUnavailable, Reason{Reason: ReasonNotConfigured})
			return
		}
		ok, reason := o.Health.Ready()
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, reason)
	})
	if o.Registry != nil {
		mh := promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(o.logger().Handler(), slog.LevelError),
			ErrorHandling: promhttp.ContinueOnError,
		})
		route(mux, "/metrics", http.MethodGet, mh.ServeHTTP)
	}
	mux.HandleFunc("/", notFound)
	return mux
}

// AdminHandler serves the admin endpoint:
//
//	GET  /v1/state              -> State
//	GET  /v1/dlq?sink=NAME      -> {"dead_letters": [DeadLetter...]}
//	POST /v1/dlq/replay         {"sink":"","ids":[],"all":false} -> {"count": n}
//	POST /v1/dlq/purge          {"sink":"","ids":[],"all":false} -> {"count": n}
//	POST /v1/queue/move         {"from":"OLD","to":"NEW"} -> {"queued": n, "dead_letters": n}
//	POST /v1/queue/drop         {"sink":"OLD"} -> {"queued": n, "dead_letters": n}
//
// Errors are JSON {"error": "..."}. Mutating calls are authorised as Options describes.
func AdminHandler(o Options) http.Handler {
	a := &admin{o: o, log: o.logger()}
	if o.AdminToken != "" {
		sum := sha256.Sum256([]byte(o.AdminToken))
		a.tokenSum = sum[:]
	}
	mux := http.NewServeMux()
	route(mux, "/v1/state", http.MethodGet, a.state)
	route(mux, "/v1/dlq", http.MethodGet, a.list)
	route(mux, "/v1/dlq/replay", http.MethodPost, a.mutate("replay"))
	route(mux, "/v1/dlq/purge", http.MethodPost, a.mutate("purge"))
	if qa, ok := o.Admin.(QueueAdmin); ok {
		route(mux, "/v1/queue/move", http.MethodPost, a.queueOp("move", qa))
		route(mux, "/v1/queue/drop", http.MethodPost, a.queueOp("drop", qa))
	}
	if o.Status != nil {
		p := newStatusPage(a, *o.Status)
		p.routes(mux)
		mux.HandleFunc("/", p.root)
		return mux
	}
	mux.HandleFunc("/", notFound)
	return mux
}

// maxBody bounds an admin request body.
const maxBody = 1 << 20

const shutdownTimeout = 5 * time.Second

// Serve runs an HTTP server for h on ln until ctx is done, then shuts it down
// gracefully (in-flight requests get a few seconds). It returns nil after a shutdown
// caused by ctx, or the error that stopped the server. ln is closed on return.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("shut down http server on %s: %w", ln.Addr(), err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return errors.Join(err, fmt.Errorf("serve http on %s: %w", ln.Addr(), serr))
	}
	return err
}

type admin struct {
	o        Options
	log      *slog.Logger
	tokenSum []byte
}

func (a *admin) state(w http.ResponseWriter, r *http.Request) {
	if a.o.Admin == nil {
		writeError(w, http.StatusServiceUnavailable, "admin endpoint has no store")
		return
	}
	st, err := a.o.Admin.Stats()
	if err != nil {
		a.log.Error("admin state failed", "err", err)
		writeError(w, http.StatusInternalServerError, "read store state: "+logging.RedactURLHosts(err.Error()))
		return
	}
	out := StateOf(st)
	out.Configured = a.o.Configured
	writeJSON(w, http.StatusOK, out)
}

func (a *admin) list(w http.ResponseWriter, r *http.Request) {
	if a.o.Admin == nil {
		writeError(w, http.StatusServiceUnavailable, "admin endpoint has no store")
		return
	}
	sink := r.URL.Query().Get("sink")
	recs, err := a.o.Admin.DeadLetters(sink)
	if err != nil {
		a.log.Error("admin dlq list failed", "sink", sink, "err", err)
		writeError(w, http.StatusInternalServerError, "list dead letters: "+logging.RedactURLHosts(err.Error()))
		return
	}
	dls := make([]DeadLetter, 0, len(recs))
	for _, r := range recs {
		dls = append(dls, DeadLetterOf(r))
	}
	writeJSON(w, http.StatusOK, DeadLettersResponse{DeadLetters: dls})
}

func (a *admin) mutate(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if code, msg := a.authorize(r); code != 0 {
			a.log.Warn("admin call refused", "op", op, "peer", r.RemoteAddr, "status", code, "reason", msg)
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="exportbridge-admin"`)
			}
			writeError(w, code, msg)
			return
		}
		if a.o.Admin == nil {
			writeError(w, http.StatusServiceUnavailable, "admin endpoint has no store")
			return
		}
		req, code, err := decodeDLQRequest(w, r)
		if err != nil {
			writeError(w, code, err.Error())
			return
		}
		f := a.o.Admin.Purge
		if op == "replay" {
			f = a.o.Admin.Replay
		}
		n, err := f(req.Sink, req.IDs, req.All)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, logging.RedactURLHosts(err.Error()))
			return
		}
		if err != nil {
			a.log.Error("admin dlq "+op+" failed", "sink", req.Sink, "ids", len(req.IDs), "all", req.All, "err", err)
			writeError(w, http.StatusInternalServerError, op+" dead letters: "+logging.RedactURLHosts(err.Error()))
			return
		}
		a.log.Info("admin dlq "+op, "sink", req.Sink, "ids", len(req.IDs), "all", req.All, "count", n, "peer", r.RemoteAddr)
		if op == "replay" && n > 0 && a.o.OnReplay != nil {
			a.o.OnReplay()
		}
		writeJSON(w, http.StatusOK, CountResponse{Count: n})
	}
}

// authorize returns 0 when r may mutate, else the status code and message to answer.
func (a *admin) authorize(r *http.Request) (int, string) {
	if a.tokenSum != nil {
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			return http.StatusUnauthorized, "admin token required: send Authorization: Bearer <EXPORTBRIDGE_ADMIN_TOKEN>"
		}
		sum := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(sum[:], a.tokenSum) != 1 {
			return http.StatusUnauthorized, "wrong admin token (expected the value of EXPORTBRIDGE_ADMIN_TOKEN)"
		}
		return 0, ""
	}
	if a.o.AdminRequireToken {
		return http.StatusUnauthorized, "mutating admin calls are disabled: the admin endpoint listens beyond loopback and EXPORTBRIDGE_ADMIN_TOKEN is not set"
	}
	if !loopbackPeer(r.RemoteAddr) {
		return http.StatusForbidden, fmt.Sprintf("mutating admin calls are allowed from loopback only without EXPORTBRIDGE_ADMIN_TOKEN (peer %s)", r.RemoteAddr)
	}
	return 0, ""
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func loopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

const dlqRequestShape = `{"sink":"","ids":["<event id>"],"all":false}`

// decodeDLQRequest reads and checks a replay/purge body; on error it also returns the
// status code to answer.
func decodeDLQRequest(w http.ResponseWriter, r *http.Request) (DLQRequest, int, error) {
	var req DLQRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return req, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes: expected JSON %s", maxBody, dlqRequestShape)
		case errors.Is(err, io.EOF):
			return req, http.StatusBadRequest, fmt.Errorf("empty request body: expected JSON %s", dlqRequestShape)
		}
		return req, http.StatusBadRequest, fmt.Errorf("bad request body: expected JSON %s: %w", dlqRequestShape, err)
	}
	if dec.More() {
		return req, http.StatusBadRequest, fmt.Errorf("bad request body: expected one JSON object %s, found more data after it", dlqRequestShape)
	}
	switch {
	case len(req.IDs) == 0 && !req.All:
		return req, http.StatusBadRequest, fmt.Errorf("bad request: name the dead letters in \"ids\" or set \"all\": true")
	case len(req.IDs) > 0 && req.All:
		return req, http.StatusBadRequest, fmt.Errorf("bad request: \"ids\" and \"all\": true are exclusive")
	}
	for i, id := range req.IDs {
		if strings.TrimSpace(id) == "" {
			return req, http.StatusBadRequest, fmt.Errorf("bad request: ids[%d] is empty (expected an event id)", i)
		}
	}
	return req, 0, nil
}

// route registers h for exactly path and method (GET also answers HEAD); other methods
// get a JSON 405.
func route(mux *http.ServeMux, path, method string, h http.HandlerFunc) {
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (expected %s)", r.Method, path, method))
			return
		}
		h(w, r)
	})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s", r.URL.Path))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // JSON, not HTML: keep "<" readable for curl users
	if err := enc.Encode(v); err != nil {
		code = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"encode response"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}
