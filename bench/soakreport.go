package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// span is consecutive samples shown as one point of a chart or one line of the table.
type span []SoakSample

// spans cuts samples into at most n spans of equal length (the last may be shorter).
func spans(samples []SoakSample, n int) []span {
	size := max(1, (len(samples)+n-1)/n)
	var out []span
	for i := 0; i < len(samples); i += size {
		out = append(out, span(samples[i:min(i+size, len(samples))]))
	}
	return out
}

// merged is the span as one sample: rates are averaged, counts of the interval summed,
// lags take the worst, levels and sizes take the peak; At is the span's end.
func (sp span) merged() SoakSample {
	var m SoakSample
	for _, s := range sp {
		m.At = s.At
		m.EventsPerSec += s.EventsPerSec / float64(len(sp))
		m.CheckoutsPS += s.CheckoutsPS / float64(len(sp))
		m.Waiting, m.AwaitErasure = max(m.Waiting, s.Waiting), max(m.AwaitErasure, s.AwaitErasure)
		m.Expunged += s.Expunged
		m.ExpungeLagP99, m.ExpungeLagMax = max(m.ExpungeLagP99, s.ExpungeLagP99), max(m.ExpungeLagMax, s.ExpungeLagMax)
		m.Erased += s.Erased
		m.ErasureLagP50 = max(m.ErasureLagP50, s.ErasureLagP50)
		m.ErasureLagP99, m.ErasureLagMax = max(m.ErasureLagP99, s.ErasureLagP99), max(m.ErasureLagMax, s.ErasureLagMax)
		m.Throttled += s.Throttled
		m.Keystore, m.Projections, m.Stream = max(m.Keystore, s.Keystore), max(m.Projections, s.Projections), max(m.Stream, s.Stream)
	}
	return m
}

// WriteSoakTable prints the soak over time, one line per span of samples (at most 30).
func WriteSoakTable(w io.Writer, s *Soak) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "t (s)\tevents/s\tcheckouts/s\tawaiting erasure\terasure lag p99\tmax\texpunge lag p99\tthrottled\tkeystore\tprojections\tstream\t")
	for _, sp := range spans(s.Samples, 30) {
		m := sp.merged()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f s\t%s\t%s\t%s\t\n", num(math.Round(m.At*10)/10),
			thousands(int64(m.EventsPerSec)), thousands(int64(m.CheckoutsPS)), thousands(int64(m.AwaitErasure)),
			lagCell(m.Erased, m.ErasureLagP99), lagCell(m.Erased, m.ErasureLagMax),
			formatValue(m.ExpungeLagP99, "ms"), m.Throttled,
			formatValue(float64(m.Keystore), "bytes"), formatValue(float64(m.Projections), "bytes"), formatValue(float64(m.Stream), "bytes"))
	}
	return tw.Flush()
}

// lagCell is an erasure lag in seconds, or "—" for an interval in which no sweep ended.
func lagCell(erased int, seconds float64) string {
	if erased == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f s", seconds)
}

// WriteSoakMarkdown writes the soak's charts (Mermaid xychart, which GitHub draws) and the
// table over time, for the README.
func WriteSoakMarkdown(w io.Writer, s *Soak) {
	sp := spans(s.Samples, 60)
	pts := make([]SoakSample, len(sp))
	for i, x := range sp {
		pts[i] = x.merged()
	}
	minutes := s.Duration / 60
	series := func(f func(SoakSample) float64) []float64 {
		out := make([]float64, len(pts))
		for i, p := range pts {
			out[i] = f(p)
		}
		return out
	}
	window := series(func(SoakSample) float64 { return s.Window })
	p99 := series(func(p SoakSample) float64 { return p.ErasureLagP99 })
	worst := series(func(p SoakSample) float64 { return p.ErasureLagMax })
	chart(w, "Erasure lag per interval (s): the window W, the worst, the p99", "minutes", minutes, "seconds", window, worst, p99)
	fmt.Fprintf(w, "\nThe flat line is the window (W = %g s); below it the worst and the 99th-percentile erasure lag of the transactions each sweep erased (0 where no sweep ended).\n\n", s.Window)
	chart(w, "Events appended per second", "minutes", minutes, "events/s", series(func(p SoakSample) float64 { return p.EventsPerSec }))
	fmt.Fprintln(w)
	chart(w, "Transactions awaiting erasure (peak per interval)", "minutes", minutes, "transactions", series(func(p SoakSample) float64 { return float64(p.AwaitErasure) }))
	fmt.Fprintln(w)
	mib := func(f func(SoakSample) int64) []float64 {
		return series(func(p SoakSample) float64 { return float64(f(p)) / (1 << 20) })
	}
	chart(w, "Keystore and projections on disk (MiB): projections above, keystore below", "minutes", minutes, "MiB",
		mib(func(p SoakSample) int64 { return p.Projections }), mib(func(p SoakSample) int64 { return p.Keystore }))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "```")
	WriteSoakTable(w, s)
	fmt.Fprintln(w, "```")
}

// chart writes one Mermaid xychart of lines over a numeric x axis from 0 to xmax.
func chart(w io.Writer, title, xlabel string, xmax float64, ylabel string, lines ...[]float64) {
	top := 0.0
	for _, l := range lines {
		for _, v := range l {
			top = max(top, v)
		}
	}
	top = niceCeil(top)
	fmt.Fprintln(w, "```mermaid")
	fmt.Fprintln(w, "xychart-beta")
	fmt.Fprintf(w, "    title %q\n", title)
	fmt.Fprintf(w, "    x-axis %q 0 --> %s\n", xlabel, num(xmax))
	fmt.Fprintf(w, "    y-axis %q 0 --> %s\n", ylabel, num(top))
	for _, l := range lines {
		cells := make([]string, len(l))
		for i, v := range l {
			cells[i] = num(v)
		}
		fmt.Fprintf(w, "    line [%s]\n", strings.Join(cells, ", "))
	}
	fmt.Fprintln(w, "```")
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v ≤ 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// num prints a chart value with at most three decimals and no trailing zeros.
func num(v float64) string {
	s := strings.TrimRight(fmt.Sprintf("%.3f", v), "0")
	return strings.TrimSuffix(s, ".")
}
