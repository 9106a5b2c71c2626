package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchQuickRuns runs lethe bench --quick end to end, as CI's smoke step does. It
// takes most of a minute and measures the machine, so it runs only when asked:
// LETHE_BENCH_SMOKE=1 go test -run TestBenchQuickRuns ./cmd/lethe. It checks that the run
// completes and reports every section; it asserts no timing.
func TestBenchQuickRuns(t *testing.T) {
	if testing.Short() || os.Getenv("LETHE_BENCH_SMOKE") != "1" {
		t.Skip("set LETHE_BENCH_SMOKE=1 (and no -short) to run lethe bench --quick")
	}
	file := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	getenv := func(string) string { return "" }
	if err := run(ctx, []string{"bench", "--quick", "--json", file}, getenv, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("lethe bench --quick: %v\nstderr:\n%s", err, stderr.String())
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var r benchReport
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("--json output: %v", err)
	}
	sections := map[string]bool{}
	for _, row := range r.Rows {
		sections[strings.SplitN(row.Section, " ", 2)[0]] = true
		if row.Raw != nil && row.Ratio == nil && *row.Raw != 0 {
			t.Errorf("row %s %s has a raw figure but no ratio", row.Section, row.Name)
		}
	}
	for _, s := range []string{"ingest,", "fixed", "expunge", "replay", "rebuild", "growth,"} {
		if !sections[s] {
			t.Errorf("no %q rows in %v", s, sections)
		}
	}
	if !r.Quick || r.Machine.NumCPU < 1 {
		t.Errorf("report header = %+v", r)
	}
	if !strings.Contains(stdout.String(), "ratio") {
		t.Errorf("no summary table on stdout:\n%s", stdout.String())
	}
}
