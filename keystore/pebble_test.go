package keystore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
)

// found scans dir for labelled needles and returns label -> files for the
// ones present.
func found(t *testing.T, dir string, needles map[string][]byte) map[string][]string {
	t.Helper()
	var list [][]byte
	byHex := map[string]string{}
	for label, n := range needles {
		list = append(list, n)
		byHex[hex.EncodeToString(n)] = label
	}
	hits, err := ScanDir(dir, list)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for h, files := range hits {
		out[byHex[h]] = files
	}
	return out
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func openPebble(t *testing.T, dir string, opts *pebble.Options) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func set(t *testing.T, db *pebble.DB, k, v []byte) {
	t.Helper()
	if err := db.Set(k, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func del(t *testing.T, db *pebble.DB, k []byte) {
	t.Helper()
	if err := db.Delete(k, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// linkRows writes n rows whose keys carry a marker id, as a projection's
// link rows carry a patron id. Half are flushed and compacted to the bottom
// level, half stay in the memtable and WAL. It returns the keys, the
// values, and needles for the keys: tables prefix-compress keys, so a
// needle is the key from inside its random id on.
func linkRows(t *testing.T, db *pebble.DB, n int) (keys, vals, keyNeedles [][]byte) {
	t.Helper()
	const prefix = "link/patron-MARKER-"
	for i := range n {
		k := fmt.Appendf(nil, prefix+"%x/item-%04d", randomBytes(8), i)
		v := randomBytes(64)
		set(t, db, k, v)
		keys, vals = append(keys, k), append(vals, v)
		keyNeedles = append(keyNeedles, k[len(prefix)+4:])
		if i == n/2 {
			mustNot(t, db.Flush())
			mustNot(t, db.Compact(context.Background(), []byte("link/"), []byte("link0"), false))
		}
	}
	return keys, vals, keyNeedles
}

func TestEraseRemovesDeletedKeysAndValuesFromEveryFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openPebble(t, dir, PebbleOptions(nil))
	keys, vals, needles := linkRows(t, db, 200)
	gone, kept := map[string][]byte{}, map[string][]byte{}
	for i := range keys {
		if i%2 == 0 {
			del(t, db, keys[i])
			gone[fmt.Sprintf("deleted key %d", i)] = needles[i]
			gone[fmt.Sprintf("deleted value %d", i)] = vals[i]
		} else {
			kept[fmt.Sprintf("kept value %d", i)] = vals[i]
		}
	}
	if hits := found(t, dir, gone); len(hits) != len(gone) {
		t.Fatalf("before Erase %d of %d deleted keys and values are in files, want all: the scan cannot see them", len(hits), len(gone))
	}

	start := time.Now()
	mustNot(t, Erase(context.Background(), db))
	t.Logf("Erase took %v", time.Since(start))

	if hits := found(t, dir, gone); len(hits) > 0 {
		t.Errorf("after Erase, deleted bytes remain: %v", hits)
	}
	if hits := found(t, dir, kept); len(hits) != len(kept) {
		t.Errorf("after Erase, %d of %d kept values are in files, want all", len(hits), len(kept))
	}
	files, err := listDB(vfs.Default, dir)
	mustNot(t, err)
	if len(files.blobs) > 0 {
		t.Errorf("blob files exist: %v; value separation must stay off", files.blobs)
	}

	mustNot(t, db.Close())
	if hits := found(t, dir, gone); len(hits) > 0 {
		t.Errorf("after Close, deleted bytes remain: %v", hits)
	}
	db = openPebble(t, dir, PebbleOptions(nil))
	defer db.Close()
	for i, k := range keys {
		_, closer, err := db.Get(k)
		if i%2 == 0 {
			if !errors.Is(err, pebble.ErrNotFound) {
				t.Errorf("reopened Get(deleted row %d) error = %v, want ErrNotFound", i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("reopened Get(kept row %d) error = %v", i, err)
			continue
		}
		closer.Close()
	}
	if hits := found(t, dir, gone); len(hits) > 0 {
		t.Errorf("after reopen, deleted bytes remain: %v", hits)
	}
}

// Negative control: with default options, deleted values and keys stay in
// the files. If this starts failing, Pebble changed; re-check
// notes/erasure-facts.md before trusting the other tests.
func TestDefaultPebbleKeepsDeletedBytes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openPebble(t, dir, defaultOptions())
	defer db.Close()
	k := fmt.Appendf(nil, "link/patron-MARKER-%x", randomBytes(6))
	v := randomBytes(64)
	set(t, db, k, v)
	mustNot(t, db.Flush())
	del(t, db, k)
	mustNot(t, db.Flush())
	db.TestOnlyWaitForCleaning()
	hits := found(t, dir, map[string][]byte{"value": v, "key": k})
	if len(hits["value"]) == 0 {
		t.Error("default Pebble: deleted value is in no file after Delete and Flush; Pebble's behaviour changed")
	}
	if !containsPrefix(hits["key"], "MANIFEST-") {
		t.Errorf("default Pebble: deleted key in files %v, want a MANIFEST among them", hits["key"])
	}
}

// Negative control: by default Pebble recycles WAL files, so a deleted
// value survives Delete, Flush, a full Compact, later writes and Close in a
// reused WAL. PebbleOptions alone (no Erase) removes that WAL residue.
func TestDefaultPebbleKeepsDeletedValueInRecycledWAL(t *testing.T) {
	t.Parallel()
	run := func(opts *pebble.Options) []string {
		dir := t.TempDir()
		db := openPebble(t, dir, opts)
		var vals [][]byte
		for i := range 50 {
			v := randomBytes(64)
			set(t, db, fmt.Appendf(nil, "k%03d", i), v)
			vals = append(vals, v)
		}
		for i := range 50 {
			del(t, db, fmt.Appendf(nil, "k%03d", i))
		}
		mustNot(t, db.Flush())
		mustNot(t, db.Compact(context.Background(), []byte("k"), []byte("l"), false))
		db.TestOnlyWaitForCleaning()
		set(t, db, []byte("other"), []byte("x"))
		mustNot(t, db.Close())
		needles := map[string][]byte{}
		for i, v := range vals {
			needles[fmt.Sprint(i)] = v
		}
		var wals []string
		for _, files := range found(t, dir, needles) {
			for _, f := range files {
				if strings.HasSuffix(f, ".log") {
					wals = append(wals, f)
				}
			}
		}
		return wals
	}
	if wals := run(defaultOptions()); len(wals) == 0 {
		t.Error("default Pebble: no deleted value left in a WAL; WAL recycling changed, re-check erasure-facts.md")
	}
	if wals := run(PebbleOptions(nil)); len(wals) > 0 {
		t.Errorf("PebbleOptions: deleted values left in WAL files %v", wals)
	}
}

// Negative control: with a large MANIFEST limit the deleted key stays in the
// manifest (as a table bound) after compaction, and Erase reports that it
// could not rotate the manifest rather than claiming success.
func TestLargeManifestKeepsDeletedKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := PebbleOptions(nil)
	opts.MaxManifestFileSize = 128 << 20
	db := openPebble(t, dir, opts)
	defer db.Close()
	k := fmt.Appendf(nil, "link/patron-MARKER-%x", randomBytes(6))
	set(t, db, k, randomBytes(64))
	mustNot(t, db.Flush())
	del(t, db, k)
	mustNot(t, db.Flush())
	mustNot(t, db.Compact(context.Background(), []byte("link/"), []byte("link0"), false))
	db.TestOnlyWaitForCleaning()
	hits := found(t, dir, map[string][]byte{"key": k})
	if !containsPrefix(hits["key"], "MANIFEST-") {
		t.Errorf("large manifest: deleted key in files %v, want a MANIFEST among them", hits["key"])
	}
	err := Erase(context.Background(), db)
	if err == nil || !strings.Contains(err.Error(), "manifest did not rotate") {
		t.Errorf("Erase with a large manifest limit = %v, want a rotation error", err)
	}
}

// DB.Compact does not rewrite a table that is alone at the bottom level. A
// snapshot open during a compaction leaves deleted values and their
// tombstones together in such a table; once the snapshot is closed, Erase
// must rewrite it.
func TestEraseRewritesBottomTableKeptBySnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := PebbleOptions(nil)
	opts.DisableAutomaticCompactions = true // no elision-only compaction to rescue us
	db := openPebble(t, dir, opts)
	defer db.Close()
	ctx := context.Background()
	keys, vals, keyNeedles := linkRows(t, db, 20)
	needles := map[string][]byte{}
	for i := range keys {
		needles[fmt.Sprint("value ", i)] = vals[i]
		needles[fmt.Sprint("key ", i)] = keyNeedles[i]
	}
	mustNot(t, db.Flush())
	mustNot(t, db.Compact(ctx, []byte("link/"), []byte("link0"), false))

	snap := db.NewSnapshot()
	for _, k := range keys {
		del(t, db, k)
	}
	mustNot(t, db.Flush())
	mustNot(t, db.Compact(ctx, []byte("link/"), []byte("link0"), false))
	mustNot(t, snap.Close())

	// What plain Flush and Compact leave behind.
	mustNot(t, db.Flush())
	mustNot(t, db.Compact(ctx, []byte("link/"), []byte("link0"), false))
	db.TestOnlyWaitForCleaning()
	if len(found(t, dir, needles)) == 0 {
		t.Error("Flush+Compact after a snapshot left nothing; DB.Compact now rewrites bottom tables, re-check erasure-facts.md")
	}

	mustNot(t, Erase(ctx, db))
	if hits := found(t, dir, needles); len(hits) > 0 {
		t.Errorf("after Erase, deleted bytes remain: %v", hits)
	}
}

// A snapshot keeps old values, whether deleted or overwritten (as Rotate
// overwrites wrapped keys); Erase must not claim success while one is open.
func TestEraseReportsOpenSnapshot(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(db *pebble.DB, k []byte){
		"delete":    func(db *pebble.DB, k []byte) { del(t, db, k) },
		"overwrite": func(db *pebble.DB, k []byte) { set(t, db, k, randomBytes(64)) },
	} {
		db := openPebble(t, t.TempDir(), PebbleOptions(nil))
		keys, _, _ := linkRows(t, db, 4)
		snap := db.NewSnapshot()
		change(db, keys[0])
		if err := Erase(context.Background(), db); !errors.Is(err, ErrPinned) {
			t.Errorf("%s: Erase with an open snapshot = %v, want ErrPinned", name, err)
		}
		mustNot(t, snap.Close())
		if err := Erase(context.Background(), db); err != nil {
			t.Errorf("%s: Erase after the snapshot closed = %v", name, err)
		}
		mustNot(t, db.Close())
	}
}

// Tombstones already flushed to L0, in a table that does not reach the
// fence key, must still meet the values they delete at the bottom.
func TestEraseCompactsFlushedTombstones(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := PebbleOptions(nil)
	opts.DisableAutomaticCompactions = true
	db := openPebble(t, dir, opts)
	defer db.Close()
	keys, vals, keyNeedles := linkRows(t, db, 20)
	mustNot(t, db.Flush())
	mustNot(t, db.Compact(context.Background(), []byte("link/"), []byte("link0"), false))
	needles := map[string][]byte{}
	for i, k := range keys {
		del(t, db, k)
		needles[fmt.Sprint("value ", i)] = vals[i]
		needles[fmt.Sprint("key ", i)] = keyNeedles[i]
	}
	mustNot(t, db.Flush())
	mustNot(t, Erase(context.Background(), db))
	if hits := found(t, dir, needles); len(hits) > 0 {
		t.Errorf("after Erase, deleted bytes remain: %v", hits)
	}
}

// Compressed blocks would hide plaintext from a forensic scan; PebbleOptions
// stores values as written.
func TestPebbleOptionsStoreValuesUncompressed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openPebble(t, dir, PebbleOptions(nil))
	defer db.Close()
	needles := map[string][]byte{}
	for i := range 50 {
		v := []byte(strings.Repeat(fmt.Sprintf("Jane Doe %02d, 12 Main St; ", i), 8))
		set(t, db, fmt.Appendf(nil, "row-%02d", i), v)
		needles[fmt.Sprint("value ", i)] = v
	}
	mustNot(t, db.Flush())
	for label, files := range found(t, dir, needles) {
		if !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, ".sst") }) {
			t.Errorf("%s is in %v, not in a table", label, files)
		}
		delete(needles, label)
	}
	if len(needles) > 0 {
		t.Errorf("%d compressible values are not in any file as written", len(needles))
	}
}

// An open iterator keeps obsolete tables on disk; Erase waits for them and
// fails when ctx ends first, instead of claiming success.
func TestEraseWaitsForOpenIterator(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openPebble(t, dir, PebbleOptions(nil))
	defer db.Close()
	keys, vals, _ := linkRows(t, db, 20)
	mustNot(t, db.Flush())
	it, err := db.NewIter(nil)
	mustNot(t, err)
	it.First()
	for _, k := range keys {
		del(t, db, k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := Erase(ctx, db); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Erase with an open iterator = %v, want it to wait until the deadline", err)
	}
	mustNot(t, it.Close())
	mustNot(t, Erase(context.Background(), db))
	needles := map[string][]byte{}
	for i := range vals {
		needles[fmt.Sprint("value ", i)] = vals[i]
	}
	if hits := found(t, dir, needles); len(hits) > 0 {
		t.Errorf("after iterator closed and Erase, deleted values remain: %v", hits)
	}
}

func TestEraseWhileOthersWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openPebble(t, dir, PebbleOptions(nil))
	defer db.Close()
	keys, vals, keyNeedles := linkRows(t, db, 40)
	for _, k := range keys {
		del(t, db, k)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Appendf(nil, "w%d-%d", g, i%50)
				if err := db.Set(k, randomBytes(32), pebble.NoSync); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if err := db.Delete(k, pebble.NoSync); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	for range 3 {
		if err := Erase(context.Background(), db); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()

	needles := map[string][]byte{}
	for i := range keys {
		needles[fmt.Sprint("key ", i)] = keyNeedles[i]
		needles[fmt.Sprint("value ", i)] = vals[i]
	}
	if hits := found(t, dir, needles); len(hits) > 0 {
		t.Errorf("after Erase under concurrent writes, deleted bytes remain: %v", hits)
	}
}

// The options are pinned so that a Pebble upgrade shows up here first.
func TestPebbleOptionsPinned(t *testing.T) {
	t.Parallel()
	opts := PebbleOptions(nil)
	if opts.FormatMajorVersion != pebble.FormatNewest {
		t.Errorf("FormatMajorVersion = %v, FormatNewest = %v: Pebble was upgraded; re-check erasure-facts.md and pin the new format",
			opts.FormatMajorVersion, pebble.FormatNewest)
	}
	if opts.Experimental.ValueSeparationPolicy().Enabled {
		t.Error("value separation is enabled")
	}
	if opts.NumPrevManifest != 1 || opts.MaxManifestFileSize != 1 {
		t.Errorf("NumPrevManifest, MaxManifestFileSize = %d, %d, want 1, 1", opts.NumPrevManifest, opts.MaxManifestFileSize)
	}
	if fmt.Sprint(opts.Cleaner) != "delete" {
		t.Errorf("Cleaner = %v, want delete", opts.Cleaner)
	}
}

func TestNoReuseFSCreatesFreshFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fs := PebbleOptions(nil).FS
	old, next := filepath.Join(dir, "000001.log"), filepath.Join(dir, "000002.log")
	mustNot(t, os.WriteFile(old, []byte("deleted value from an old WAL"), 0o600))
	f, err := fs.ReuseForWrite(old, next, "test")
	mustNot(t, err)
	_, err = f.Write([]byte("new"))
	mustNot(t, err)
	mustNot(t, f.Close())
	got, err := os.ReadFile(next)
	mustNot(t, err)
	if string(got) != "new" {
		t.Errorf("reused file holds %q, want %q", got, "new")
	}
	if exists(vfs.Default, old) {
		t.Error("old file still exists after ReuseForWrite")
	}
}

func TestScanDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustNot(t, os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o700))
	mustNot(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("xx NEEDLE-ONE yy"), 0o600))
	mustNot(t, os.WriteFile(filepath.Join(dir, "sub", "b.bin"), []byte("NEEDLE-ONE and NEEDLE-TWO"), 0o600))
	mustNot(t, os.WriteFile(filepath.Join(dir, "sub", "deeper", "c"), []byte("nothing"), 0o600))
	mustNot(t, os.Symlink(filepath.Join(dir, "a.txt"), filepath.Join(dir, "link")))

	got, err := ScanDir(dir, [][]byte{[]byte("NEEDLE-ONE"), []byte("NEEDLE-TWO"), []byte("ABSENT")})
	mustNot(t, err)
	want := map[string][]string{
		hex.EncodeToString([]byte("NEEDLE-ONE")): {"a.txt", "sub/b.bin"},
		hex.EncodeToString([]byte("NEEDLE-TWO")): {"sub/b.bin"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ScanDir mismatch (-want +got):\n%s", diff)
	}
	if _, err := ScanDir(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("ScanDir(missing dir) = nil error, want error")
	}
}

// defaultOptions are Pebble's defaults, with its logging silenced.
func defaultOptions() *pebble.Options {
	return &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}}
}

func containsPrefix(files []string, prefix string) bool {
	for _, f := range files {
		if strings.HasPrefix(f, prefix) {
			return true
		}
	}
	return false
}

// EraseKeys erases what it is told: deleted keys and values, and the old
// values of overwritten keys, from every file, and keeps everything else.
func TestEraseKeysRemovesNamedKeysFromEveryFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openPebble(t, dir, PebbleOptions(nil))
	keys, vals, needles := linkRows(t, db, 200)
	gone, kept := map[string][]byte{}, map[string][]byte{}
	var named [][]byte
	for i := range keys {
		switch i % 3 {
		case 0:
			del(t, db, keys[i])
			gone[fmt.Sprintf("deleted key %d", i)] = needles[i]
			gone[fmt.Sprintf("deleted value %d", i)] = vals[i]
			named = append(named, keys[i])
		case 1:
			v := randomBytes(64)
			set(t, db, keys[i], v)
			gone[fmt.Sprintf("overwritten value %d", i)] = vals[i]
			kept[fmt.Sprintf("new value %d", i)] = v
			named = append(named, keys[i])
		default:
			kept[fmt.Sprintf("kept value %d", i)] = vals[i]
		}
	}
	if hits := found(t, dir, gone); len(hits) != len(gone) {
		t.Fatalf("before EraseKeys %d of %d deleted or overwritten bytes are in files, want all: the scan cannot see them", len(hits), len(gone))
	}
	mustNot(t, EraseKeys(context.Background(), db, named))
	if hits := found(t, dir, gone); len(hits) > 0 {
		t.Errorf("after EraseKeys, deleted or overwritten bytes remain: %v", hits)
	}
	if hits := found(t, dir, kept); len(hits) != len(kept) {
		t.Errorf("after EraseKeys, %d of %d kept values are in files, want all", len(hits), len(kept))
	}
	mustNot(t, db.Close())
	db = openPebble(t, dir, PebbleOptions(nil))
	defer db.Close()
	if hits := found(t, dir, gone); len(hits) > 0 {
		t.Errorf("after reopen, deleted or overwritten bytes remain: %v", hits)
	}
	for i, k := range keys {
		_, closer, err := db.Get(k)
		if i%3 == 0 {
			if !errors.Is(err, pebble.ErrNotFound) {
				t.Errorf("reopened Get(deleted row %d) error = %v, want ErrNotFound", i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("reopened Get(row %d) error = %v, want nil", i, err)
			continue
		}
		closer.Close()
	}
}

// spreadRows writes n rows of 200 bytes in key order and compacts them into
// bottom-level tables of about 16 KiB, so that a row lives in one table among
// many. Automatic compactions are off, so the tables stay as they are.
func spreadRows(t *testing.T, n int) (db *pebble.DB, dir string, keys, vals [][]byte) {
	t.Helper()
	dir = t.TempDir()
	opts := PebbleOptions(nil)
	opts.DisableAutomaticCompactions = true
	for i := range opts.TargetFileSizes {
		opts.TargetFileSizes[i] = 16 << 10
	}
	db = openPebble(t, dir, opts)
	t.Cleanup(func() { db.Close() })
	b := db.NewBatch()
	for i := range n {
		k, v := fmt.Appendf(nil, "row/%05d", i), randomBytes(200)
		mustNot(t, b.Set(k, v, nil))
		keys, vals = append(keys, k), append(vals, v)
	}
	mustNot(t, b.Commit(pebble.Sync))
	mustNot(t, Erase(context.Background(), db))
	return db, dir, keys, vals
}

// tableNums returns the file numbers of the live tables.
func tableNums(t *testing.T, db *pebble.DB) map[uint64]bool {
	t.Helper()
	levels, err := db.SSTables()
	mustNot(t, err)
	out := map[uint64]bool{}
	for _, level := range levels {
		for _, tb := range level {
			out[uint64(tb.FileNum)] = true
		}
	}
	return out
}

// EraseKeys compacts around the named keys, not the whole key space: tables
// far from them are not rewritten, and a deletion it was not told about
// stays in the files (as the contract warns), while the named one goes.
func TestEraseKeysCompactsOnlyAroundNamedKeys(t *testing.T) {
	t.Parallel()
	db, dir, keys, vals := spreadRows(t, 2000)
	before := tableNums(t, db)
	if len(before) < 10 {
		t.Fatalf("%d tables, want at least 10: the test needs a row to live among many tables", len(before))
	}
	// The unnamed deletion is flushed on its own, as an earlier sweep's leftover would be.
	del(t, db, keys[10])
	mustNot(t, db.Flush())
	del(t, db, keys[1900])
	needles := map[string][]byte{"named": vals[1900], "unnamed": vals[10]}
	if hits := found(t, dir, needles); len(hits) != 2 {
		t.Fatalf("before EraseKeys found %v, want both deleted values: the scan cannot see them", hits)
	}

	mustNot(t, EraseKeys(context.Background(), db, [][]byte{keys[1900]}))
	hits := found(t, dir, needles)
	if len(hits["named"]) > 0 {
		t.Errorf("the named deleted value is still in %v", hits["named"])
	}
	if len(hits["unnamed"]) == 0 {
		t.Error("the deletion EraseKeys was not told about is in no file: it compacted more than the named key's span")
	}
	after := tableNums(t, db)
	untouched := 0
	for n := range before {
		if after[n] {
			untouched++
		}
	}
	if untouched < len(before)/2 {
		t.Errorf("%d of %d tables survived EraseKeys of one key, want most of them", untouched, len(before))
	}
	// Erase, told nothing, takes the rest.
	mustNot(t, Erase(context.Background(), db))
	if hits := found(t, dir, needles); len(hits) > 0 {
		t.Errorf("after Erase, deleted values remain: %v", hits)
	}
}

// Keys in one table share a span; a table wholly between two keys splits
// them, since one span would rewrite it for nothing.
func TestKeySpans(t *testing.T) {
	t.Parallel()
	db, _, keys, _ := spreadRows(t, 2000)
	levels, err := db.SSTables()
	mustNot(t, err)
	bottom := levels[len(levels)-1]
	if len(bottom) < 4 {
		t.Fatalf("%d bottom tables, want at least 4", len(bottom))
	}
	first, third := bottom[0], bottom[2]
	in := func(tb pebble.SSTableInfo, k []byte) bool {
		return bytes.Compare(tb.Smallest.UserKey, k) <= 0 && bytes.Compare(k, tb.Largest.UserKey) <= 0
	}
	var a, b, c []byte // a and b in the first table, c in the third
	for _, k := range keys {
		switch {
		case in(first, k) && a == nil:
			a = k
		case in(first, k):
			b = k
		case in(third, k) && c == nil:
			c = k
		}
	}
	spans, err := keySpans(db, [][]byte{c, b, a, b})
	mustNot(t, err)
	want := []span{{lo: a, hi: append(slices.Clone(b), 0)}, {lo: c, hi: append(slices.Clone(c), 0)}}
	if diff := cmp.Diff(want, spans, cmp.AllowUnexported(span{})); diff != "" {
		t.Errorf("keySpans mismatch (-want +got):\n%s", diff)
	}
	if spans, err := keySpans(db, nil); err != nil || len(spans) != 0 {
		t.Errorf("keySpans(nil) = %v, %v, want none", spans, err)
	}
}
