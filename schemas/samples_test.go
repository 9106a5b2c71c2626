package schemas

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// Marker values: realistic personal data that must never appear in an error message.
const (
	markerCard  = "CARD-SECRET-12345"
	markerName  = "Zelda Marker"
	markerEmail = "zelda.marker@example.org"
	markerPhone = "+1-406-555-0147"
	markerAddr  = "17 Flathead Lane, Kalispell MT"
	markerBirth = "2011-04-23"
	markerCare  = "Yara Caregiver"
	markerPIN   = "90417263"
)

const (
	sampleCmdID   = "7c0a8b8e-3f1d-4f5e-9a27-0c6b1f2d9e41"
	sampleEventID = "0190f3a2-7b4c-7d11-8e25-4b6a9c0d1e2f"
	samplePatron  = "3b9e4f02-61c7-4d8a-b5f3-92e0a1c7d6b4"
	sampleTxn     = "d2f6a1c9-0e4b-4b7a-8c3d-5e9f1a2b3c4d"
	sampleFine    = "a41c7e90-2d3b-4f6a-9e18-7b5c0d2e4f61"
	sampleHash    = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	sampleBarcode = "31267000481234"
)

var sampleTime = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// sealed returns a plausible XChaCha20-Poly1305 ciphertext: 24-byte nonce, ct of n bytes.
func sealed(kid string, n int) Sealed {
	return Sealed{KID: kid, Nonce: bytes.Repeat([]byte{0xa5}, 24), CT: bytes.Repeat([]byte{0x5c}, n)}
}

// sampleEvents returns the data of a valid event of each type.
func sampleEvents() map[string]any {
	due := sampleTime.Add(21 * 24 * time.Hour)
	return map[string]any{
		TypeItemCataloged: &ItemCataloged{
			Barcode: sampleBarcode, Title: "The Lathe of Heaven", Collection: "adult-fiction",
			Branch: "kalispell", ReplacementCents: 2499,
		},
		TypePatronRegistered: &PatronRegistered{
			PatronID: samplePatron, HomeBranch: "columbia-falls", Profile: sealed("profile-"+samplePatron, 180),
		},
		TypeCardIssued:       &CardIssued{PatronID: samplePatron, CardHash: sampleHash},
		TypeCardReportedLost: &CardReportedLost{PatronID: samplePatron, CardHash: sampleHash},
		TypePatronClosed:     &PatronClosed{PatronID: samplePatron},
		TypePatronPINSet:     &PatronPINSet{PatronID: samplePatron, PIN: sealed("profile-"+samplePatron, 112)},
		TypePatronContactUpdated: &PatronContactUpdated{PatronID: samplePatron, Contact: sealed(samplePatron, 96),
			Profile: sealed(samplePatron, 180)},
		TypeCheckpointSigned: &CheckpointSigned{FirstSeq: 1, LastSeq: 41, Size: 41, Root: bytes.Repeat([]byte{0x3c}, 32),
			Note: "lethe/circulation\n41\nPDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw=\n\n\u2014 lethe AAAAAAAA\n",
			Key:  "lethe+1a2b3c4d+AZg3/8n0Qx1rXvUe7hPq3mDk2FtYc9LbWs6RjVoE4NiK"},
		TypeCheckpointKey: &CheckpointKeyRotated{Key: "lethe+5e6f7a8b+AZg3/8n0Qx1rXvUe7hPq3mDk2FtYc9LbWs6RjVoE4NiL",
			Note: "lethe/circulation\nkey lethe+5e6f7a8b+AZg3/8n0Qx1rXvUe7hPq3mDk2FtYc9LbWs6RjVoE4NiL\n\n\u2014 lethe AAAAAAAA\n"},
		TypeItemCheckedOut: &ItemCheckedOut{
			TxnID: sampleTxn, Barcode: sampleBarcode, Patron: sealed("txn-"+sampleTxn, 52),
			Branch: "kalispell", Station: "kiosk-2", Due: due,
		},
		TypeItemRenewed: &ItemRenewed{TxnID: sampleTxn, Barcode: sampleBarcode, Due: due.Add(21 * 24 * time.Hour), Renewals: 1},
		TypeItemReturned: &ItemReturned{
			TxnID: sampleTxn, Barcode: sampleBarcode, Branch: "bigfork", Station: "desk-1",
		},
		TypeItemDeclaredLost: &ItemDeclaredLost{TxnID: sampleTxn, Barcode: sampleBarcode},
		TypeItemDamaged: &ItemDamaged{
			TxnID: sampleTxn, Barcode: sampleBarcode, Branch: "kalispell", Station: "desk-1",
		},
		TypeFineAssessed: &FineAssessed{
			TxnID: sampleTxn, FineID: sampleFine, Barcode: sampleBarcode, Reason: ReasonOverdue, AmountCents: 75,
		},
		TypeFinePaid:            &FinePaid{TxnID: sampleTxn, FineID: sampleFine, AmountCents: 50, RemainingCents: 25},
		TypeFineWaived:          &FineWaived{TxnID: sampleTxn, FineID: sampleFine, AmountCents: 25},
		TypeTransactionClosed:   &TransactionClosed{TxnID: sampleTxn},
		TypeTransactionExpunged: &TransactionExpunged{TxnID: sampleTxn, ClosedAt: sampleTime, KeyDestroyedAt: sampleTime.Add(3 * time.Millisecond)},
		TypeProjectionSkipped:   &ProjectionSkipped{Seq: 42, Reason: "a damaged block file", Staff: "ada.admin"},
	}
}

// sampleFee is a stand-alone fee: no barcode, the patron sealed under its own transaction.
func sampleFee() *FineAssessed {
	p := sealed("txn-"+sampleTxn, 52)
	return &FineAssessed{TxnID: sampleTxn, FineID: sampleFine, Reason: ReasonFee, AmountCents: 500, Patron: &p}
}

// subjectOf returns the NATS subject an event of the type goes on.
func subjectOf(typ string) string {
	switch typ {
	case TypePatronRegistered, TypeCardIssued, TypeCardReportedLost, TypePatronClosed, TypePatronPINSet,
		TypePatronContactUpdated:
		return "circ.patron." + samplePatron
	case TypeTransactionExpunged:
		return "circ.sys.expunged"
	case TypeProjectionSkipped:
		return "circ.sys.skipped"
	case TypeCheckpointSigned, TypeCheckpointKey:
		return "circ.sys.checkpoint"
	}
	return "circ.item." + sampleBarcode
}

// envelope wraps data in the event envelope of typ.
func envelope(t testing.TB, typ string, data any) Event {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatalf("json.Marshal(%T) = %v", data, err)
	}
	return Event{
		SpecVersion: SpecVersion, ID: sampleEventID, Type: typ, Source: "lethe/ledger/node-1",
		Subject: subjectOf(typ), Time: sampleTime, DataContentType: "application/json",
		DataSchema: DataSchema(typ), CommandID: sampleCmdID, Data: raw,
	}
}

// newEventData returns a pointer to a zero value of the Go type of an event's data.
func newEventData(typ string) any {
	switch typ {
	case TypeItemCataloged:
		return new(ItemCataloged)
	case TypePatronRegistered:
		return new(PatronRegistered)
	case TypeCardIssued:
		return new(CardIssued)
	case TypeCardReportedLost:
		return new(CardReportedLost)
	case TypePatronClosed:
		return new(PatronClosed)
	case TypePatronPINSet:
		return new(PatronPINSet)
	case TypePatronContactUpdated:
		return new(PatronContactUpdated)
	case TypeCheckpointSigned:
		return new(CheckpointSigned)
	case TypeCheckpointKey:
		return new(CheckpointKeyRotated)
	case TypeItemCheckedOut:
		return new(ItemCheckedOut)
	case TypeItemRenewed:
		return new(ItemRenewed)
	case TypeItemReturned:
		return new(ItemReturned)
	case TypeItemDeclaredLost:
		return new(ItemDeclaredLost)
	case TypeItemDamaged:
		return new(ItemDamaged)
	case TypeFineAssessed:
		return new(FineAssessed)
	case TypeFinePaid:
		return new(FinePaid)
	case TypeFineWaived:
		return new(FineWaived)
	case TypeTransactionClosed:
		return new(TransactionClosed)
	case TypeTransactionExpunged:
		return new(TransactionExpunged)
	case TypeProjectionSkipped:
		return new(ProjectionSkipped)
	}
	return nil
}

// newCommand returns a pointer to a zero value of the Go type of a command.
func newCommand(name string) any {
	switch name {
	case CmdCheckOut:
		return new(CheckOut)
	case CmdReturn:
		return new(Return)
	case CmdRenew:
		return new(Renew)
	case CmdPatronInfo:
		return new(PatronInfo)
	case CmdCatalogItem:
		return new(CatalogItem)
	case CmdRegisterPatron:
		return new(RegisterPatron)
	case CmdIssueCard:
		return new(IssueCard)
	case CmdReportCardLost:
		return new(ReportCardLost)
	case CmdDeclareLost:
		return new(DeclareLost)
	case CmdMarkDamaged:
		return new(MarkDamaged)
	case CmdAssessFee:
		return new(AssessFee)
	case CmdPayFine:
		return new(PayFine)
	case CmdWaiveFine:
		return new(WaiveFine)
	case CmdClosePatron:
		return new(ClosePatron)
	case CmdSetPIN:
		return new(SetPIN)
	case CmdUpdateContact:
		return new(UpdateContact)
	}
	return nil
}

// sampleProfile is a minor's profile with every field set to a marker.
func sampleProfile() Profile {
	return Profile{
		Name: markerName, Email: markerEmail, Phone: markerPhone, Address: markerAddr,
		BirthDate: markerBirth, Caregiver: &Caregiver{Name: markerCare, Contact: markerPhone},
	}
}

// sampleCommands returns a valid command of each name.
func sampleCommands() map[string]any {
	returned := sampleTime.Add(-90 * time.Minute)
	return map[string]any{
		CmdCheckOut:    &CheckOut{CommandID: sampleCmdID, Card: markerCard, Barcode: sampleBarcode, CheckedOutAt: &returned},
		CmdReturn:      &Return{CommandID: sampleCmdID, Barcode: sampleBarcode, ReturnedAt: &returned},
		CmdRenew:       &Renew{CommandID: sampleCmdID, Card: markerCard, Barcode: sampleBarcode},
		CmdPatronInfo:  &PatronInfo{Card: markerCard},
		CmdCatalogItem: &CatalogItem{CommandID: sampleCmdID, ItemCataloged: *sampleEvents()[TypeItemCataloged].(*ItemCataloged)},
		CmdRegisterPatron: &RegisterPatron{
			CommandID: sampleCmdID, HomeBranch: "kalispell", Profile: sampleProfile(), Card: markerCard, PIN: markerPIN,
		},
		CmdIssueCard:      &IssueCard{CommandID: sampleCmdID, PatronID: samplePatron, Card: markerCard},
		CmdReportCardLost: &ReportCardLost{CommandID: sampleCmdID, Card: markerCard},
		CmdDeclareLost:    &DeclareLost{CommandID: sampleCmdID, Barcode: sampleBarcode},
		CmdMarkDamaged:    &MarkDamaged{CommandID: sampleCmdID, Barcode: sampleBarcode, AmountCents: 1500},
		CmdAssessFee:      &AssessFee{CommandID: sampleCmdID, PatronID: samplePatron, AmountCents: 300},
		CmdPayFine:        &PayFine{CommandID: sampleCmdID, FineID: sampleFine, AmountCents: 75},
		CmdWaiveFine:      &WaiveFine{CommandID: sampleCmdID, FineID: sampleFine},
		CmdClosePatron:    &ClosePatron{CommandID: sampleCmdID, PatronID: samplePatron},
		CmdSetPIN:         &SetPIN{CommandID: sampleCmdID, PatronID: samplePatron, PIN: markerPIN},
		CmdUpdateContact: &UpdateContact{CommandID: sampleCmdID, PatronID: samplePatron, ContactChange: ContactChange{
			Email: markerEmail, Phone: markerPhone, Address: markerAddr, CaregiverContact: markerPhone,
		}},
	}
}

// minimalCommands returns valid commands with every optional field left out.
func minimalCommands() map[string]any {
	return map[string]any{
		CmdReturn: &Return{CommandID: sampleCmdID, Barcode: sampleBarcode},
		CmdRegisterPatron: &RegisterPatron{
			CommandID: sampleCmdID, HomeBranch: "kalispell", Profile: Profile{Name: markerName, BirthDate: markerBirth},
		},
		CmdMarkDamaged: &MarkDamaged{CommandID: sampleCmdID, Barcode: sampleBarcode},
		// At least one change: a clear alone.
		CmdUpdateContact: &UpdateContact{CommandID: sampleCmdID, PatronID: samplePatron, ContactChange: ContactChange{
			Clear: []string{ContactPhone},
		}},
	}
}

// sampleReplies returns a valid value of each reply schema.
func sampleReplies() map[string]any {
	due := sampleTime.Add(21 * 24 * time.Hour)
	return map[string]any{
		ReplyEnvelope: &Reply{OK: true, Result: json.RawMessage(`{"seq":42}`)},
		ReplyCheckOut: &CheckOutResult{Barcode: sampleBarcode, Title: "The Lathe of Heaven", Due: due},
		ReplyReturn:   &ReturnResult{Barcode: sampleBarcode, Title: "The Lathe of Heaven", Branch: "kalispell", FineCents: 0},
		ReplyRenew:    &RenewResult{Barcode: sampleBarcode, Due: due, Renewals: 2},
		ReplyPatronRecord: &PatronRecord{
			Loans: []Loan{
				{Barcode: sampleBarcode, Title: "The Lathe of Heaven", Due: due, Renewals: 0, Overdue: false},
				{Barcode: "31267000999999", Title: "Les Misérables", Due: sampleTime.Add(-48 * time.Hour), Renewals: 3, Overdue: true},
			},
			Fines: []Fine{
				{FineID: sampleFine, Barcode: "31267000999999", Reason: ReasonOverdue, AmountCents: 150, RemainingCents: 150},
				{FineID: "5e2a9c14-8b7d-4f3e-a6c1-0d9b2e7f4a38", Reason: ReasonFee, AmountCents: 500, RemainingCents: 200},
			},
			OwedCents: 350, Blocked: false, CardStatus: "active",
		},
		ReplyRegistered: &Registered{PatronID: samplePatron},
		ReplyAccepted:   &Accepted{Seq: 0},
	}
}

// testValidator builds a Validator or fails the test.
func testValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := NewValidator()
	if err != nil {
		t.Fatalf("NewValidator() = %v", err)
	}
	return v
}

// mustMarshal marshals v or fails the test.
func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%T) = %v", v, err)
	}
	return raw
}
