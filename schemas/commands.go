package schemas

import (
	"encoding/json"
	"time"
)

// Command names: the last token of a kiosk subject (lethe.kiosk.<branch>.<kiosk>.<command>)
// and the name of each schema under json/commands. Wire names: append-only.
const (
	CmdCheckOut       = "checkout"
	CmdReturn         = "return"
	CmdRenew          = "renew"
	CmdPatronInfo     = "patron_info"
	CmdCatalogItem    = "catalog_item"
	CmdRegisterPatron = "register_patron"
	CmdIssueCard      = "issue_card"
	CmdReportCardLost = "report_card_lost"
	CmdDeclareLost    = "declare_lost"
	CmdMarkDamaged    = "mark_damaged"
	CmdAssessFee      = "assess_fee"
	CmdPayFine        = "pay_fine"
	CmdWaiveFine      = "waive_fine"
	CmdClosePatron    = "close_patron"
	CmdSetPIN         = "set_pin"
	CmdUpdateContact  = "update_contact"
)

// KioskCommands are the commands a kiosk may send.
func KioskCommands() []string {
	return []string{CmdCheckOut, CmdReturn, CmdRenew, CmdPatronInfo}
}

// Commands lists every command name.
func Commands() []string {
	return []string{
		CmdCheckOut, CmdReturn, CmdRenew, CmdPatronInfo, CmdCatalogItem, CmdRegisterPatron,
		CmdIssueCard, CmdReportCardLost, CmdDeclareLost, CmdMarkDamaged, CmdAssessFee,
		CmdPayFine, CmdWaiveFine, CmdClosePatron, CmdSetPIN, CmdUpdateContact,
	}
}

// CheckOut lends an item to the holder of a card. CommandID is a UUID chosen by the kiosk;
// a retry with the same id is answered, not applied twice. CheckedOutAt is set by a kiosk
// that was offline and is sending checkouts late, with the time the item really went
// out; it may not be in the future, nor older than a loan period.
type CheckOut struct {
	CommandID    string     `json:"command_id"`
	Card         string     `json:"card"`
	Barcode      string     `json:"barcode"`
	CheckedOutAt *time.Time `json:"checked_out_at,omitempty"`
}

// Return checks an item in. ReturnedAt is set by a kiosk that was offline and is sending
// returns late, with the time the item really came back; it may not be in the future.
type Return struct {
	CommandID  string     `json:"command_id"`
	Barcode    string     `json:"barcode"`
	ReturnedAt *time.Time `json:"returned_at,omitempty"`
}

// Renew extends the loan of an item held by the card's patron.
type Renew struct {
	CommandID string `json:"command_id"`
	Card      string `json:"card"`
	Barcode   string `json:"barcode"`
}

// PatronInfo asks for the current record of the card's holder (Policy 1002: presentation
// of the card permits access to the current circulation record).
type PatronInfo struct {
	Card string `json:"card"`
}

// CatalogItem adds an item to the catalog or updates it.
type CatalogItem struct {
	CommandID string `json:"command_id"`
	ItemCataloged
}

// RegisterPatron creates a patron, optionally with a first card.
type RegisterPatron struct {
	CommandID  string  `json:"command_id"`
	HomeBranch string  `json:"home_branch"`
	Profile    Profile `json:"profile"`
	Card       string  `json:"card,omitempty"`
	// PIN, when given, is what a self-check asks with the card (SIP2's patron password).
	// It is kept only as a slow hash sealed under the profile key (patron.pin_set).
	PIN string `json:"pin,omitempty"`
}

// SetPIN sets or changes a patron's PIN. Like the profile, it is kept only under the
// profile key, so it goes when the account closes.
type SetPIN struct {
	CommandID string `json:"command_id"`
	PatronID  string `json:"patron_id"`
	PIN       string `json:"pin"`
}

// UpdateContact changes a patron's contact details at the desk: the fields it gives are
// set, the fields it names in Clear are removed (ContactChange). The name and the birth
// date are not contact details: no command changes them.
type UpdateContact struct {
	CommandID string `json:"command_id"`
	PatronID  string `json:"patron_id"`
	ContactChange
}

// IssueCard gives a patron a new card.
type IssueCard struct {
	CommandID string `json:"command_id"`
	PatronID  string `json:"patron_id"`
	Card      string `json:"card"`
}

// ReportCardLost revokes a card at once, everywhere.
type ReportCardLost struct {
	CommandID string `json:"command_id"`
	Card      string `json:"card"`
}

// DeclareLost ends a loan with the item lost and assesses its replacement price.
type DeclareLost struct {
	CommandID string `json:"command_id"`
	Barcode   string `json:"barcode"`
}

// MarkDamaged checks an item in as damaged and assesses a damage fine. With AmountCents 0
// the rules' default damage fee is used.
type MarkDamaged struct {
	CommandID   string `json:"command_id"`
	Barcode     string `json:"barcode"`
	AmountCents int64  `json:"amount_cents,omitempty"`
}

// AssessFee charges a stand-alone fee (not tied to a loan) to a patron.
type AssessFee struct {
	CommandID   string `json:"command_id"`
	PatronID    string `json:"patron_id"`
	AmountCents int64  `json:"amount_cents"`
}

// PayFine pays part or all of a fine. AmountCents above what remains is refused.
type PayFine struct {
	CommandID   string `json:"command_id"`
	FineID      string `json:"fine_id"`
	AmountCents int64  `json:"amount_cents"`
}

// WaiveFine forgives what remains of a fine.
type WaiveFine struct {
	CommandID string `json:"command_id"`
	FineID    string `json:"fine_id"`
}

// ClosePatron closes an account: refused while loans or fines are open; destroys the
// patron's profile key.
type ClosePatron struct {
	CommandID string `json:"command_id"`
	PatronID  string `json:"patron_id"`
}

// Reply is the envelope of every kiosk reply: OK with a Result, or an Error.
type Reply struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// CheckOutResult answers a CheckOut.
type CheckOutResult struct {
	Barcode string    `json:"barcode"`
	Title   string    `json:"title"`
	Due     time.Time `json:"due"`
}

// ReturnResult answers a Return. FineCents is the overdue fine assessed by this return.
// It never names the borrower.
type ReturnResult struct {
	Barcode   string `json:"barcode"`
	Title     string `json:"title"`
	Branch    string `json:"branch"`
	FineCents int64  `json:"fine_cents"`
}

// RenewResult answers a Renew.
type RenewResult struct {
	Barcode  string    `json:"barcode"`
	Due      time.Time `json:"due"`
	Renewals int       `json:"renewals"`
}

// Loan is an open loan in a patron's current record.
type Loan struct {
	Barcode  string    `json:"barcode"`
	Title    string    `json:"title"`
	Due      time.Time `json:"due"`
	Renewals int       `json:"renewals"`
	Overdue  bool      `json:"overdue"`
}

// Fine is an open fine in a patron's current record.
type Fine struct {
	FineID         string `json:"fine_id"`
	Barcode        string `json:"barcode,omitempty"`
	Reason         string `json:"reason"`
	AmountCents    int64  `json:"amount_cents"`
	RemainingCents int64  `json:"remaining_cents"`
}

// PatronRecord is a patron's current circulation record: open loans and open fines. Closed
// history does not exist, so it cannot be part of any record.
type PatronRecord struct {
	Loans      []Loan `json:"loans"`
	Fines      []Fine `json:"fines"`
	OwedCents  int64  `json:"owed_cents"`
	Blocked    bool   `json:"blocked"`
	CardStatus string `json:"card_status"`
}

// Registered answers RegisterPatron.
type Registered struct {
	PatronID string `json:"patron_id"`
}

// Accepted answers staff commands that have no other result: the stream sequence of the
// last event the command appended.
type Accepted struct {
	Seq uint64 `json:"seq"`
}
