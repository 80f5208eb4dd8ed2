// Package plugchoice is the client of the Plugchoice exports API and the Export type.
package plugchoice

import (
	"encoding/json"
	"fmt"
)

// Known export statuses. Other values may appear and must be forwarded as-is.
const (
	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusReady      = "ready"
	StatusFailed     = "failed"
	StatusCancelled  = "cancelled"
)

// Export is one element of the List Exports `data` array. Raw keeps the object exactly
// as the API returned it (unknown fields included), for forwarding in events.
type Export struct {
	UUID         string          `json:"uuid"`
	Type         string          `json:"type"`
	Status       string          `json:"status"`
	Filename     *string         `json:"filename"`
	FileSize     *int64          `json:"file_size"`
	RowCount     *int64          `json:"row_count"`
	ErrorMessage *string         `json:"error_message"`
	RequestedAt  string          `json:"requested_at"`
	CompletedAt  *string         `json:"completed_at"`
	FailedAt     *string         `json:"failed_at"`
	Subject      *Subject        `json:"subject"`
	DownloadURL  *string         `json:"download_url"`
	Raw          json.RawMessage `json:"-"`
}

// Subject is the exported subject (a site, a charger, ...).
type Subject struct {
	Type  string `json:"type"`
	ID    int64  `json:"id"`
	Label string `json:"label"`
}

// StatusTime returns the export's own timestamp for its current status:
// completed_at for ready, failed_at for failed, requested_at otherwise.
// It returns "" when the API gave none.
func (e *Export) StatusTime() string {
	switch e.Status {
	case StatusReady:
		if e.CompletedAt != nil {
			return *e.CompletedAt
		}
		return ""
	case StatusFailed:
		if e.FailedAt != nil {
			return *e.FailedAt
		}
		return ""
	default:
		return e.RequestedAt
	}
}

// UnmarshalJSON decodes an export and keeps a copy of the raw bytes.
func (e *Export) UnmarshalJSON(b []byte) error {
	type plain Export
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*e = Export(p)
	e.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON writes the raw object when there is one, so a forwarded export is exactly
// what the API returned.
func (e Export) MarshalJSON() ([]byte, error) {
	if len(e.Raw) > 0 {
		return e.Raw, nil
	}
	type plain Export
	return json.Marshal(plain(e))
}

// Validate checks the fields the bridge relies on.
func (e *Export) Validate() error {
	if e.UUID == "" {
		return fmt.Errorf("export without uuid")
	}
	if e.Status == "" {
		return fmt.Errorf("export %s: empty status", e.UUID)
	}
	return nil
}
