package staff

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/imagineif/lethe/phc"
	"github.com/imagineif/lethe/policy"
)

// Records are the accounts as package replica carries them between the nodes of a
// cluster, each node keeping its own store. A record holds the password's argon2id hash,
// which is safe to keep anywhere the accounts are, and never the password.
//
// Copies of one account meet in any order, and more than once, so MergeRecords is
// commutative, associative and idempotent, and decides field by field, so that a password
// changed on one node and a disable on another both survive:
//   - the status: the later StatusChanged wins; at the same time, disabled wins;
//   - the password: the later PasswordChanged wins; at the same time (one node upgraded
//     the hash of the same password to current parameters), the current parameters win,
//     then the greater string, so that every node picks the same;
//   - an account created under one name on two nodes that had not heard of each other:
//     the one created first is the account, all of it, as if the second Add had failed.
//
// Times are the nodes' wall clocks; a change on a node is always later than the copy it
// changes (after), so a lagging clock does not lose a change to what it has seen.

// Record is an account with its password hash, for replication between nodes.
type Record struct {
	Name            string      `json:"name"`
	Role            policy.Role `json:"role"`
	Disabled        bool        `json:"disabled"`
	Created         time.Time   `json:"created"`
	PasswordChanged time.Time   `json:"password_changed"`
	StatusChanged   time.Time   `json:"status_changed,omitzero"`
	Hash            string      `json:"hash"` // argon2id, PHC string
}

func (r record) export(name string) Record {
	return Record{Name: name, Role: r.Role, Disabled: r.Disabled, Created: r.Created,
		PasswordChanged: r.PasswordChanged, StatusChanged: r.StatusChanged, Hash: r.Hash}.utc()
}

func (r Record) record() record {
	return record{Role: r.Role, Disabled: r.Disabled, Created: r.Created,
		PasswordChanged: r.PasswordChanged, StatusChanged: r.StatusChanged, Hash: r.Hash}
}

// utc is the record with its times in UTC.
func (r Record) utc() Record {
	r.Created, r.PasswordChanged = r.Created.UTC(), r.PasswordChanged.UTC()
	if !r.StatusChanged.IsZero() {
		r.StatusChanged = r.StatusChanged.UTC()
	}
	return r
}

// Validate reports whether a record is well-formed. Its errors hold no value: not the
// hash, not the name.
func (r Record) Validate() error {
	if !ValidName(r.Name) {
		return ErrBadName
	}
	if !r.Role.Valid() {
		return ErrBadRole
	}
	if _, err := phc.Parse(r.Hash); err != nil {
		return errors.New("the password hash is not an argon2id PHC string")
	}
	if r.Created.IsZero() || r.PasswordChanged.IsZero() {
		return errors.New("a staff account record has no creation or password time")
	}
	return nil
}

// MergeRecords returns what two copies of one account come to, by the rules above.
func MergeRecords(a, b Record) (Record, error) {
	if a.Name != b.Name {
		return Record{}, errors.New("merge staff accounts: two different accounts")
	}
	if !a.Created.Equal(b.Created) {
		if b.Created.Before(a.Created) {
			return b.utc(), nil
		}
		return a.utc(), nil
	}
	m := a
	if b.Role > a.Role { // one account's role never changes; this only makes the pick the same everywhere
		m.Role = b.Role
	}
	if b.StatusChanged.After(a.StatusChanged) || (b.StatusChanged.Equal(a.StatusChanged) && b.Disabled) {
		m.Disabled, m.StatusChanged = b.Disabled, b.StatusChanged
	}
	if b.PasswordChanged.After(a.PasswordChanged) ||
		(b.PasswordChanged.Equal(a.PasswordChanged) && betterHash(b.Hash, a.Hash)) {
		m.Hash, m.PasswordChanged = b.Hash, b.PasswordChanged
	}
	return m.utc(), nil
}

// betterHash reports whether x is preferred to y, two hashes of the same password: the
// current parameters, then the greater string.
func betterHash(x, y string) bool {
	hx, errx := phc.Parse(x)
	hy, erry := phc.Parse(y)
	curx, cury := errx == nil && !hx.Stale(), erry == nil && !hy.Stale()
	if curx != cury {
		return curx
	}
	return x > y
}

// sameRecord reports whether two records are equal in every field.
func sameRecord(a, b Record) bool {
	return a.Name == b.Name && a.Role == b.Role && a.Disabled == b.Disabled && a.Hash == b.Hash &&
		a.Created.Equal(b.Created) && a.PasswordChanged.Equal(b.PasswordChanged) && a.StatusChanged.Equal(b.StatusChanged)
}

// Version changes whenever a record is written (by this Store, since it was opened): a
// replica polls it to know when to read the records again.
func (s *Store) Version() uint64 { return s.version.Load() }

// Records returns every account with its hash, sorted by name.
func (s *Store) Records() ([]Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, errClosed
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("a/"), UpperBound: []byte("a0")})
	if err != nil {
		return nil, fmt.Errorf("read staff accounts: %w", err)
	}
	out := []Record{}
	for it.First(); it.Valid(); it.Next() {
		var r record
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			it.Close()
			return nil, errors.New("a staff account record does not decode: the store is damaged")
		}
		out = append(out, r.export(string(it.Key()[2:])))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("read staff accounts: %w", err)
	}
	return out, nil
}

// Merge merges a copy of an account from another node into the store, by MergeRecords,
// keeping its hash as it is, and reports whether the account changed. An invalid record
// changes nothing.
func (s *Store) Merge(r Record) (bool, error) {
	if err := r.Validate(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := r.utc()
	cur, err := s.get(r.Name)
	if err == nil {
		old := cur.export(r.Name)
		if m, err = MergeRecords(old, r); err != nil {
			return false, err
		}
		if sameRecord(m, old) {
			return false, nil
		}
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if err := s.put(r.Name, m.record()); err != nil {
		return false, err
	}
	s.logger.Info("staff account from another node", slog.String("name", r.Name),
		slog.String("role", string(m.Role)), slog.Bool("disabled", m.Disabled))
	return true, nil
}

// after returns t, or just after prev if t is not after it.
func after(t, prev time.Time) time.Time {
	if t.After(prev) {
		return t
	}
	return prev.Add(time.Nanosecond)
}
