package projections

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/model"
)

// IndexAccess writes the index rows of fresh access-record pseudonyms: kids[i] stands for
// the account patronIDs[i]. It writes rows only for accounts that are open. The check and the write happen under the view lock, which the projector
// holds exclusively while it commits a batch (and with it a patron.closed, which deletes
// the account's rows): so no close can slip between them and leave a row behind for a
// closed account. The rows are synced before IndexAccess returns, because nothing can
// rebuild them: an entry whose row was lost would read "erased" while its account is open.
func (s *Store) IndexAccess(patronIDs, kids []string) error {
	if len(patronIDs) != len(kids) {
		return fmt.Errorf("index access pseudonyms: %d accounts, %d pseudonyms", len(patronIDs), len(kids))
	}
	b := s.db.NewBatch()
	defer b.Close()
	s.viewMu.RLock()
	defer s.viewMu.RUnlock()
	for i, id := range patronIDs {
		p, err := s.rows.Patron(id)
		if errors.Is(err, model.ErrNotFound) || (err == nil && p.Closed) {
			continue
		} else if err != nil {
			return fmt.Errorf("index access pseudonyms: %w", err)
		}
		if err := b.Set(accessKey(kids[i]), []byte(id), nil); err != nil {
			return err
		}
		if err := b.Set(accessByKey(id, kids[i]), nil, nil); err != nil {
			return err
		}
	}
	if b.Empty() {
		return nil
	}
	// The erasure sweep has nothing to record: the rows are new (a pseudonym is fresh for
	// every entry) and overwrite nothing.
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("index access pseudonyms: %w", err)
	}
	return nil
}

// PatronByAccessKID returns the open account an access-record pseudonym stands for, or
// model.ErrNotFound once that account is closed (or if kid was never indexed).
func (s *Store) PatronByAccessKID(kid string) (string, error) {
	return getString(s.db, accessKey(kid))
}

// AccessKIDs returns the access-record pseudonyms of an open account, none once it is
// closed.
func (s *Store) AccessKIDs(patronID string) ([]string, error) {
	prefix := accessByPrefix(patronID)
	var kids []string
	err := s.scan(prefix, func(k, _ []byte) error {
		kids = append(kids, string(k[len(prefix):]))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read access pseudonyms: %w", err)
	}
	return kids, nil
}

// dropAccessIndex adds to pb the deletion of every index row of the accounts closed in
// the batch pb commits, and returns the keys it deletes. The caller holds the view lock
// exclusively, so no IndexAccess runs between this read and the commit.
func (s *Store) dropAccessIndex(pb *pebble.Batch, closed []string) ([][]byte, error) {
	var deleted [][]byte
	for _, id := range closed {
		prefix := accessByPrefix(id)
		err := s.scan(prefix, func(k, _ []byte) error {
			byKID := accessKey(string(k[len(prefix):]))
			if err := pb.Delete(byKID, nil); err != nil {
				return err
			}
			deleted = append(deleted, byKID, bytes.Clone(k))
			return pb.Delete(k, nil)
		})
		if err != nil {
			return nil, fmt.Errorf("drop access pseudonyms: %w", err)
		}
	}
	return deleted, nil
}
