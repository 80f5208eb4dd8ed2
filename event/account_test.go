package event_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/plugchoice"
)

func TestWithAccountStampsTheAttributeAndKeepsIdsApart(t *testing.T) {
	done := "2026-11-28T10:05:00Z"
	exp := plugchoice.Export{UUID: "u-1", Type: "sessions", Status: "ready", RequestedAt: "2026-11-28T10:00:00Z", CompletedAt: &done}
	plain, err := event.NewExport("https://api/exports", "processing", &exp, time.Date(2026, 11, 28, 10, 5, 3, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	acme, err := event.WithAccount(plain, "acme")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := event.WithAccount(plain, "acme")
	globex, _ := event.WithAccount(plain, "globex")
	def, _ := event.WithAccount(plain, "default")
	var ce map[string]any
	if err := json.Unmarshal(acme.Body, &ce); err != nil {
		t.Fatal(err)
	}
	if ce["account"] != "acme" || ce["id"] != acme.ID || ce["specversion"] != "1.0" || ce["data"] == nil {
		t.Fatalf("stamped CloudEvent %s: want account acme, id %s and the rest unchanged", acme.Body, acme.ID)
	}
	if acme.ID == plain.ID || acme.ID == globex.ID {
		t.Errorf("ids: plain %s acme %s globex %s; two accounts' events of one export must not share an id", plain.ID, acme.ID, globex.ID)
	}
	if again.ID != acme.ID || string(again.Body) != string(acme.Body) {
		t.Errorf("the same transition stamped twice differs: %s vs %s", again.Body, acme.Body)
	}
	if def.ID != plain.ID || event.AccountOf(def.Body) != "default" {
		t.Errorf("account default: id %s (want the single-account id %s), attribute %q", def.ID, plain.ID, event.AccountOf(def.Body))
	}
	if event.AccountOf(plain.Body) != "default" || event.AccountOf(acme.Body) != "acme" {
		t.Errorf("AccountOf: plain %q, acme %q", event.AccountOf(plain.Body), event.AccountOf(acme.Body))
	}
	if string(plain.Body) == string(acme.Body) {
		t.Error("the unstamped event changed")
	}
}
