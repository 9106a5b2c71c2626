package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/progress"
)

// summaries prints a live summary every second until ctx ends: on a terminal one line
// redrawn in place, otherwise a line every five seconds.
func (lib *Library) summaries(ctx context.Context, s *node.Service, t *Totals, w io.Writer) {
	tty := progress.IsTerminal(w)
	every := time.Second
	if !tty {
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
		}
		c, err := s.Proj.Counts()
		if err != nil {
			continue
		}
		st := s.Expunger.Stats()
		line := fmt.Sprintf("open loans %d · open transactions %d · checked out %d · returned %d · closed+expunged %d · expunge lag p99 %s",
			c.OnLoan, c.OpenTxns, t.Checkouts.Load(), t.Returns.Load(), st.Expunged, st.ExpungeLagP99.Round(time.Microsecond))
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}
