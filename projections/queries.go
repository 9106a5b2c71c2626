package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/model"
)

// ClosedTxn is a closed transaction still waiting for its transaction.expunged record.
type ClosedTxn struct {
	TxnID    string
	ClosedAt time.Time
}

// PendingExpunges lists closed transactions not yet recorded as expunged.
func (s *Store) PendingExpunges() ([]ClosedTxn, error) {
	var out []ClosedTxn
	err := s.scan([]byte(pExpunge), func(_, v []byte) error {
		var r expungeRow
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, ClosedTxn{TxnID: r.TxnID, ClosedAt: r.ClosedAt})
		return nil
	})
	return out, err
}

// ClosedPatrons lists closed accounts whose profile key is still to be destroyed.
func (s *Store) ClosedPatrons() ([]string, error) {
	var out []string
	err := s.scan([]byte(pProfileK), func(_, v []byte) error {
		out = append(out, string(v))
		return nil
	})
	return out, err
}

// ProfileErased forgets a closed patron once the expunger destroyed the profile key.
func (s *Store) ProfileErased(patronID string) error {
	b := s.db.NewBatch()
	defer b.Close()
	key := profileKeyRow(patronID)
	if err := b.Delete(key, nil); err != nil {
		return err
	}
	return s.erasure.commit(b, pebble.NoSync, [][]byte{key})
}

// HasTxn reports whether an open transaction row exists under the keystore reference
// hash h (SHA-256 of the transaction id), for reconciling keys with transactions.
func (s *Store) HasTxn(h []byte) (bool, error) {
	return s.has(append([]byte(pTxn), h...))
}

// HasPatron reports whether a patron row exists under the hash of the patron id.
func (s *Store) HasPatron(h []byte) (bool, error) {
	return s.has(append([]byte(pPatron), h...))
}

func (s *Store) has(key []byte) (bool, error) {
	_, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

func (s *Store) scan(prefix []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// Counts are the sizes of the live read models, for metrics and the dashboard.
type Counts struct {
	Items, OnLoan, Lost, OpenTxns, Patrons, PendingExpunge int
}

// Counts counts rows. It reads every item, so it is for dashboards, not hot paths.
func (s *Store) Counts() (Counts, error) {
	var c Counts
	err := s.scan([]byte(pItem), func(_, v []byte) error {
		var it model.Item
		if err := json.Unmarshal(v, &it); err != nil {
			return err
		}
		c.Items++
		switch it.Status {
		case model.ItemOnLoan:
			c.OnLoan++
		case model.ItemLost:
			c.Lost++
		}
		return nil
	})
	for _, q := range []struct {
		p string
		n *int
	}{{pTxn, &c.OpenTxns}, {pPatron, &c.Patrons}, {pExpunge, &c.PendingExpunge}} {
		if err != nil {
			break
		}
		err = s.scan([]byte(q.p), func(_, _ []byte) error { *q.n++; return nil })
	}
	return c, err
}

// Stat is one aggregate count: no patron data.
type Stat struct {
	Day        string `json:"day"`
	Branch     string `json:"branch"`
	Collection string `json:"collection"`
	Measure    string `json:"measure"`
	Count      int64  `json:"count"`
}

// Stats returns aggregate counts for days in [from, to] (YYYY-MM-DD, inclusive).
func (s *Store) Stats(from, to string) ([]Stat, error) {
	lo := []byte(pStat + from)
	hi := prefixEnd([]byte(pStat + to + "/"))
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []Stat{}
	for ok := it.First(); ok; ok = it.Next() {
		parts := strings.SplitN(string(bytes.TrimPrefix(it.Key(), []byte(pStat))), "/", 4)
		if len(parts) != 4 {
			continue
		}
		out = append(out, Stat{Day: parts[0], Branch: parts[1], Collection: parts[2], Measure: parts[3],
			Count: int64(binary.BigEndian.Uint64(it.Value()))})
	}
	return out, it.Error()
}

// Items lists items in barcode order from after, at most limit.
func (s *Store) Items(after string, limit int) ([]model.Item, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(pItem + after + "\x00"), UpperBound: prefixEnd([]byte(pItem))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []model.Item{}
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		var item model.Item
		if err := json.Unmarshal(it.Value(), &item); err != nil {
			return nil, err
		}
		out = append(out, item)
	}
	return out, it.Error()
}
