package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/imagineif/lethe/bench"
)

// cmdBench is lethe bench: it runs package bench's sections and prints their report, as
// a table or Markdown, and as JSON to a file if asked.
func cmdBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("bench", getenv, stderr)
	quick := f.Bool("quick", false, "a short run (under a minute on two cores) with small counts")
	large := f.Bool("large", false, "replay, rebuild and start a history of a million events, filled at the highest sustained kiosk load (minutes); alone unless --only names sections")
	jsonFile := f.String("json", "", "also write the results as JSON to this file")
	markdown := f.Bool("markdown", false, "print the summary as a Markdown table")
	only := f.String("only", "", "comma-separated sections to run: "+strings.Join(bench.Sections(), ","))
	sweep := f.Duration("sweep-interval", 0, "erasure sweep interval (the window) of the fixed-rate and soak runs (default: fixed 1s with --quick, 5s otherwise; soak 6s with --quick, 60s otherwise)")
	soak := f.Duration("soak", 0, "run the soak (64 kiosks as fast as answered) for this long, alone unless --only names more sections (default in a full run: 15s with --quick, 2m otherwise)")
	cpuprofile := f.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	dir := f.String("dir", "", "where to make the temporary data directories (default: the system's temporary directory); the disk decides fsync latency")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return &exitError{2, fmt.Errorf("unexpected argument %q", f.Arg(0))}
	}
	if *soak < 0 {
		return &exitError{2, fmt.Errorf("--soak: %s is negative", *soak)}
	}
	cfg := bench.Config{Quick: *quick, Large: *large, SweepInterval: *sweep, Soak: *soak, Dir: *dir,
		// Lethe's own log: errors only, so the progress line stays readable.
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Progress: stderr,
	}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Only = append(cfg.Only, s)
		}
	}
	if *soak > 0 && len(cfg.Only) == 0 {
		cfg.Only = []string{"soak"}
	}
	if err := cfg.Validate(); err != nil {
		return &exitError{2, fmt.Errorf("--only: %w", err)}
	}
	if *cpuprofile != "" {
		fh, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer fh.Close()
		if err := pprof.StartCPUProfile(fh); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	report, err := bench.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	report.Command = "lethe bench " + strings.Join(args, " ")
	m := report.Machine
	fmt.Fprintf(stdout, "lethe bench%s%s: %s/%s, %d CPUs (%s), %s, %.0f s\n", map[bool]string{true: " --quick"}[*quick], map[bool]string{true: " --large"}[*large],
		m.GOOS, m.GOARCH, m.NumCPU, m.CPUModel, m.GoVersion, report.Elapsed)
	fmt.Fprintln(stdout, "ratio = Lethe ÷ raw (growth: after ÷ before); latencies are per request, fsync before every acknowledgement")
	if *markdown {
		bench.WriteMarkdown(stdout, report.Rows)
	} else if err := bench.WriteTable(stdout, report.Rows); err != nil {
		return err
	}
	if report.Soak != nil {
		fmt.Fprintf(stdout, "\nsoak over time (%d kiosks, window %g s):\n", report.Soak.Kiosks, report.Soak.Window)
		if *markdown {
			bench.WriteSoakMarkdown(stdout, report.Soak)
		} else if err := bench.WriteSoakTable(stdout, report.Soak); err != nil {
			return err
		}
	}
	for _, w := range report.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if *jsonFile != "" {
		fh, err := os.Create(*jsonFile)
		if err != nil {
			return err
		}
		if err := bench.WriteJSON(fh, report); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return nil
}
