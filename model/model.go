// Package model holds the shapes of Lethe's current state: items, cards, patrons and open
// transactions, as the projections store them and the ledger decides against them.
//
// These JSON encodings are the projections' on-disk format: one row per item (i/<barcode>),
// card (c/<hash>), patron (p/<ref hash>) and open transaction (t/<ref hash>), written by
// the projector and read by the ledger and the staff API. A change to a field's name or
// meaning is a change of format: the projections must be rebuilt from the stream. Nothing
// here names a patron except Txn.PatronID and Card.PatronID, which exist only while the
// transaction or account is open.
package model

import (
	"context"
	"errors"
	"time"

	"github.com/imagineif/lethe/schemas"
)

// ErrNotFound is returned by a State for a row that does not exist.
var ErrNotFound = errors.New("not found")

// Reader reads the projections' rows. Package projections implements it.
type Reader interface {
	Item(barcode string) (Item, error)
	Card(hash string) (Card, error)
	Patron(id string) (Patron, error)
	Txn(id string) (Txn, error)
	// FineTxn returns the transaction a fine belongs to.
	FineTxn(fineID string) (string, error)
	// SubjectSeq is the stream sequence of the last event applied on subject, 0 if none.
	SubjectSeq(subject string) (uint64, error)
	// PatronsByName returns the ids of the open accounts whose profile name has the keyed
	// hash nameHash (keystore.NameHash), in no particular order.
	PatronsByName(nameHash string) ([]string, error)
	// EachTxn calls fn for every open transaction.
	EachTxn(fn func(Txn) error) error
	// CommandSeqs are the stream sequences of the events a command appended, nil if the
	// command is unknown or older than the deduplication window.
	CommandSeqs(commandID string) ([]uint64, error)
}

// State is what the ledger decides against: the projections' current rows, which reflect
// the stream up to some sequence that only grows.
type State interface {
	Reader
	// View is a consistent view: all its rows reflect the stream up to the same sequence
	// until done is called, which must be soon: the projector waits for it.
	View() (r Reader, done func())
	// Overdue lists open loans due before t, oldest first, at most limit.
	Overdue(before time.Time, limit int) ([]Overdue, error)
	// WaitApplied blocks until the state reflects the stream up to seq.
	WaitApplied(ctx context.Context, seq uint64) error
	// Stopped is nil while the state follows the stream, and otherwise an unavailable
	// error saying where it stopped: no decision is made against a state that stopped.
	Stopped() error
	// StoppedAt is the sequence of an event the state cannot apply and is stopped at, or 0.
	StoppedAt() uint64
}

// Item statuses.
const (
	ItemAvailable = "available"
	ItemOnLoan    = "on_loan"
	ItemLost      = "lost"
)

// Item is an item's catalog record and circulation status. It never names a patron.
type Item struct {
	schemas.ItemCataloged
	Status string    `json:"status"`
	TxnID  string    `json:"txn_id,omitempty"` // the open loan's transaction
	Due    time.Time `json:"due,omitzero"`
}

// Card is a card, by the HMAC of its number.
type Card struct {
	Hash     string `json:"hash"`
	PatronID string `json:"patron_id"`
	Lost     bool   `json:"lost"`
	Closed   bool   `json:"closed,omitempty"` // the account was closed; PatronID is gone
}

// Patron is a patron's registry row. The profile stays sealed under the patron's key: the
// profile of patron.registered, or of the latest patron.contact_updated, which replaces it.
type Patron struct {
	ID         string         `json:"id"`
	HomeBranch string         `json:"home_branch"`
	Profile    schemas.Sealed `json:"profile"`
	NameHash   string         `json:"name_hash,omitempty"` // keystore.NameHash of the profile's name
	Closed     bool           `json:"closed"`
	Cards      []string       `json:"cards,omitempty"` // card hashes
	Txns       []string       `json:"txns,omitempty"`  // open transactions
	// PIN is the hash of the patron's PIN sealed under the profile key (seal.PIN), or nil
	// when the patron has none.
	PIN *schemas.Sealed `json:"pin,omitempty"`
}

// Loan states within a transaction.
const (
	LoanOpen     = "open"
	LoanReturned = "returned"
	LoanLost     = "lost"
	LoanDamaged  = "damaged"
)

// Txn is an open transaction: the only place the patron–item link lives, and only until
// the transaction closes.
type Txn struct {
	ID       string    `json:"id"`
	Subject  string    `json:"subject"`
	Barcode  string    `json:"barcode,omitempty"`
	PatronID string    `json:"patron_id"` // empty when the key was destroyed before replay
	Opened   time.Time `json:"opened"`
	Due      time.Time `json:"due,omitzero"`
	Renewals int       `json:"renewals,omitempty"`
	Loan     string    `json:"loan,omitempty"` // empty for a stand-alone fee
	Fines    []TxnFine `json:"fines,omitempty"`
	Closed   bool      `json:"closed,omitempty"`
}

// TxnFine is a fine within a transaction.
type TxnFine struct {
	FineID         string `json:"fine_id"`
	Reason         string `json:"reason"`
	AmountCents    int64  `json:"amount_cents"`
	RemainingCents int64  `json:"remaining_cents"`
}

// OpenFines reports whether any fine in t has something left to pay.
func (t Txn) OpenFines() bool {
	for _, f := range t.Fines {
		if f.RemainingCents > 0 {
			return true
		}
	}
	return false
}

// Settled reports whether nothing is open in t: no loan out and no fine owed.
func (t Txn) Settled() bool { return t.Loan != LoanOpen && !t.OpenFines() }

// Overdue is an open loan past its due time.
type Overdue struct {
	Barcode string
	TxnID   string
	Due     time.Time
}
