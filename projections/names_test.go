package projections

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
)

// nameRows returns the keys of every n/ row.
func nameRows(t *testing.T, db *pebble.DB) []string {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(pName), UpperBound: prefixEnd([]byte(pName))})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, string(it.Key()))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNameIndexFollowsTheNameKey: projections whose name index was built under another
// key (as every index was before the name key was split from the card key, when they had
// no m/name-key row) are indexed again at Open under the keystore's name key: the account
// is found by its name, the stale row is gone, and reopening changes nothing more.
func TestNameIndexFollowsTheNameKey(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	id := uuid.NewString()
	key, err := keys.Create(keystore.Profile, id)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := json.Marshal(schemas.Profile{Name: "Ada  Reader", BirthDate: "1980-05-17"})
	nonce, ct, err := keystore.Seal(key, pt, []byte("profile\x00"+id)) // ledger's profile AD
	if err != nil {
		t.Fatal(err)
	}
	pm := &patronMsgs{t: t}
	dir := filepath.Join(t.TempDir(), "p")
	s, err := Open(dir, keys, v, Config{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]ledger.Msg{pm.msg(schemas.TypePatronRegistered, id, schemas.PatronRegistered{
		PatronID: id, HomeBranch: "main", Profile: schemas.Sealed{KID: id, Nonce: nonce, CT: ct}})}); err != nil {
		t.Fatal(err)
	}
	want := keys.NameHash("ada reader")
	if ids, err := s.PatronsByName(want); err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("PatronsByName after registration = %d ids, %v; want the account", len(ids), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Make it an index built under another key, without m/name-key.
	stale := strings.Repeat("ab", 32)
	db, err := pebble.Open(dir, keystore.PebbleOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	raw, closer, err := db.Get(patronKey(id))
	if err != nil {
		t.Fatal(err)
	}
	var p model.Patron
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	closer.Close()
	p.NameHash = stale
	raw, _ = json.Marshal(p)
	b := db.NewBatch()
	for _, err := range []error{
		b.Delete(nameKey(want, id), nil),
		b.Set(nameKey(stale, id), []byte(id), nil),
		b.Set(patronKey(id), raw, nil),
		b.Delete([]byte(pNameKey), nil),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	for range 2 { // the second open finds the index current
		s, err = Open(dir, keys, v, Config{Location: time.UTC})
		if err != nil {
			t.Fatal(err)
		}
		if ids, err := s.PatronsByName(want); err != nil || !slices.Equal(ids, []string{id}) {
			t.Errorf("PatronsByName under the name key after Open = %d ids, %v; want the account", len(ids), err)
		}
		if ids, _ := s.PatronsByName(stale); len(ids) != 0 {
			t.Errorf("PatronsByName under the stale hash after Open = %d ids, want none", len(ids))
		}
		if rows := nameRows(t, s.db); len(rows) != 1 || rows[0] != string(nameKey(want, id)) {
			t.Errorf("n/ rows after Open = %d, want the one under the name key", len(rows))
		}
		if pr, err := s.Patron(id); err != nil || pr.NameHash != want {
			t.Errorf("patron row's name hash after Open = %q, %v; want the name key's", pr.NameHash, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
