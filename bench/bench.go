// Package bench is lethe bench: it measures Lethe next to the raw engines doing the same
// I/O, in one run, against fresh embedded servers in temporary directories: ingest (raw
// JetStream request-publish vs kiosk round trips), replay (raw ordered consumer vs the
// auditor's decode path), projection rebuild, start-up (the embedded server's recovery
// alone vs a whole start), expunge and erasure lag, and on-disk growth.
// It is a measurement, not a test: it asserts no timing and fails only if something
// breaks. Each row of the report sets Lethe's figure beside the raw engine's (Row).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// plan is how much a run does: Quick (lethe bench --quick) keeps the whole run under a
// minute on two cores.
type plan struct {
	quick       bool
	runFor      time.Duration // each ingest run
	kiosks      []int         // concurrent kiosks (and raw publishers) per ingest run
	fixedRate   int           // events per second of the fixed-rate run
	fixedFor    time.Duration // its length
	sweepEvery  time.Duration // erasure sweep interval of the fixed-rate run
	items       int           // items cataloged for the ingest service
	replayRuns  int           // timed replays and rebuilds (the median is reported)
	historyFill time.Duration // kiosk load that makes the history replayed, rebuilt and started
	// historyEvents, when above 0, fills the history until the stream holds this many
	// messages instead (Config.Large); a command's several events are one message, so
	// the history holds more events than that.
	historyEvents int
	startRuns     int           // timed starts of the history (the median is reported)
	growth        []int         // open transactions in the growth runs
	soakFor       time.Duration // the soak's load
}

func newPlan(quick bool) plan {
	if quick {
		return plan{quick: true, runFor: 1500 * time.Millisecond, kiosks: []int{1, 8, 64}, fixedRate: 500,
			fixedFor: 3 * time.Second, sweepEvery: time.Second, items: 200, replayRuns: 1,
			historyFill: 4 * time.Second, startRuns: 1, growth: []int{40, 160}, soakFor: 15 * time.Second}
	}
	return plan{runFor: 6 * time.Second, kiosks: []int{1, 8, 64}, fixedRate: 500,
		fixedFor: 15 * time.Second, sweepEvery: 5 * time.Second, items: 640, replayRuns: 3,
		historyFill: 20 * time.Second, startRuns: 3, growth: []int{300, 1200}, soakFor: 2 * time.Minute}
}

// LargeEvents is the size of a large run's history (Config.Large).
const LargeEvents = 1_000_000

// Sections are the parts of a run, in order; Config.Only (lethe bench --only) picks some.
func Sections() []string {
	return []string{"ingest", "fixed", "replay", "rebuild", "start", "expunge", "growth", "soak"}
}

// Config is what one run measures. Its zero value is the full run of every section, with
// no log and no progress line.
type Config struct {
	Quick bool     // a short run (under a minute on two cores) with small counts
	Only  []string // the sections to run, of Sections(); none means every one
	// SweepInterval is the erasure sweep interval of the fixed-rate run; 0 means 1 s when
	// Quick, 5 s otherwise.
	SweepInterval time.Duration
	// Soak is how long the soak runs the highest sustained kiosk load; 0 means 15 s when
	// Quick, 2 minutes otherwise. Its erasure window is SweepInterval if set, else 6 s when
	// Quick and Lethe's default (60 s) otherwise.
	Soak time.Duration
	// Large makes the history that replay, rebuild and start read a million messages
	// (LargeEvents; about 1.3 million events), filled at the highest sustained kiosk load, and times each once
	// (starts three times); with no Only it runs those three sections alone.
	Large bool
	// Dir is where the run makes its temporary data directories; "" means the system's
	// temporary directory. The disk decides fsync latency.
	Dir      string
	Logger   *slog.Logger // Lethe's own log; nil writes nowhere
	Progress io.Writer    // the progress line is drawn here if it is a terminal; nil is nowhere
}

// Validate reports a section Run does not know.
func (c Config) Validate() error {
	for _, s := range c.Only {
		if !slices.Contains(Sections(), s) {
			return fmt.Errorf("unknown section %q (use %s)", s, strings.Join(Sections(), ","))
		}
	}
	return nil
}

// Run runs the sections cfg asks for against fresh servers in a temporary directory under
// cfg.Dir, removes it, and returns the report: every field but Command, which is the
// caller's to name.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	want := map[string]bool{}
	for _, s := range cfg.Only {
		want[s] = true
	}
	if cfg.Large && len(want) == 0 {
		want = map[string]bool{"replay": true, "rebuild": true, "start": true}
	}
	root, err := os.MkdirTemp(cfg.Dir, "lethe-bench-")
	if err != nil {
		return Report{}, err
	}
	defer os.RemoveAll(root)

	p := newPlan(cfg.Quick)
	if cfg.SweepInterval > 0 {
		p.sweepEvery = cfg.SweepInterval
	}
	if cfg.Soak > 0 {
		p.soakFor = cfg.Soak
	}
	if cfg.Large {
		p.historyEvents, p.replayRuns, p.startRuns = LargeEvents, 1, 3
	}
	b := &bencher{plan: p, root: root, want: want, logger: discardNil(cfg.Logger), prog: newProgressLine(cfg.Progress),
		soakSweep: cfg.SweepInterval, flushes: openDiskFlushes(root)}
	started := time.Now()
	runErr := b.run(ctx)
	b.prog.stop()
	if runErr != nil {
		return Report{}, runErr
	}
	return Report{Quick: cfg.Quick, Started: started.UTC(), Elapsed: time.Since(started).Seconds(),
		Machine: machineInfo(), Rows: b.rows, Soak: b.soakResult, Warnings: b.warnings}, nil
}

// discardNil is logger, or one that writes nowhere if it is nil.
func discardNil(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}

// bencher runs the sections and collects rows.
type bencher struct {
	plan     plan
	root     string
	want     map[string]bool
	logger   *slog.Logger
	prog     *progressLine
	rows     []Row
	warnings []string
	dirs     int

	eventSize     int    // mean size of Lethe's kiosk events, for the raw publishes
	history       string // data directory of the history, replayed, rebuilt and started
	historyFilled string // how long the history took to fill, for the rows' notes

	soakSweep  time.Duration // Config.SweepInterval: the soak's window if set
	soakResult *Soak

	flushes diskFlushes // the flushes of the disk under root, counted around each ingest and fixed-rate run
}

func (b *bencher) runs(section string) bool { return len(b.want) == 0 || b.want[section] }

func (b *bencher) add(rows ...Row) { b.rows = append(b.rows, rows...) }

func (b *bencher) warn(format string, args ...any) {
	b.warnings = append(b.warnings, fmt.Sprintf(format, args...))
}

// tempDir is a fresh directory under the run's root.
func (b *bencher) tempDir(name string) string {
	b.dirs++
	return filepath.Join(b.root, fmt.Sprintf("%02d-%s", b.dirs, name))
}

func (b *bencher) run(ctx context.Context) error {
	if b.runs("ingest") || b.runs("fixed") {
		b.measureIdle(ctx)
	}
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
	if b.runs("replay") || b.runs("rebuild") || b.runs("start") {
		b.history = b.tempDir("history")
		if err := b.fillHistory(ctx, b.history); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	if b.runs("replay") || b.runs("rebuild") {
		if err := b.replayAndRebuild(ctx); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	if b.runs("start") {
		if err := b.start(ctx); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	if b.runs("growth") {
		if err := b.growth(ctx); err != nil {
			return fmt.Errorf("growth: %w", err)
		}
	}
	if b.runs("soak") {
		if err := b.soak(ctx); err != nil {
			return fmt.Errorf("soak: %w", err)
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
