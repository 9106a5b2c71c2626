package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// crashAt takes a crash clone of fs before every sync, while on: each clone is a state
// the disk could be left in by a crash at that moment. The clones hold synced data only.
// Random unsynced data is left out on purpose: Pebble creates a new MANIFEST and then
// the marker that names it and syncs the directory once after both, so a clone that
// keeps a random half of the unsynced directory entries can keep the marker without the
// manifest, which no Pebble store opens (seen at the manifest rotations of the erasure).
// That is Pebble's to answer for, and not what these tests are about.
type crashAt struct {
	fs *vfs.MemFS

	mu     sync.Mutex
	on     bool
	phase  int // the test's own marker, recorded with each clone
	clones []crashClone
}

func (c *crashAt) String() string { return "crash clone before every sync" }

// MaybeError implements errorfs.Injector; it never injects an error.
func (c *crashAt) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.on {
		c.cloneLocked(fmt.Sprintf("before sync of %s", op.Path))
	}
	return nil
}

func (c *crashAt) cloneLocked(what string) {
	c.clones = append(c.clones, crashClone{c.fs.CrashClone(vfs.CrashCloneCfg{}), c.phase, what})
}

func (c *crashAt) set(on bool, phase int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on, c.phase = on, phase
}

// keySet is what a store must give back after a crash: every key by id, and the outputs
// of the system keys.
type keySet struct {
	keys           map[Ref][]byte
	ids            map[Ref]string
	card, name     string
	mac            []byte
	sealNonce, sct []byte
}

func snapshotKeys(t *testing.T, s *Store, kinds map[string]Kind) keySet {
	t.Helper()
	ks := keySet{keys: map[Ref][]byte{}, ids: map[Ref]string{}}
	for id, kind := range kinds {
		k, err := s.Get(kind, id)
		mustNot(t, err)
		ks.keys[RefOf(kind, id)] = k
		ks.ids[RefOf(kind, id)] = id
	}
	ks.card, ks.name = s.CardHash("21234000012345"), s.NameHash("Ada Reader")
	ks.mac = s.AccessMAC([]byte("entry"))
	var err error
	ks.sealNonce, ks.sct, err = s.SealSystem([]byte("order"), []byte("ad"))
	mustNot(t, err)
	return ks
}

// check reports how s differs from ks; "" if it does not.
func (ks keySet) check(s *Store) string {
	for ref, want := range ks.keys {
		got, err := s.Get(ref.Kind, ks.ids[ref])
		if err != nil || !bytes.Equal(got, want) {
			return fmt.Sprintf("Get(%s) = %x, %v; want the key created before", ref, got, err)
		}
	}
	if got := s.CardHash("21234000012345"); got != ks.card {
		return fmt.Sprintf("CardHash = %s, want %s", got, ks.card)
	}
	if got := s.NameHash("Ada Reader"); got != ks.name {
		return fmt.Sprintf("NameHash = %s, want %s", got, ks.name)
	}
	if got := s.AccessMAC([]byte("entry")); !bytes.Equal(got, ks.mac) {
		return fmt.Sprintf("AccessMAC = %x, want %x", got, ks.mac)
	}
	if pt, err := s.UnsealSystem(ks.sealNonce, ks.sct, []byte("ad")); err != nil || string(pt) != "order" {
		return fmt.Sprintf("UnsealSystem = %q, %v; want %q", pt, err, "order")
	}
	return ""
}

// TestRotateSurvivesCrashAtEverySync crashes Rotate before every sync of the re-wrap and
// the erasure that follows it. Every crash leaves a store that exactly one of the two
// master keys opens, never a mix, with every key and system key as before; once the
// re-wrap has returned, only the new key opens it.
func TestRotateSurvivesCrashAtEverySync(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	crash := &crashAt{fs: mem}
	oldM, newM := testMaster(t), testMaster(t)
	s := openMem(t, errorfs.Wrap(mem, crash), oldM)
	kinds := map[string]Kind{}
	for i := range 40 {
		id, kind := markerID(), Transaction
		if i%4 == 0 {
			kind = Profile
		}
		_, err := s.Create(kind, id)
		mustNot(t, err)
		kinds[id] = kind
		if i == 20 {
			mustNot(t, s.db.Flush()) // some keys in a table, some in the WAL
		}
	}
	for _, id := range []string{markerID(), markerID()} {
		_, err := s.Create(Transaction, id)
		mustNot(t, err)
		mustNot(t, s.Destroy(Transaction, id)) // tombstones for the erasure to drop
	}
	want := snapshotKeys(t, s, kinds)

	crash.set(true, 0)
	err := s.rotateSteps(context.Background(), newM, func(st Step) error {
		if st == StepRewrapped {
			crash.set(true, 1)
		}
		return nil
	})
	mustNot(t, err)
	crash.mu.Lock()
	crash.on = false
	crash.cloneLocked("after Rotate returned")
	clones := crash.clones
	crash.mu.Unlock()
	mustNot(t, s.Close())

	if len(clones) < 10 {
		t.Fatalf("crash clones = %d, want at least 10: the injector saw no syncs", len(clones))
	}
	underOld, underNew := 0, 0
	for _, c := range clones {
		st, errNew := open(memDir, c.fs, newM, nil)
		if errNew == nil {
			underNew++
			if diff := want.check(st); diff != "" {
				t.Errorf("crash %s, opened with the new key: %s", c.what, diff)
			}
			mustNot(t, st.Close())
			if _, err := open(memDir, c.fs, oldM, nil); !errors.Is(err, ErrWrongMaster) {
				t.Errorf("crash %s: Open(old key) error = %v, want ErrWrongMaster once the new key opens it", c.what, err)
			}
			continue
		}
		if !errors.Is(errNew, ErrWrongMaster) {
			t.Errorf("crash %s: Open(new key) error = %v, want nil or ErrWrongMaster", c.what, errNew)
			continue
		}
		if c.phase == 1 {
			t.Errorf("crash %s, after the re-wrap returned: Open(new key) error = %v, want nil", c.what, errNew)
			continue
		}
		st, err := open(memDir, c.fs, oldM, nil)
		if err != nil {
			t.Errorf("crash %s: neither key opens the store: new %v, old %v", c.what, errNew, err)
			continue
		}
		underOld++
		if diff := want.check(st); diff != "" {
			t.Errorf("crash %s, opened with the old key: %s", c.what, diff)
		}
		mustNot(t, st.Close())
	}
	if underOld == 0 || underNew == 0 {
		t.Errorf("crash states: %d under the old key, %d under the new; want some of each (the crash points miss the re-wrap)", underOld, underNew)
	}
}

var errStop = errors.New("stopped here for the test")

// stopAt returns a FileRotation step function that stops the rotation after step.
func stopAt(step Step) func(Step) error {
	return func(s Step) error {
		if s == step {
			return errStop
		}
		return nil
	}
}

// keyFiles lists the files under the directories that hold a master key (zeroed or
// half-written files do not), by path, and every other file the rotation left there.
func keyFiles(t *testing.T, dirs ...string) (keys map[string]MasterKey, others []string) {
	t.Helper()
	keys = map[string]MasterKey{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if m, err := ParseMaster(string(data)); err == nil {
				keys[p] = m
			} else {
				others = append(others, p)
			}
		}
	}
	return keys, others
}

// rotationFixture is a store with transaction and profile keys and its master key file.
type rotationFixture struct {
	storeDir, keyDir, path string
	old                    MasterKey
	kinds                  map[string]Kind
	want                   keySet
}

func newRotationFixture(t *testing.T) *rotationFixture {
	t.Helper()
	root := t.TempDir()
	f := &rotationFixture{storeDir: filepath.Join(root, "keystore"), keyDir: filepath.Join(root, "keys"), kinds: map[string]Kind{}}
	if err := os.Mkdir(f.keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	f.path = filepath.Join(f.keyDir, "master.key")
	var err error
	if f.old, err = GenerateMasterFile(f.path); err != nil {
		t.Fatal(err)
	}
	s, err := Open(f.storeDir, f.old, nil)
	mustNot(t, err)
	for i := range 12 {
		id, kind := markerID(), Transaction
		if i%3 == 0 {
			kind = Profile
		}
		_, err := s.Create(kind, id)
		mustNot(t, err)
		f.kinds[id] = kind
	}
	f.want = snapshotKeys(t, s, f.kinds)
	mustNot(t, s.Close())
	return f
}

// TestRotateFileStoppedAtEveryStep stops a rotation after each of its steps, in place
// and to a file of its own, as a crash there would (the files are left as they are),
// and opens the store again with the old key file's path. The open finishes the rotation
// if the re-wrap had committed and undoes it otherwise; every key is there as before; no
// key file is left but the one in use; the old key (after finishing) or the abandoned
// new key (after undoing) opens nothing; and a rotation after an undone one completes.
func TestRotateFileStoppedAtEveryStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	wantInterrupted := map[Step]string{
		StepJournal: RotationUndone, StepNewKeyTemp: RotationUndone, StepNewKey: RotationUndone,
		StepRewrapped: RotationFinished, StepErased: RotationFinished, StepOldZeroed: RotationFinished,
		StepOldRemoved: RotationFinished, StepInstalled: RotationFinished, StepDone: "",
	}
	for _, inPlace := range []bool{true, false} {
		for _, step := range RotationSteps() {
			if step == StepInstalled && !inPlace {
				continue
			}
			name := fmt.Sprintf("%s/in-place=%v", step, inPlace)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				f := newRotationFixture(t)
				newDir := filepath.Join(filepath.Dir(f.keyDir), "elsewhere")
				if err := os.Mkdir(newDir, 0o700); err != nil {
					t.Fatal(err)
				}
				var newPath string
				if !inPlace {
					newPath = filepath.Join(newDir, "new.key")
				}
				s, kf, err := OpenFile(ctx, f.storeDir, f.path, nil)
				mustNot(t, err)
				if kf.Interrupted != "" || kf.Path != f.path || kf.Master.ID != f.old.ID {
					t.Fatalf("OpenFile before rotating = %+v, want path %s, key %s, nothing interrupted", kf, f.path, f.old.ID)
				}
				_, err = s.RotateFile(ctx, kf, FileRotation{NewPath: newPath, Step: stopAt(step)})
				if !errors.Is(err, errStop) {
					t.Fatalf("RotateFile stopped at %s: error = %v, want errStop", step, err)
				}
				mustNot(t, s.Close())

				// What the crash left: at most the old key and the new one.
				left, _ := keyFiles(t, f.keyDir, newDir)
				if len(left) > 2 {
					t.Errorf("key files after stopping at %s = %d (%v), want at most 2", step, len(left), slices.Sorted(maps.Keys(left)))
				}
				var abandoned []MasterKey // keys other than the old one, for after an undo
				for _, m := range left {
					if m.ID != f.old.ID {
						abandoned = append(abandoned, m)
					}
				}

				openPath := f.path
				if step == StepDone && !inPlace {
					openPath = newPath // the rotation completed: the key is there now
				}
				s, kf, err = OpenFile(ctx, f.storeDir, openPath, nil)
				if err != nil {
					t.Fatalf("OpenFile after stopping at %s: %v", step, err)
				}
				if kf.Interrupted != wantInterrupted[step] {
					t.Errorf("OpenFile after stopping at %s: Interrupted = %q, want %q", step, kf.Interrupted, wantInterrupted[step])
				}
				wantPath := f.path
				if !inPlace && kf.Interrupted != RotationUndone {
					wantPath = newPath
				}
				if kf.Path != wantPath {
					t.Errorf("OpenFile after stopping at %s: Path = %s, want %s", step, kf.Path, wantPath)
				}
				if kf.Interrupted == RotationFinished && kf.Destroyed != f.old.ID {
					t.Errorf("OpenFile after stopping at %s: Destroyed = %q, want %q", step, kf.Destroyed, f.old.ID)
				}
				if diff := f.want.check(s); diff != "" {
					t.Errorf("after stopping at %s and opening again: %s", step, diff)
				}
				mustNot(t, s.Close())
				keys, others := keyFiles(t, f.keyDir, newDir)
				if len(keys) != 1 || keys[wantPath].ID != kf.Master.ID || len(others) != 0 {
					t.Errorf("files after recovery = keys %v, others %v; want only %s", slices.Sorted(maps.Keys(keys)), others, wantPath)
				}
				if RotationPending(f.path) {
					t.Errorf("RotationPending after recovery = true, want false")
				}

				if kf.Interrupted == RotationUndone {
					for _, m := range abandoned {
						if _, err := Open(f.storeDir, m, nil); !errors.Is(err, ErrWrongMaster) {
							t.Errorf("Open(abandoned new key) after undo: error = %v, want ErrWrongMaster", err)
						}
					}
					// A rotation after the undone one completes.
					s, kf, err = OpenFile(ctx, f.storeDir, f.path, nil)
					mustNot(t, err)
					kf, err = s.RotateFile(ctx, kf, FileRotation{NewPath: newPath})
					if err != nil {
						t.Fatalf("RotateFile after an undone rotation: %v", err)
					}
					if diff := f.want.check(s); diff != "" {
						t.Errorf("after the next rotation: %s", diff)
					}
					mustNot(t, s.Close())
				}
				if _, err := Open(f.storeDir, f.old, nil); !errors.Is(err, ErrWrongMaster) {
					t.Errorf("Open(old key) once the rotation is complete: error = %v, want ErrWrongMaster", err)
				}
				if _, err := os.Stat(f.path); inPlace != (err == nil) {
					t.Errorf("old key file %s after the rotation: stat error %v, want it present only in place", f.path, err)
				}
			})
		}
	}
}

// TestOpenFileFinishesLeftoversWithoutJournal: an earlier version rotated in place
// through <file>.next without a journal, and a crash could leave the new key unused, the
// store re-wrapped under it with the old key still in place, or the old key file gone
// before the new one was renamed. OpenFile resolves each, and a rotation after it
// completes (a leftover <file>.next used to make every later rotation fail).
func TestOpenFileFinishesLeftoversWithoutJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		rewrapped bool // the store is under the new key
		oldGone   bool // the old key file was destroyed
		want      string
	}{
		{"new key unused", false, false, RotationUndone},
		{"re-wrapped, old key in place", true, false, RotationFinished},
		{"re-wrapped, old key destroyed", true, true, RotationFinished},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newRotationFixture(t)
			next := f.path + nextSuffix
			n, err := GenerateMasterFile(next)
			mustNot(t, err)
			if tc.rewrapped {
				s, err := Open(f.storeDir, f.old, nil)
				mustNot(t, err)
				mustNot(t, s.Rotate(ctx, n))
				mustNot(t, s.Close())
			}
			if tc.oldGone {
				mustNot(t, DestroyMasterFile(f.path))
			}
			if !RotationPending(f.path) {
				t.Fatal("RotationPending with a leftover .next = false, want true")
			}
			s, kf, err := OpenFile(ctx, f.storeDir, f.path, nil)
			if err != nil {
				t.Fatalf("OpenFile: %v", err)
			}
			if kf.Interrupted != tc.want || kf.Path != f.path {
				t.Errorf("OpenFile = interrupted %q, path %s; want %q, %s", kf.Interrupted, kf.Path, tc.want, f.path)
			}
			if diff := f.want.check(s); diff != "" {
				t.Error(diff)
			}
			if _, err := os.Lstat(next); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s after OpenFile: %v, want it gone", next, err)
			}
			if _, err := s.RotateFile(ctx, kf, FileRotation{}); err != nil {
				t.Errorf("RotateFile after the leftover was resolved: %v", err)
			}
			mustNot(t, s.Close())
			for _, m := range []MasterKey{f.old, n} {
				if _, err := Open(f.storeDir, m, nil); !errors.Is(err, ErrWrongMaster) {
					t.Errorf("Open(%s) after the rotation: error = %v, want ErrWrongMaster", m, err)
				}
			}
		})
	}
}

// TestRotateFileRefusesExistingNewFile: a new key file that already exists is never
// overwritten, and the refusal leaves nothing behind.
func TestRotateFileRefusesExistingNewFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newRotationFixture(t)
	other := filepath.Join(f.keyDir, "someone-elses.key")
	writeFile(t, other, "not ours", 0o600)
	s, kf, err := OpenFile(ctx, f.storeDir, f.path, nil)
	mustNot(t, err)
	defer s.Close()
	if _, err := s.RotateFile(ctx, kf, FileRotation{NewPath: other}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("RotateFile to an existing file: error = %v, want fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(other); string(data) != "not ours" {
		t.Errorf("existing file after the refusal = %q, want it unchanged", data)
	}
	if RotationPending(f.path) {
		t.Error("RotationPending after a refused rotation = true, want false")
	}
	if diff := f.want.check(s); diff != "" {
		t.Error(diff)
	}
}

// TestClearTemp: a temporary key file a crash left is destroyed, unless it is a second
// link of the key file it was written for, which then stays intact.
func TestClearTemp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	tmp := path + tempSuffix
	stale := testMaster(t)
	writeFile(t, tmp, stale.String(), 0o600)
	m, err := GenerateMasterFile(path) // clears the stale temporary file first
	mustNot(t, err)
	if _, err := os.Lstat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale %s after GenerateMasterFile: %v, want it gone", tmp, err)
	}
	if err := os.Link(path, tmp); err != nil {
		t.Fatal(err)
	}
	mustNot(t, clearTemp(tmp, path))
	if _, err := os.Lstat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s, a link of the key file, after clearTemp: %v, want it gone", tmp, err)
	}
	got, err := LoadMaster(path, "")
	if err != nil || got.ID != m.ID {
		t.Errorf("key file after clearing its second link = %v, %v; want %s intact", got, err, m.ID)
	}
}

// TestOpenFileNeedsTheStore: with an interrupted rotation and no keystore where it should
// be (a disk not mounted), OpenFile refuses and changes no file: it does not make an
// empty store that the new key would "open", and destroys neither key.
func TestOpenFileNeedsTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newRotationFixture(t)
	s, kf, err := OpenFile(ctx, f.storeDir, f.path, nil)
	mustNot(t, err)
	_, err = s.RotateFile(ctx, kf, FileRotation{Step: stopAt(StepNewKey)})
	if !errors.Is(err, errStop) {
		t.Fatalf("RotateFile error = %v, want errStop", err)
	}
	mustNot(t, s.Close())
	moved := f.storeDir + ".away"
	if err := os.Rename(f.storeDir, moved); err != nil {
		t.Fatal(err)
	}
	before, _ := keyFiles(t, f.keyDir)
	if _, _, err := OpenFile(ctx, f.storeDir, f.path, nil); err == nil {
		t.Fatal("OpenFile without the store = nil error, want an error")
	}
	after, _ := keyFiles(t, f.keyDir)
	if len(after) != 2 || len(before) != 2 {
		t.Errorf("key files before and after the refused open = %d and %d, want 2 and 2", len(before), len(after))
	}
	if _, err := os.Stat(f.storeDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("store directory after the refused open: %v, want none made", err)
	}
	if err := os.Rename(moved, f.storeDir); err != nil {
		t.Fatal(err)
	}
	s, kf, err = OpenFile(ctx, f.storeDir, f.path, nil)
	mustNot(t, err)
	defer s.Close()
	if kf.Interrupted != RotationUndone {
		t.Errorf("OpenFile with the store back: Interrupted = %q, want %q", kf.Interrupted, RotationUndone)
	}
	if diff := f.want.check(s); diff != "" {
		t.Error(diff)
	}
}

// TestOpenFileKeepsForeignKeyFiles: a key file that the journal does not name (someone
// put another key where the old one was, or where the new one goes) is never destroyed:
// OpenFile refuses until it is moved away.
func TestOpenFileKeepsForeignKeyFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		stop    Step   // where the rotation stopped
		replace string // which file gets a foreign key: "old" (<file>) or "new" (<file>.next)
	}{{StepRewrapped, "old"}, {StepNewKey, "new"}} {
		t.Run(string(tc.stop)+"/"+tc.replace, func(t *testing.T) {
			t.Parallel()
			f := newRotationFixture(t)
			s, kf, err := OpenFile(ctx, f.storeDir, f.path, nil)
			mustNot(t, err)
			if _, err := s.RotateFile(ctx, kf, FileRotation{Step: stopAt(tc.stop)}); !errors.Is(err, errStop) {
				t.Fatalf("RotateFile error = %v, want errStop", err)
			}
			mustNot(t, s.Close())
			target := f.path
			if tc.replace == "new" {
				target = f.path + nextSuffix
			}
			mustNot(t, os.Remove(target))
			foreign, err := GenerateMasterFile(target)
			mustNot(t, err)
			if _, _, err := OpenFile(ctx, f.storeDir, f.path, nil); err == nil {
				t.Fatal("OpenFile with a foreign key file = nil error, want an error")
			}
			if got, err := LoadMaster(target, ""); err != nil || got.ID != foreign.ID {
				t.Errorf("foreign key file after the refused open = %v, %v; want it intact", got, err)
			}
		})
	}
}
