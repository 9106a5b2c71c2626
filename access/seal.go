package access

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/schemas"
)

// SystemKID is the kid of a court order's reference sealed under the keystore's system
// key, on an entry that names no patron.
const SystemKID = "system"

// newKID is a fresh pseudonym for one patron reference: random, so that it says nothing
// about the patron and no two references share it.
func newKID() string { return rand.Text() }

// patronAD binds a sealed patron reference to its entry and its pseudonym.
func patronAD(entryID, kid string) []byte { return []byte("access\x00" + entryID + "\x00" + kid) }

// noteAD binds a sealed court order's reference to its entry and its pseudonym.
func noteAD(entryID, kid string) []byte { return []byte("access note\x00" + entryID + "\x00" + kid) }

// sealPatron seals a patron's id under the patron's profile key as the reference kid of
// entry entryID. It fails with keystore.ErrNotFound once the account is closed.
func sealPatron(keys *keystore.Store, patronID, entryID, kid string) (schemas.Sealed, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return schemas.Sealed{}, err
	}
	nonce, ct, err := keystore.Seal(key, []byte(patronID), patronAD(entryID, kid))
	if err != nil {
		return schemas.Sealed{}, fmt.Errorf("seal patron reference: %w", err)
	}
	return schemas.Sealed{KID: kid, Nonce: nonce, CT: ct}, nil
}

// openPatron opens a patron reference, given the account its pseudonym stands for (from
// the index). It fails with keystore.ErrNotFound once the profile key is destroyed, and
// with keystore.ErrDecrypt if the reference is not that account's.
func openPatron(keys *keystore.Store, patronID, entryID string, s schemas.Sealed) (string, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return "", err
	}
	pt, err := keystore.Unseal(key, s.Nonce, s.CT, patronAD(entryID, s.KID))
	if err != nil {
		return "", fmt.Errorf("open patron reference: %w", err)
	}
	return string(pt), nil
}

// sealNote seals a court order's reference for entry entryID: under the profile key of
// patronID with that patron's kid, or, when patronID is "", under the system key.
func sealNote(keys *keystore.Store, patronID, entryID, kid, text string) (schemas.Sealed, error) {
	var (
		nonce, ct []byte
		err       error
	)
	if patronID == "" {
		kid = SystemKID
		nonce, ct, err = keys.SealSystem([]byte(text), noteAD(entryID, kid))
	} else {
		var key []byte
		if key, err = keys.Get(keystore.Profile, patronID); err != nil {
			return schemas.Sealed{}, err
		}
		nonce, ct, err = keystore.Seal(key, []byte(text), noteAD(entryID, kid))
	}
	if err != nil {
		return schemas.Sealed{}, fmt.Errorf("seal order reference: %w", err)
	}
	return schemas.Sealed{KID: kid, Nonce: nonce, CT: ct}, nil
}

// openNote opens a sealed court order's reference: under the system key if its kid is
// SystemKID, otherwise under the profile key of patronID, the account its kid stands for.
func openNote(keys *keystore.Store, patronID, entryID string, s schemas.Sealed) (string, error) {
	var (
		pt  []byte
		err error
	)
	if s.KID == SystemKID {
		pt, err = keys.UnsealSystem(s.Nonce, s.CT, noteAD(entryID, s.KID))
	} else {
		var key []byte
		if key, err = keys.Get(keystore.Profile, patronID); err != nil {
			return "", err
		}
		pt, err = keystore.Unseal(key, s.Nonce, s.CT, noteAD(entryID, s.KID))
	}
	if err != nil {
		return "", fmt.Errorf("open order reference: %w", err)
	}
	return string(pt), nil
}

// macDomain starts the MAC's input: it names the format and its version.
const macDomain = "lethe access entry v1\x00"

// canonical is the byte string the MAC covers; the package comment defines it.
func canonical(e Entry) []byte {
	b := make([]byte, 0, 512)
	str := func(s []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	sealed := func(s schemas.Sealed) {
		str([]byte(s.KID))
		str(s.Nonce)
		str(s.CT)
	}
	b = append(b, macDomain...)
	str([]byte(e.ID))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(e.Time.Nanosecond()))
	for _, s := range []string{e.Staff, string(e.Role), e.Action, string(e.Basis), string(e.Scope), e.Outcome, e.Clause} {
		str([]byte(s))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(e.Requests))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Patrons)))
	for _, p := range e.Patrons {
		sealed(p)
	}
	if e.OrderSealed == nil {
		b = binary.BigEndian.AppendUint32(b, 0)
	} else {
		b = binary.BigEndian.AppendUint32(b, 1)
		sealed(*e.OrderSealed)
	}
	return b
}

// sign sets the entry's MAC.
func sign(keys *keystore.Store, e *Entry) { e.MAC = keys.AccessMAC(canonical(*e)) }

// verify reports whether the entry's MAC is the ledger's.
func verify(keys *keystore.Store, e Entry) bool {
	return hmac.Equal(e.MAC, keys.AccessMAC(canonical(e)))
}
