package route_test

import (
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/sinks"
	"github.com/exportbridge/exportbridge/sinks/route"
)

// A sink's match.accounts and `when: event.account` see the event's `account`
// attribute; an event without one is the account default.
func TestMatchAccountsRoutesByTheAccountAttribute(t *testing.T) {
	plain := exportEvent(t, "sessions", "ready", nil, nil)
	acme, err := event.WithAccount(plain, "acme")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		match   route.Match
		when    string
		ev      event.Event
		want    bool
		wantWhy string
	}{
		{name: "acme to an acme sink", match: route.Match{Accounts: []string{"acme", "globex"}}, ev: acme, want: true},
		{name: "acme not to a globex sink", match: route.Match{Accounts: []string{"globex"}}, ev: acme, wantWhy: "does not include the account acme"},
		{name: "no attribute is default", match: route.Match{Accounts: []string{"default"}}, ev: plain, want: true},
		{name: "default not to an acme sink", match: route.Match{Accounts: []string{"acme"}}, ev: plain, wantWhy: "does not include the account default"},
		{name: "when sees the account", when: "event.account == 'acme'", ev: acme, want: true},
		{name: "when sees default", when: "event.account == 'acme'", ev: plain, wantWhy: "is false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := route.New(sinks.MustFilter("*"), tt.match, tt.when)
			if err != nil {
				t.Fatal(err)
			}
			got, why, err := sel.Decide(route.NewInput(tt.ev))
			if err != nil || got != tt.want || !strings.Contains(why, tt.wantWhy) {
				t.Fatalf("Decide = %v, %q, %v; want %v with a reason containing %q", got, why, err, tt.want, tt.wantWhy)
			}
		})
	}
}
