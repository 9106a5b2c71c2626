package ledger

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/schemas"
)

// patronAD is the associated data of a sealed patron reference: the event id and the
// transaction id, so a ciphertext cannot be moved to another event or transaction.
func patronAD(eventID, txnID string) []byte { return []byte(eventID + "\x00" + txnID) }

// profileAD is the associated data of a sealed profile.
func profileAD(patronID string) []byte { return []byte("profile\x00" + patronID) }

func sealPatron(key []byte, patronID, eventID, txnID string) (schemas.Sealed, error) {
	nonce, ct, err := keystore.Seal(key, []byte(patronID), patronAD(eventID, txnID))
	if err != nil {
		return schemas.Sealed{}, err
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

func sealProfile(key []byte, patronID string, p schemas.Profile) (schemas.Sealed, error) {
	pt, err := json.Marshal(p)
	if err != nil {
		return schemas.Sealed{}, err
	}
	nonce, ct, err := keystore.Seal(key, pt, profileAD(patronID))
	if err != nil {
		return schemas.Sealed{}, err
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

// AccessKID is a patron's pseudonym on the access record: an HMAC under the patron's
// profile key. While the account is open it finds the patron's entries and their key;
// once the profile key is destroyed nothing can compute it or tie it to anyone.
func AccessKID(keys *keystore.Store, patronID string) (string, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return "", err
	}
	return accessKID(key), nil
}

func accessKID(profileKey []byte) string {
	mac := hmac.New(sha256.New, profileKey)
	mac.Write([]byte("lethe access record\x00"))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

// accessAD binds a sealed access-record patron reference to its entry.
func accessAD(entryID string) []byte { return []byte("access\x00" + entryID) }

// SealAccess seals a patron's id under the patron's profile key for the access entry
// entryID. The reference names only the pseudonym AccessKID.
func SealAccess(keys *keystore.Store, patronID, entryID string) (schemas.Sealed, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return schemas.Sealed{}, err
	}
	nonce, ct, err := keystore.Seal(key, []byte(patronID), accessAD(entryID))
	if err != nil {
		return schemas.Sealed{}, err
	}
	return schemas.Sealed{KID: accessKID(key), Nonce: nonce, CT: ct}, nil
}

// OpenAccess returns the patron id sealed in an access entry, given the id the pseudonym
// belongs to (from the projections' index). It fails with keystore.ErrNotFound once the
// account is closed.
func OpenAccess(keys *keystore.Store, patronID, entryID string, s schemas.Sealed) (string, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return "", err
	}
	if !hmac.Equal([]byte(accessKID(key)), []byte(s.KID)) {
		return "", fmt.Errorf("open access reference: %w", keystore.ErrDecrypt)
	}
	pt, err := keystore.Unseal(key, s.Nonce, s.CT, accessAD(entryID))
	if err != nil {
		return "", fmt.Errorf("open access reference: %w", err)
	}
	return string(pt), nil
}

// noteAD binds a sealed note of an access entry (a court order's reference, which may
// name the person) to its entry.
func noteAD(entryID string) []byte { return []byte("access note\x00" + entryID) }

// SealAccessNote seals text about a patron on the access entry entryID under the patron's
// profile key: readable while the account is open, and by no one once it is closed.
func SealAccessNote(keys *keystore.Store, patronID, entryID, text string) (schemas.Sealed, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return schemas.Sealed{}, err
	}
	nonce, ct, err := keystore.Seal(key, []byte(text), noteAD(entryID))
	if err != nil {
		return schemas.Sealed{}, err
	}
	return schemas.Sealed{KID: accessKID(key), Nonce: nonce, CT: ct}, nil
}

// OpenAccessNote opens a note sealed by SealAccessNote.
func OpenAccessNote(keys *keystore.Store, patronID, entryID string, s schemas.Sealed) (string, error) {
	key, err := keys.Get(keystore.Profile, patronID)
	if err != nil {
		return "", err
	}
	pt, err := keystore.Unseal(key, s.Nonce, s.CT, noteAD(entryID))
	if err != nil {
		return "", fmt.Errorf("open access note: %w", err)
	}
	return string(pt), nil
}
