package schemas

import (
	"reflect"
	"time"
)

// Event types. Wire names: append-only.
const (
	TypeItemCataloged        = "lethe.item.cataloged.v1"
	TypePatronRegistered     = "lethe.patron.registered.v1"
	TypeCardIssued           = "lethe.card.issued.v1"
	TypeCardReportedLost     = "lethe.card.reported_lost.v1"
	TypePatronClosed         = "lethe.patron.closed.v1"
	TypePatronPINSet         = "lethe.patron.pin_set.v1"
	TypePatronContactUpdated = "lethe.patron.contact_updated.v1"
	TypeItemCheckedOut       = "lethe.item.checked_out.v1"
	TypeItemRenewed          = "lethe.item.renewed.v1"
	TypeItemReturned         = "lethe.item.returned.v1"
	TypeItemDeclaredLost     = "lethe.item.declared_lost.v1"
	TypeItemDamaged          = "lethe.item.damaged.v1"
	TypeFineAssessed         = "lethe.fine.assessed.v1"
	TypeFinePaid             = "lethe.fine.paid.v1"
	TypeFineWaived           = "lethe.fine.waived.v1"
	TypeTransactionClosed    = "lethe.transaction.closed.v1"
	TypeTransactionExpunged  = "lethe.transaction.expunged.v1"
	TypeProjectionSkipped    = "lethe.projection.skipped.v1"
	TypeCheckpointSigned     = "lethe.checkpoint.signed.v1"
	TypeCheckpointKey        = "lethe.checkpoint.key_rotated.v1"
)

// eventType is one row of the table of event types: its wire name and the Go type of its
// data. The JSON Schema of its data is json/events/<name>.json.
type eventType struct {
	name string
	data reflect.Type
}

// eventTable is every event type, in lifecycle order: the one list that EventTypes,
// DataSchema and EventData read.
func eventTable() []eventType {
	return []eventType{
		{TypeItemCataloged, reflect.TypeFor[ItemCataloged]()},
		{TypePatronRegistered, reflect.TypeFor[PatronRegistered]()},
		{TypeCardIssued, reflect.TypeFor[CardIssued]()},
		{TypeCardReportedLost, reflect.TypeFor[CardReportedLost]()},
		{TypePatronClosed, reflect.TypeFor[PatronClosed]()},
		{TypePatronPINSet, reflect.TypeFor[PatronPINSet]()},
		{TypePatronContactUpdated, reflect.TypeFor[PatronContactUpdated]()},
		{TypeItemCheckedOut, reflect.TypeFor[ItemCheckedOut]()},
		{TypeItemRenewed, reflect.TypeFor[ItemRenewed]()},
		{TypeItemReturned, reflect.TypeFor[ItemReturned]()},
		{TypeItemDeclaredLost, reflect.TypeFor[ItemDeclaredLost]()},
		{TypeItemDamaged, reflect.TypeFor[ItemDamaged]()},
		{TypeFineAssessed, reflect.TypeFor[FineAssessed]()},
		{TypeFinePaid, reflect.TypeFor[FinePaid]()},
		{TypeFineWaived, reflect.TypeFor[FineWaived]()},
		{TypeTransactionClosed, reflect.TypeFor[TransactionClosed]()},
		{TypeTransactionExpunged, reflect.TypeFor[TransactionExpunged]()},
		{TypeProjectionSkipped, reflect.TypeFor[ProjectionSkipped]()},
		{TypeCheckpointSigned, reflect.TypeFor[CheckpointSigned]()},
		{TypeCheckpointKey, reflect.TypeFor[CheckpointKeyRotated]()},
	}
}

// EventTypes lists every event type, in lifecycle order.
func EventTypes() []string {
	var out []string
	for _, t := range eventTable() {
		out = append(out, t.name)
	}
	return out
}

// dataType returns the Go type of an event type's data.
func dataType(name string) (reflect.Type, bool) {
	for _, t := range eventTable() {
		if t.name == name {
			return t.data, true
		}
	}
	return nil, false
}

// ItemCataloged adds an item to the catalog or updates its record. Catalog data carries no
// personal data.
type ItemCataloged struct {
	Barcode          string `json:"barcode"`
	Title            string `json:"title"`
	Collection       string `json:"collection"`
	Branch           string `json:"branch"`
	ReplacementCents int64  `json:"replacement_cents"`
}

// PatronRegistered creates a patron. PatronID is a random UUID, never a card number. The
// profile (a Profile in JSON) is sealed under the patron's profile key with the patron id
// as associated data.
type PatronRegistered struct {
	PatronID   string `json:"patron_id"`
	HomeBranch string `json:"home_branch"`
	Profile    Sealed `json:"profile"`
}

// Profile is the plaintext of a patron's sealed profile. It exists only in memory.
type Profile struct {
	Name      string `json:"name"`
	Email     string `json:"email,omitempty"`
	Phone     string `json:"phone,omitempty"`
	Address   string `json:"address,omitempty"`
	BirthDate string `json:"birth_date"` // YYYY-MM-DD
	// Caregiver is the adult who signed for a minor's card (Policy 1002).
	Caregiver *Caregiver `json:"caregiver,omitempty"`
}

// Caregiver is the adult who signed for a card of a patron under 18.
type Caregiver struct {
	Name    string `json:"name"`
	Contact string `json:"contact,omitempty"`
}

// CardIssued gives a patron a card. The card number appears only as CardHash, an HMAC
// under a system key held in the keystore.
type CardIssued struct {
	PatronID string `json:"patron_id"`
	CardHash string `json:"card_hash"`
}

// CardReportedLost revokes a card: from this event on it opens nothing, anywhere.
type CardReportedLost struct {
	PatronID string `json:"patron_id"`
	CardHash string `json:"card_hash"`
}

// PatronClosed closes a patron's account and destroys the profile key.
type PatronClosed struct {
	PatronID string `json:"patron_id"`
}

// PatronPINSet sets or changes a patron's PIN: its argon2id hash (a PHC string), sealed
// under the profile key with the patron id as associated data.
type PatronPINSet struct {
	PatronID string `json:"patron_id"`
	PIN      Sealed `json:"pin"`
}

// PatronContactUpdated changes a patron's contact details. Contact is the change as the
// command gave it (a ContactChange) and Profile the whole profile after it, both sealed
// under the profile key with the patron id as associated data: Profile replaces the
// profile of patron.registered, or of the last contact update, and both go with the
// profile key when the account closes. Contact is what a retry is checked against.
type PatronContactUpdated struct {
	PatronID string `json:"patron_id"`
	Contact  Sealed `json:"contact"`
	Profile  Sealed `json:"profile"`
}

// ItemCheckedOut opens a transaction: a loan of one item to one patron, who appears only
// sealed under the transaction's key.
type ItemCheckedOut struct {
	TxnID   string    `json:"txn_id"`
	Barcode string    `json:"barcode"`
	Patron  Sealed    `json:"patron"`
	Branch  string    `json:"branch"`
	Station string    `json:"station"`
	Due     time.Time `json:"due"`
}

// ItemRenewed extends a loan.
type ItemRenewed struct {
	TxnID    string    `json:"txn_id"`
	Barcode  string    `json:"barcode"`
	Due      time.Time `json:"due"`
	Renewals int       `json:"renewals"`
}

// ItemReturned ends a loan. The event time is when the item came back, which for an
// offline kiosk is earlier than when the event was appended.
type ItemReturned struct {
	TxnID   string `json:"txn_id"`
	Barcode string `json:"barcode"`
	Branch  string `json:"branch"`
	Station string `json:"station"`
}

// ItemDeclaredLost ends a loan with the item lost: by staff, or by the rules sweeper after
// the configured days overdue.
type ItemDeclaredLost struct {
	TxnID   string `json:"txn_id"`
	Barcode string `json:"barcode"`
}

// ItemDamaged ends a loan with the item returned damaged.
type ItemDamaged struct {
	TxnID   string `json:"txn_id"`
	Barcode string `json:"barcode"`
	Branch  string `json:"branch"`
	Station string `json:"station"`
}

// Fine reasons.
const (
	ReasonOverdue = "overdue"
	ReasonLost    = "lost"
	ReasonDamaged = "damaged"
	ReasonFee     = "fee"
)

// FineAssessed opens a fine in a transaction. For a loan's fine Barcode names the item and
// the patron is the loan's; a stand-alone fee (no loan) opens its own transaction and
// carries the patron sealed under that transaction's key.
type FineAssessed struct {
	TxnID       string  `json:"txn_id"`
	FineID      string  `json:"fine_id"`
	Barcode     string  `json:"barcode,omitempty"`
	Reason      string  `json:"reason"`
	AmountCents int64   `json:"amount_cents"`
	Patron      *Sealed `json:"patron,omitempty"`
}

// FinePaid records a payment, possibly partial.
type FinePaid struct {
	TxnID          string `json:"txn_id"`
	FineID         string `json:"fine_id"`
	AmountCents    int64  `json:"amount_cents"`
	RemainingCents int64  `json:"remaining_cents"`
}

// FineWaived forgives what remains of a fine.
type FineWaived struct {
	TxnID       string `json:"txn_id"`
	FineID      string `json:"fine_id"`
	AmountCents int64  `json:"amount_cents"`
}

// TransactionClosed says nothing is open any more in a transaction: the item is back or
// paid for and no fine is open. From here the expunger destroys the key.
type TransactionClosed struct {
	TxnID string `json:"txn_id"`
}

// TransactionExpunged records that a closed transaction's key was destroyed. It carries no
// patron data.
type TransactionExpunged struct {
	TxnID          string    `json:"txn_id"`
	ClosedAt       time.Time `json:"closed_at"`
	KeyDestroyedAt time.Time `json:"key_destroyed_at"`
}

// ProjectionSkipped records an administrator's decision that the projections pass over
// one event they cannot decode or apply (a damaged or foreign message), with the reason
// given. The projections, a rebuild and the auditor all honour it; nothing else removes
// an event from the history. It carries no patron data.
type ProjectionSkipped struct {
	Seq    uint64 `json:"seq"`    // the sequence passed over
	Reason string `json:"reason"` // why, in the administrator's words
	Staff  string `json:"staff"`  // the administrator's account
}

// CheckpointSigned commits to the stream so far: the root of the Merkle tree (RFC 6962)
// over the bytes of every message from FirstSeq to LastSeq (Size of them), signed by the
// ledger's checkpoint key as a C2SP tlog-checkpoint note (package tlog). Key is the note
// verifier key that signed it. On circ.sys.checkpoint; it carries no patron data.
type CheckpointSigned struct {
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Size     uint64 `json:"size"`
	Root     []byte `json:"root"`
	Note     string `json:"note"`
	Key      string `json:"key"`
}

// CheckpointKeyRotated names the key that signs the checkpoints from here on (Key), in a
// note signed by the key that signed them so far (Note, package tlog's rotation note).
// On circ.sys.checkpoint; it carries no patron data.
type CheckpointKeyRotated struct {
	Key  string `json:"key"`
	Note string `json:"note"`
}
