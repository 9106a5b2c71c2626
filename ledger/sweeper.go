package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
)

// sweepNamespace makes the sweeper's command ids deterministic: the command that declares
// one transaction lost always has the same id, so two sweeps (or two nodes) apply it once.
var sweepNamespace = uuid.MustParse("6c1f3a52-4a0e-4d49-9e0b-5b1c2f9e1d10")

// SweepRules applies the clock-driven rules once: every loan overdue by more than
// Rules.LostAfterDays is declared lost and its replacement price assessed. It returns how
// many loans it declared lost.
func (l *Ledger) SweepRules(ctx context.Context) (int, error) {
	cutoff := l.cfg.Now().Add(-l.cfg.Rules.LostAfter())
	n := 0
	for {
		due, err := l.st.Overdue(cutoff, 100)
		if err != nil {
			return n, err
		}
		progressed := false
		for _, o := range due {
			id := uuid.NewSHA1(sweepNamespace, []byte("lost:"+o.TxnID)).String()
			cmd := schemas.DeclareLost{CommandID: id, Barcode: o.Barcode}
			_, err := l.run(ctx, schemas.CmdDeclareLost, id, cmd, l.declareLost(Station{Kind: "system", ID: "rules"}, o.Barcode, o.TxnID))
			var e *schemas.Error
			switch {
			case err == nil:
				n++
				progressed = true
			case errors.As(err, &e) && e.Code == schemas.CodeConflict:
				// Returned or changed meanwhile: nothing to do.
			default:
				return n, err
			}
		}
		if !progressed || len(due) < 100 {
			return n, nil
		}
	}
}

// RunRules runs SweepRules every interval until ctx ends.
func (l *Ledger) RunRules(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := l.SweepRules(ctx); err != nil && ctx.Err() == nil {
			if !isDiskRefusal(err) { // the disk guard said so once already
				l.cfg.Logger.Error("rules sweep", "err", err)
			}
		} else if n > 0 {
			l.cfg.Logger.Info("rules sweep declared overdue items lost", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
