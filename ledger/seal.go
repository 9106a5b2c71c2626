package ledger

import (
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
