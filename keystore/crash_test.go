package keystore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The crash tests run the store on Pebble's crashable in-memory file system. A crash
// clone holds what was synced when it was taken (and, with UnsyncedDataPercent, some of
// what was not), which is what a disk holds after power loss at that moment.

const memDir = "ks"

func openMem(t *testing.T, fsys vfs.FS, m MasterKey) *Store {
	t.Helper()
	s, err := open(memDir, fsys, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// crashClone is a crash clone of a file system and what the test knew when it was taken.
type crashClone struct {
	fs    *vfs.MemFS
	phase int
	what  string
}

// TestCreateIsDurableAtReturn: once Create returns, the key survives a crash. Creates run
// concurrently, so they commit in groups; two crash clones are taken as each returns, one
// with synced data only and one that also keeps a random half of the rest.
func TestCreateIsDurableAtReturn(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	m := testMaster(t)
	s := openMem(t, mem, m)
	defer s.Close()
	type created struct {
		id  string
		key []byte
	}
	var (
		mu       sync.Mutex
		returned []created
		clones   []crashClone // phase: how many Creates had returned
		wg       sync.WaitGroup
	)
	rng := rand.New(rand.NewPCG(2, 2))
	for range 4 {
		wg.Go(func() {
			for range 8 {
				id := markerID()
				k, err := s.Create(Transaction, id)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				returned = append(returned, created{id, k})
				clones = append(clones,
					crashClone{mem.CrashClone(vfs.CrashCloneCfg{}), len(returned), "synced data only"},
					crashClone{mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng}), len(returned), "half of the unsynced data"})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(returned) != 32 {
		t.Fatalf("Creates returned = %d, want 32", len(returned))
	}
	for _, c := range clones {
		st, err := open(memDir, c.fs, m, nil)
		if err != nil {
			t.Fatalf("open after a crash (%s): %v", c.what, err)
		}
		for _, r := range returned[:c.phase] {
			if got, err := st.Get(Transaction, r.id); err != nil || !bytes.Equal(got, r.key) {
				t.Errorf("crash after %d Creates returned (%s): Get = %x, %v; want the created key", c.phase, c.what, got, err)
			}
		}
		mustNot(t, st.Close())
	}
}

// TestDestroyIsDurableAtReturn: once Destroy returns, the key is gone after a crash, and
// the keys not destroyed are still there.
func TestDestroyIsDurableAtReturn(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	m := testMaster(t)
	s := openMem(t, mem, m)
	defer s.Close()
	var doomed [4][]string
	kept := map[string][]byte{}
	for i := range 28 {
		id := markerID()
		k, err := s.Create(Transaction, id)
		mustNot(t, err)
		if i < 24 {
			doomed[i%4] = append(doomed[i%4], id)
		} else {
			kept[id] = k
		}
	}
	var (
		mu        sync.Mutex
		destroyed []string
		clones    []crashClone // phase: how many Destroys had returned
		wg        sync.WaitGroup
	)
	rng := rand.New(rand.NewPCG(3, 3))
	for _, ids := range doomed {
		wg.Go(func() {
			for _, id := range ids {
				if err := s.Destroy(Transaction, id); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				destroyed = append(destroyed, id)
				clones = append(clones,
					crashClone{mem.CrashClone(vfs.CrashCloneCfg{}), len(destroyed), "synced data only"},
					crashClone{mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng}), len(destroyed), "half of the unsynced data"})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(destroyed) != 24 {
		t.Fatalf("Destroys returned = %d, want 24", len(destroyed))
	}
	for _, c := range clones {
		st, err := open(memDir, c.fs, m, nil)
		if err != nil {
			t.Fatalf("open after a crash (%s): %v", c.what, err)
		}
		for _, id := range destroyed[:c.phase] {
			if _, err := st.Get(Transaction, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("crash after %d Destroys returned (%s): Get(destroyed key) error = %v, want ErrNotFound", c.phase, c.what, err)
			}
		}
		for id, want := range kept {
			if got, err := st.Get(Transaction, id); err != nil || !bytes.Equal(got, want) {
				t.Errorf("crash after %d Destroys returned (%s): Get(kept key) = %x, %v; want the created key", c.phase, c.what, got, err)
			}
		}
		mustNot(t, st.Close())
	}
}
