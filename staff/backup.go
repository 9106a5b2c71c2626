package staff

import (
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/keystore"
)

// Export calls f with every account record (its key and value: a name, a role, a
// password hash, never a password) from one point-in-time view. f must not keep the
// slices.
func (s *Store) Export(f func(k, v []byte) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	db := s.db
	if db == nil {
		return errors.New("export staff accounts: the store is closed")
	}
	snap := db.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte("a/"), UpperBound: []byte("a0")})
	if err != nil {
		return fmt.Errorf("export staff accounts: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := f(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// Import makes a staff store in dir, which must not exist or be empty, holding exactly
// the records next yields (until it reports done). Each is checked as Open checks them.
func Import(dir string, next func() (k, v []byte, ok bool, err error)) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("import staff accounts: %s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("import staff accounts: %w", err)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: keystore.PebbleLogger(nil)})
	if err != nil {
		return fmt.Errorf("import staff accounts: %w", err)
	}
	b := db.NewBatch()
	for {
		k, v, ok, err := next()
		if err == nil && ok && (len(k) < 3 || string(k[:2]) != "a/" || !ValidName(string(k[2:]))) {
			err = errors.New("malformed account in the backup")
		}
		if err == nil && ok {
			err = b.Set(k, v, nil)
		}
		if err != nil {
			b.Close()
			db.Close()
			return fmt.Errorf("import staff accounts: %w", err)
		}
		if !ok {
			break
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		db.Close()
		return fmt.Errorf("import staff accounts: %w", err)
	}
	if err := checkAll(db); err != nil {
		db.Close()
		return fmt.Errorf("import staff accounts: %w", err)
	}
	return db.Close()
}
