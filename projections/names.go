package projections

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/seal"
)

// pNameKey records which keystore name key (keystore.NameKeyID) the name index (n/ rows,
// and NameHash on p/ rows) is keyed by.
const pNameKey = "m/name-key"

// indexNames makes the name index match the keystore's name key. When m/name-key names
// another key (or none: projections written before the name key was split from the card
// key), every n/ row is deleted and the index is built again from the sealed profiles of
// the open accounts, with m/name-key, in one synced batch: a crash leaves the old index or
// the new one. Closed accounts have no p/ row and no profile key, so they stay out of it.
func (s *Store) indexNames() error {
	want := s.keys.NameKeyID()
	v, closer, err := s.db.Get([]byte(pNameKey))
	switch {
	case err == nil:
		same := string(v) == want
		closer.Close()
		if same {
			return nil
		}
	case !errors.Is(err, pebble.ErrNotFound):
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(pName), UpperBound: prefixEnd([]byte(pName))})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := b.Delete(it.Key(), nil); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	it, err = s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(pPatron), UpperBound: prefixEnd([]byte(pPatron))})
	if err != nil {
		return err
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		var p model.Patron
		if err := json.Unmarshal(it.Value(), &p); err != nil {
			it.Close()
			return fmt.Errorf("patron row: %w", err)
		}
		p.NameHash = ""
		profile, err := seal.OpenProfile(s.keys, p.ID, p.Profile)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			// No profile key: the account is being closed; it has no name to find.
		case err != nil:
			it.Close()
			return err
		default:
			p.NameHash = s.keys.NameHash(profile.Name)
			if err := b.Set(nameKey(p.NameHash, p.ID), []byte(p.ID), nil); err != nil {
				it.Close()
				return err
			}
			n++
		}
		raw, err := json.Marshal(p)
		if err != nil {
			it.Close()
			return err
		}
		if err := b.Set(append([]byte(nil), it.Key()...), raw, nil); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if err := b.Set([]byte(pNameKey), []byte(want), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if n > 0 {
		s.logger.Info("name index built again under the keystore's name key", "accounts", n)
	}
	return nil
}
