package access

import (
	"crypto/hmac"
	"encoding/binary"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

// SystemKID is the kid of a court order's reference sealed under the system key.
const SystemKID = seal.SystemKID

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
