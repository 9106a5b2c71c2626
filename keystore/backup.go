package keystore

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ExportedKey is one live key as a backup holds it: its place in the store (a kind and a
// hash, never an identifier) and the key itself, unwrapped, so that a backup does not
// depend on the master key of the day it was made: Import wraps it under the master key
// of the day it is restored.
type ExportedKey struct {
	DBKey   []byte
	Key     []byte
	Created time.Time
}

// Export calls f with every live key, the system keys included, from one point-in-time
// view of the store. Destroyed keys are not in it, whatever the files still hold: a
// backup is made of what exists, not of the files. Nor are the keys a running Pool holds
// ready, which nothing uses (a key taken from the pool after the view is exported: the
// event sealed under it may be in the backup's stream). f must not keep the slices.
func (s *Store) Export(f func(ExportedKey) error) error {
	if s.remote != nil {
		return ErrClusterNode
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	snap := s.db.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{keyPrefix}, UpperBound: []byte{keyPrefix + 1}})
	if err != nil {
		return fmt.Errorf("export keys: %w", err)
	}
	defer it.Close()
	pool := s.pool.Load()
	for it.First(); it.Valid(); it.Next() {
		if ref, ok := refOfDBKey(it.Key()); ok && pool.holds(ref) {
			continue
		}
		h, _, _, err := parseValue(it.Value())
		if err != nil {
			return fmt.Errorf("export keys: %w", err)
		}
		key, err := s.m.unwrap(it.Key(), it.Value())
		if err != nil {
			return fmt.Errorf("export keys: %w", err)
		}
		err = f(ExportedKey{DBKey: it.Key(), Key: key, Created: h.created})
		clear(key)
		if err != nil {
			return err
		}
	}
	return it.Error()
}

// Import makes a key store in dir, which must not exist or be empty, holding exactly the
// keys next yields (until it reports done), wrapped under master. Open it afterwards.
func Import(dir string, master MasterKey, next func() (ExportedKey, bool, error)) error {
	if err := importKeys(dir, master, next); err != nil {
		return fmt.Errorf("import keys: %w", err)
	}
	return nil
}

func importKeys(dir string, mk MasterKey, next func() (ExportedKey, bool, error)) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	m, err := newMaster(mk)
	if err != nil {
		return err
	}
	db, err := pebble.Open(dir, PebbleOptions(nil))
	if err != nil {
		return err
	}
	b := db.NewBatch()
	for {
		k, ok, err := next()
		if err == nil && ok {
			if _, valid := refOfDBKey(k.DBKey); !valid || len(k.Key) != KeySize {
				err = errors.New("malformed key in the backup")
			}
		}
		if err == nil && ok {
			err = b.Set(k.DBKey, m.wrap(k.DBKey, k.Key, k.Created), nil)
		}
		if err != nil {
			b.Close()
			db.Close()
			return err
		}
		if !ok {
			break
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		db.Close()
		return err
	}
	return db.Close()
}

// SealWithMaster seals plaintext under a key derived from master for purpose (HKDF-SHA256),
// never under the master key itself: what the master key protects outside the store,
// such as the backup keyring. The result is nonce and ciphertext together.
func SealWithMaster(m MasterKey, purpose string, plaintext, ad []byte) ([]byte, error) {
	key, err := derive(m, purpose)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	nonce, ct, err := Seal(key, plaintext, ad)
	if err != nil {
		return nil, err
	}
	return append(nonce, ct...), nil
}

// UnsealWithMaster reverses SealWithMaster; a wrong master key, purpose or ad gives an
// error wrapping ErrDecrypt.
func UnsealWithMaster(m MasterKey, purpose string, sealed, ad []byte) ([]byte, error) {
	key, err := derive(m, purpose)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	const nonceLen = 24
	if len(sealed) < nonceLen {
		return nil, fmt.Errorf("unseal: %w", ErrDecrypt)
	}
	return Unseal(key, sealed[:nonceLen], sealed[nonceLen:], ad)
}

func derive(m MasterKey, purpose string) ([]byte, error) {
	if !m.valid() {
		return nil, errors.New("invalid master key")
	}
	return hkdf.Key(sha256.New, m.key[:], nil, "lethe "+purpose, KeySize)
}

// checkpointNextID holds a new checkpoint signing seed while its rotation is under way:
// staged before the rotation is announced on the stream, committed after.
const checkpointNextID = "checkpoint-sign-next"

// StageCheckpointSeed stores seed as the next checkpoint signing key, synced. It fails if
// one is staged already.
func (s *Store) StageCheckpointSeed(seed []byte) error {
	if s.remote != nil {
		return ErrClusterNode
	}
	if len(seed) != KeySize {
		return errors.New("stage checkpoint key: wrong size")
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	ref := RefOf(kindSystem, checkpointNextID)
	if _, err := s.get(ref); err == nil {
		return errors.New("stage checkpoint key: a rotation is under way already")
	}
	return s.db.Set(dbKey(ref), s.m.wrap(dbKey(ref), seed, s.now()), pebble.Sync)
}

// StagedCheckpointSeed returns the staged next checkpoint signing seed, if there is one.
func (s *Store) StagedCheckpointSeed() ([]byte, bool, error) {
	if err := s.rlock(); err != nil {
		return nil, false, err
	}
	defer s.mu.RUnlock()
	key, err := s.get(RefOf(kindSystem, checkpointNextID))
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// FinishCheckpointRotation ends a staged rotation: with commit, the staged seed becomes
// the checkpoint signing key and the old one is destroyed (the next Sweep erases its
// bytes); without, the staged seed is destroyed. One synced batch either way.
func (s *Store) FinishCheckpointRotation(commit bool) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	next := RefOf(kindSystem, checkpointNextID)
	seed, err := s.get(next)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer clear(seed)
	b := s.db.NewBatch()
	defer b.Close()
	if commit {
		cur := RefOf(kindSystem, checkpointSignID)
		if err := b.Set(dbKey(cur), s.m.wrap(dbKey(cur), seed, s.now()), nil); err != nil {
			return err
		}
	}
	if err := b.Delete(dbKey(next), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if commit {
		s.signMu.Lock()
		copy(s.signKey[:], seed)
		s.signMu.Unlock()
	}
	s.gen.Add(1) // the replaced or dropped seed's bytes await a sweep
	return nil
}
