package expunger

import (
	"math/rand/v2"
	"slices"
	"time"
)

// lagWindow estimates lag quantiles from a uniform sample of every lag it was given
// (reservoir sampling, Vitter's algorithm R), and keeps their count and maximum exactly.
// A sweep erases thousands of transactions at once, oldest first: a ring of the most
// recent lags would keep only the youngest of such a batch and understate the tail. Not
// safe for concurrent use: the Expunger's mutex guards it.
type lagWindow struct {
	buf   []time.Duration
	size  int // capacity of buf
	count int // lags added
	max   time.Duration
}

func newLagWindow(n int) *lagWindow { return &lagWindow{size: n} }

func (w *lagWindow) add(d time.Duration) {
	w.count++
	w.max = max(w.max, d)
	if len(w.buf) < w.size {
		w.buf = append(w.buf, d)
		return
	}
	if i := rand.IntN(w.count); i < w.size {
		w.buf[i] = d
	}
}

// quantile returns the q-quantile (nearest rank) of the sample, 0 when empty; q = 1 is
// the exact maximum.
func (w *lagWindow) quantile(q float64) time.Duration {
	n := len(w.buf)
	if n == 0 {
		return 0
	}
	if q >= 1 {
		return w.max
	}
	s := slices.Clone(w.buf)
	slices.Sort(s)
	i := int(q*float64(n)+0.999999) - 1
	return s[min(max(i, 0), n-1)]
}
