// Package progress draws a command's progress on a terminal, and nothing elsewhere: a log
// or a pipe gets the command's summary line only.
package progress

import (
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
)

// Bar is a bar with the count, percent, rate and time left, redrawn in place on a
// terminal (github.com/schollz/progressbar, which draws as it is told and runs no
// goroutine of its own for a bar of known length). Elsewhere it draws nothing: a log or a
// pipe gets the command's summary line only. It is not throttled: callers add whole
// requests' worth, a few times a second.
type Bar struct {
	bar *progressbar.ProgressBar // nil when w is not a terminal
}

// NewBar returns a bar of total items, labelled label, drawn on w if it is a terminal.
func NewBar(w io.Writer, label string, total int64) *Bar {
	return barOn(w, IsTerminal(w), label, total)
}

// barOn returns a bar drawn on w if tty, else one that draws nothing.
func barOn(w io.Writer, tty bool, label string, total int64) *Bar {
	if !tty || total <= 0 {
		return &Bar{}
	}
	return &Bar{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(label),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("items"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)}
}

// Add counts n more items done.
func (p *Bar) Add(n int) {
	if p.bar != nil {
		p.bar.Add(n)
	}
}

// Stop leaves the bar as it is, with the cursor on a new line; a bar that reached its
// total did so already.
func (p *Bar) Stop() {
	if p.bar != nil && !p.bar.IsFinished() {
		p.bar.Exit()
	}
}

// IsTerminal reports whether w is a terminal (a character device): the only place
// progress is redrawn in place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
