package main

import (
	"fmt"
	"io"

	"github.com/schollz/progressbar/v3"
)

// progressBar is a bar with the count, percent, rate and time left, redrawn in place on a
// terminal (github.com/schollz/progressbar, which draws as it is told and runs no
// goroutine of its own for a bar of known length). Elsewhere it draws nothing: a log or a
// pipe gets the command's summary line only. It is not throttled: callers add whole
// requests' worth, a few times a second.
type progressBar struct {
	bar *progressbar.ProgressBar // nil when w is not a terminal
}

// newProgressBar returns a bar drawn on w if it is a terminal.
func newProgressBar(w io.Writer, label string, total int64) *progressBar {
	return progressBarOn(w, isTerminal(w), label, total)
}

// progressBarOn returns a bar drawn on w if tty, else one that draws nothing.
func progressBarOn(w io.Writer, tty bool, label string, total int64) *progressBar {
	if !tty || total <= 0 {
		return &progressBar{}
	}
	return &progressBar{bar: progressbar.NewOptions64(total,
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
func (p *progressBar) Add(n int) {
	if p.bar != nil {
		p.bar.Add(n)
	}
}

// Stop leaves the bar as it is, with the cursor on a new line; a bar that reached its
// total did so already.
func (p *progressBar) Stop() {
	if p.bar != nil && !p.bar.IsFinished() {
		p.bar.Exit()
	}
}
