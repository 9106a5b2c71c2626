package keystore

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrPinned reports that Erase could not make a deletion physical because an
// open snapshot (or a long-lived iterator) still pins the old data. Close it
// and run Erase again.
var ErrPinned = errors.New("deleted data pinned by an open snapshot or iterator")

// FenceKey is the one key Erase writes (and deletes again) in every DB it
// sweeps. Its writes drive flushes and manifest rotations. Users of Erase must
// not store anything under it, and must not use range keys (Erase writes
// range-key deletions to force rewrites).
const FenceKey = "\xff\xff\xff\xfflethe.erase.fence"

// PebbleOptions returns Pebble options under which a deletion followed by
// Erase removes the deleted bytes from every file of the database directory.
// Keep the WAL in that directory (leave WALDir empty, no WAL failover).
//
// What they change, and why:
//   - FormatMajorVersion is pinned to the newest format of pebble v2.1.7, so
//     that an upgrade of Pebble never silently changes the on-disk format.
//   - Value separation (blob files) stays disabled: a value moved to a blob
//     file outlives the compaction that drops its key.
//   - WAL files are never recycled. Pebble normally renames an obsolete WAL
//     and overwrites it from the start without truncating, so a deleted value
//     survives in its tail. The cleaner declares that it needs file contents
//     (which turns recycling off), and the file system wrapper's ReuseForWrite
//     removes the old file and creates a fresh one, in case recycling happens
//     anyway.
//   - The MANIFEST rotates as soon as Pebble's rotation heuristic allows
//     (MaxManifestFileSize is 1 byte) and only one previous manifest is kept,
//     so the key bounds of deleted tables leave the manifest after two
//     rotations, which Erase forces.
//   - Obsolete files are deleted at once (no deletion pacing).
//   - Table blocks are not compressed, so that a forensic scan (ScanDir) of
//     the directory sees every value as written; a compressed block could
//     hide a plaintext that is still there.
//   - Pebble logs only its format strings, never their arguments (which can
//     hold keys), at debug level; a fatal error and a corruption are logged
//     with their cause (see PebbleLogger and PebbleCorruption).
//
// The returned options are fresh on every call; the caller may change them.
func PebbleOptions(logger *slog.Logger) *pebble.Options {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(slog.String("component", "pebble"))
	opts := &pebble.Options{
		FormatMajorVersion:     pebble.FormatValueSeparation,
		FS:                     noReuseFS{vfs.Default},
		Cleaner:                noRecycleCleaner{},
		MaxManifestFileSize:    1,
		NumPrevManifest:        1,
		TargetByteDeletionRate: 0,
		Logger:                 pebbleLogger{logger},
		EventListener: &pebble.EventListener{
			BackgroundError: backgroundError(logger),
			DataCorruption:  PebbleCorruption(logger),
			WALCreated: func(info pebble.WALCreateInfo) {
				if info.RecycledFileNum != 0 {
					logger.Warn("pebble recycled a WAL file; erasure of deleted values is not guaranteed")
				}
			},
		},
	}
	opts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{Enabled: false}
	}
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	return opts
}

// noReuseFS is a vfs.FS whose ReuseForWrite never reuses: it removes the old
// file and creates the new one empty. The vfs contract allows this.
type noReuseFS struct{ vfs.FS }

// ReuseForWrite implements vfs.FS.
func (f noReuseFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err := f.FS.Remove(oldname); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return f.FS.Create(newname, category)
}

// Unwrap implements vfs.FS.
func (f noReuseFS) Unwrap() vfs.FS { return f.FS }

// noRecycleCleaner deletes obsolete files like pebble.DeleteCleaner. It also
// carries pebble.ArchiveCleaner's marker method (one level deeper, so Clean
// and String come from DeleteCleaner), which tells Pebble that the cleaner
// needs file contents, and Pebble then never recycles WAL files.
type noRecycleCleaner struct {
	pebble.DeleteCleaner
	needsContents
}

type needsContents struct{ pebble.ArchiveCleaner }

// ExitPebbleFatal is the exit code of a process that Pebble stopped with a fatal
// error: 74, EX_IOERR of sysexits.h, because nearly every Pebble fatal is a write or
// sync that failed (a full disk: "pebble: fatal commit error: write …: no space left
// on device"). It tells a supervisor this exit from a failed start (1) and a usage
// error (2).
const ExitPebbleFatal = 74

// PebbleLogger returns the pebble.Logger of Lethe's Pebble databases. Infof and
// Errorf keep only the format string, at debug level: their arguments can hold keys
// or values. Fatalf logs the formatted message at error level and exits the process
// with ExitPebbleFatal.
func PebbleLogger(logger *slog.Logger) pebble.Logger {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return pebbleLogger{logger}
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, _ ...any) {
	p.l.Debug(strings.TrimSpace(format))
}

func (p pebbleLogger) Errorf(format string, _ ...any) {
	p.l.Debug(strings.TrimSpace(format), slog.Bool("error", true))
}

// Fatalf must not return: Pebble calls it where it cannot go on (a WAL or MANIFEST
// write that failed leaves the database in an unknown state) and relies on that.
//
// It exits rather than panics. A panic can be recovered: net/http recovers one in a
// handler and the staff login recovers one to give its place back, and the process
// would then go on with a database whose commit pipeline is wedged. And a panic's
// text is all the operator gets, so it must be the formatted message, never the
// format alone. The message is logged with its arguments because they are errors
// (file paths and errno), file numbers and keys, and Lethe's Pebble keys name no
// patron: keystore keys are hashes (doc.go), projection keys hashes, barcodes and
// counters (projections/doc.go), staff keys staff account names. Values are never
// arguments. The line is also written to standard error, in case the logger writes
// nowhere; slog's handlers write synchronously, so both are out before the exit.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	cause := strings.TrimSpace(fmt.Sprintf(format, args...))
	p.l.Error("pebble fatal error; exiting", slog.String("cause", cause), slog.Int("exit_code", ExitPebbleFatal))
	fmt.Fprintf(os.Stderr, "lethe: pebble fatal error: %s (exit %d)\n", cause, ExitPebbleFatal)
	os.Exit(ExitPebbleFatal)
}

// PebbleCorruption returns the DataCorruption handler of Lethe's Pebble databases. It
// logs the damaged file and the error, and returns: the read that found the damage
// then fails with a corruption error, which its caller reports (a start fails with
// "open keystore: … corruption …"). Pebble's default handler is Fatalf, which would
// take the whole process down on the first read of a damaged block, and in the past
// hid the cause behind a panic. The key bounds of the damaged table are left out.
func PebbleCorruption(logger *slog.Logger) func(pebble.DataCorruptionInfo) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(info pebble.DataCorruptionInfo) {
		logger.Error("pebble found a damaged file", slog.String("path", info.Path), slog.String("err", firstLine(info.Details)))
	}
}

// ErrDamaged marks a failure caused by a damaged file of one of Lethe's Pebble databases.
var ErrDamaged = errors.New("a database file is damaged")

// Damaged returns err, a Pebble corruption error, as one line that names the damaged
// file and wraps ErrDamaged; Pebble's own text runs over several lines and ends in
// "<corruption detail carrier>". Any other error is returned as it is.
func Damaged(err error) error {
	if err == nil || !pebble.IsCorruptionError(err) {
		return err
	}
	if info := pebble.ExtractDataCorruptionInfo(err); info != nil {
		return fmt.Errorf("%w: %s (%s)", ErrDamaged, info.Path, firstLine(err))
	}
	return fmt.Errorf("%w (%s)", ErrDamaged, firstLine(err))
}

func firstLine(err error) string {
	if err == nil {
		return ""
	}
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// backgroundError logs a failed flush or compaction. Its text can carry key bytes, so
// only a file-system error (operation, path and errno, such as a full disk) is named.
func backgroundError(logger *slog.Logger) func(error) {
	return func(err error) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			logger.Warn("pebble background error", slog.String("cause", pe.Error()))
			return
		}
		logger.Warn("pebble background error")
	}
}

// Erase makes the deletions done so far in db physical: when it returns nil,
// no file of the database directory holds a value, tombstone or table bound
// of a key deleted before the call. db must be on disk, opened with
// PebbleOptions (Erase works with other options, but WAL recycling and a
// large manifest defeat it), and must not use range keys or FenceKey.
//
// The steps: flush the memtables; compact every level over the whole
// keyspace, so tombstones meet the values they delete and both are dropped
// at the bottom level; rewrite any bottom-level table that still carries
// tombstones (DB.Compact never rewrites a table that is already alone at the
// bottom); write and delete FenceKey, with flushes and compactions, until the
// manifest has rotated twice since the compaction, so that neither the
// current nor the kept previous manifest names the old tables; then wait
// until the obsolete WALs, tables and manifests are gone from the directory.
// Waiting is checked against the directory itself, not against Pebble's
// bookkeeping.
//
// Erase is safe to call while other goroutines read and write. A snapshot
// open during Erase keeps deleted values alive; Erase then returns an error
// wrapping ErrPinned, as it does when an iterator pins obsolete tables until
// ctx ends. Concurrent calls on one DB are correct but waste work.
func Erase(ctx context.Context, db *pebble.DB) error {
	if err := erase(ctx, db, vfs.Default, compactAll); err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	return nil
}

// EraseKeys is Erase for the given keys: when it returns nil, no file of the
// database directory holds a value, tombstone or table bound of any of keys
// deleted before the call, nor an older value of any of keys overwritten
// before the call. Deletions and overwrites of other keys may stay in the
// files, so the caller must name every key it deleted or overwrote since
// its last successful sweep (or call Erase). With no keys it does nothing.
//
// Where Erase compacts the whole key space, EraseKeys compacts only spans
// around keys; every other step (the flushes, the manifest rotations, the
// wait for obsolete files) is Erase's. Consecutive keys share a span unless
// a table lies wholly between them: the span would rewrite that table for
// nothing. Each span is compacted through every level, and Pebble rewrites
// every table overlapping it and the tables of the next level those
// overlap. So the work follows the tables that hold the keys, not the keys
// themselves: a table flushed from the memtable spans every key written
// since the flush before it, and in a database of a few large tables,
// scattered keys touch them all. The README's Benchmarks measure what that
// means for the projections.
//
// The same requirements and the same concurrency hold as for Erase.
func EraseKeys(ctx context.Context, db *pebble.DB, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	err := erase(ctx, db, vfs.Default, func(ctx context.Context, db *pebble.DB) error {
		// The fence too: a compaction between the two fence flushes can
		// carry the fence into a table of data, and every fence cycle of the
		// manifest rotation would then rewrite that table.
		return compactKeys(ctx, db, append(slices.Clip(keys), []byte(FenceKey)))
	})
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	return nil
}

// erase runs the steps of Erase on a database whose files are in fsys (vfs.Default on
// disk; the crash tests use a crashable in-memory file system), with compact as the
// compaction step.
func erase(ctx context.Context, db *pebble.DB, fsys vfs.FS, compact func(context.Context, *pebble.DB) error) error {
	pinned := db.Metrics().Snapshots.Count

	// Flush once so that at least one table exists and we learn the
	// directory, then list the WALs: all of them may hold deleted values. A
	// second flush makes every one of them obsolete.
	if err := fenceFlush(db, true); err != nil {
		return err
	}
	dir, err := dbDir(db)
	if err != nil {
		return err
	}
	before, err := listDB(fsys, dir)
	if err != nil {
		return err
	}
	if err := fenceFlush(db, false); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if err := compact(ctx, db); err != nil {
		return err
	}
	if err := rewriteBottomTombstones(ctx, db); err != nil {
		return err
	}
	pinned = max(pinned, db.Metrics().Snapshots.Count)

	// Every table that existed before the compaction and is no longer live
	// must disappear; so must every manifest that existed after it.
	afterCompact, err := listDB(fsys, dir)
	if err != nil {
		return err
	}
	if err := rotateManifest(ctx, db, fsys, dir, afterCompact.maxManifest()); err != nil {
		return err
	}
	stale := before.wals
	stale = append(stale, afterCompact.manifests...)
	if err := waitGone(ctx, db, fsys, dir, stale, append(before.tables, afterCompact.tables...)); err != nil {
		return err
	}
	pinned = max(pinned, db.Metrics().Snapshots.Count)
	if pinned > 0 {
		return fmt.Errorf("%d open snapshots: %w", pinned, ErrPinned)
	}
	return nil
}

// fenceFlush writes FenceKey (or deletes it) and flushes, which makes the WAL
// in use obsolete and records one version edit.
func fenceFlush(db *pebble.DB, set bool) error {
	var err error
	if set {
		err = db.Set([]byte(FenceKey), nil, pebble.NoSync)
	} else {
		err = db.Delete([]byte(FenceKey), pebble.NoSync)
	}
	if err != nil {
		return fmt.Errorf("write fence: %w", err)
	}
	if err := db.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// fenceCycle adds version edits without leaving anything behind: set the
// fence, flush, delete it, flush, compact its two tables away.
func fenceCycle(ctx context.Context, db *pebble.DB) error {
	if err := fenceFlush(db, true); err != nil {
		return err
	}
	if err := fenceFlush(db, false); err != nil {
		return err
	}
	fence := []byte(FenceKey)
	if err := db.Compact(ctx, fence, append(fence, 0), false); err != nil {
		return fmt.Errorf("compact fence: %w", err)
	}
	return nil
}

// compactAll compacts every level over the span of all live tables.
func compactAll(ctx context.Context, db *pebble.DB) error {
	levels, err := db.SSTables()
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	var lo, hi []byte
	for _, level := range levels {
		for _, t := range level {
			if lo == nil || bytes.Compare(t.Smallest.UserKey, lo) < 0 {
				lo = t.Smallest.UserKey
			}
			if hi == nil || bytes.Compare(t.Largest.UserKey, hi) > 0 {
				hi = t.Largest.UserKey
			}
		}
	}
	if lo == nil {
		return nil
	}
	// Compact's bounds are inclusive; it only insists that start < end.
	if err := db.Compact(ctx, lo, append(slices.Clip(hi), 0), false); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	return nil
}

// compactKeys compacts every level over the spans around keys (see
// EraseKeys).
func compactKeys(ctx context.Context, db *pebble.DB, keys [][]byte) error {
	spans, err := keySpans(db, keys)
	if err != nil {
		return err
	}
	for _, s := range spans {
		if err := db.Compact(ctx, s.lo, s.hi, false); err != nil {
			return fmt.Errorf("compact: %w", err)
		}
	}
	return nil
}

// keySpans sorts keys into the spans compactKeys compacts, each with an
// exclusive upper bound. Two consecutive keys share a span unless a live
// table lies wholly between them. Each table's smallest key falls between
// one pair of consecutive keys at most, so planning takes O((keys + tables)
// log tables), and there is at most one span more than there are tables.
func keySpans(db *pebble.DB, keys [][]byte) ([]span, error) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, bytes.Equal)
	if len(keys) == 0 {
		return nil, nil
	}
	levels, err := db.SSTables()
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var tables []span // inclusive bounds
	for _, level := range levels {
		for _, t := range level {
			tables = append(tables, span{lo: t.Smallest.UserKey, hi: t.Largest.UserKey})
		}
	}
	slices.SortFunc(tables, func(a, b span) int { return bytes.Compare(a.lo, b.lo) })
	// between reports whether a table lies wholly inside (a, b).
	between := func(a, b []byte) bool {
		i, _ := slices.BinarySearchFunc(tables, a, func(t span, k []byte) int {
			if bytes.Compare(t.lo, k) <= 0 {
				return -1
			}
			return 1
		})
		for ; i < len(tables) && bytes.Compare(tables[i].lo, b) < 0; i++ {
			if bytes.Compare(tables[i].hi, b) < 0 {
				return true
			}
		}
		return false
	}
	// DB.Compact's bounds are inclusive, but it insists that start < end.
	end := func(k []byte) []byte { return append(slices.Clip(k), 0) }
	var spans []span
	lo, hi := keys[0], keys[0]
	for _, k := range keys[1:] {
		if between(hi, k) {
			spans = append(spans, span{lo: lo, hi: end(hi)})
			lo = k
		}
		hi = k
	}
	return append(spans, span{lo: lo, hi: end(hi)}), nil
}

// rewriteBottomTombstones handles tables at the bottom level that still hold
// point or range tombstones: a snapshot open during an earlier compaction
// kept both the tombstone and the value it deletes, and DB.Compact never
// rewrites such a table again. A range-key deletion over the table's span
// (which deletes no point key) overlaps it, so compacting that span rewrites
// the table and drops what the tombstones delete.
func rewriteBottomTombstones(ctx context.Context, db *pebble.DB) error {
	for attempt := 0; attempt < 2; attempt++ {
		spans, err := bottomTombstoneSpans(db)
		if err != nil {
			return err
		}
		if len(spans) == 0 {
			return nil
		}
		if n := db.Metrics().Snapshots.Count; n > 0 {
			return fmt.Errorf("%d open snapshots: %w", n, ErrPinned)
		}
		for _, s := range spans {
			if err := db.RangeKeyDelete(s.lo, s.hi, pebble.NoSync); err != nil {
				return fmt.Errorf("range key delete: %w", err)
			}
		}
		if err := db.Flush(); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		for _, s := range spans {
			if err := db.Compact(ctx, s.lo, s.hi, false); err != nil {
				return fmt.Errorf("compact: %w", err)
			}
		}
	}
	spans, err := bottomTombstoneSpans(db)
	if err != nil {
		return err
	}
	if len(spans) > 0 {
		return fmt.Errorf("%d bottom-level tables still hold tombstones: %w", len(spans), ErrPinned)
	}
	return nil
}

type span struct{ lo, hi []byte }

func bottomTombstoneSpans(db *pebble.DB) ([]span, error) {
	levels, err := db.SSTables(pebble.WithProperties())
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	if len(levels) == 0 {
		return nil, nil
	}
	var spans []span
	for _, t := range levels[len(levels)-1] {
		p := t.Properties
		if p == nil || (p.NumDeletions == 0 && p.NumRangeDeletions == 0 && p.NumRangeKeyDels == 0) {
			continue
		}
		spans = append(spans, span{
			lo: slices.Clone(t.Smallest.UserKey),
			hi: append(slices.Clone(t.Largest.UserKey), 0),
		})
	}
	return spans, nil
}

// rotateManifest runs fence cycles until two manifests newer than oldMax
// have been seen: the second rotation makes the manifest written before the
// compaction obsolete beyond NumPrevManifest.
func rotateManifest(ctx context.Context, db *pebble.DB, fsys vfs.FS, dir string, oldMax uint64) error {
	seen := map[uint64]bool{}
	// Each cycle adds at least four table additions or removals to the
	// manifest's edit count, and a rotation needs at most one more than the
	// number of live tables.
	tables := int64(0)
	for _, l := range db.Metrics().Levels {
		tables += l.TablesCount
	}
	limit := 8 + int(tables)
	for range limit {
		if err := fenceCycle(ctx, db); err != nil {
			return err
		}
		files, err := listDB(fsys, dir)
		if err != nil {
			return err
		}
		for _, m := range files.manifests {
			if n := fileNum(m); n > oldMax {
				seen[n] = true
			}
		}
		if len(seen) >= 2 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return fmt.Errorf("manifest did not rotate after %d fence cycles", limit)
}

// waitGone polls the directory until none of the stale files, and none of
// the candidate tables that are no longer live, remain.
func waitGone(ctx context.Context, db *pebble.DB, fsys vfs.FS, dir string, stale, tables []string) error {
	delay := 100 * time.Microsecond
	for {
		left, err := remaining(db, fsys, dir, stale, tables)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%d obsolete files remain (%s): %w", len(left), strings.Join(left, ", "),
				errors.Join(ctx.Err(), ErrPinned))
		case <-t.C:
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}

func remaining(db *pebble.DB, fsys vfs.FS, dir string, stale, tables []string) ([]string, error) {
	levels, err := db.SSTables()
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	live := map[uint64]bool{}
	for _, level := range levels {
		for _, t := range level {
			live[uint64(t.FileNum)] = true
		}
	}
	var left []string
	for _, name := range stale {
		if exists(fsys, fsys.PathJoin(dir, name)) {
			left = append(left, name)
		}
	}
	for _, name := range tables {
		if !live[fileNum(name)] && exists(fsys, fsys.PathJoin(dir, name)) {
			left = append(left, name)
		}
	}
	slices.Sort(left)
	return slices.Compact(left), nil
}

func exists(fsys vfs.FS, path string) bool {
	_, err := fsys.Stat(path)
	return err == nil
}

// dbDir finds the directory of an on-disk DB from the path of one of its
// local objects.
func dbDir(db *pebble.DB) (string, error) {
	p := db.ObjProvider()
	for _, meta := range p.List() {
		if !meta.IsRemote() {
			return filepath.Dir(p.Path(meta)), nil
		}
	}
	return "", errors.New("no local table found to locate the database directory")
}

// dbFiles lists the files of a Pebble directory that can hold user data.
type dbFiles struct {
	wals, tables, manifests, blobs []string
}

func listDB(fsys vfs.FS, dir string) (dbFiles, error) {
	var f dbFiles
	names, err := fsys.List(dir)
	if err != nil {
		return f, fmt.Errorf("list database directory: %w", err)
	}
	for _, name := range names {
		switch {
		case strings.HasSuffix(name, ".log"):
			f.wals = append(f.wals, name)
		case strings.HasSuffix(name, ".sst"):
			f.tables = append(f.tables, name)
		case strings.HasSuffix(name, ".blob"):
			f.blobs = append(f.blobs, name)
		case strings.HasPrefix(name, "MANIFEST-"):
			f.manifests = append(f.manifests, name)
		}
	}
	return f, nil
}

func (f dbFiles) maxManifest() uint64 {
	var n uint64
	for _, m := range f.manifests {
		n = max(n, fileNum(m))
	}
	return n
}

// fileNum parses the number in a Pebble file name: 000012.sst, 000034.log,
// MANIFEST-000056. It returns 0 for anything else.
func fileNum(name string) uint64 {
	name = strings.TrimPrefix(name, "MANIFEST-")
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name = name[:i]
	}
	n, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// ScanDir is a forensic helper: it reads every regular file under dir and
// reports, for each needle found, the slash-separated paths (relative to dir,
// sorted) of the files that contain it. The map is keyed by the hex encoding
// of the needle; needles found nowhere are absent, so an empty map means the
// directory is clean. Files that vanish during the walk are skipped.
//
// Pebble tables store keys prefix-compressed: a key that shares a prefix
// with the key before it is written without that prefix. Search for a
// distinctive suffix of a key (an id and what follows it), not the whole key.
// Values are found whole in tables opened with PebbleOptions, which turn
// block compression off.
func ScanDir(dir string, needles [][]byte) (map[string][]string, error) {
	hits := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		for _, n := range needles {
			if len(n) > 0 && bytes.Contains(data, n) {
				k := hex.EncodeToString(n)
				hits[k] = append(hits[k], rel)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	for _, paths := range hits {
		slices.Sort(paths)
	}
	return hits, nil
}
