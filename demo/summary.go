package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/imagineif/lethe/progress"
)

// summaries prints a live summary until ctx ends: on a terminal one line redrawn every
// second, otherwise a line every every (0: five seconds). The simulation's own counts
// come first; Lethe's (open loans and transactions, what it expunged) follow when it
// answers.
func (lib *Library) summaries(ctx context.Context, c Circulation, t *Totals, w io.Writer, every time.Duration) {
	tty := progress.IsTerminal(w)
	switch {
	case tty:
		every = time.Second
	case every <= 0:
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return
		case <-tick.C:
			if ctx.Err() != nil {
				continue // the next round returns
			}
		}
		line := fmt.Sprintf("checked out %d · returned %d · refused %d · errors %d",
			t.Checkouts.Load(), t.Returns.Load(), t.Refused.Load(), t.Errors.Load())
		sctx, cancel := context.WithTimeout(ctx, every/2)
		st, err := c.Status(sctx)
		cancel()
		if err == nil {
			line += fmt.Sprintf(" · open loans %d · open transactions %d · closed+expunged %d · expunge lag p99 %s",
				st.OnLoan, st.OpenTxns, st.Expunged, st.ExpungeLagP99.Round(time.Microsecond))
		} else if ctx.Err() == nil {
			line += " · Lethe's own counts: no answer"
		}
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}
