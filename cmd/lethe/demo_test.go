package main

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/imagineif/lethe/internal/testkit"
)

func TestDemoRuns(t *testing.T) {
	t.Parallel()
	var out, errOut testkit.SyncBuffer
	args := []string{"demo", "--data", t.TempDir(), "--duration", "3s", "--items", "60", "--patrons", "20",
		"--kiosks", "3", "--day", "100ms", "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--log-level", "error"}
	if err := run(context.Background(), args, func(string) string { return "" }, nil, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut.String())
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
}
