package ledger

import (
	"errors"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

// Contact details.
//
// update_contact changes a patron's email, phone, address or caregiver's contact at the
// desk. Its event, patron.contact_updated, carries two values sealed under the patron's
// profile key: the change as the command gave it, which a retry is checked against, and
// the whole profile after it, which replaces the profile in the patron's row. So whatever
// reads a profile (the collections export, lookups, the name index) reads the new contact
// details with no change of its own, and closing the account forgets them with the rest
// of the profile. Neither is ever on the stream or on disk in the clear.

// errNoCaregiver refuses a change of the caregiver's contact on an account that lists no
// caregiver: there is nobody whose contact it would be.
var errNoCaregiver = schemas.Errorf(schemas.CodeConflict, "this account lists no caregiver: caregiver_contact cannot be set or cleared")

// updateContact seals the change and the profile after it under the patron's profile key,
// on the patron's subject, conditional on nothing else having been appended there since
// the profile was read: two changes decided on one profile cannot both be appended, so
// neither undoes the other.
func (l *Ledger) updateContact(at Station, c schemas.UpdateContact) decider {
	return func(l view) (plan, error) {
		if err := c.Check(); err != nil {
			return plan{}, err
		}
		// A closed account's row is gone with its close, so it is not_found like an
		// unknown one; so is one closed since the view, whose profile key is gone.
		p, err := l.openPatron(c.PatronID)
		if err != nil {
			return plan{}, err
		}
		profile, err := seal.OpenProfile(l.keys, p.ID, p.Profile)
		if errors.Is(err, keystore.ErrNotFound) {
			return plan{}, errUnknownPatron
		} else if err != nil {
			return plan{}, err
		}
		if c.ChangesCaregiver() && profile.Caregiver == nil {
			return plan{}, errNoCaregiver
		}
		key, err := l.keys.Get(keystore.Profile, p.ID)
		if errors.Is(err, keystore.ErrNotFound) {
			return plan{}, errUnknownPatron
		} else if err != nil {
			return plan{}, err
		}
		defer clear(key)
		change, err := seal.Contact(key, p.ID, c.ContactChange)
		if err != nil {
			return plan{}, err
		}
		after, err := seal.Profile(key, p.ID, c.Apply(profile))
		if err != nil {
			return plan{}, err
		}
		return l.oneEvent(at, schemas.TypePatronContactUpdated, PatronSubject(p.ID),
			schemas.PatronContactUpdated{PatronID: p.ID, Contact: change, Profile: after})
	}
}

// sameUpdateContact: the patron, and the change (every field set, and the fields cleared
// in any order) while the profile key exists.
func sameUpdateContact(l *Ledger, c schemas.UpdateContact, evs []appended) error {
	d, err := dataOf[schemas.PatronContactUpdated](evs[0])
	if err != nil {
		return err
	}
	if d.PatronID != c.PatronID {
		return errReused
	}
	first, err := seal.OpenContact(l.keys, d.PatronID, d.Contact)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil // the account closed since: the change cannot be checked
	} else if err != nil {
		return err
	}
	if !first.Same(c.ContactChange) {
		return errReused
	}
	return nil
}
