package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Row is one line of lethe bench's results: Lethe's figure next to the raw engine
// doing the same I/O. Ratio is always Lethe ÷ raw (for growth: after ÷ before), so its
// meaning depends on the unit: above 1 is better for a rate, below 1 for a latency.
type Row struct {
	Section string   `json:"section"`
	Name    string   `json:"name"`
	Unit    string   `json:"unit"` // "events/s", "ms", "bytes", "flushes"
	Raw     *float64 `json:"raw"`  // nil when there is no raw counterpart
	Lethe   float64  `json:"lethe"`
	Ratio   *float64 `json:"ratio"`
	Target  string   `json:"target,omitempty"`
	Met     *bool    `json:"met,omitempty"` // nil when the row has no target
	Note    string   `json:"note,omitempty"`
	// NotCounted is why a row's figures could not be counted (disk flushes on a
	// directory with no block device, or a kernel that does not count them): then raw,
	// lethe and ratio are null, never a guess.
	NotCounted string `json:"not_counted,omitempty"`
}

// MarshalJSON writes a row; one not counted has null for its figures.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	if r.NotCounted == "" {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		plain
		Lethe *float64 `json:"lethe"`
	}{plain: plain(r)})
}

// newRow fills Ratio from raw and lethe.
func newRow(section, name, unit string, raw *float64, lethe float64) Row {
	r := Row{Section: section, Name: name, Unit: unit, Raw: raw, Lethe: lethe}
	if raw != nil && *raw != 0 {
		r.Ratio = ptr(lethe / *raw)
	}
	return r
}

// target sets the row's target and whether it is met.
func (r Row) target(text string, met bool) Row {
	r.Target, r.Met = text, &met
	return r
}

func (r Row) note(text string) Row {
	r.Note = text
	return r
}

func ptr[T any](v T) *T { return &v }

// latencies collects request latencies of one run.
type latencies []time.Duration

// percentile returns the p-th percentile (0 < p ≤ 100) by nearest rank: the smallest
// sample that at least p% of the samples do not exceed. It sorts l.
func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	// The small margin keeps 99.9% of 1000 at rank 999 despite floating point.
	rank := int(math.Ceil(p/100*float64(len(l)) - 1e-9))
	return l[min(max(rank, 1), len(l))-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Machine describes where the benchmark ran.
type Machine struct {
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	NumCPU    int    `json:"num_cpu"`
	GoVersion string `json:"go_version"`
	CPUModel  string `json:"cpu_model,omitempty"`
	MemoryKiB int64  `json:"memory_kib,omitempty"`
}

func machineInfo() Machine {
	m := Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		m.MemoryKiB, _ = strconv.ParseInt(strings.Fields(kb)[0], 10, 64)
	}
	return m
}

// procField returns the value of the first "name : value" line of a /proc file, or "".
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Report is a run's results and where it ran: what lethe bench --json writes.
type Report struct {
	Command  string    `json:"command"`
	Quick    bool      `json:"quick"`
	Started  time.Time `json:"started"`
	Elapsed  float64   `json:"elapsed_s"`
	Machine  Machine   `json:"machine"`
	Rows     []Row     `json:"rows"`
	Soak     *Soak     `json:"soak,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable prints the summary: one line per row, raw figure, Lethe's, the ratio, the
// target and whether it is met.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header(), "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	return tw.Flush()
}

// WriteMarkdown prints the rows as a Markdown table, for the README.
func WriteMarkdown(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| "+strings.Join(header(), " | ")+" |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintln(w, "| "+strings.Join(r.cells(), " | ")+" |")
	}
}

func header() []string {
	return []string{"section", "measure", "raw", "Lethe", "ratio", "target", "met"}
}

// cells are a row's columns as the table and the Markdown show them.
func (r Row) cells() []string {
	if r.NotCounted != "" {
		return []string{r.Section, r.Name, "not counted", "not counted: " + r.NotCounted, "—", r.Target, ""}
	}
	raw := "—"
	if r.Raw != nil {
		raw = formatValue(*r.Raw, r.Unit)
	}
	ratio := "—"
	if r.Ratio != nil {
		ratio = fmt.Sprintf("%.2f", *r.Ratio)
	}
	met := ""
	if r.Met != nil {
		met = "no"
		if *r.Met {
			met = "yes"
		}
	}
	return []string{r.Section, r.Name, raw, formatValue(r.Lethe, r.Unit), ratio, r.Target, met}
}

// formatValue prints a figure in its unit: rates and counts with thousands separators,
// milliseconds with three significant digits, bytes in KiB or MiB.
func formatValue(v float64, unit string) string {
	switch unit {
	case "ms":
		switch {
		case v >= 100:
			return fmt.Sprintf("%.0f ms", v)
		case v >= 10:
			return fmt.Sprintf("%.1f ms", v)
		}
		return fmt.Sprintf("%.2f ms", v)
	case "bytes":
		switch {
		case v >= 10<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		case v >= 1<<10:
			return fmt.Sprintf("%.0f KiB", v/(1<<10))
		}
		return fmt.Sprintf("%.0f B", v)
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "flushes":
		return fmt.Sprintf("%.2f", v)
	}
	return thousands(int64(math.Round(v))) + " " + unit
}

// thousands writes n with comma separators (x/text's printer: the one formatter Lethe's
// command line and benchmark use).
func thousands(n int64) string { return message.NewPrinter(language.English).Sprintf("%d", n) }
