package progress_test

import (
	"strings"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/progress"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

// TestLinesEveryTenSecondsWhenNotATerminal: a log gets one line per 10 s of work, with
// how far, of how much and for how long; never a line per record.
func TestLinesEveryTenSecondsWhenNotATerminal(t *testing.T) {
	c := bridgetest.NewClock(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC))
	var out strings.Builder
	m := progress.NewWith(&out, "queue move hook to hook-new", progress.Options{Now: c.Now})
	for i := 1; i <= 25_000; i++ { // 25 s of work, a record per millisecond
		c.Advance(time.Millisecond)
		m.Report(i, 25_000)
	}
	m.Finish()
	want := "queue move hook to hook-new: 10,000 of 25,000 records (40%), 10s\n" +
		"queue move hook to hook-new: 20,000 of 25,000 records (80%), 20s\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestBarOnATerminal: on a terminal the bar is redrawn in place at most ten times a
// second, ends complete, and Finish ends its line.
func TestBarOnATerminal(t *testing.T) {
	c := bridgetest.NewClock(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC))
	var out strings.Builder
	m := progress.NewWith(&out, "dlq replay hook", progress.Options{TTY: true, Now: c.Now})
	for i := 1; i <= 1000; i++ { // 1 s of work
		c.Advance(time.Millisecond)
		m.Report(i, 1000)
	}
	m.Finish()
	s := out.String()
	if draws := strings.Count(s, "\r"); draws < 5 || draws > 12 {
		t.Errorf("the bar was drawn %d times in 1 s of work (want about 10: at most one per 100 ms, and the last)", draws)
	}
	last := s[strings.LastIndex(s, "\r"):]
	if want := "\rdlq replay hook [" + strings.Repeat("#", 30) + "] 1,000/1,000 records 100%\n"; last != want {
		t.Errorf("last draw %q, want %q", last, want)
	}
	if strings.Count(s, "\n") != 1 {
		t.Errorf("output holds %d line ends, want 1 (the bar is redrawn in place): %q", strings.Count(s, "\n"), s)
	}
	if first := s[:strings.Index(s[1:], "\r")+1]; !strings.HasPrefix(first, "\rdlq replay hook [") || strings.Contains(first, "100%") {
		t.Errorf("first draw %q, want a bar part of the way", first)
	}
}

// TestUnknownTotalAndNothingToShow: work of unknown size shows a count; work quicker
// than the interval writes nothing but the command's own result; a nil meter (no
// progress wanted) is fine to call.
func TestUnknownTotalAndNothingToShow(t *testing.T) {
	c := bridgetest.NewClock(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC))
	var out strings.Builder
	m := progress.NewWith(&out, "migrate", progress.Options{Now: c.Now, Unit: "events"})
	c.Advance(11 * time.Second)
	m.Report(1234, 0)
	if want := "migrate: 1,234 events, 11s\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	out.Reset()
	quick := progress.NewWith(&out, "migrate", progress.Options{Now: c.Now})
	quick.Report(10, 10)
	quick.Finish()
	if out.Len() != 0 {
		t.Errorf("quick work wrote %q, want nothing", out.String())
	}
	var none *progress.Meter
	none.Report(1, 2)
	none.Finish()
}

// TestCommandLinesDoNotBreakTheBar: a line of the command's own (migrate's "sink X:
// copied") goes on a line of its own, below the bar drawn so far, and the bar goes on
// below it.
func TestCommandLinesDoNotBreakTheBar(t *testing.T) {
	c := bridgetest.NewClock(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC))
	var out strings.Builder
	m := progress.NewWith(&out, "migrate", progress.Options{TTY: true, Now: c.Now})
	c.Advance(time.Second)
	m.Report(5, 10)
	m.Println("migrate: sink hook: 5 queued events, 0 dead letters copied")
	c.Advance(time.Second)
	m.Report(10, 10)
	m.Finish()
	want := "\rmigrate [" + strings.Repeat("#", 15) + strings.Repeat(".", 15) + "] 5/10 records 50%\n" +
		"migrate: sink hook: 5 queued events, 0 dead letters copied\n" +
		"\rmigrate [" + strings.Repeat("#", 30) + "] 10/10 records 100%\n"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
	var lines strings.Builder
	plain := progress.NewWith(&lines, "migrate", progress.Options{Now: c.Now})
	plain.Println("migrate: sink hook: 5 queued events, 0 dead letters copied")
	if lines.String() != "migrate: sink hook: 5 queued events, 0 dead letters copied\n" {
		t.Errorf("without a terminal: %q", lines.String())
	}
}
