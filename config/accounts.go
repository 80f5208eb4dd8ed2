package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// DefaultAccount names the one account of API_TOKEN when the config file lists no
// accounts. Its events carry no `account` attribute and keep today's ids.
const DefaultAccount = "default"

// Account is one Plugchoice account the bridge polls: its own token, filters, snapshot,
// lease and API budget (SPEC "Scale-out", Accounts).
type Account struct {
	Name              string
	APIURL            string // base URL; default API_URL
	APIToken          string // secret, never logged
	APIBudget         int    // requests per minute for this token; 0: 80% of X-RateLimit-Limit
	FilterTypes       []string
	FilterSubjectType string
	FilterSubjectID   int64
	// Named is true for an entry of the config file's accounts: list, false for the
	// account of API_TOKEN. Events of a named account carry the `account` attribute.
	Named bool
	// Where names the entry for messages: "config.yaml:3:5 accounts[0]".
	Where string
}

// PollAccounts are the accounts to poll: the config file's accounts: list, or else the
// one account of API_TOKEN and the FILTER_* settings, named default.
func (c *Config) PollAccounts() []Account {
	if len(c.Accounts) > 0 {
		return c.Accounts
	}
	return []Account{{
		Name: DefaultAccount, APIURL: c.APIURL, APIToken: c.APIToken, APIBudget: c.APIBudget,
		FilterTypes: c.FilterTypes, FilterSubjectType: c.FilterSubjectType, FilterSubjectID: c.FilterSubjectID,
		Where: "environment",
	}}
}

// accountFile is one entry of accounts: as written. api_token is a secret: give it as
// api_token_file (a path, content trimmed) or api_token: ${ENV_NAME}.
type accountFile struct {
	Name              string  `yaml:"name"`
	APIToken          string  `yaml:"api_token" secret:"true"`
	APIURL            string  `yaml:"api_url"`
	APIBudget         int     `yaml:"api_budget"`
	FilterTypes       Strings `yaml:"filter_types"`
	FilterSubjectType string  `yaml:"filter_subject_type"`
	FilterSubjectID   int64   `yaml:"filter_subject_id"`
}

// accountKeys are the keys an accounts: entry may have, for messages.
const accountKeys = "name, api_token_file (or api_token: ${ENV_NAME}), api_url, api_budget, filter_types, filter_subject_type, filter_subject_id"

// accounts decodes the accounts: list strictly: every problem names the file position
// and key path; names are unique sink-style names (they are store keys and subject
// tokens); each account needs its token.
func (d *fileDecoder) accounts(n ast.Node, defaultURL string) ([]Account, []string) {
	seq, ok := n.(*ast.SequenceNode)
	if !ok || len(seq.Values) == 0 {
		d.problem(d.pos(n)+" accounts", "expected a list of accounts (- name: acme, api_token_file: /run/secrets/acme)")
		return nil, nil
	}
	var out []Account
	var warnings []string
	names := map[string]string{}
	for i, item := range seq.Values {
		path := fmt.Sprintf("accounts[%d]", i)
		pairs, ok := mappingPairs(item)
		if !ok || len(pairs) == 0 {
			d.problem(d.pos(item)+" "+path, "expected a mapping with %s", accountKeys)
			continue
		}
		where := d.pos(pairs[0].Key) + " " + path
		before := len(d.problems)
		b := &fileBlock{d: d, path: path, where: where, node: item}
		var af accountFile
		if err := b.Decode(&af); err != nil {
			if ce, ok := err.(*Error); ok {
				d.problems = append(d.problems, ce.Problems...)
			} else {
				d.problem(where, "%v", err)
			}
			continue
		}
		warnings = append(warnings, b.Warnings()...)
		a := Account{Name: af.Name, APIURL: af.APIURL, APIToken: strings.TrimSpace(af.APIToken), APIBudget: af.APIBudget,
			FilterTypes: af.FilterTypes, FilterSubjectType: af.FilterSubjectType, FilterSubjectID: af.FilterSubjectID,
			Named: true, Where: where}
		switch {
		case a.Name == "":
			d.problem(where, "name is missing (expected name: a unique name such as acme)")
		case !SinkNameRE.MatchString(a.Name):
			d.problem(b.Setting("name"), "%q is not an account name (expected [a-z0-9][a-z0-9_-]{0,62}: lower-case letters, digits, _ and -, at most 63)", a.Name)
		}
		_, tokenGiven := b.keyPos["api_token"]
		_, fileGiven := b.keyPos["api_token"+FileSuffix2]
		switch {
		case !tokenGiven && !fileGiven:
			d.problem(where, "api_token_file is missing (expected api_token_file: /run/secrets/%s, or api_token: ${ENV_NAME})", a.Name)
		case a.APIToken == "":
			d.problem(b.Setting("api_token"), "is empty (expected the account's Plugchoice API token)")
		}
		if a.APIURL == "" {
			a.APIURL = defaultURL
		} else if u, err := parseHTTPURL(a.APIURL); err != nil {
			d.problem(b.Setting("api_url"), "%s %v", quoteURL(a.APIURL), err)
		} else if u.RawQuery != "" || u.Fragment != "" {
			d.problem(b.Setting("api_url"), "%s has a query or fragment (expected a base URL such as https://app.plugchoice.com/api/v3)", quoteURL(a.APIURL))
		} else {
			a.APIURL = strings.TrimRight(a.APIURL, "/")
		}
		if a.APIBudget < 0 {
			d.problem(b.Setting("api_budget"), "%d is negative (expected requests per minute, or 0 for 80%% of X-RateLimit-Limit)", a.APIBudget)
		}
		if a.FilterSubjectID < 0 {
			d.problem(b.Setting("filter_subject_id"), "%d is not a positive subject id", a.FilterSubjectID)
		}
		if len(d.problems) > before {
			continue
		}
		if first, dup := names[a.Name]; dup {
			d.problem(b.Setting("name"), "duplicate account name %q (first at %s; expected each name once: it is the account's durable key)", a.Name, first)
			continue
		}
		names[a.Name] = where
		out = append(out, a)
	}
	return out, warnings
}

// setAccounts keeps the decoded accounts: list. It needs STORE=nats (the embedded store
// holds the snapshot of one account), and makes API_TOKEN and FILTER_* unused.
func (l *loader) setAccounts(accounts []Account, at string, warnings []string) {
	if at == "" {
		return
	}
	c := l.cfg
	if c.Store != StoreNATS {
		l.problems = append(l.problems, Problem{Var: at, Msg: "several accounts need " + Prefix + "STORE=nats (each account's snapshot, lease and budget live in JetStream; the embedded bolt store holds one account: remove accounts: and set " + Prefix + "API_TOKEN)"})
		return
	}
	c.Accounts = accounts
	c.Warnings = append(c.Warnings, warnings...)
	for _, a := range accounts {
		l.addSecret(a.APIToken)
	}
	for _, n := range []string{"API_TOKEN", "FILTER_TYPES", "FILTER_SUBJECT_TYPE", "FILTER_SUBJECT_ID"} {
		if l.set[n] {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s%s has no effect: the config file lists accounts, each with its own token and filters", Prefix, n))
		}
	}
}

// fileHasAccounts reports whether the config file at path has a top-level accounts:
// key (then API_TOKEN is not required).
func fileHasAccounts(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil || len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return false
	}
	pairs, _ := mappingPairs(f.Docs[0].Body)
	for _, kv := range pairs {
		if keyOf(kv) == "accounts" {
			return true
		}
	}
	return false
}
