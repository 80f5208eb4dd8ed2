package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"

	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/store"
)

// QueueAdmin re-homes or deletes the queue of a renamed or removed sink;
// *store.Store implements it. When Options.Admin implements it, the admin endpoint
// serves POST /v1/queue/move and /v1/queue/drop.
type QueueAdmin interface {
	MoveQueue(from, to string) (queued, dead int, err error)
	DropQueue(sink string) (queued, dead int, err error)
}

// QueueMoveRequest is the body of POST /v1/queue/move.
type QueueMoveRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// QueueDropRequest is the body of POST /v1/queue/drop.
type QueueDropRequest struct {
	Sink string `json:"sink"`
}

// QueueResponse answers queue move and drop: how many queued events and dead letters.
type QueueResponse struct {
	Queued      int `json:"queued"`
	DeadLetters int `json:"dead_letters"`
}

// Orphan is a stored sink that is no longer configured but still holds events.
type Orphan struct {
	Sink        string `json:"sink"`
	Queued      int    `json:"queued"`
	DeadLetters int    `json:"dead_letters"`
}

// Orphans lists the sinks of s that hold queued events or dead letters and are not in
// configured, sorted by name.
func Orphans(s State, configured []string) []Orphan {
	names := map[string]bool{}
	for n, c := range s.Outbox {
		if c > 0 {
			names[n] = true
		}
	}
	for n, c := range s.DeadLetters {
		if c > 0 {
			names[n] = true
		}
	}
	var out []Orphan
	for n := range names {
		if !slices.Contains(configured, n) {
			out = append(out, Orphan{Sink: n, Queued: s.Outbox[n], DeadLetters: s.DeadLetters[n]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Sink < out[j].Sink })
	return out
}

func (a *admin) queueOp(op string, qa QueueAdmin) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if code, msg := a.authorize(r); code != 0 {
			a.log.Warn("admin call refused", "op", "queue "+op, "peer", r.RemoteAddr, "status", code, "reason", msg)
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="exportbridge-admin"`)
			}
			writeError(w, code, msg)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		var q, d int
		var err error
		switch op {
		case "move":
			var req QueueMoveRequest
			if derr := dec.Decode(&req); derr != nil || req.From == "" || req.To == "" {
				writeError(w, http.StatusBadRequest, `expected a JSON body {"from":"OLD","to":"NEW"}`)
				return
			}
			if !slices.Contains(a.o.Configured, req.To) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("--to %q is not a configured sink of the running bridge (configured: %v)", req.To, a.o.Configured))
				return
			}
			if slices.Contains(a.o.Configured, req.From) {
				writeError(w, http.StatusConflict, fmt.Sprintf("--from %q is a configured sink: its dispatcher is delivering its queue; remove it from the settings first", req.From))
				return
			}
			q, d, err = qa.MoveQueue(req.From, req.To)
		default:
			var req QueueDropRequest
			if derr := dec.Decode(&req); derr != nil || req.Sink == "" {
				writeError(w, http.StatusBadRequest, `expected a JSON body {"sink":"OLD"}`)
				return
			}
			if slices.Contains(a.o.Configured, req.Sink) {
				writeError(w, http.StatusConflict, fmt.Sprintf("--sink %q is a configured sink of the running bridge; remove it from the settings first", req.Sink))
				return
			}
			q, d, err = qa.DropQueue(req.Sink)
		}
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, logging.RedactURLHosts(err.Error()))
			return
		}
		if err != nil {
			a.log.Error("admin queue "+op+" failed", "err", err)
			writeError(w, http.StatusInternalServerError, "queue "+op+": "+logging.RedactURLHosts(err.Error()))
			return
		}
		a.log.Info("admin queue "+op, "queued", q, "dead_letters", d, "peer", r.RemoteAddr)
		if op == "move" && a.o.OnReplay != nil {
			a.o.OnReplay()
		}
		writeJSON(w, http.StatusOK, QueueResponse{Queued: q, DeadLetters: d})
	}
}

// MoveQueue asks the running bridge to re-home the queue of sink from to sink to.
func (c *AdminClient) MoveQueue(ctx context.Context, from, to string) (queued, dead int, err error) {
	var resp QueueResponse
	if err := c.do(ctx, http.MethodPost, "/v1/queue/move", nil, QueueMoveRequest{From: from, To: to}, &resp); err != nil {
		return 0, 0, fmt.Errorf("admin queue move: %w", err)
	}
	return resp.Queued, resp.DeadLetters, nil
}

// DropQueue asks the running bridge to delete the queue of sink.
func (c *AdminClient) DropQueue(ctx context.Context, sink string) (queued, dead int, err error) {
	var resp QueueResponse
	if err := c.do(ctx, http.MethodPost, "/v1/queue/drop", nil, QueueDropRequest{Sink: sink}, &resp); err != nil {
		return 0, 0, fmt.Errorf("admin queue drop: %w", err)
	}
	return resp.Queued, resp.DeadLetters, nil
}
