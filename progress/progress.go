// Package progress shows how far a long command has come (SPEC, "Long work shows
// progress"): on a terminal a bar redrawn in place, otherwise one line every 10 seconds,
// so that a log of the command holds a few lines, not thousands. It serves the one-off
// commands that move thousands of records (migrate, queue move, dlq replay --all); the
// bridge's own long work, a full listing, logs through poller.Progress.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// Every is how often a line is written when the output is not a terminal.
const Every = 10 * time.Second

// redraw is how often the bar is redrawn at most on a terminal.
const redraw = 100 * time.Millisecond

const barWidth = 30

// Meter reports the progress of one piece of work. Report may be called from any
// goroutine and as often as the work likes: the meter decides what to write.
type Meter struct {
	w     io.Writer
	what  string // "queue move hook to hook-new", the prefix of every line
	unit  string // "records"
	tty   bool
	every time.Duration
	now   func() time.Time

	mu          sync.Mutex
	start, last time.Time
	done, total int
	drawn       bool   // a bar is on the terminal's current line
	shown       [2]int // done and total as last drawn
}

// Options are the Meter's knobs; New fills them from the writer.
type Options struct {
	Unit  string           // what is counted (default "records")
	TTY   bool             // draw a bar in place instead of writing lines
	Every time.Duration    // the interval between lines (default Every)
	Now   func() time.Time // the clock (default time.Now)
}

// New returns a meter writing to w: a bar when w is a terminal, lines otherwise.
func New(w io.Writer, what string) *Meter {
	return NewWith(w, what, Options{TTY: IsTerminal(w)})
}

// NewWith returns a meter with explicit options.
func NewWith(w io.Writer, what string, o Options) *Meter {
	if o.Unit == "" {
		o.Unit = "records"
	}
	if o.Every <= 0 {
		o.Every = Every
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := o.Now()
	return &Meter{w: w, what: what, unit: o.Unit, tty: o.TTY, every: o.Every, now: o.Now, start: t, last: t}
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Report records that done of total units are done (total 0: not known yet).
func (m *Meter) Report(done, total int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done, m.total = done, total
	t := m.now()
	switch {
	case m.tty && (t.Sub(m.last) >= redraw || total > 0 && done >= total):
		m.last = t
		m.bar()
	case !m.tty && t.Sub(m.last) >= m.every:
		m.last = t
		fmt.Fprintln(m.w, m.line(t))
	}
}

// Println writes a line of the command's own (one per sink done, say) without breaking
// the bar: on a terminal the bar's line is ended first, and the bar is redrawn below
// at the next Report.
func (m *Meter) Println(line string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.drawn {
		fmt.Fprintln(m.w)
		m.drawn = false
	}
	fmt.Fprintln(m.w, line)
}

// Finish ends the meter's output: the bar is drawn complete and its line ended. Lines
// are not repeated at the end: the command prints its own result.
func (m *Meter) Finish() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tty && m.drawn {
		if m.shown != [2]int{m.done, m.total} {
			m.bar()
		}
		fmt.Fprintln(m.w)
		m.drawn = false
	}
}

// line is "queue move hook to new: 4,000 of 10,000 records (40%), 12s".
func (m *Meter) line(t time.Time) string {
	var b strings.Builder
	b.WriteString(m.what)
	b.WriteString(": ")
	b.WriteString(humanize.Comma(int64(m.done)))
	if m.total > 0 {
		fmt.Fprintf(&b, " of %s %s (%d%%)", humanize.Comma(int64(m.total)), m.unit, percent(m.done, m.total))
	} else {
		b.WriteString(" " + m.unit)
	}
	fmt.Fprintf(&b, ", %s", t.Sub(m.start).Round(time.Second))
	return b.String()
}

// bar redraws "\rqueue move [#########.....] 4,000/10,000 records 40%".
func (m *Meter) bar() {
	n := 0
	if m.total > 0 {
		n = min(barWidth, barWidth*m.done/m.total)
	}
	total := "?"
	if m.total > 0 {
		total = humanize.Comma(int64(m.total))
	}
	fmt.Fprintf(m.w, "\r%s [%s%s] %s/%s %s %d%%", m.what, strings.Repeat("#", n), strings.Repeat(".", barWidth-n),
		humanize.Comma(int64(m.done)), total, m.unit, percent(m.done, m.total))
	m.drawn, m.shown = true, [2]int{m.done, m.total}
}

func percent(done, total int) int {
	if total <= 0 {
		return 0
	}
	return min(100, 100*done/total)
}
