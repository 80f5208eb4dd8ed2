package config_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/config"
)

// update rewrites the README's settings table from the code:
//
//	go test ./config -run TestREADME -update
var update = flag.Bool("update", false, "rewrite the settings table in README.md from config.Table()")

const (
	settingsStart = "<!-- settings:start -->"
	settingsEnd   = "<!-- settings:end -->"
)

var readmePath = filepath.Join("..", "README.md")

// errMarkers is wrapped by every error about the README's settings markers.
var errMarkers = errors.New("settings markers")

// settingsSection returns the offsets of the text between the settings markers of
// readme (the markers excluded). Each marker must appear exactly once, start before end.
func settingsSection(readme string) (from, to int, err error) {
	for _, m := range []string{settingsStart, settingsEnd} {
		switch n := strings.Count(readme, m); n {
		case 1:
		case 0:
			return 0, 0, fmt.Errorf("%w: %s not found (expected it once, around the generated table)", errMarkers, m)
		default:
			return 0, 0, fmt.Errorf("%w: %s found %d times (expected it once)", errMarkers, m, n)
		}
	}
	from = strings.Index(readme, settingsStart) + len(settingsStart)
	to = strings.Index(readme, settingsEnd)
	if to < from {
		return 0, 0, fmt.Errorf("%w: %s comes before %s (expected start, table, end)", errMarkers, settingsEnd, settingsStart)
	}
	return from, to, nil
}

// settingsBlock is what goes between the markers: the table, framed by blank lines so
// that Markdown renders it as a table.
func settingsBlock(table string) string {
	return "\n\n" + strings.TrimSpace(table) + "\n\n"
}

// spliceSettings returns readme with the text between the markers replaced by table.
func spliceSettings(readme, table string) (string, error) {
	from, to, err := settingsSection(readme)
	if err != nil {
		return "", err
	}
	return readme[:from] + settingsBlock(table) + readme[to:], nil
}

// settingsDiff compares the README's table with table. It returns "" when they agree,
// else a description of the first difference.
func settingsDiff(readme, table string) (string, error) {
	from, to, err := settingsSection(readme)
	if err != nil {
		return "", err
	}
	got := strings.Split(strings.TrimSpace(readme[from:to]), "\n")
	want := strings.Split(strings.TrimSpace(table), "\n")
	for i := 0; i < len(got) || i < len(want); i++ {
		g, w := "(missing)", "(missing)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("table line %d differs (README has %d lines, code %d):\n  README: %s\n  code:   %s", i+1, len(got), len(want), g, w), nil
		}
	}
	return "", nil
}

// TestREADMESettingsTable fails when the settings table in README.md (between the
// settings markers) is not the one config.Table() generates from the Config struct tags.
// With -update it rewrites the table instead.
func TestREADMESettingsTable(t *testing.T) {
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatalf("read %s: %v", readmePath, err)
	}
	readme := string(b)
	table := config.Table()
	if *update {
		out, err := spliceSettings(readme, table)
		if err != nil {
			t.Fatalf("%s: %v", readmePath, err)
		}
		if out != readme {
			if err := os.WriteFile(readmePath, []byte(out), 0o644); err != nil {
				t.Fatalf("write %s: %v", readmePath, err)
			}
			t.Logf("rewrote the settings table in %s", readmePath)
		}
		return
	}
	diff, err := settingsDiff(readme, table)
	if err != nil {
		t.Fatalf("%s: %v", readmePath, err)
	}
	if diff != "" {
		t.Fatalf("%s: the settings table disagrees with the Config struct tags; run\n\tgo test ./config -run TestREADME -update\n%s", readmePath, diff)
	}
}

// TestREADMESettingsCheck checks that the comparison and the rewrite catch what they
// must: a stale, shortened or extended table, and missing, repeated or swapped markers.
func TestREADMESettingsCheck(t *testing.T) {
	table := config.Table()
	good := "# exportbridge\n\nintro\n\n" + settingsStart + settingsBlock(table) + settingsEnd + "\n\nmore\n"
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) < 4 {
		t.Fatalf("config.Table() has %d lines, expected a header, a rule and settings", len(lines))
	}
	withTable := func(tbl string) string {
		return "intro\n" + settingsStart + "\n\n" + tbl + "\n\n" + settingsEnd + "\n"
	}
	tests := []struct {
		name     string
		readme   string
		wantDiff string // substring of the difference; "" means agree
		wantErr  bool
	}{
		{name: "generated table agrees", readme: good},
		{name: "surrounding white space is ignored", readme: withTable("\n" + strings.TrimSpace(table) + "\n\n\n")},
		{
			name:     "stale default",
			readme:   strings.Replace(good, "| `30s` |", "| `60s` |", 1),
			wantDiff: "`60s`",
		},
		{
			name:     "setting missing from the README",
			readme:   withTable(strings.Join(lines[:len(lines)-1], "\n")),
			wantDiff: "README: (missing)",
		},
		{
			name:     "setting the code does not have",
			readme:   withTable(strings.TrimSpace(table) + "\n| `EXPORTBRIDGE_GONE` | | | removed |"),
			wantDiff: "code:   (missing)",
		},
		{name: "no start marker", readme: strings.Replace(good, settingsStart, "", 1), wantErr: true},
		{name: "no end marker", readme: strings.Replace(good, settingsEnd, "", 1), wantErr: true},
		{name: "markers swapped", readme: "a\n" + settingsEnd + "\n" + table + "\n" + settingsStart + "\n", wantErr: true},
		{name: "start marker twice", readme: good + settingsStart + "\n", wantErr: true},
		{name: "end marker twice", readme: good + settingsEnd + "\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			diff, err := settingsDiff(tc.readme, table)
			if tc.wantErr {
				if !errors.Is(err, errMarkers) {
					t.Fatalf("settingsDiff error = %v, want one about the markers", err)
				}
				if _, err := spliceSettings(tc.readme, table); !errors.Is(err, errMarkers) {
					t.Fatalf("spliceSettings error = %v, want one about the markers", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("settingsDiff: %v", err)
			}
			switch {
			case tc.wantDiff == "" && diff != "":
				t.Fatalf("tables should agree, got difference:\n%s", diff)
			case tc.wantDiff != "" && !strings.Contains(diff, tc.wantDiff):
				t.Fatalf("difference = %q, want it to mention %q", diff, tc.wantDiff)
			}
			// -update repairs any of them, keeps the text around the markers, and is
			// idempotent.
			fixed, err := spliceSettings(tc.readme, table)
			if err != nil {
				t.Fatalf("spliceSettings: %v", err)
			}
			if d, err := settingsDiff(fixed, table); err != nil || d != "" {
				t.Fatalf("after spliceSettings: diff %q, err %v", d, err)
			}
			if again, _ := spliceSettings(fixed, table); again != fixed {
				t.Fatalf("spliceSettings is not idempotent")
			}
			if !strings.HasPrefix(fixed, tc.readme[:strings.Index(tc.readme, settingsStart)]) ||
				!strings.HasSuffix(fixed, tc.readme[strings.Index(tc.readme, settingsEnd):]) {
				t.Fatalf("spliceSettings changed text outside the markers:\n%s", fixed)
			}
		})
	}
}

// TestREADMENamesEverySetting checks the README's table lists every setting by its full
// variable name, and says how secrets are read from files.
func TestREADMENamesEverySetting(t *testing.T) {
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatalf("read %s: %v", readmePath, err)
	}
	from, to, err := settingsSection(string(b))
	if err != nil {
		t.Fatalf("%s: %v", readmePath, err)
	}
	section := string(b)[from:to]
	var missing []string
	for _, line := range strings.Split(strings.TrimSpace(config.Table()), "\n")[2:] {
		name := strings.Trim(strings.SplitN(strings.TrimPrefix(line, "| "), " |", 2)[0], "`")
		if !strings.HasPrefix(name, config.Prefix) {
			t.Fatalf("config.Table() row %q does not start with a variable named %s...", line, config.Prefix)
		}
		if !strings.Contains(section, "`"+name+"`") {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s: settings table lacks %s; run go test ./config -run TestREADME -update", readmePath, strings.Join(missing, ", "))
	}
	if !strings.Contains(string(b), config.FileSuffix) {
		t.Fatalf("%s does not explain the %s variant of secret settings", readmePath, config.FileSuffix)
	}
}
