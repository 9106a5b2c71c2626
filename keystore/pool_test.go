package keystore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/imagineif/lethe/internal/testkit"
)

// runPool runs p until the test ends (or stop is called) and returns stop, which ends Run
// and waits for it to return.
func runPool(t *testing.T, p *Pool) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Pool.Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitReady(t *testing.T, p *Pool, n int) {
	t.Helper()
	testkit.WaitFor(t, "the key pool filled", func() bool { return p.Stats().Ready == n })
}

// syncCounter counts the syncs of files (Sync, SyncData, SyncTo) under a file system.
type syncCounter struct{ n atomic.Int64 }

func (c *syncCounter) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		c.n.Add(1)
	}
	return nil
}

func (c *syncCounter) String() string { return "count syncs" }

// TestPoolKeysCostTheTakerNoSync counts the syncs of the store's files: a refill of the
// pool writes all its keys with one sync (Create pays one a key), and a take writes
// nothing. Each key taken is on the store under its id, as Create would leave it.
func TestPoolKeysCostTheTakerNoSync(t *testing.T) {
	t.Parallel()
	var syncs syncCounter
	fsys := errorfs.Wrap(vfs.NewMem(), &syncs)
	s, err := open(memDir, fsys, testMaster(t), nil)
	mustNot(t, err)
	defer s.Close()

	before := syncs.n.Load()
	for range 8 {
		_, err := s.Create(Transaction, markerID())
		mustNot(t, err)
	}
	if got := syncs.n.Load() - before; got != 8 {
		t.Errorf("syncs of 8 Creates = %d, want 8 (the baseline: one each)", got)
	}

	const size = 64
	p, err := s.NewPool(PoolConfig{Size: size, Low: 1})
	mustNot(t, err)
	before = syncs.n.Load()
	stop := runPool(t, p)
	waitReady(t, p, size)
	if got := syncs.n.Load() - before; got != 1 {
		t.Errorf("syncs of a refill of %d keys = %d, want 1", size, got)
	}
	before = syncs.n.Load()
	taken := map[string][]byte{}
	for range size - 1 { // a take leaving one ready starts no refill
		id, key, ok := p.Take()
		if !ok {
			t.Fatal("Take from a filled pool found it empty")
		}
		taken[id] = key
	}
	if got := syncs.n.Load() - before; got != 0 {
		t.Errorf("syncs of %d takes = %d, want 0", size-1, got)
	}
	for id, key := range taken {
		if got, err := s.Get(Transaction, id); err != nil || !bytes.Equal(got, key) {
			t.Errorf("Get(a taken id) = %x, %v; want the key Take handed out", got, err)
		}
	}
	stop()
}

// TestPoolHandsOutEachKeyOnce takes keys from many goroutines while the pool refills:
// every id is handed out once, every key taken is the one stored under its id, and the
// takes that found the pool empty are counted, never answered with a key.
func TestPoolHandsOutEachKeyOnce(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	p, err := s.NewPool(PoolConfig{Size: 16, Low: 8})
	mustNot(t, err)
	runPool(t, p)
	waitReady(t, p, 16)

	var (
		mu     sync.Mutex
		taken  = map[string][]byte{}
		misses int
		wg     sync.WaitGroup
	)
	deadline := time.Now().Add(20 * time.Second)
	for range 8 {
		wg.Go(func() {
			// 25 keys each, 200 in all: a dozen refills. A take that misses polls again.
			for got := 0; got < 25 && time.Now().Before(deadline); {
				id, key, ok := p.Take()
				mu.Lock()
				if !ok {
					misses++
				} else if _, dup := taken[id]; dup {
					t.Errorf("id %s handed out twice", id)
				} else {
					taken[id] = key
					got++
				}
				mu.Unlock()
				if !ok {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	st := p.Stats()
	if len(taken) != 200 || int(st.Taken) != len(taken) || int(st.Missed) != misses {
		t.Errorf("Stats = %+v; want 200 taken and %d missed", st, misses)
	}
	if st.Fills < 2 {
		t.Errorf("fills = %d after %d takes from a pool of 16, want refills", st.Fills, len(taken))
	}
	for id, key := range taken {
		if got, err := s.Get(Transaction, id); err != nil || !bytes.Equal(got, key) {
			t.Fatalf("Get(a taken id) = %x, %v; want the key Take handed out", got, err)
		}
	}
	t.Logf("%d taken, %d missed, %d fills", len(taken), misses, st.Fills)
}

// TestPoolKeysAreNotInUse: while the pool runs, its ready keys are neither listed (a
// reconciliation would destroy them as orphans) nor exported (a backup would restore keys
// nothing uses), nor counted as transaction keys; a key taken is all three. When Run
// ends, the keys still ready are destroyed, and the taken ones kept.
func TestPoolKeysAreNotInUse(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	inUse := markerID()
	_, err := s.Create(Transaction, inUse)
	mustNot(t, err)
	p, err := s.NewPool(PoolConfig{Size: 8, Low: 1})
	mustNot(t, err)
	stop := runPool(t, p)
	waitReady(t, p, 8)
	id, _, ok := p.Take()
	if !ok {
		t.Fatal("Take from a filled pool found it empty")
	}

	listed, err := s.List(Transaction)
	mustNot(t, err)
	want := []Ref{RefOf(Transaction, inUse), RefOf(Transaction, id)}
	var got []Ref
	for _, e := range listed {
		got = append(got, e.Ref)
	}
	if len(got) != 2 || !slices.Contains(got, want[0]) || !slices.Contains(got, want[1]) {
		t.Errorf("List(Transaction) with 7 keys ready = %v, want only the created and the taken key %v", got, want)
	}
	exported := 0
	mustNot(t, s.Export(func(k ExportedKey) error {
		if ref, ok := refOfDBKey(k.DBKey); ok && ref.Kind == Transaction {
			exported++
			if !slices.Contains(want, ref) {
				t.Errorf("Export gave a key ready in the pool: %v", ref)
			}
		}
		return nil
	}))
	if exported != 2 {
		t.Errorf("Export gave %d transaction keys, want 2", exported)
	}
	if st := s.Stats(); st.Transactions != 2 || st.Pooled != 7 {
		t.Errorf("Stats = %+v, want 2 transaction keys and 7 pooled", st)
	}

	var ready []Ref
	p.mu.Lock()
	for _, k := range p.ready {
		ready = append(ready, k.ref)
	}
	p.mu.Unlock()
	stop()
	for _, r := range ready {
		if _, err := s.get(r); !errors.Is(err, ErrNotFound) {
			t.Errorf("a key left in the pool after Run ended: %v, want ErrNotFound", err)
		}
	}
	if _, err := s.Get(Transaction, id); err != nil {
		t.Errorf("the taken key after Run ended: %v", err)
	}
	if st := s.Stats(); st.Transactions != 2 || st.Pooled != 0 || !st.PendingErasure {
		t.Errorf("Stats after Run = %+v, want 2 transaction keys, none pooled, an erasure pending", st)
	}
	if _, _, ok := p.Take(); ok {
		t.Error("Take after Run ended handed out a key")
	}
}

// TestPoolRefusesAnIDInUse: a refill whose ids repeat one another or name a key that
// exists writes nothing and hands out nothing; the failure is logged without the id, and
// a later refill with fresh ids succeeds.
func TestPoolRefusesAnIDInUse(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	existing := markerID()
	_, err := s.Create(Transaction, existing)
	mustNot(t, err)
	var (
		mu    sync.Mutex
		bad   = []string{existing} // then one id twice in a batch
		fresh = false
	)
	newID := func() string {
		mu.Lock()
		defer mu.Unlock()
		if fresh {
			return markerID()
		}
		return bad[0]
	}
	var logs testkit.SyncBuffer
	p, err := s.NewPool(PoolConfig{Size: 4, Low: 1, NewID: newID, RetryAfter: 1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	mustNot(t, err)
	runPool(t, p)
	testkit.WaitFor(t, "a refill refused", func() bool { return strings.Count(logs.String(), "key pool refill failed") >= 2 })
	if _, _, ok := p.Take(); ok {
		t.Fatal("Take handed out a key whose id is in use")
	}
	if st := s.Stats(); st.Transactions != 1 || st.Pooled != 0 {
		t.Errorf("Stats after refused refills = %+v, want the one key created", st)
	}
	if strings.Contains(logs.String(), existing) {
		t.Errorf("the log names the id:\n%s", logs.String())
	}
	mu.Lock()
	bad[0] = markerID() // not in the store, but repeated within each batch
	mu.Unlock()
	n := strings.Count(logs.String(), "key pool refill failed")
	testkit.WaitFor(t, "a refill of repeated ids refused", func() bool {
		return strings.Count(logs.String(), "key pool refill failed") >= n+2
	})
	if _, _, ok := p.Take(); ok {
		t.Fatal("Take handed out a key whose id repeats in its batch")
	}
	mu.Lock()
	fresh = true
	mu.Unlock()
	waitReady(t, p, 4)
	if _, err := s.Get(Transaction, bad[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("the repeated id's key = %v, want none written", err)
	}
}

// TestPoolKeysAreDurableBeforeTaken: crash clones taken after the pool filled hold every
// ready key, as it was handed out; after the crash no pool holds them, so List shows
// them as keys no transaction uses, which is what the start's reconciliation destroys.
func TestPoolKeysAreDurableBeforeTaken(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	m := testMaster(t)
	s := openMem(t, mem, m)
	defer s.Close()
	p, err := s.NewPool(PoolConfig{Size: 32, Low: 1})
	mustNot(t, err)
	runPool(t, p)
	waitReady(t, p, 32)
	clone := mem.CrashClone(vfs.CrashCloneCfg{}) // synced data only
	taken := map[string][]byte{}
	for range 32 {
		id, key, ok := p.Take()
		if !ok {
			t.Fatal("Take from a filled pool found it empty")
		}
		taken[id] = key
	}
	st, err := open(memDir, clone, m, nil)
	mustNot(t, err)
	defer st.Close()
	for id, key := range taken {
		if got, err := st.Get(Transaction, id); err != nil || !bytes.Equal(got, key) {
			t.Errorf("after a crash, Get(a pooled id) = %x, %v; want the key handed out", got, err)
		}
	}
	listed, err := st.List(Transaction)
	mustNot(t, err)
	if len(listed) != 32 {
		t.Errorf("after a crash, List(Transaction) = %d keys, want the 32 the pool held", len(listed))
	}
}

// TestPoolKeysLeaveTheFiles: the keys a pool destroys when Run ends leave every file at
// the next sweep, as every destroyed key does; the ids of pooled keys never reach a file.
func TestPoolKeysLeaveTheFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, testMaster(t))
	var mu sync.Mutex
	var ids []string
	p, err := s.NewPool(PoolConfig{Size: 16, Low: 1, NewID: func() string {
		mu.Lock()
		defer mu.Unlock()
		id := markerID()
		ids = append(ids, id)
		return id
	}})
	mustNot(t, err)
	stop := runPool(t, p)
	waitReady(t, p, 16)
	takenID, _, _ := p.Take()
	needles := map[string][]byte{}
	mu.Lock()
	for _, id := range ids {
		needles[id+" id"] = []byte(id)
		if id != takenID {
			needles[id+" wrapped"] = wrapped(t, s, Transaction, id)
		}
	}
	mu.Unlock()
	if hits := found(t, dir, needles); len(hits) != 15 {
		t.Fatalf("before Run ended, %d needles found, want the 15 wrapped keys ready (and no id): %v", len(hits), hits)
	}
	stop()
	mustNot(t, s.Sweep(context.Background()))
	if hits := found(t, dir, needles); len(hits) > 0 {
		t.Errorf("after Run ended and a sweep, the unused keys or ids are in files: %v", hits)
	}
	if _, err := s.Get(Transaction, takenID); err != nil {
		t.Errorf("the taken key after the sweep: %v", err)
	}
}

func TestPoolConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg PoolConfig
		ok  bool
	}{
		{PoolConfig{}, true},
		{PoolConfig{Size: 1}, true},
		{PoolConfig{Size: 8, Low: 8}, true},
		{PoolConfig{Low: DefaultPoolSize}, true},
		{PoolConfig{Size: -1}, false},
		{PoolConfig{Size: 8, Low: 9}, false},
		{PoolConfig{Low: DefaultPoolSize + 1}, false},
		{PoolConfig{Low: -1}, false},
		{PoolConfig{RetryAfter: -1}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("Validate(%+v) = %v, want ok %v", c.cfg, err, c.ok)
		}
	}
	if id := randomUUID(); len(id) != 36 || id[14] != '4' || !strings.Contains("89ab", id[19:20]) {
		t.Errorf("randomUUID() = %s, want a version 4 UUID", id)
	}
}
