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
	jsonFile := f.String("json", "", "also write the results as JSON to this file")
	markdown := f.Bool("markdown", false, "print the summary as a Markdown table")
	only := f.String("only", "", "comma-separated sections to run: "+strings.Join(bench.Sections(), ","))
	sweep := f.Duration("sweep-interval", 0, "erasure sweep interval of the fixed-rate run (default: 1s with --quick, 5s otherwise)")
	cpuprofile := f.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	dir := f.String("dir", "", "where to make the temporary data directories (default: the system's temporary directory); the disk decides fsync latency")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return &exitError{2, fmt.Errorf("unexpected argument %q", f.Arg(0))}
	}
	cfg := bench.Config{Quick: *quick, SweepInterval: *sweep, Dir: *dir,
		// Lethe's own log: errors only, so the progress line stays readable.
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Progress: stderr,
	}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Only = append(cfg.Only, s)
		}
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
	fmt.Fprintf(stdout, "lethe bench%s: %s/%s, %d CPUs (%s), %s, %.0f s\n", map[bool]string{true: " --quick"}[*quick],
		m.GOOS, m.GOARCH, m.NumCPU, m.CPUModel, m.GoVersion, report.Elapsed)
	fmt.Fprintln(stdout, "ratio = Lethe ÷ raw (growth: after ÷ before); latencies are per request, fsync before every acknowledgement")
	if *markdown {
		bench.WriteMarkdown(stdout, report.Rows)
	} else if err := bench.WriteTable(stdout, report.Rows); err != nil {
		return err
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
