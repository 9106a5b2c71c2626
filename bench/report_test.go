package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLatencyPercentiles(t *testing.T) {
	t.Parallel()
	var l latencies
	for i := 100; i >= 1; i-- { // 1..100 ms, out of order
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{99.9, 100 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0.5, 1 * time.Millisecond},
		{1, 1 * time.Millisecond},
	} {
		if got := l.percentile(tc.p); got != tc.want {
			t.Errorf("percentile(%v) of 1..100 ms = %v, want %v", tc.p, got, tc.want)
		}
	}
	one := latencies{7 * time.Millisecond}
	if got := one.percentile(99.9); got != 7*time.Millisecond {
		t.Errorf("percentile(99.9) of one sample = %v, want 7ms", got)
	}
	if got := (latencies{}).percentile(50); got != 0 {
		t.Errorf("percentile of no samples = %v, want 0", got)
	}
	// 1000 samples: p99.9 is the 999th, not the largest.
	var k latencies
	for i := 1; i <= 1000; i++ {
		k = append(k, time.Duration(i)*time.Microsecond)
	}
	if got := k.percentile(99.9); got != 999*time.Microsecond {
		t.Errorf("percentile(99.9) of 1..1000 µs = %v, want 999µs", got)
	}
}

func TestFormatValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{1234567.4, "events/s", "1,234,567 events/s"},
		{999, "events/s", "999 events/s"},
		{0.423, "ms", "0.42 ms"},
		{12.345, "ms", "12.3 ms"},
		{1234.6, "ms", "1235 ms"},
		{512, "bytes", "512 B"},
		{40960, "bytes", "40 KiB"},
		{25 << 20, "bytes", "25.0 MiB"},
	} {
		if got := formatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
	if got := thousands(-1234); got != "-1,234" {
		t.Errorf("thousands(-1234) = %q", got)
	}
}

func testRows() []Row {
	return []Row{
		newRow("ingest, 1 kiosk", "throughput", "events/s", ptr(2000.0), 500).target("≥ 0.8× raw", false),
		newRow("ingest, 1 kiosk", "p99 latency", "ms", ptr(0.5), 4),
		newRow("expunge", "expunge lag p99", "ms", nil, 30).target("< 100 ms", true),
	}
}

func TestSummaryTable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteTable(&buf, testRows()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	want := [][]string{
		{"section", "measure", "raw", "Lethe", "ratio", "target", "met"},
		{"ingest,", "1", "kiosk", "throughput", "2,000", "events/s", "500", "events/s", "0.25", "≥", "0.8×", "raw", "no"},
		{"ingest,", "1", "kiosk", "p99", "latency", "0.50", "ms", "4.00", "ms", "8.00"},
		{"expunge", "expunge", "lag", "p99", "—", "30.0", "ms", "—", "<", "100", "ms", "yes"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table has %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		if diff := cmp.Diff(want[i], strings.Fields(line)); diff != "" {
			t.Errorf("line %d (-want +got):\n%s", i, diff)
		}
	}
	// Columns line up (in characters): every row's Lethe figure starts where the
	// header's does.
	col := strings.Index(lines[0], "Lethe")
	for _, line := range lines[1:] {
		r := []rune(line)
		if len(r) <= col || r[col-1] != ' ' || r[col] == ' ' {
			t.Errorf("column Lethe not aligned in %q", line)
		}
	}

	buf.Reset()
	WriteMarkdown(&buf, testRows())
	md := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(md) != 5 || md[1] != "|---|---|---|---|---|---|---|" ||
		md[2] != "| ingest, 1 kiosk | throughput | 2,000 events/s | 500 events/s | 0.25 | ≥ 0.8× raw | no |" ||
		md[4] != "| expunge | expunge lag p99 | — | 30.0 ms | — | < 100 ms | yes |" {
		t.Errorf("markdown:\n%s", buf.String())
	}
}

func TestJSONReport(t *testing.T) {
	t.Parallel()
	r := Report{Command: "lethe bench --quick", Quick: true, Started: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC),
		Elapsed: 42.5, Machine: Machine{GOOS: "linux", GOARCH: "amd64", NumCPU: 2, GoVersion: "go1.26.8", CPUModel: "Test CPU"},
		Rows: testRows()}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"command": "lethe bench --quick", "quick": true, "started": "2026-11-27T12:00:00Z", "elapsed_s": 42.5,
		"machine": map[string]any{"goos": "linux", "goarch": "amd64", "num_cpu": 2.0, "go_version": "go1.26.8", "cpu_model": "Test CPU"},
		"rows": []any{
			map[string]any{"section": "ingest, 1 kiosk", "name": "throughput", "unit": "events/s", "raw": 2000.0, "lethe": 500.0,
				"ratio": 0.25, "target": "≥ 0.8× raw", "met": false},
			map[string]any{"section": "ingest, 1 kiosk", "name": "p99 latency", "unit": "ms", "raw": 0.5, "lethe": 4.0, "ratio": 8.0},
			map[string]any{"section": "expunge", "name": "expunge lag p99", "unit": "ms", "raw": nil, "lethe": 30.0, "ratio": nil,
				"target": "< 100 ms", "met": true},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON report (-want +got):\n%s", diff)
	}
}

func TestMachineInfo(t *testing.T) {
	t.Parallel()
	m := machineInfo()
	if m.GOOS == "" || m.GOARCH == "" || m.NumCPU < 1 || !strings.HasPrefix(m.GoVersion, "go") {
		t.Errorf("machineInfo() = %+v", m)
	}
}
