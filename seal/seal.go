// Package seal is every sealed envelope of Lethe in one place: what a patron's data is
// sealed under, with which associated data, and how it is opened again. A sealed value is
// schemas.Sealed {kid, nonce, ct}: XChaCha20-Poly1305 (keystore.Seal) under a key of the
// keystore. Destroying that key is what makes the value unreadable for good
// (crypto-shredding); the associated data binds it to where it stands, so a ciphertext
// cannot be moved to another event, entry or account.
//
// # Envelopes
//
//	envelope          plaintext            key                                kid                 associated data
//	patron reference  the patron's id      the transaction's key              the transaction id  <event id> 0x00 <txn id>
//	profile           schemas.Profile JSON  the patron's profile key           the patron id       "profile" 0x00 <patron id>
//	PIN               the PIN's PHC hash   the patron's profile key           the patron id       "pin" 0x00 <patron id>
//	contact change    ContactChange JSON   the patron's profile key           the patron id       "contact" 0x00 <patron id>
//	access patron     the patron's id      the patron's profile key           a fresh random kid  "access" 0x00 <entry id> 0x00 <kid>
//	access note       a court order's ref  the profile key of the entry's     that patron's kid,  "access note" 0x00 <entry id> 0x00 <kid>
//	                                       first patron, or the system key    or "system"
//
// A patron reference is in circulation events (item.checked_out, a stand-alone fee's
// fine.assessed): it opens only while the transaction is open. A profile is in
// patron.registered and, whole again after a change of contact details, in
// patron.contact_updated beside the sealed change: they open only while the account is
// open. Access patrons and notes are in access entries (package access): they open only
// while the account is open, and only the projections' index can say which account a kid
// stands for.
package seal

import (
	"crypto/rand"
	"encoding/json"
	"fmt"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/schemas"
)

// patronAD is the associated data of a patron reference.
func patronAD(eventID, txnID string) []byte { return []byte(eventID + "\x00" + txnID) }

// profileAD is the associated data of a profile.
func profileAD(patronID string) []byte { return []byte("profile\x00" + patronID) }

// pinAD is the associated data of a PIN's hash.
func pinAD(patronID string) []byte { return []byte("pin\x00" + patronID) }

// accessPatronAD binds an access entry's patron reference to its entry and its kid.
func accessPatronAD(entryID, kid string) []byte {
	return []byte("access\x00" + entryID + "\x00" + kid)
}

// accessNoteAD binds an access entry's court order reference to its entry and its kid.
func accessNoteAD(entryID, kid string) []byte {
	return []byte("access note\x00" + entryID + "\x00" + kid)
}

// Patron seals a patron's id for the event eventID of transaction txnID, under that
// transaction's key.
func Patron(key []byte, patronID, eventID, txnID string) (schemas.Sealed, error) {
	nonce, ct, err := keystore.Seal(key, []byte(patronID), patronAD(eventID, txnID))
	if err != nil {
		return schemas.Sealed{}, fmt.Errorf("seal patron reference: %w", err)
	}
	return schemas.Sealed{KID: txnID, Nonce: nonce, CT: ct}, nil
}

// OpenPatron returns the patron id sealed in an event's patron reference. It fails with
// keystore.ErrNotFound once the transaction's key is destroyed: the link is gone for good.
func OpenPatron(keys *keystore.Store, eventID string, s schemas.Sealed) (string, error) {
	key, err := keys.Get(keystore.Transaction, s.KID)
	if err != nil {
		return "", err
	}
	pt, err := keystore.Unseal(key, s.Nonce, s.CT, patronAD(eventID, s.KID))
	if err != nil {
		return "", fmt.Errorf("open patron reference: %w", err)
	}
	return string(pt), nil
}

// Profile seals a patron's profile under the patron's profile key.
func Profile(key []byte, patronID string, p schemas.Profile) (schemas.Sealed, error) {
	pt, err := json.Marshal(p)
	if err != nil {
		return schemas.Sealed{}, err
	}
	nonce, ct, err := keystore.Seal(key, pt, profileAD(patronID))
	if err != nil {
		return schemas.Sealed{}, fmt.Errorf("seal profile: %w", err)
	}
	return schemas.Sealed{KID: patronID, Nonce: nonce, CT: ct}, nil
}

// OpenProfile returns a patron's profile. It fails with keystore.ErrNotFound once the
// patron's account is closed and the profile key destroyed.
func OpenProfile(keys *keystore.Store, patronID string, s schemas.Sealed) (schemas.Profile, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return schemas.Profile{}, err
	}
	pt, err := keystore.Unseal(key, s.Nonce, s.CT, profileAD(patronID))
	if err != nil {
		return schemas.Profile{}, fmt.Errorf("open profile: %w", err)
	}
	var p schemas.Profile
	if err := json.Unmarshal(pt, &p); err != nil {
		return schemas.Profile{}, fmt.Errorf("decode profile: %w", err)
	}
	return p, nil
}

// PIN seals the hash of a patron's PIN (a PHC string, package phc) under the patron's
// profile key: it goes with the profile when the account closes.
func PIN(key []byte, patronID, hash string) (schemas.Sealed, error) {
	nonce, ct, err := keystore.Seal(key, []byte(hash), pinAD(patronID))
	if err != nil {
		return schemas.Sealed{}, fmt.Errorf("seal PIN: %w", err)
	}
	return schemas.Sealed{KID: patronID, Nonce: nonce, CT: ct}, nil
}

// OpenPIN returns the hash of a patron's PIN. It fails with keystore.ErrNotFound once the
// account is closed and the profile key destroyed.
func OpenPIN(keys *keystore.Store, patronID string, s schemas.Sealed) (string, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return "", err
	}
	pt, err := keystore.Unseal(key, s.Nonce, s.CT, pinAD(patronID))
	if err != nil {
		return "", fmt.Errorf("open PIN: %w", err)
	}
	return string(pt), nil
}

// contactAD is the associated data of a change of contact details.
func contactAD(patronID string) []byte { return []byte("contact\x00" + patronID) }

// Contact seals a change of a patron's contact details (update_contact) under the
// patron's profile key: it goes with the profile when the account closes.
func Contact(key []byte, patronID string, c schemas.ContactChange) (schemas.Sealed, error) {
	pt, err := json.Marshal(c)
	if err != nil {
		return schemas.Sealed{}, err
	}
	nonce, ct, err := keystore.Seal(key, pt, contactAD(patronID))
	if err != nil {
		return schemas.Sealed{}, fmt.Errorf("seal contact change: %w", err)
	}
	return schemas.Sealed{KID: patronID, Nonce: nonce, CT: ct}, nil
}

// OpenContact returns a change of a patron's contact details. It fails with
// keystore.ErrNotFound once the account is closed and the profile key destroyed.
func OpenContact(keys *keystore.Store, patronID string, s schemas.Sealed) (schemas.ContactChange, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return schemas.ContactChange{}, err
	}
	pt, err := keystore.Unseal(key, s.Nonce, s.CT, contactAD(patronID))
	clear(key)
	if err != nil {
		return schemas.ContactChange{}, fmt.Errorf("open contact change: %w", err)
	}
	var c schemas.ContactChange
	if err := json.Unmarshal(pt, &c); err != nil {
		return schemas.ContactChange{}, fmt.Errorf("decode contact change: %w", err)
	}
	return c, nil
}

// SystemKID is the kid of a court order's reference sealed under the keystore's system
// key, on an access entry that names no patron.
const SystemKID = "system"

// NewKID is a fresh pseudonym for one access patron reference: random, so that it says
// nothing about the patron and no two references share it.
func NewKID() string { return rand.Text() }

// AccessPatron seals a patron's id under the patron's profile key as the reference kid
// of access entry entryID. It fails with keystore.ErrNotFound once the account is closed.
func AccessPatron(keys *keystore.Store, patronID, entryID, kid string) (schemas.Sealed, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return schemas.Sealed{}, err
	}
	nonce, ct, err := keystore.Seal(key, []byte(patronID), accessPatronAD(entryID, kid))
	if err != nil {
		return schemas.Sealed{}, fmt.Errorf("seal access reference: %w", err)
	}
	return schemas.Sealed{KID: kid, Nonce: nonce, CT: ct}, nil
}

// OpenAccessPatron opens an access patron reference, given the account its kid stands
// for (from the projections' index). It fails with keystore.ErrNotFound once the profile
// key is destroyed, and with keystore.ErrDecrypt if the reference is not that account's.
func OpenAccessPatron(keys *keystore.Store, patronID, entryID string, s schemas.Sealed) (string, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return "", err
	}
	pt, err := keystore.Unseal(key, s.Nonce, s.CT, accessPatronAD(entryID, s.KID))
	if err != nil {
		return "", fmt.Errorf("open access reference: %w", err)
	}
	return string(pt), nil
}

// AccessNote seals a court order's reference for access entry entryID: under the profile
// key of patronID with that patron's kid, or, when patronID is "", under the system key.
func AccessNote(keys *keystore.Store, patronID, entryID, kid, text string) (schemas.Sealed, error) {
	var (
		nonce, ct []byte
		err       error
	)
	if patronID == "" {
		kid = SystemKID
		nonce, ct, err = keys.SealSystem([]byte(text), accessNoteAD(entryID, kid))
	} else {
		var key []byte
		if key, err = keys.Get(keystore.Profile, patronID); err != nil {
			return schemas.Sealed{}, err
		}
		nonce, ct, err = keystore.Seal(key, []byte(text), accessNoteAD(entryID, kid))
	}
	if err != nil {
		return schemas.Sealed{}, fmt.Errorf("seal order reference: %w", err)
	}
	return schemas.Sealed{KID: kid, Nonce: nonce, CT: ct}, nil
}

// OpenAccessNote opens a sealed court order's reference: under the system key if its kid
// is SystemKID, otherwise under the profile key of patronID, the account its kid stands
// for.
func OpenAccessNote(keys *keystore.Store, patronID, entryID string, s schemas.Sealed) (string, error) {
	var (
		pt  []byte
		err error
	)
	if s.KID == SystemKID {
		pt, err = keys.UnsealSystem(s.Nonce, s.CT, accessNoteAD(entryID, s.KID))
	} else {
		var key []byte
		if key, err = keys.Get(keystore.Profile, patronID); err != nil {
			return "", err
		}
		pt, err = keystore.Unseal(key, s.Nonce, s.CT, accessNoteAD(entryID, s.KID))
	}
	if err != nil {
		return "", fmt.Errorf("open order reference: %w", err)
	}
	return string(pt), nil
}
