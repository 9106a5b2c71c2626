package identity

import (
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nkeys"
)

// Several copies of the registry. In a cluster every node keeps its own registry file,
// and package replica carries each identity between them. Copies meet in any order, and
// more than once, so Merge is commutative, associative and idempotent: every node that has
// seen the same copies holds the same identities, whatever the order they came in.
//
//   - An identity is its public key: the union of all copies' identities is kept.
//   - A revocation is final: a copy that is revoked stays revoked, whatever arrives after
//     it. Its time is the latest any copy gives: an identity revoked on two nodes keeps
//     the later revocation, which may cover an identity of the same name (below) that
//     the earlier one does not.
//   - A revocation of a name covers every identity of that name added at or before it,
//     wherever it was added: `lethe kiosks revoke main/k1` on one node cuts the kiosk
//     even if another node re-added it a moment earlier, as the two commands would have
//     done one after the other in the order of their times. (A name added after its
//     revocation is a new kiosk; Add makes sure its time is after every revocation the
//     node knows, so a clock that lags does not get it revoked.)
//   - Of two SIP2 passwords, the one set later (SIP2PasswordSet) wins.
//
// Times are the nodes' wall clocks: the nodes of a cluster are expected to keep them
// within a second of each other (NTP), as the rotation schedule already does.

// ErrConflict: two copies with one public key disagree about whose key it is. One of
// them is damaged; neither is taken.
var ErrConflict = errors.New("two copies of an identity with one public key name different identities")

// Validate reports whether an identity is well-formed: its kind and names, its public
// key, and its SIP2 password hash if it has one. Its errors hold no value.
func (id Identity) Validate() error {
	if err := validate(id.Kind, id.Branch, id.Name); err != nil {
		return err
	}
	if !nkeys.IsValidPublicUserKey(id.PublicKey) {
		return errors.New("public key is not a NATS user key")
	}
	if !validSIP2Hash(id) {
		return errors.New("SIP2 password is not an argon2id hash on a kiosk")
	}
	if id.Added.IsZero() {
		return errors.New("no time added")
	}
	return nil
}

// Merge returns what two copies of one identity (one public key) come to, by the rules
// above; ErrConflict if they are not copies of one identity.
func Merge(a, b Identity) (Identity, error) {
	if a.PublicKey != b.PublicKey || a.Kind != b.Kind || a.Branch != b.Branch || a.Name != b.Name {
		return Identity{}, ErrConflict
	}
	m := a
	if b.Added.Before(a.Added) {
		m.Added = b.Added
	}
	if a.Revoked == nil || (b.Revoked != nil && b.Revoked.After(*a.Revoked)) {
		m.Revoked = b.Revoked
	}
	if b.SIP2PasswordSet.After(a.SIP2PasswordSet) ||
		(b.SIP2PasswordSet.Equal(a.SIP2PasswordSet) && b.SIP2Password > a.SIP2Password) {
		m.SIP2Password, m.SIP2PasswordSet = b.SIP2Password, b.SIP2PasswordSet
	}
	return m.utc(), nil
}

// utc is the identity with its times in UTC, as the file holds them, and Revoked its own.
func (id Identity) utc() Identity {
	id.Added = id.Added.UTC()
	if !id.SIP2PasswordSet.IsZero() {
		id.SIP2PasswordSet = id.SIP2PasswordSet.UTC()
	}
	if id.Revoked != nil {
		t := id.Revoked.UTC()
		id.Revoked = &t
	}
	return id
}

// Merge merges copies of identities from elsewhere (other nodes) into the registry, under
// its lock, by the rules above, and reports whether the file changed. It checks each
// first; one that is invalid or conflicts with this registry's copy fails the whole call
// and changes nothing.
func (r *Registry) Merge(ids []Identity) (bool, error) {
	for _, id := range ids {
		if err := id.Validate(); err != nil {
			return false, err
		}
	}
	changed := false
	err := r.update(func(f *file) error {
		next := slices.Clone(f.Identities)
		for _, id := range ids {
			i := slices.IndexFunc(next, func(o Identity) bool { return o.PublicKey == id.PublicKey })
			if i < 0 {
				next = append(next, id.utc())
				continue
			}
			m, err := Merge(next[i], id)
			if err != nil {
				return err
			}
			next[i] = m
		}
		revokeCovered(next)
		for i := range next {
			if i >= len(f.Identities) || !same(next[i], f.Identities[i]) {
				changed = true
			}
		}
		if !changed {
			return errUnchanged
		}
		f.Identities = next
		return nil
	})
	return changed, err
}

// revokeCovered revokes every active identity that a revocation of its name at or after
// its addition covers, at the earliest such revocation.
func revokeCovered(ids []Identity) {
	for i, id := range ids {
		if !id.Active() {
			continue
		}
		var at *time.Time
		for _, o := range ids {
			if o.Revoked != nil && o.Account() == id.Account() && !o.Revoked.Before(id.Added) &&
				(at == nil || o.Revoked.Before(*at)) {
				at = o.Revoked
			}
		}
		if at != nil {
			t := *at
			ids[i].Revoked = &t
		}
	}
}

// same reports whether two copies are equal in every field.
func same(a, b Identity) bool {
	if (a.Revoked == nil) != (b.Revoked == nil) || (a.Revoked != nil && !a.Revoked.Equal(*b.Revoked)) {
		return false
	}
	return a.Kind == b.Kind && a.Branch == b.Branch && a.Name == b.Name && a.PublicKey == b.PublicKey &&
		a.SIP2Password == b.SIP2Password && a.SIP2PasswordSet.Equal(b.SIP2PasswordSet) && a.Added.Equal(b.Added)
}

// after returns t, or just after prev if t is not after it.
func after(t, prev time.Time) time.Time {
	if t.After(prev) {
		return t
	}
	return prev.Add(time.Nanosecond)
}
