package server

import (
	"time"

	"github.com/exportbridge/exportbridge/logging"
	"github.com/exportbridge/exportbridge/store"
)

// DeadLetter is one dead-lettered event as the admin endpoint reports it. It carries no
// event body and no secret: URLs in LastError are cut down to scheme and host.
type DeadLetter struct {
	Sink       string    `json:"sink"`
	Seq        uint64    `json:"seq"`
	EventID    string    `json:"event_id"`
	Subject    string    `json:"subject,omitempty"` // export uuid; empty for bridge events
	Type       string    `json:"type"`              // short event type: "export.ready"
	ExportType string    `json:"export_type,omitempty"`
	Attempts   int       `json:"attempts"`
	LastError  string    `json:"last_error,omitempty"`
	LastStatus int       `json:"last_status,omitempty"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	DeadAt     time.Time `json:"dead_at"`
}

// PollInfo describes the last poll cycle.
type PollInfo struct {
	At            time.Time `json:"at"`
	OK            bool      `json:"ok"`
	Error         string    `json:"error,omitempty"`
	Full          bool      `json:"full"`
	Exports       int       `json:"exports"`
	Events        int       `json:"events"`
	Requests      int       `json:"requests"`
	RateRemaining int       `json:"rate_remaining"`
}

// State is the store statistics `state` prints.
type State struct {
	Exports     int            `json:"exports"`
	Initialized bool           `json:"initialized"`
	Outbox      map[string]int `json:"outbox"`       // queue depth per sink
	DeadLetters map[string]int `json:"dead_letters"` // dead-letter depth per sink
	LastPoll    PollInfo       `json:"last_poll"`
	FileBytes   int64          `json:"file_bytes"`
	// Configured names the sinks the running bridge has configured (empty from a store
	// read directly).
	Configured []string `json:"configured,omitempty"`
	// Accounts are the snapshot and last poll of each entry of an accounts: list
	// (STORE=nats), in the order of the config file; without one, Exports, Initialized
	// and LastPoll above are those of the one account.
	Accounts []AccountState `json:"accounts,omitempty"`
}

// AccountState is one account's part of State.
type AccountState struct {
	Name        string   `json:"name"`
	APIURL      string   `json:"api_url"`
	Exports     int      `json:"exports"`
	Initialized bool     `json:"initialized"`
	LastPoll    PollInfo `json:"last_poll"`
}

// DLQRequest is the body of POST /v1/dlq/replay and /v1/dlq/purge. Sink "" means every
// sink. Either IDs (event ids) or All is set, not both.
type DLQRequest struct {
	Sink string   `json:"sink"`
	IDs  []string `json:"ids"`
	All  bool     `json:"all"`
}

// CountResponse answers replay and purge: how many dead letters were affected.
type CountResponse struct {
	Count int `json:"count"`
}

// DeadLettersResponse answers GET /v1/dlq.
type DeadLettersResponse struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
}

// ErrorResponse is the body of every admin error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// DeadLetterOf is the wire form of a dead-lettered record.
func DeadLetterOf(r store.Record) DeadLetter {
	return DeadLetter{
		Sink:       r.Sink,
		Seq:        r.Seq,
		EventID:    r.Event.ID,
		Subject:    r.Event.Subject,
		Type:       r.Event.Type,
		ExportType: r.Event.ExportType,
		Attempts:   r.Attempts,
		LastError:  logging.RedactURLHosts(r.LastError),
		LastStatus: r.LastStatus,
		EnqueuedAt: r.EnqueuedAt,
		DeadAt:     r.DeadAt,
	}
}

// StateOf is the wire form of the store statistics.
func StateOf(s store.Stats) State {
	p := s.LastPoll
	out := State{
		Exports:     s.Exports,
		Initialized: s.Initialized,
		Outbox:      s.Outbox,
		DeadLetters: s.DeadLetters,
		LastPoll: PollInfo{At: p.At, OK: p.OK, Error: logging.RedactURLHosts(p.Error), Full: p.Full, Exports: p.Exports,
			Events: p.Events, Requests: p.Requests, RateRemaining: p.RateRemaining},
		FileBytes: s.FileBytes,
	}
	if out.Outbox == nil {
		out.Outbox = map[string]int{}
	}
	if out.DeadLetters == nil {
		out.DeadLetters = map[string]int{}
	}
	return out
}
