package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Disk flushes: Linux keeps no count of a process's fsyncs that can be read without
// tracing, but a block device counts the cache flushes it completes (field 16 of its stat
// file, "flush I/Os", since Linux 5.5; Documentation/block/stat.rst). lethe bench reads
// that count for the disk holding its directory before and after each ingest and
// fixed-rate run. It is device-wide: whatever else writes to the same disk adds to it.
// Pebble's own fdatasync calls are not counted apart: the stores open their file systems
// themselves (vfs.Default in keystore and projections), with no hook to wrap them from
// here.

// flushField is the 1-based position of "flush I/Os" (requests completed) in a block
// device's stat file.
const flushField = 16

// errNoFlushField is a stat line too short to hold the flush count (a kernel before 5.5).
var errNoFlushField = errors.New("no flush count in the block device's stat (Linux before 5.5)")

// parseFlushes returns the flush count of a block device's stat line.
func parseFlushes(text string) (uint64, error) {
	f := strings.Fields(text)
	if len(f) == 0 {
		return 0, errors.New("empty block device stat")
	}
	if len(f) < flushField {
		return 0, fmt.Errorf("%w: %d fields", errNoFlushField, len(f))
	}
	n, err := strconv.ParseUint(f[flushField-1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("block device stat field %d: %w", flushField, err)
	}
	return n, nil
}

// diskStat returns the stat file of the whole disk with device number major:minor, under
// sys (the mount point of sysfs, "/sys"), and the disk's name: for a partition, its
// parent disk's, since flushes go to the disk. It fails with fs.ErrNotExist when there is
// no such block device.
func diskStat(sys string, major, minor uint32) (path, disk string, err error) {
	link := filepath.Join(sys, "dev", "block", fmt.Sprintf("%d:%d", major, minor))
	// The link must be resolved before going up: "link/.." is the link's target's parent
	// for the kernel, but filepath would clean it to the link's own directory.
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		dir = filepath.Dir(dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	path = filepath.Join(dir, "stat")
	if _, err := os.Stat(path); err != nil {
		return "", "", err
	}
	return path, filepath.Base(dir), nil
}

// diskFlushes counts the flushes of the disk holding the benchmark's directory.
type diskFlushes struct {
	stat   string // the disk's stat file; "" when flushes are not counted
	disk   string // its name ("vda")
	reason string // why they are not counted
	// idle is the flushes a second with the bench idle, before its runs (measureIdle).
	idle *float64
}

// openDiskFlushes finds the disk under dir (newDiskFlushes, per system) and reads its
// count once, so that a disk without one is known at the start.
func openDiskFlushes(dir string) diskFlushes {
	d := newDiskFlushes(dir)
	if d.stat != "" {
		if _, err := d.read(); err != nil {
			return diskFlushes{reason: fmt.Sprintf("%s: %v", d.disk, err)}
		}
	}
	return d
}

func (d diskFlushes) read() (uint64, error) {
	b, err := os.ReadFile(d.stat)
	if err != nil {
		return 0, err
	}
	return parseFlushes(string(b))
}

// flushCount is the disk's flushes during one run, or why they were not counted.
type flushCount struct {
	n   uint64
	why string // not "" when not counted
}

// during runs run and counts the disk's flushes from before it starts to after it ends.
func (d diskFlushes) during(run func() error) (flushCount, error) {
	if d.stat == "" {
		return flushCount{why: d.reason}, run()
	}
	before, err := d.read()
	if err != nil {
		return flushCount{why: err.Error()}, run()
	}
	if err := run(); err != nil {
		return flushCount{}, err
	}
	after, err := d.read()
	switch {
	case err != nil:
		return flushCount{why: err.Error()}, nil
	case after < before:
		return flushCount{why: fmt.Sprintf("%s's flush count went back from %d to %d", d.disk, before, after)}, nil
	}
	return flushCount{n: after - before}, nil
}

// eventsPerRoundTrip is what a kiosk round trip appends: checked_out, returned and
// closed, and the expunger's expunged record. The raw runs' publishes are counted in
// groups of as many.
const eventsPerRoundTrip = 4

// flushRows are the disk flushes per round trip and per event of a raw run of
// publishes and a Lethe run of roundTrips round trips that appended events.
func (b *bencher) flushRows(sec string, raw, lethe flushCount, publishes, roundTrips, events int64) []Row {
	perTrip := "disk flushes per round trip"
	perEvent := "disk flushes per event"
	rawTrip := fmt.Sprintf("raw: per %d publishes", eventsPerRoundTrip)
	why := raw.why
	if why == "" {
		why = lethe.why
	}
	switch {
	case why != "":
	case publishes == 0:
		why = "no raw publishes"
	case roundTrips == 0 || events == 0:
		why = "no Lethe round trips"
	}
	if why != "" {
		return []Row{notCounted(sec, perTrip+" ("+rawTrip+")", why), notCounted(sec, perEvent, why)}
	}
	where := fmt.Sprintf("%s, device-wide", b.flushes.disk)
	note := fmt.Sprintf("flushes completed by %s (field %d of %s) from before to after each run: raw %d for %d publishes, Lethe %d for %d round trips (%d events); device-wide: anything else writing to %s adds to it",
		b.flushes.disk, flushField, b.flushes.stat, raw.n, publishes, lethe.n, roundTrips, events, b.flushes.disk)
	if b.flushes.idle != nil {
		note += fmt.Sprintf(" (%.0f flushes/s in a second with the bench idle, before its runs)", *b.flushes.idle)
	}
	rawPerEvent := float64(raw.n) / float64(publishes)
	return []Row{
		newRow(sec, perTrip+" ("+rawTrip+"; "+where+")", "flushes", ptr(rawPerEvent*eventsPerRoundTrip), float64(lethe.n)/float64(roundTrips)).note(note),
		newRow(sec, perEvent+" ("+where+")", "flushes", ptr(rawPerEvent), float64(lethe.n)/float64(events)).note(note),
	}
}

// measureIdle counts the disk's flushes for a second in which the bench does nothing,
// before its runs: what other processes add to the flush rows, at that moment. A rate
// of one a second or more is also a warning.
func (b *bencher) measureIdle(ctx context.Context) {
	const idle = time.Second
	c, err := b.flushes.during(func() error {
		select {
		case <-time.After(idle):
		case <-ctx.Done():
		}
		return ctx.Err()
	})
	if err != nil || c.why != "" {
		return
	}
	rate := float64(c.n) / idle.Seconds()
	b.flushes.idle = &rate
	if rate >= 1 {
		b.warn("%s completed %.0f flushes a second with the bench idle, before its runs: the disk flush rows count other processes' flushes too", b.flushes.disk, rate)
	}
}

// notCounted is a row whose figures could not be counted, and why.
func notCounted(section, name, why string) Row {
	return Row{Section: section, Name: name, Unit: "flushes", NotCounted: why}
}
