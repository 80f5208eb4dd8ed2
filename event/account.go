package event

import (
	"encoding/json"
	"fmt"
)

// DefaultAccount is the account of API_TOKEN (no accounts: list): its events carry no
// `account` attribute and their ids are those of a single-account bridge.
const DefaultAccount = "default"

// WithAccount stamps e with the CloudEvents extension attribute `account` and, for any
// account but "default", moves its id into that account (AccountID). The export uuid
// is global, but two configured accounts can still report the same export (two tokens
// of one organisation, overlapping subject filters): their events are distinct
// CloudEvents, and an id shared by both would make JetStream's duplicate window and
// every consumer that de-duplicates on id drop the second account's event. The id stays
// stable: it is derived from the single-account id, itself stable. "default" keeps the
// single-account id, so that moving API_TOKEN into accounts: [{name: default}] keeps
// the snapshot (acct.default.*) and the ids of events re-detected across the move.
func WithAccount(e Event, account string) (Event, error) {
	if account == "" {
		return e, nil
	}
	var ce CloudEvent
	if err := json.Unmarshal(e.Body, &ce); err != nil {
		return Event{}, fmt.Errorf("stamp event %s with account %s: %w", e.ID, account, err)
	}
	if account != DefaultAccount {
		e.ID = AccountID(account, e.ID)
		ce.ID = e.ID
	}
	ce.Account = account
	body, err := json.Marshal(ce)
	if err != nil {
		return Event{}, fmt.Errorf("stamp event %s with account %s: %w", e.ID, account, err)
	}
	e.Body = body
	return e, nil
}

// AccountID is the id of account's copy of the event whose single-account id is id.
func AccountID(account, id string) string { return ID("account/"+account, "", id) }

// AccountOf returns the `account` attribute of an encoded event, DefaultAccount when it
// has none.
func AccountOf(body []byte) string {
	var a struct {
		Account string `json:"account"`
	}
	if json.Unmarshal(body, &a) != nil || a.Account == "" {
		return DefaultAccount
	}
	return a.Account
}
