package projections

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/imagineif/lethe/ledger"
)

// The crash test runs the projections on Pebble's crashable in-memory file system. A crash
// clone holds what was synced when it was taken and, with UnsyncedDataPercent, some of
// what was not: what a disk holds after power loss at that moment. The projections commit
// without fsync (they are disposable), so a crash may lose any suffix of the batches
// applied; what it must never do is keep a batch's rows without its m/applied, or the
// reverse, or half a batch.

// crashPoint is a crash clone and what the test knew when it was taken.
type crashPoint struct {
	fs       *vfs.MemFS
	begun    int // Apply calls begun: the clone holds at most these batches
	returned int // Apply calls that had returned, at least
	what     string
}

// crashRecorder is a vfs.FS that takes a crash clone at every write to a WAL or a
// MANIFEST, from inside Pebble's commit and flush: crashes between a batch's commit and
// Apply's return, and in the middle of a flush.
type crashRecorder struct {
	vfs.FS
	mem *vfs.MemFS

	begun   atomic.Int64 // set by the test before each Apply
	mu      sync.Mutex
	rng     *rand.Rand
	n       int
	pending []crashPoint
}

// Create implements vfs.FS: the WAL's and the MANIFEST's writes take crash clones.
func (r *crashRecorder) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := r.FS.Create(name, category)
	if err != nil || !(strings.HasSuffix(name, ".log") || strings.Contains(name, "MANIFEST")) {
		return f, err
	}
	return &crashOnWrite{File: f, r: r, name: r.PathBase(name)}, nil
}

// Unwrap implements vfs.FS.
func (r *crashRecorder) Unwrap() vfs.FS { return r.FS }

// clone takes a crash clone, keeping none, half or all of the unsynced data in turn.
func (r *crashRecorder) clone(begun, returned int, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pct := []int{0, 50, 100}[r.n%3]
	r.n++
	c := vfs.CrashCloneCfg{UnsyncedDataPercent: pct}
	if pct > 0 {
		c.RNG = r.rng
	}
	r.pending = append(r.pending, crashPoint{r.mem.CrashClone(c), begun, returned, fmt.Sprintf("%s, %d%% of the unsynced data", what, pct)})
}

// tear takes a crash clone in which the newest WAL ends at a record boundary, or inside
// a record, chosen at random among the records written to it: what the disk holds when
// power fails after it persisted that much of what Pebble wrote. A batch is one record,
// so a cut between two records is a crash between two commits, and a cut inside one is a
// batch torn in the middle, which replay must drop whole.
func (r *crashRecorder) tear(begun, returned int, what string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	fs := r.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: r.rng})
	names, err := fs.List("p")
	if err != nil {
		return err
	}
	wal := ""
	for _, n := range names {
		if strings.HasSuffix(n, ".log") && n > wal {
			wal = n
		}
	}
	if wal == "" {
		return fmt.Errorf("no WAL in %v", names)
	}
	num, err := strconv.ParseUint(strings.TrimSuffix(wal, ".log"), 10, 64)
	if err != nil {
		return err
	}
	path := fs.PathJoin("p", wal)
	f, err := fs.Open(path)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return err
	}
	// The offset of each whole record, and the end of the last.
	var offsets []int64
	rd := newRecordReader(record.NewReader, bytes.NewReader(data), num)
	for {
		offsets = append(offsets, rd.Offset())
		rec, err := rd.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, rec)
		}
		if err != nil {
			break // the end of what was written: a zeroed or partial block
		}
	}
	if len(offsets) < 2 {
		return nil // no whole record yet: nothing to cut between
	}
	k := r.rng.IntN(len(offsets) - 1)
	cut, how := offsets[k], "between two records"
	if r.rng.IntN(2) == 0 {
		cut += 1 + r.rng.Int64N(offsets[k+1]-offsets[k]-1)
		how = "inside a record"
	}
	w, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := w.Write(data[:cut]); err != nil {
		return err
	}
	if err := w.Sync(); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	r.pending = append(r.pending, crashPoint{fs, begun, returned, fmt.Sprintf("%s, %s cut at byte %d of %d (%s)", what, wal, cut, len(data), how)})
	return nil
}

// newRecordReader calls record.NewReader with the WAL's number, whose type is internal to
// Pebble: N is inferred from newReader.
func newRecordReader[N ~uint64](newReader func(io.Reader, N) *record.Reader, r io.Reader, num uint64) *record.Reader {
	return newReader(r, N(num))
}

// take returns the clones taken since the last call.
func (r *crashRecorder) take() []crashPoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending
	r.pending = nil
	return p
}

// crashOnWrite is a file whose every write takes a crash clone once it is done.
type crashOnWrite struct {
	vfs.File
	r    *crashRecorder
	name string
}

func (f *crashOnWrite) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	begun := int(f.r.begun.Load())
	f.r.clone(begun, max(begun-1, 0), fmt.Sprintf("during batch %d, after a write to %s", begun, f.name))
	return n, err
}

// TestApplyIsExactlyOnceAcrossCrashes applies a varied history in batches on the crashable
// file system, with flushes between some of them, and crashes it after every batch and at
// every write to a WAL or MANIFEST. Each crash reopens at a batch boundary (m/applied is
// 0 or the last sequence of a batch begun), with exactly the rows a rebuild of the stream
// up to m/applied makes, row for row: no event of the prefix is missing or applied twice,
// and none after it is there. Resumed from there with the whole stream redelivered, the
// projections end equal to the whole history applied once.
func TestApplyIsExactlyOnceAcrossCrashes(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	msgs := historyMsgs(t, 11)
	rng := rand.New(rand.NewPCG(11, 12))
	var batches [][]ledger.Msg
	for i := 0; i < len(msgs); {
		j := min(i+1+rng.IntN(40), len(msgs))
		batches = append(batches, msgs[i:j])
		i = j
	}
	// The rebuild of every prefix that ends at a batch boundary, made one event at a time
	// so that it shares no batch with the store that crashes.
	want := map[uint64]map[string]string{}
	ref, err := Open("ref", keys, v, Config{Location: time.UTC, fs: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want[0] = rowDump(t, ref)
	for _, b := range batches {
		for _, m := range b {
			if err := ref.Apply([]ledger.Msg{m}); err != nil {
				t.Fatal(err)
			}
		}
		want[ref.Applied()] = rowDump(t, ref)
	}
	last := msgs[len(msgs)-1].Seq
	if ref.Applied() != last {
		t.Fatalf("the rebuild applied %d, want %d", ref.Applied(), last)
	}

	mem := vfs.NewCrashableMem()
	rec := &crashRecorder{FS: mem, mem: mem, rng: rand.New(rand.NewPCG(11, 13))}
	s, err := Open("p", keys, v, Config{Location: time.UTC, fs: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var (
		checked, lost int
		applied       = map[uint64]bool{}
		resumed       = map[uint64]bool{}
	)
	check := func(c crashPoint) {
		t.Helper()
		checked++
		st, err := Open("p", keys, v, Config{Location: time.UTC, fs: c.fs})
		if err != nil {
			t.Fatalf("open after a crash (%s): %v", c.what, err)
		}
		defer st.Close()
		a := st.Applied()
		rows, ok := want[a]
		if !ok || a > boundary(batches, c.begun) {
			t.Fatalf("crash %s: m/applied = %d, want 0 or the end of one of the %d batches begun", c.what, a, c.begun)
		}
		if diff := cmp.Diff(rows, rowDump(t, st)); diff != "" {
			t.Fatalf("crash %s: the rows differ from a rebuild of the stream up to m/applied %d (-rebuild +reopened):\n%s", c.what, a, diff)
		}
		applied[a] = true
		if a < boundary(batches, c.returned) {
			lost++
		}
		// Resume a few of them as the projector does after a restart: the stream delivered
		// again from the start (a consumer may redeliver), applied in the same batches.
		if a > 0 && a < last && len(resumed) < 4 && !resumed[a] {
			resumed[a] = true
			for _, b := range batches {
				if err := st.Apply(b); err != nil {
					t.Fatalf("resume after crash %s: %v", c.what, err)
				}
			}
			if diff := cmp.Diff(want[last], rowDump(t, st)); diff != "" {
				t.Fatalf("resumed after crash %s at %d: the rows differ from the whole history applied once (-once +resumed):\n%s", c.what, a, diff)
			}
		}
	}
	for i, b := range batches {
		rec.begun.Store(int64(i + 1))
		if err := s.Apply(b); err != nil {
			t.Fatal(err)
		}
		if i%8 == 7 {
			// A flush writes the rows to a table, syncs it and the MANIFEST, and starts a WAL.
			if err := s.db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		what := fmt.Sprintf("after batch %d returned", i+1)
		rec.clone(i+1, i+1, what)
		rec.clone(i+1, i+1, what)
		if err := rec.tear(i+1, i+1, what); err != nil {
			t.Fatal(err)
		}
		for _, c := range rec.take() {
			check(c)
		}
	}
	if s.Applied() != last {
		t.Fatalf("applied %d, want %d", s.Applied(), last)
	}
	// A crash that always lost everything, or never lost anything, tested little.
	if len(applied) < 5 || lost == 0 || len(resumed) == 0 {
		t.Fatalf("%d crashes reopened at %d distinct positions, %d lost batches that had returned, %d resumed: the crashes did not cover enough",
			checked, len(applied), lost, len(resumed))
	}
	t.Logf("%d batches, %d crashes, reopened at %d distinct positions, %d lost batches that had returned, %d resumed",
		len(batches), checked, len(applied), lost, len(resumed))
}

// boundary is the last sequence of the first n batches, 0 for none.
func boundary(batches [][]ledger.Msg, n int) uint64 {
	if n == 0 {
		return 0
	}
	b := batches[min(n, len(batches))-1]
	return b[len(b)-1].Seq
}
