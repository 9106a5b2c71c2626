package expunger

import (
	"testing"
	"time"
)

// A sweep erases a batch oldest first; the window's quantiles must describe the whole
// batch, not its youngest tail.
func TestLagWindowSamplesTheWholeBatch(t *testing.T) {
	w := newLagWindow(1000)
	const n = 100_000
	for i := range n {
		w.add(time.Duration(n-i) * time.Millisecond) // oldest (largest lag) first
	}
	if w.count != n || w.max != n*time.Millisecond {
		t.Fatalf("count %d max %s, want %d and %s", w.count, w.max, n, n*time.Millisecond)
	}
	if got := w.quantile(1); got != n*time.Millisecond {
		t.Fatalf("quantile(1) = %s, want the exact maximum", got)
	}
	// Uniform on 1..100 s: the p50 is near 50 s and the p99 near 99 s. A ring of the
	// last 1000 would say 0.5 s and 1 s.
	if p50 := w.quantile(0.5); p50 < 44*time.Second || p50 > 56*time.Second {
		t.Errorf("p50 = %s, want about 50 s", p50)
	}
	if p99 := w.quantile(0.99); p99 < 96*time.Second {
		t.Errorf("p99 = %s, want about 99 s", p99)
	}
	if got := newLagWindow(10).quantile(0.99); got != 0 {
		t.Errorf("empty window: %s, want 0", got)
	}
}
