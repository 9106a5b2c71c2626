package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/imagineif/lethe/internal/testkit"
)

func TestDemoRuns(t *testing.T) {
	t.Parallel()
	// One buffer for stdout and stderr, so the order of everything is seen; at log level
	// warn the server's own start says something (a generated master key) on stderr.
	var out testkit.SyncBuffer
	data := t.TempDir()
	args := []string{"demo", "--data", data, "--duration", "3s", "--items", "60", "--patrons", "20",
		"--kiosks", "3", "--day", "100ms", "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--log-level", "warn"}
	if err := run(context.Background(), args, func(string) string { return "" }, nil, &out, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	// The first line comes before the server opens anything, then the seeding says what
	// it does, before the kiosks run.
	first, _, _ := strings.Cut(out.String(), "\n")
	if want := "lethe demo: starting a simulated library in " + data + "; a library day lasts 100ms"; first != want {
		t.Errorf("first line = %q, want %q\n%s", first, want, out.String())
	}
	order := regexp.MustCompile(`^lethe demo: starting [^\n]*\n(time=\S+ level=WARN [^\n]*\n)+dashboard: [^\n]*\nsign in [^\n]*\n` +
		`cataloging 60 items and registering 20 patrons\.\.\.\nseeded in \S+; 3 simulated kiosks start now\n(?s:.*)\ntotals: `)
	if !order.MatchString(out.String()) {
		t.Errorf("demo output is not: the start line, the server's warnings, the dashboard, seeding, totals:\n%s", out.String())
	}
	m := regexp.MustCompile(`totals: checked out (\d+), returned (\d+).*closed and expunged (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no totals line in:\n%s", out.String())
	}
	// --nats-listen is honoured, and the visitor gets kiosk credentials of its own.
	if !regexp.MustCompile(`kiosk API: nats://127\.0\.0\.1:\d+; be a kiosk: lethe kiosk .*--nats-creds \S+visitor\.nk info \d+`).MatchString(out.String()) {
		t.Errorf("no kiosk API line in:\n%s", out.String())
	}
	for i, what := range []string{"checked out", "returned", "expunged"} {
		if n, _ := strconv.Atoi(m[i+1]); n == 0 {
			t.Errorf("demo %s nothing:\n%s", what, out.String())
		}
	}
	// The demo's real history verifies: signed to its end (the stop's checkpoint), no
	// string in it taken for personal data, every close expunged within the window.
	var report testkit.SyncBuffer
	if err := run(context.Background(), []string{"audit", "verify", "--data", data}, func(string) string { return "" }, nil, &report, &report); err != nil ||
		!strings.Contains(report.String(), "unsigned tail: 0 messages") {
		t.Errorf("audit verify of the demo's history: %v\n%s", err, report.String())
	}
}
