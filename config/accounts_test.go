package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/config"
)

const acmeToken = "acmetok-SECRET-9999"

// accountsFile writes a config file of one stdout sink and the given accounts: block.
func accountsFile(t *testing.T, accounts string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte("sinks:\n  - name: out\n    kind: stdout\n"+accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAccountsFromTheConfigFile(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "acme-token")
	if err := os.WriteFile(tokFile, []byte(acmeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := accountsFile(t, `accounts:
  - name: acme
    api_token_file: `+tokFile+`
    filter_types: [sessions, "meter values"]
    api_budget: 100
  - name: globex
    api_token: ${GLOBEX_TOKEN}
    api_url: https://eu.example.com/api/v3/
    filter_subject_type: site
    filter_subject_id: 12
`)
	env := e("CONFIG_FILE", f, "STORE", "nats", "STORE_NATS_URL", "nats://127.0.0.1:4222", "FILTER_TYPES", "invoices")
	env["GLOBEX_TOKEN"] = "globex-SECRET-0000"
	c, err := config.LoadFor(env, "run")
	if err != nil {
		t.Fatalf("run with two accounts and no API_TOKEN: %v", err)
	}
	want := []config.Account{
		{Name: "acme", APIURL: "https://app.plugchoice.com/api/v3", APIToken: acmeToken, APIBudget: 100,
			FilterTypes: []string{"sessions", "meter values"}, Named: true},
		{Name: "globex", APIURL: "https://eu.example.com/api/v3", APIToken: "globex-SECRET-0000",
			FilterSubjectType: "site", FilterSubjectID: 12, Named: true},
	}
	got := c.PollAccounts()
	for i := range got {
		if !strings.HasPrefix(got[i].Where, f+":") {
			t.Errorf("account %d Where = %q, want the file position", i, got[i].Where)
		}
		got[i].Where = ""
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("accounts\n got %+v\nwant %+v", got, want)
	}
	if !slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.Contains(w, "EXPORTBRIDGE_FILTER_TYPES has no effect") }) {
		t.Errorf("warnings %q: want FILTER_TYPES named as having no effect beside accounts:", c.Warnings)
	}
	for _, s := range []string{acmeToken, "globex-SECRET-0000"} {
		if !strings.Contains(strings.Join(c.Secrets(), "\n"), s) {
			t.Errorf("Secrets() lacks an account token: the logs would not redact it")
		}
	}
}

func TestWithoutAccountsTheTokenIsTheDefaultAccount(t *testing.T) {
	c, err := config.LoadFor(e("API_TOKEN", apiToken, "FILTER_TYPES", "sessions"), "run")
	if err != nil {
		t.Fatal(err)
	}
	got := c.PollAccounts()
	if len(got) != 1 || got[0].Name != "default" || got[0].Named || got[0].APIToken != apiToken || !reflect.DeepEqual(got[0].FilterTypes, []string{"sessions"}) {
		t.Fatalf("PollAccounts() = %+v, want the one unnamed account default of API_TOKEN", got)
	}
}

func TestAccountsProblemsNameLineAndColumn(t *testing.T) {
	tests := []struct {
		name, accounts string
		store          string
		want           []string // "line:col path: message part"
	}{
		{"duplicate name", "accounts:\n  - name: acme\n    api_token: ${T}\n  - name: acme\n    api_token: ${T}\n", "nats",
			[]string{`:7:5 accounts[1].name: duplicate account name "acme" (first at`}},
		{"missing token", "accounts:\n  - name: acme\n", "nats",
			[]string{":5:5 accounts[0]: api_token_file is missing"}},
		{"token from an unset variable", "accounts:\n  - name: acme\n    api_token: ${NOPE}\n", "nats",
			[]string{":6:5 accounts[0].api_token: refers to ${NOPE}, which is not set"}},
		{"unknown key", "accounts:\n  - name: acme\n    api_token: ${T}\n    filter_type: sessions\n", "nats",
			[]string{":7:5 accounts[0].filter_type:"}},
		{"bad name", "accounts:\n  - name: Acme Corp\n    api_token: ${T}\n", "nats",
			[]string{`:5:5 accounts[0].name: "Acme Corp" is not an account name`}},
		{"wrong type", "accounts:\n  - name: acme\n    api_token: ${T}\n    api_budget: lots\n", "nats",
			[]string{":7:17 accounts[0].api_budget: got string, expected a whole number"}},
		{"not a list", "accounts: acme\n", "nats",
			[]string{":4:11 accounts: expected a list of accounts"}},
		{"bolt store", "accounts:\n  - name: acme\n    api_token: ${T}\n", "bolt",
			[]string{":4:1 accounts: several accounts need EXPORTBRIDGE_STORE=nats"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := accountsFile(t, tc.accounts)
			env := e("CONFIG_FILE", f, "STORE", tc.store, "STORE_NATS_URL", "nats://127.0.0.1:4222", "STATE_DIR", t.TempDir())
			env["T"] = acmeToken
			ps := problems(t, func() error { _, err := config.LoadFor(env, "run"); return err }())
			var lines []string
			for _, p := range ps {
				lines = append(lines, p.Var+": "+p.Msg)
			}
			all := strings.Join(lines, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, f+w) {
					t.Errorf("problems:\n%s\nwant one containing %q", all, f+w)
				}
			}
			if strings.Contains(all, acmeToken) {
				t.Errorf("a problem shows the token:\n%s", all)
			}
			if strings.Contains(all, "API_TOKEN: required") {
				t.Errorf("API_TOKEN is asked for although the file lists accounts:\n%s", all)
			}
		})
	}
}
