package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagineif/lethe/progress"
)

// lethe bench measures Lethe next to the raw engines doing the same I/O, in one run,
// against fresh embedded servers in temporary directories: ingest (raw JetStream
// request-publish vs kiosk round trips), replay (raw ordered consumer vs the auditor's
// decode path), projection rebuild, expunge and erasure lag, and on-disk growth. It is a
// measurement, not a test: it asserts no timing and fails only if something breaks.

// benchPlan is how much lethe bench does: --quick keeps the whole run under a minute on
// two cores.
type benchPlan struct {
	quick       bool
	runFor      time.Duration // each ingest run
	kiosks      []int         // concurrent kiosks (and raw publishers) per ingest run
	fixedRate   int           // events per second of the fixed-rate run
	fixedFor    time.Duration // its length
	sweepEvery  time.Duration // erasure sweep interval of the fixed-rate run
	items       int           // items cataloged for the ingest service
	replayRuns  int           // timed replays and rebuilds (the median is reported)
	historyFill time.Duration // kiosk load that makes the history replayed and rebuilt
	growth      []int         // open transactions in the growth runs
}

func newBenchPlan(quick bool) benchPlan {
	if quick {
		return benchPlan{quick: true, runFor: 1500 * time.Millisecond, kiosks: []int{1, 8, 64}, fixedRate: 500,
			fixedFor: 3 * time.Second, sweepEvery: time.Second, items: 200, replayRuns: 1,
			historyFill: 4 * time.Second, growth: []int{40, 160}}
	}
	return benchPlan{runFor: 6 * time.Second, kiosks: []int{1, 8, 64}, fixedRate: 500,
		fixedFor: 15 * time.Second, sweepEvery: 5 * time.Second, items: 640, replayRuns: 3,
		historyFill: 20 * time.Second, growth: []int{300, 1200}}
}

// benchSections are the parts of a run, in order; --only picks some.
func benchSections() []string {
	return []string{"ingest", "fixed", "replay", "rebuild", "expunge", "growth"}
}

func cmdBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("bench", getenv, stderr)
	quick := f.Bool("quick", false, "a short run (under a minute on two cores) with small counts")
	jsonFile := f.String("json", "", "also write the results as JSON to this file")
	markdown := f.Bool("markdown", false, "print the summary as a Markdown table")
	only := f.String("only", "", "comma-separated sections to run: "+strings.Join(benchSections(), ","))
	sweep := f.Duration("sweep-interval", 0, "erasure sweep interval of the fixed-rate run (default: 1s with --quick, 5s otherwise)")
	cpuprofile := f.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	dir := f.String("dir", "", "where to make the temporary data directories (default: the system's temporary directory); the disk decides fsync latency")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return &exitError{2, fmt.Errorf("unexpected argument %q", f.Arg(0))}
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains(benchSections(), s) {
			return &exitError{2, fmt.Errorf("--only: unknown section %q (use %s)", s, strings.Join(benchSections(), ","))}
		}
		want[s] = true
	}
	root, err := os.MkdirTemp(*dir, "lethe-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)

	plan := newBenchPlan(*quick)
	if *sweep > 0 {
		plan.sweepEvery = *sweep
	}
	b := &bencher{
		plan: plan, root: root, want: want,
		// Lethe's own log: errors only, so the progress line stays readable.
		logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		prog:   newBenchProgress(stderr),
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
	started := time.Now()
	runErr := b.run(ctx)
	b.prog.stop()
	if runErr != nil {
		return fmt.Errorf("bench: %w", runErr)
	}
	report := benchReport{Command: "lethe bench " + strings.Join(args, " "), Quick: *quick, Started: started.UTC(),
		Elapsed: time.Since(started).Seconds(), Machine: machineInfo(), Rows: b.rows, Warnings: b.warnings}
	m := report.Machine
	fmt.Fprintf(stdout, "lethe bench%s: %s/%s, %d CPUs (%s), %s, %.0f s\n", map[bool]string{true: " --quick"}[*quick],
		m.GOOS, m.GOARCH, m.NumCPU, m.CPUModel, m.GoVersion, report.Elapsed)
	fmt.Fprintln(stdout, "ratio = Lethe ÷ raw (growth: after ÷ before); latencies are per request, fsync before every acknowledgement")
	if *markdown {
		writeMarkdown(stdout, b.rows)
	} else if err := writeTable(stdout, b.rows); err != nil {
		return err
	}
	for _, w := range b.warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if *jsonFile != "" {
		fh, err := os.Create(*jsonFile)
		if err != nil {
			return err
		}
		if err := writeJSONReport(fh, report); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return nil
}

// bencher runs the sections and collects rows.
type bencher struct {
	plan     benchPlan
	root     string
	want     map[string]bool
	logger   *slog.Logger
	prog     *benchProgress
	rows     []benchRow
	warnings []string
	dirs     int

	eventSize int    // mean size of Lethe's kiosk events, for the raw publishes
	history   string // data directory of the ingest service, replayed and rebuilt
}

func (b *bencher) runs(section string) bool { return len(b.want) == 0 || b.want[section] }

func (b *bencher) add(rows ...benchRow) { b.rows = append(b.rows, rows...) }

func (b *bencher) warn(format string, args ...any) {
	b.warnings = append(b.warnings, fmt.Sprintf(format, args...))
}

// tempDir is a fresh directory under the run's root.
func (b *bencher) tempDir(name string) string {
	b.dirs++
	return filepath.Join(b.root, fmt.Sprintf("%02d-%s", b.dirs, name))
}

func (b *bencher) run(ctx context.Context) error {
	if b.runs("ingest") {
		if err := b.ingest(ctx); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	}
	if b.runs("fixed") || b.runs("expunge") {
		if err := b.fixedAndExpunge(ctx); err != nil {
			return fmt.Errorf("fixed rate: %w", err)
		}
	}
	if b.runs("replay") || b.runs("rebuild") {
		if err := b.fillHistory(ctx); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		if err := b.replayAndRebuild(ctx); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	if b.runs("growth") {
		if err := b.growth(ctx); err != nil {
			return fmt.Errorf("growth: %w", err)
		}
	}
	return ctx.Err()
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (Pebble deletes obsolete files)
			}
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			} else if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// benchProgress is one line on stderr, redrawn in place, only on a terminal: the phase,
// a counter of requests done in it, and the time since the run began.
type benchProgress struct {
	w     io.Writer
	tty   bool
	start time.Time
	mu    sync.Mutex
	phase string
	count atomic.Int64
	stopc chan struct{}
	done  chan struct{}
}

func newBenchProgress(w io.Writer) *benchProgress {
	p := &benchProgress{w: w, tty: progress.IsTerminal(w), start: time.Now(), stopc: make(chan struct{}), done: make(chan struct{})}
	if !p.tty {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stopc:
				fmt.Fprint(p.w, "\r\033[K")
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *benchProgress) draw() {
	p.mu.Lock()
	phase := p.phase
	p.mu.Unlock()
	line := fmt.Sprintf("lethe bench · %s", phase)
	if n := p.count.Load(); n > 0 {
		line += fmt.Sprintf(" · %s done", thousands(n))
	}
	line += fmt.Sprintf(" · %s", time.Since(p.start).Round(time.Second))
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// set names the current phase and resets the counter.
func (p *benchProgress) set(format string, args ...any) {
	p.mu.Lock()
	p.phase = fmt.Sprintf(format, args...)
	p.mu.Unlock()
	p.count.Store(0)
}

func (p *benchProgress) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
}
