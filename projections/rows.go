package projections

import (
	"crypto/sha256"

	"encoding/binary"
	"time"

	"github.com/imagineif/lethe/keystore"
)

// Key prefixes; see the package comment.
const (
	pApplied  = "m/applied"
	pClock    = "m/clock"
	pItem     = "i/"
	pTxn      = "t/"
	pPatron   = "p/"
	pCard     = "c/"
	pFine     = "f/"
	pSubject  = "q/"
	pOverdue  = "o/"
	pCommand  = "x/"
	pCmdTime  = "y/"
	pExpunge  = "e/"
	pProfileK = "k/"
	pStat     = "s/"
	pName     = "n/"
	pAccess   = "a/"
	pAccessBy = "r/"
)

func hashed(prefix, id string) []byte {
	h := sha256.Sum256([]byte(id))
	return append([]byte(prefix), h[:]...)
}

func itemKey(barcode string) []byte    { return []byte(pItem + barcode) }
func cardKey(hash string) []byte       { return []byte(pCard + hash) }
func fineKey(id string) []byte         { return hashed(pFine, id) }
func subjectKey(subject string) []byte { return hashed(pSubject, subject) }
func commandKey(id string) []byte      { return hashed(pCommand, id) }
func expungeKey(txn string) []byte     { return hashed(pExpunge, txn) }
func profileKeyRow(id string) []byte   { return hashed(pProfileK, id) }

func overdueKey(due time.Time, barcode string) []byte {
	k := make([]byte, 0, len(pOverdue)+8+len(barcode))
	k = append(k, pOverdue...)
	k = binary.BigEndian.AppendUint64(k, uint64(due.Unix()))
	return append(k, barcode...)
}

func commandTimeKey(t time.Time, id string) []byte {
	h := sha256.Sum256([]byte(id))
	k := make([]byte, 0, len(pCmdTime)+8+len(h))
	k = append(k, pCmdTime...)
	k = binary.BigEndian.AppendUint64(k, uint64(t.Unix()))
	return append(k, h[:]...)
}

func statKey(day, branch, collection, measure string) []byte {
	return []byte(pStat + day + "/" + branch + "/" + collection + "/" + measure)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// prefixEnd is the first key after every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// commandRow is the value of an x/ row.
type commandRow struct {
	Time int64    `json:"t"`
	Seqs []uint64 `json:"s"`
}

// expungeRow is the value of an e/ row.
type expungeRow struct {
	TxnID    string    `json:"txn_id"`
	ClosedAt time.Time `json:"closed_at"`
}

// Transaction and patron rows are keyed by the keystore's ref hash of the same id, so the
// expunger can tell, from a key's ref alone, whether anything still uses the key.
func txnKey(id string) []byte {
	r := keystore.RefOf(keystore.Transaction, id)
	return append([]byte(pTxn), r.Hash[:]...)
}

// accessKey maps a pseudonym of the access record to the open account it stands for.
func accessKey(kid string) []byte { return []byte(pAccess + kid) }

// accessByPrefix is the prefix of an open account's pseudonyms in the reverse index:
// r/<ref hash>, keyed like p/ rows, never by the id.
func accessByPrefix(patronID string) []byte {
	r := keystore.RefOf(keystore.Profile, patronID)
	return append([]byte(pAccessBy), r.Hash[:]...)
}

// accessByKey is one pseudonym of an open account: r/<ref hash><kid>.
func accessByKey(patronID, kid string) []byte { return append(accessByPrefix(patronID), kid...) }

// nameKey indexes an open account under the keyed hash of its name: n/<name hash><ref>.
func nameKey(nameHash, patronID string) []byte {
	r := keystore.RefOf(keystore.Profile, patronID)
	return append([]byte(pName+nameHash), r.Hash[:]...)
}

func patronKey(id string) []byte {
	r := keystore.RefOf(keystore.Profile, id)
	return append([]byte(pPatron), r.Hash[:]...)
}
