package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestSoakSpansMergeWorstAndSum(t *testing.T) {
	t.Parallel()
	var samples []SoakSample
	for i := range 7 {
		samples = append(samples, SoakSample{At: float64(i + 1), EventsPerSec: 100, Erased: i, ErasureLagP99: float64(i),
			AwaitErasure: 10 * i, Throttled: 0.5, Keystore: int64(i)})
	}
	sp := spans(samples, 3)
	if len(sp) != 3 || len(sp[0]) != 3 || len(sp[2]) != 1 {
		t.Fatalf("spans of 7 into 3: lengths %d, %d, %d", len(sp[0]), len(sp[1]), len(sp[2]))
	}
	m := sp[1].merged() // samples 4, 5, 6 (i = 3, 4, 5)
	if m.At != 6 || m.EventsPerSec != 100 || m.Erased != 12 || m.ErasureLagP99 != 5 || m.AwaitErasure != 50 ||
		m.Throttled != 1.5 || m.Keystore != 5 {
		t.Errorf("merged span = %+v", m)
	}
	if got := spans(nil, 30); len(got) != 0 {
		t.Errorf("spans of no samples = %d spans", len(got))
	}
}

func TestSoakMarkdownCharts(t *testing.T) {
	t.Parallel()
	s := &Soak{Duration: 120, Window: 60, Kiosks: 64, Every: 5}
	for i := range 24 {
		s.Samples = append(s.Samples, SoakSample{At: float64(5 * (i + 1)), EventsPerSec: 1200, AwaitErasure: 100 * (i % 6),
			Erased: map[bool]int{true: 500}[i%6 == 5], ErasureLagP99: map[bool]float64{true: 31.5}[i%6 == 5],
			ErasureLagMax: map[bool]float64{true: 32.25}[i%6 == 5], Keystore: 1 << 20, Projections: 3 << 20})
	}
	var buf bytes.Buffer
	WriteSoakMarkdown(&buf, s)
	out := buf.String()
	if n := strings.Count(out, "```mermaid\nxychart-beta\n"); n != 4 {
		t.Errorf("%d Mermaid charts, want 4:\n%s", n, out)
	}
	for _, want := range []string{
		`x-axis "minutes" 0 --> 2`,
		`y-axis "seconds" 0 --> 100`, // the window (60) is the top, rounded up to 1, 2 or 5 × 10^n
		"line [60, 60, 60,",          // the window
		"32.25",                      // a worst erasure lag
		`y-axis "MiB" 0 --> 5`,
		"line [3, 3,", // projections in MiB
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, out)
		}
	}
	// The table: a line per span, "—" where no sweep ended.
	if !strings.Contains(out, "31.5 s") || !strings.Contains(out, "—") {
		t.Errorf("the table lacks a lag or a dash:\n%s", out)
	}
}

func TestNiceCeil(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]float64{0: 1, 0.3: 0.5, 1: 1, 1.2: 2, 4: 5, 6: 10, 60: 100, 1234: 2000} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}
