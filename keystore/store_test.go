package keystore

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/imagineif/lethe/internal/testkit"
)

func openStore(t *testing.T, dir string, m MasterKey) *Store {
	t.Helper()
	s, err := Open(dir, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func markerID() string { return fmt.Sprintf("txn-MARKER-%x", randomBytes(8)) }

// wrapped returns the stored (wrapped) value of a key, as in the files.
func wrapped(t *testing.T, s *Store, kind Kind, id string) []byte {
	t.Helper()
	v, closer, err := s.db.Get(dbKey(RefOf(kind, id)))
	if err != nil {
		t.Fatalf("raw value of %s key: %v", kind, err)
	}
	defer closer.Close()
	return bytes.Clone(v)
}

func TestCreateGetDestroy(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	id := markerID()
	key, err := s.Create(Transaction, id)
	mustNot(t, err)
	if len(key) != KeySize {
		t.Fatalf("Create returned %d bytes, want %d", len(key), KeySize)
	}
	got, err := s.Get(Transaction, id)
	mustNot(t, err)
	if !bytes.Equal(got, key) {
		t.Errorf("Get = %x, want %x", got, key)
	}
	got[0] ^= 0xff // callers get copies
	if again, _ := s.Get(Transaction, id); !bytes.Equal(again, key) {
		t.Error("changing a returned key changed the stored key")
	}
	if _, err := s.Get(Profile, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(Profile, transaction id) error = %v, want ErrNotFound (kinds are separate)", err)
	}
	if _, err := s.Create(Transaction, id); !errors.Is(err, ErrExists) {
		t.Errorf("Create(existing) error = %v, want ErrExists", err)
	}
	mustNot(t, s.Destroy(Transaction, id))
	if _, err := s.Get(Transaction, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(destroyed) error = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(Transaction, markerID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(never created) error = %v, want ErrNotFound", err)
	}
	mustNot(t, s.Destroy(Transaction, id)) // idempotent
	mustNot(t, s.Destroy(Profile, markerID()))
	fresh, err := s.Create(Transaction, id)
	mustNot(t, err)
	if bytes.Equal(fresh, key) {
		t.Error("re-created key equals the destroyed one")
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	for _, kind := range []Kind{0, 3, kindSystem} {
		if _, err := s.Create(kind, "x"); err == nil {
			t.Errorf("Create(%v) = nil error, want error", kind)
		}
		if _, err := s.Get(kind, "x"); err == nil {
			t.Errorf("Get(%v) = nil error, want error", kind)
		}
		if err := s.Destroy(kind, "x"); err == nil {
			t.Errorf("Destroy(%v) = nil error, want error", kind)
		}
	}
	if _, err := s.Create(Transaction, ""); err == nil {
		t.Error("Create with an empty id = nil error, want error")
	}
	if err := s.DestroyRef(RefOf(kindSystem, cardHashID)); err == nil {
		t.Error("DestroyRef(card hash key) = nil error, want error")
	}
}

func TestReopenKeepsKeys(t *testing.T) {
	t.Parallel()
	dir, m := t.TempDir(), testMaster(t)
	s, err := Open(dir, m, nil)
	mustNot(t, err)
	keys := map[string][]byte{}
	for range 10 {
		id := markerID()
		k, err := s.Create(Profile, id)
		mustNot(t, err)
		keys[id] = k
	}
	card := s.CardHash("21234000012345")
	mustNot(t, s.Close())
	if _, err := s.Get(Profile, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close error = %v, want ErrClosed", err)
	}
	mustNot(t, s.Close())

	s = openStore(t, dir, m)
	for id, want := range keys {
		got, err := s.Get(Profile, id)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("after reopen Get = %x, %v; want %x", got, err, want)
		}
	}
	if got := s.CardHash("21234000012345"); got != card {
		t.Errorf("CardHash after reopen = %s, want %s", got, card)
	}
	if st := s.Stats(); st.Profiles != 10 || st.Transactions != 0 {
		t.Errorf("Stats after reopen = %+v, want 10 profiles, 0 transactions", st)
	}
}

func TestOpenWithWrongMaster(t *testing.T) {
	t.Parallel()
	dir, m := t.TempDir(), testMaster(t)
	s, err := Open(dir, m, nil)
	mustNot(t, err)
	_, err = s.Create(Transaction, markerID())
	mustNot(t, err)
	mustNot(t, s.Close())

	if _, err := Open(dir, testMaster(t), nil); !errors.Is(err, ErrWrongMaster) {
		t.Errorf("Open(other master) error = %v, want ErrWrongMaster", err)
	}
	if _, err := Open(dir, MasterKey{}, nil); err == nil {
		t.Error("Open(zero MasterKey) = nil error, want error")
	}
	// A failed Open releases the directory.
	openStore(t, dir, m)
}

func TestCardHash(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	other := openStore(t, t.TempDir(), testMaster(t))
	h := s.CardHash("21234000012345")
	if len(h) != 64 {
		t.Errorf("CardHash length = %d, want 64 hex digits", len(h))
	}
	if got := s.CardHash("  21234000012345\n"); got != h {
		t.Errorf("CardHash ignores surrounding space: got %s, want %s", got, h)
	}
	if s.CardHash("2123400001234 5") == h || s.CardHash("021234000012345") == h {
		t.Error("CardHash changed more than surrounding space")
	}
	if other.CardHash("21234000012345") == h {
		t.Error("two stores hash a card the same way; the hash is not keyed")
	}
}

// TestNameHashHasItsOwnKey: NameHash is keyed by the system key "name-hash", not by the
// card key (with which anyone holding the card key could test guesses of names); its
// NameKeyID is stable across reopen and Rotate and differs between stores; a store made
// before the split gets a name key at its next Open, and its card hashes stay the same.
func TestNameHashHasItsOwnKey(t *testing.T) {
	t.Parallel()
	dir, m, next := t.TempDir(), testMaster(t), testMaster(t)
	s, err := Open(dir, m, nil)
	mustNot(t, err)
	other := openStore(t, t.TempDir(), testMaster(t))
	name := "Ada  READER"
	h := s.NameHash(name)
	if got := s.NameHash("ada reader"); got != h {
		t.Errorf("NameHash ignores case and runs of space: got %s, want %s", got, h)
	}
	underCard := hmac.New(sha256.New, s.cardKey[:])
	underCard.Write([]byte("name\x00ada reader"))
	if hex.EncodeToString(underCard.Sum(nil)) == h {
		t.Error("NameHash is keyed by the card key")
	}
	if bytes.Equal(s.nameKey[:], s.cardKey[:]) {
		t.Error("the name key is the card key")
	}
	id := s.NameKeyID()
	if len(id) != 16 || id == other.NameKeyID() || other.NameHash(name) == h {
		t.Errorf("NameKeyID = %q (other store %q): want 16 hex digits, different in every store, as the hashes are", id, other.NameKeyID())
	}
	card := s.CardHash("21234000012345")
	mustNot(t, s.Rotate(context.Background(), next))
	mustNot(t, s.Close())
	s = openStore(t, dir, next)
	if s.NameKeyID() != id || s.NameHash(name) != h {
		t.Errorf("after Rotate and reopen: NameKeyID %s, want %s; NameHash changed = %v", s.NameKeyID(), id, s.NameHash(name) != h)
	}

	// A store from before the split has no name key: Open creates one.
	mustNot(t, s.db.Delete(dbKey(RefOf(kindSystem, nameHashID)), pebble.Sync))
	mustNot(t, s.Close())
	s = openStore(t, dir, next)
	if s.NameKeyID() == id || s.NameHash(name) == h {
		t.Error("a store without a name key kept the old name hashes after Open; want a new name key")
	}
	if got := s.CardHash("21234000012345"); got != card {
		t.Errorf("CardHash after the name key was added = %s, want %s", got, card)
	}
}

// TestSystemKeys: AccessMAC and SealSystem use keys of their own, created at the first
// Open, kept across reopen and Rotate, and different in every store.
func TestSystemKeys(t *testing.T) {
	t.Parallel()
	dir, m, next := t.TempDir(), testMaster(t), testMaster(t)
	s, err := Open(dir, m, nil)
	mustNot(t, err)
	other := openStore(t, t.TempDir(), testMaster(t))
	msg := []byte("lethe access entry")
	mac := s.AccessMAC(msg)
	if len(mac) != 32 {
		t.Fatalf("AccessMAC length = %d, want 32", len(mac))
	}
	if bytes.Equal(other.AccessMAC(msg), mac) {
		t.Error("two stores MAC an entry the same way; the MAC is not keyed")
	}
	if bytes.Equal(s.AccessMAC([]byte("lethe access entrY")), mac) {
		t.Error("AccessMAC of a different message is the same")
	}
	if hex.EncodeToString(mac) == s.CardHash(string(msg)) {
		t.Error("AccessMAC and CardHash share a key")
	}
	ad := []byte("entry-id")
	nonce, ct, err := s.SealSystem([]byte("DV-26-118"), ad)
	mustNot(t, err)
	if pt, err := s.UnsealSystem(nonce, ct, ad); err != nil || string(pt) != "DV-26-118" {
		t.Errorf("UnsealSystem = %q, %v; want %q", pt, err, "DV-26-118")
	}
	if _, err := s.UnsealSystem(nonce, ct, []byte("other entry")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("UnsealSystem(wrong ad) error = %v, want ErrDecrypt", err)
	}
	if _, err := other.UnsealSystem(nonce, ct, ad); !errors.Is(err, ErrDecrypt) {
		t.Errorf("UnsealSystem in another store error = %v, want ErrDecrypt", err)
	}
	for _, id := range []string{cardHashID, nameHashID, accessMACID, systemSealID} {
		if err := s.DestroyRef(RefOf(kindSystem, id)); err == nil {
			t.Errorf("DestroyRef(system key %s) = nil error, want error", id)
		}
	}
	mustNot(t, s.Rotate(context.Background(), next))
	mustNot(t, s.Close())
	s = openStore(t, dir, next)
	if got := s.AccessMAC(msg); !bytes.Equal(got, mac) {
		t.Errorf("AccessMAC after Rotate and reopen = %x, want %x", got, mac)
	}
	if pt, err := s.UnsealSystem(nonce, ct, ad); err != nil || string(pt) != "DV-26-118" {
		t.Errorf("UnsealSystem after Rotate and reopen = %q, %v; want %q", pt, err, "DV-26-118")
	}
}

func TestListAndDestroyRef(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	now := time.UnixMilli(1_700_000_000_000)
	s.now = func() time.Time { return now }
	var refs []Ref
	for range 5 {
		id := markerID()
		_, err := s.Create(Transaction, id)
		mustNot(t, err)
		refs = append(refs, RefOf(Transaction, id))
	}
	_, err := s.Create(Profile, markerID())
	mustNot(t, err)

	got, err := s.List(Transaction)
	mustNot(t, err)
	var want []Entry
	for _, r := range refs {
		want = append(want, Entry{Ref: r, Created: now})
	}
	slices.SortFunc(want, func(a, b Entry) int { return bytes.Compare(a.Ref.Hash[:], b.Ref.Hash[:]) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List(Transaction) mismatch (-want +got):\n%s", diff)
	}

	mustNot(t, s.DestroyRef(refs[0]))
	got, err = s.List(Transaction)
	mustNot(t, err)
	if len(got) != 4 || slices.ContainsFunc(got, func(e Entry) bool { return e.Ref == refs[0] }) {
		t.Errorf("after DestroyRef, List = %v, want the other 4", got)
	}
	if profiles, _ := s.List(Profile); len(profiles) != 1 {
		t.Errorf("List(Profile) has %d entries, want 1", len(profiles))
	}
}

func TestStatsAndSweepScheduling(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	ctx := context.Background()
	if !s.Stats().PendingErasure {
		t.Error("a fresh store has no pending erasure; the first sweep after Open must run")
	}
	mustNot(t, s.Sweep(ctx))
	st := s.Stats()
	if st.PendingErasure || st.Sweeps != 1 || st.LastSweepDuration <= 0 {
		t.Errorf("after first Sweep, Stats = %+v, want 1 sweep, nothing pending", st)
	}
	mustNot(t, s.Sweep(ctx))
	if st := s.Stats(); st.Sweeps != 1 {
		t.Errorf("Sweep with nothing destroyed ran: Sweeps = %d, want 1", st.Sweeps)
	}

	ids := []string{markerID(), markerID(), markerID()}
	for _, id := range ids {
		_, err := s.Create(Transaction, id)
		mustNot(t, err)
	}
	_, err := s.Create(Profile, markerID())
	mustNot(t, err)
	mustNot(t, s.Destroy(Transaction, ids[0]))
	mustNot(t, s.Destroy(Transaction, ids[0]))
	st = s.Stats()
	if st.Transactions != 2 || st.Profiles != 1 || st.DestroyedSinceOpen != 1 || !st.PendingErasure {
		t.Errorf("Stats = %+v, want 2 transactions, 1 profile, 1 destroyed, erasure pending", st)
	}
	mustNot(t, s.Sweep(ctx))
	if st := s.Stats(); st.PendingErasure || st.Sweeps != 2 {
		t.Errorf("after Sweep, Stats = %+v, want 2 sweeps, nothing pending", st)
	}
	mustNot(t, s.Close())
	if err := s.Sweep(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Sweep after Close error = %v, want ErrClosed", err)
	}
}

// The forensic test of the package invariant: after Destroy and Sweep, no
// file of the store holds a destroyed key's id, key, wrapped value or
// Pebble key; ids and raw keys are never in any file.
func TestSweepErasesDestroyedKeysFromEveryFile(t *testing.T) {
	t.Parallel()
	dir, m := t.TempDir(), testMaster(t)
	s, err := Open(dir, m, nil)
	mustNot(t, err)
	ctx := context.Background()

	type rec struct {
		id           string
		key, wrapped []byte
	}
	var recs []rec
	for i := range 200 {
		id := markerID()
		key, err := s.Create(Transaction, id)
		mustNot(t, err)
		recs = append(recs, rec{id: id, key: key, wrapped: wrapped(t, s, Transaction, id)})
		if i == 100 { // some in tables, some only in the WAL
			mustNot(t, s.db.Flush())
		}
	}
	needles := func(r rec, what ...string) map[string][]byte {
		all := map[string][]byte{
			"id":      []byte(r.id),
			"key":     r.key,
			"wrapped": r.wrapped,
			// Tables prefix-compress keys; the tail of the hash is unique.
			"pebblekey": dbKey(RefOf(Transaction, r.id))[dbKeyLen-24:],
		}
		out := map[string][]byte{}
		for _, w := range what {
			out[r.id+" "+w] = all[w]
		}
		return out
	}
	scan := func(what ...string) map[string][]string {
		all := map[string][]byte{}
		for _, r := range recs {
			for k, v := range needles(r, what...) {
				all[k] = v
			}
		}
		return found(t, dir, all)
	}
	destroyed := func(r rec, i int) bool { return i%2 == 0 }

	if hits := scan("id", "key"); len(hits) > 0 {
		t.Errorf("ids or raw keys are in files: %v", hits)
	}
	if hits := scan("wrapped", "pebblekey"); len(hits) != 2*len(recs) {
		t.Fatalf("before destroy, %d of %d wrapped values and Pebble keys found; the scan cannot see them", len(hits), 2*len(recs))
	}

	for i, r := range recs {
		if destroyed(r, i) {
			mustNot(t, s.Destroy(Transaction, r.id))
		}
	}
	left := 0
	for i, r := range recs {
		if destroyed(r, i) {
			left += len(found(t, dir, needles(r, "wrapped")))
		}
	}
	if left == 0 {
		t.Error("before Sweep, no destroyed wrapped value is in any file: the sweep is not being tested")
	}

	start := time.Now()
	mustNot(t, s.Sweep(ctx))
	t.Logf("Sweep of %d destroyed keys took %v", len(recs)/2, time.Since(start))

	check := func(when string) {
		t.Helper()
		hits := scan("id", "key", "wrapped", "pebblekey")
		for i, r := range recs {
			for label, files := range hits {
				if bytes.HasPrefix([]byte(label), []byte(r.id+" ")) {
					if destroyed(r, i) || label == r.id+" id" || label == r.id+" key" {
						t.Errorf("%s: %s found in %v", when, label[len(r.id)+1:], files)
					}
				}
			}
			if !destroyed(r, i) && len(hits[r.id+" wrapped"]) == 0 {
				t.Errorf("%s: kept key's wrapped value is in no file", when)
			}
		}
	}
	check("after Sweep")
	for i, r := range recs {
		got, err := s.Get(Transaction, r.id)
		if destroyed(r, i) {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(destroyed) error = %v, want ErrNotFound", err)
			}
		} else if err != nil || !bytes.Equal(got, r.key) {
			t.Errorf("Get(kept) = %x, %v; want %x", got, err, r.key)
		}
	}

	mustNot(t, s.Close())
	check("after Close")
	s = openStore(t, dir, m)
	for i, r := range recs {
		got, err := s.Get(Transaction, r.id)
		if destroyed(r, i) {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("after reopen, Get(destroyed) error = %v, want ErrNotFound", err)
			}
		} else if err != nil || !bytes.Equal(got, r.key) {
			t.Errorf("after reopen, Get(kept) = %x, %v; want %x", got, err, r.key)
		}
	}
	if list, _ := s.List(Transaction); len(list) != len(recs)/2 {
		t.Errorf("after reopen, List has %d keys, want %d", len(list), len(recs)/2)
	}
	mustNot(t, s.Sweep(ctx)) // the first sweep after open runs
	mustNot(t, s.Close())
	check("after reopen, Sweep and Close")
}

func TestRotate(t *testing.T) {
	t.Parallel()
	dir, oldM, newM := t.TempDir(), testMaster(t), testMaster(t)
	s, err := Open(dir, oldM, nil)
	mustNot(t, err)
	ctx := context.Background()
	card := s.CardHash("21234000012345")
	keys := map[string][]byte{}
	old := map[string][]byte{
		"card hash key":   wrapped(t, s, kindSystem, cardHashID),
		"access MAC key":  wrapped(t, s, kindSystem, accessMACID),
		"system seal key": wrapped(t, s, kindSystem, systemSealID),
	}
	for i := range 50 {
		id := markerID()
		k, err := s.Create(Transaction, id)
		mustNot(t, err)
		keys[id] = k
		old[id] = wrapped(t, s, Transaction, id)
		if i == 25 {
			mustNot(t, s.db.Flush())
		}
	}
	if hits := found(t, dir, old); len(hits) != len(old) {
		t.Fatalf("before Rotate, %d of %d old wrapped values found; the scan cannot see them", len(hits), len(old))
	}
	if err := s.Rotate(ctx, oldM); err == nil {
		t.Error("Rotate to the current master = nil error, want error")
	}

	mustNot(t, s.Rotate(ctx, newM))
	if hits := found(t, dir, old); len(hits) > 0 {
		t.Errorf("after Rotate, old wrapped values remain: %v", hits)
	}
	for id, want := range keys {
		if got, err := s.Get(Transaction, id); err != nil || !bytes.Equal(got, want) {
			t.Errorf("after Rotate Get = %x, %v; want %x", got, err, want)
		}
		if w := wrapped(t, s, Transaction, id); bytes.Equal(w, old[id]) {
			t.Error("after Rotate the stored value is the old wrapped value")
		}
	}
	if got := s.CardHash("21234000012345"); got != card {
		t.Errorf("CardHash changed by Rotate: %s, want %s", got, card)
	}
	mustNot(t, s.Close())

	if _, err := Open(dir, oldM, nil); !errors.Is(err, ErrWrongMaster) {
		t.Errorf("Open(old master) after Rotate error = %v, want ErrWrongMaster", err)
	}
	s = openStore(t, dir, newM)
	for id, want := range keys {
		if got, err := s.Get(Transaction, id); err != nil || !bytes.Equal(got, want) {
			t.Errorf("reopened with new master, Get = %x, %v; want %x", got, err, want)
		}
	}
	if got := s.CardHash("21234000012345"); got != card {
		t.Errorf("CardHash after reopen with new master = %s, want %s", got, card)
	}
	if hits := found(t, dir, old); len(hits) > 0 {
		t.Errorf("after reopen, old wrapped values remain: %v", hits)
	}
}

// A wrapped value is bound to its key: moved to another key it does not
// unwrap, and an edited header does not either.
func TestWrappedValueIsBoundToItsKey(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	a, b := markerID(), markerID()
	_, err := s.Create(Transaction, a)
	mustNot(t, err)
	_, err = s.Create(Transaction, b)
	mustNot(t, err)
	va := wrapped(t, s, Transaction, a)
	mustNot(t, s.db.Set(dbKey(RefOf(Transaction, b)), va, pebble.Sync))
	if _, err := s.Get(Transaction, b); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Get of a value moved from another key error = %v, want ErrDecrypt", err)
	}
	edited := bytes.Clone(va)
	edited[12] ^= 1 // creation time
	mustNot(t, s.db.Set(dbKey(RefOf(Transaction, a)), edited, pebble.Sync))
	if _, err := s.Get(Transaction, a); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Get of a value with an edited header error = %v, want ErrDecrypt", err)
	}
}

func TestConcurrentUseWhileSweeping(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	ctx, cancel := context.WithCancel(context.Background())
	sweeps := make(chan int)
	go func() {
		n := 0
		for ctx.Err() == nil {
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
			n++
		}
		sweeps <- n
	}()

	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				id := fmt.Sprintf("txn-%d-%d-%x", w, i, randomBytes(4))
				key, err := s.Create(Transaction, id)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := s.Get(Transaction, id); err != nil || !bytes.Equal(got, key) {
					t.Errorf("Get after Create = %x, %v; want %x", got, err, key)
				}
				if i%2 == 0 {
					continue
				}
				if err := s.Destroy(Transaction, id); err != nil {
					t.Error(err)
				}
				if _, err := s.Get(Transaction, id); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get after Destroy error = %v, want ErrNotFound", err)
				}
			}
		})
	}
	wg.Wait()
	cancel()
	t.Logf("%d sweeps ran during the workload", <-sweeps)
	mustNot(t, s.Sweep(context.Background()))
	st := s.Stats()
	if want := int64(workers * perWorker / 2); st.Transactions != want || st.DestroyedSinceOpen != want || st.PendingErasure {
		t.Errorf("Stats = %+v, want %d live and %d destroyed transaction keys, nothing pending", st, want, want)
	}
}

// Ids and key material never reach the log, even at debug level.
func TestLogsCarryNoIDsOrKeys(t *testing.T) {
	t.Parallel()
	var logs testkit.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir, m := t.TempDir(), testMaster(t)
	s, err := Open(dir, m, logger)
	mustNot(t, err)
	id := markerID()
	key, err := s.Create(Transaction, id)
	mustNot(t, err)
	mustNot(t, s.Destroy(Transaction, id))
	mustNot(t, s.Sweep(context.Background()))
	mustNot(t, s.Rotate(context.Background(), testMaster(t)))
	mustNot(t, s.Close())
	out := logs.String()
	ref := RefOf(Transaction, id)
	if out == "" {
		t.Fatal("nothing was logged; the test sees nothing")
	}
	for _, secret := range []string{id, hex.EncodeToString(key), hex.EncodeToString(ref.Hash[:]), hex.EncodeToString(m.key[:])} {
		if bytes.Contains([]byte(out), []byte(secret)) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
}

func TestSealUnseal(t *testing.T) {
	t.Parallel()
	key, other := randomBytes(KeySize), randomBytes(KeySize)
	ad := []byte("event-id|transaction-id")
	nonce, ct, err := Seal(key, []byte("patron 42"), ad)
	mustNot(t, err)
	pt, err := Unseal(key, nonce, ct, ad)
	if err != nil || string(pt) != "patron 42" {
		t.Errorf("Unseal = %q, %v; want %q", pt, err, "patron 42")
	}
	nonce2, ct2, err := Seal(key, []byte("patron 42"), ad)
	mustNot(t, err)
	if bytes.Equal(nonce, nonce2) || bytes.Equal(ct, ct2) {
		t.Error("two Seals of the same plaintext share a nonce or ciphertext")
	}
	tampered := bytes.Clone(ct)
	tampered[0] ^= 1
	for name, args := range map[string][4][]byte{
		"wrong key":   {other, nonce, ct, ad},
		"wrong ad":    {key, nonce, ct, []byte("other event")},
		"tampered":    {key, nonce, tampered, ad},
		"wrong nonce": {key, nonce2, ct, ad},
		"short nonce": {key, nonce[:12], ct, ad},
	} {
		if _, err := Unseal(args[0], args[1], args[2], args[3]); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Unseal(%s) error = %v, want ErrDecrypt", name, err)
		}
	}
	if _, _, err := Seal(key[:16], []byte("x"), nil); err == nil {
		t.Error("Seal with a 16-byte key = nil error, want error")
	}
}

func TestRefOf(t *testing.T) {
	t.Parallel()
	a := RefOf(Transaction, "t-1")
	if a != RefOf(Transaction, "t-1") {
		t.Error("RefOf is not deterministic")
	}
	if a == RefOf(Profile, "t-1") || a == RefOf(Transaction, "t-2") {
		t.Error("RefOf collides across kinds or ids")
	}
	if got, want := a.String()[:len("transaction:")], "transaction:"; got != want {
		t.Errorf("Ref.String() prefix = %q, want %q", got, want)
	}
}

// TestDestroyAll: keys destroyed together are gone, others stay, and it is idempotent.
func TestDestroyAll(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), testMaster(t))
	var ids []string
	for i := range 50 {
		id := fmt.Sprintf("txn-%02d", i)
		if _, err := s.Create(Transaction, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	gone, kept := ids[:40], ids[40:]
	if err := s.DestroyAll(Transaction, slices.Concat(gone, []string{gone[0], "never-made"})); err != nil {
		t.Fatalf("DestroyAll = %v", err)
	}
	if err := s.DestroyAll(Transaction, gone); err != nil {
		t.Fatalf("DestroyAll again = %v", err)
	}
	for _, id := range gone {
		if _, err := s.Get(Transaction, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) after DestroyAll = %v, want ErrNotFound", id, err)
		}
	}
	for _, id := range kept {
		if _, err := s.Get(Transaction, id); err != nil {
			t.Errorf("Get(%s) of a key not destroyed = %v", id, err)
		}
	}
	if got := s.Stats().Transactions; got != int64(len(kept)) {
		t.Errorf("Stats().Transaction = %d, want %d", got, len(kept))
	}
}
