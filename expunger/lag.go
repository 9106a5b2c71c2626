package expunger

import (
	"slices"
	"time"
)

// lagWindow keeps the most recent lags for quantiles. Not safe for concurrent use: the
// Expunger's mutex guards it.
type lagWindow struct {
	buf  []time.Duration
	next int
	full bool
}

func newLagWindow(n int) *lagWindow { return &lagWindow{buf: make([]time.Duration, n)} }

func (w *lagWindow) add(d time.Duration) {
	w.buf[w.next] = d
	w.next++
	if w.next == len(w.buf) {
		w.next, w.full = 0, true
	}
}

// quantile returns the q-quantile (nearest rank) of the window, 0 when empty.
func (w *lagWindow) quantile(q float64) time.Duration {
	n := w.next
	if w.full {
		n = len(w.buf)
	}
	if n == 0 {
		return 0
	}
	s := slices.Clone(w.buf[:n])
	slices.Sort(s)
	i := int(q*float64(n)+0.999999) - 1
	return s[min(max(i, 0), n-1)]
}
