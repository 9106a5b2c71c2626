package ledger

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

// errReused refuses a command whose id was already used for a different command.
var errReused = schemas.Errorf(schemas.CodeConflict, "command_id was already used for a different command")

// cmdRecordExpunged names the expunger's record of a destroyed key in run; it is not a
// command anyone can send.
const cmdRecordExpunged = "record_expunged"

// recordExpunged is the "command" of RecordExpunged: its id is derived from the
// transaction, so a retry names the same transaction.
type recordExpunged struct{ txnID string }

// appended is one event a first attempt appended, with its data decoded into the Go type
// of its event type (schemas.Validator.EventData).
type appended struct {
	schemas.Event
	data any
}

// retryRule is what a command appends and how a retry of it is checked.
type retryRule struct {
	first string   // the type of the command's first event
	then  []string // the types its further events may have
	// same checks the decoded command against the events, and returns errReused if it is
	// not the command that appended them.
	same func(l *Ledger, cmd any, evs []appended) error
}

// retryRules maps every command that carries a command_id to its rule. It is a function,
// not a package variable, so nothing can change it.
func retryRules() map[string]retryRule {
	closed := []string{schemas.TypeTransactionClosed}
	fined := []string{schemas.TypeFineAssessed, schemas.TypeTransactionClosed}
	return map[string]retryRule{
		schemas.CmdCheckOut:       {schemas.TypeItemCheckedOut, nil, same(sameCheckOut)},
		schemas.CmdReturn:         {schemas.TypeItemReturned, fined, same(sameReturn)},
		schemas.CmdRenew:          {schemas.TypeItemRenewed, nil, same(sameRenew)},
		schemas.CmdCatalogItem:    {schemas.TypeItemCataloged, nil, same(sameCatalogItem)},
		schemas.CmdRegisterPatron: {schemas.TypePatronRegistered, []string{schemas.TypePatronPINSet, schemas.TypeCardIssued}, same(sameRegisterPatron)},
		schemas.CmdSetPIN:         {schemas.TypePatronPINSet, nil, same(sameSetPIN)},
		schemas.CmdUpdateContact:  {schemas.TypePatronContactUpdated, nil, same(sameUpdateContact)},
		schemas.CmdIssueCard:      {schemas.TypeCardIssued, nil, same(sameIssueCard)},
		schemas.CmdReportCardLost: {schemas.TypeCardReportedLost, nil, same(sameReportCardLost)},
		schemas.CmdDeclareLost:    {schemas.TypeItemDeclaredLost, fined, same(sameDeclareLost)},
		schemas.CmdMarkDamaged:    {schemas.TypeItemDamaged, fined, same(sameMarkDamaged)},
		schemas.CmdAssessFee:      {schemas.TypeFineAssessed, nil, same(sameAssessFee)},
		schemas.CmdPayFine:        {schemas.TypeFinePaid, closed, same(samePayFine)},
		schemas.CmdWaiveFine:      {schemas.TypeFineWaived, closed, same(sameWaiveFine)},
		schemas.CmdClosePatron:    {schemas.TypePatronClosed, nil, same(sameClosePatron)},
		cmdRecordExpunged:         {schemas.TypeTransactionExpunged, nil, same(sameRecordExpunged)},
	}
}

// same adapts a check of one command type to the table.
func same[C any](f func(*Ledger, C, []appended) error) func(*Ledger, any, []appended) error {
	return func(l *Ledger, cmd any, evs []appended) error {
		c, ok := cmd.(C)
		if !ok {
			return fmt.Errorf("retry check: got %T, want %T", cmd, c)
		}
		return f(l, c, evs)
	}
}

// answerAgain answers a command whose id is on the stream already: a retry. It is answered
// from the events the first attempt appended, so the answer equals the first one, and only
// if it is the same command. Otherwise it is refused with errReused, which appends nothing
// and says nothing about what differed.
//
// Lethe keeps no fingerprint of a command anywhere, not on the stream, in a header or in
// the projections: the body holds a card number, and a keyed hash of card and barcode on
// disk after the loan closed would let whoever holds the disk and the master key test
// guesses of who borrowed what. So a retry is checked against the events themselves, field
// by field (retryRules), with only what can be checked:
//
//   - the command name: the events must be of the types that command appends;
//   - plain event fields: barcode, fine id, amounts, patron id, home branch, catalog data,
//     and returned_at as the event time of item.returned;
//   - a card number through its keyed hash (keystore.CardHash): against a card_hash field,
//     or through the card's row to its account, compared with the patron sealed in the
//     event (OpenPatron) or with the open transaction's row;
//   - a profile, opened with the profile key (OpenProfile), and a change of contact
//     details the same way (OpenContact).
//
// What a destroyed key sealed cannot be checked. A retry that arrives, within the one-hour
// window, after that key was destroyed is answered with that part unchecked:
//
//   - checkout: the card, once the loan is closed and its key destroyed (the barcode is
//     still checked);
//   - renew: the card, once the loan is closed, because the link lives in the open
//     transaction's row (the barcode is still checked);
//   - assess_fee: the patron, once the fee is settled and its key destroyed (the amount is
//     still checked);
//   - register_patron: the profile, once the account is closed and its profile key
//     destroyed (home branch and card are still checked);
//   - update_contact: the change, once the account is closed (the patron is still
//     checked).
//
// Some checks are weaker by design. A card is checked as "a card of the same account", so a
// checkout or renew retried with another card of that account is the same command. A
// return retried without returned_at is checked only against a first attempt that closed
// the loan: the close carries the decision time, which equals the return's time exactly
// when the first attempt had no returned_at; after a return that left a fine open, a retry
// without returned_at is answered whatever time the first attempt gave. A mark_damaged
// retried without amount_cents is checked against the rules' damage fee in force now.
func (l *Ledger) answerAgain(ctx context.Context, name, commandID string, cmd any) (any, error) {
	// The projections may be behind the first attempt: once they hold everything the
	// stream holds now, they hold all of it (a command is one message, or, before Lethe
	// wrote one message per command, one atomic batch, which JetStream made readable at
	// once but the projector may have cut between two of its batches).
	if err := l.catchUp(ctx); err != nil {
		return nil, err
	}
	seqs, err := l.st.CommandSeqs(commandID)
	if err != nil {
		return nil, fmt.Errorf("look up command: %w", err)
	}
	if seqs == nil {
		// The window closed between the two reads.
		return nil, schemas.Errorf(schemas.CodeUnavailable, "the command could not be looked up; retry")
	}
	evs := make([]appended, 0, len(seqs))
	for _, seq := range seqs {
		m, err := l.stream.GetMsg(ctx, seq)
		if err != nil {
			return nil, unavailable(err)
		}
		got, data, err := l.v.EventsData(m.Data)
		if err != nil {
			// Not %w: an event on the stream that fails its schema is a fault in Lethe, not
			// something wrong with this request.
			return nil, fmt.Errorf("decode event %d: %v", seq, err)
		}
		for i, ev := range got {
			evs = append(evs, appended{ev, data[i]})
		}
	}
	if err := l.sameCommand(name, cmd, evs); err != nil {
		return nil, err
	}
	events := make([]schemas.Event, len(evs))
	for i, e := range evs {
		events[i] = e.Event
	}
	return l.result(name, events, seqs[len(seqs)-1])
}

// sameCommand returns nil if cmd, a command called name, is the command that appended
// evs, errReused if it is not, and any other error if that could not be found out.
func (l *Ledger) sameCommand(name string, cmd any, evs []appended) error {
	r, ok := retryRules()[name]
	if !ok {
		return fmt.Errorf("no retry rule for command %s", name)
	}
	if len(evs) == 0 || evs[0].Type != r.first {
		return errReused
	}
	for _, e := range evs[1:] {
		if !slices.Contains(r.then, e.Type) {
			return errReused
		}
	}
	return r.same(l, cmd, evs)
}

// dataOf returns an event's data as T. The event types were checked before, so a
// mismatch is a fault in the rule table.
func dataOf[T any](e appended) (T, error) {
	d, ok := e.data.(T)
	if !ok {
		return d, fmt.Errorf("retry check: %s data is %T", e.Type, e.data)
	}
	return d, nil
}

// dataOfType returns the data of the events of type typ, in order.
func dataOfType[T any](evs []appended, typ string) ([]T, error) {
	var out []T
	for _, e := range evs {
		if e.Type != typ {
			continue
		}
		d, err := dataOf[T](e)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// holdsCard returns nil if card is a card of the account patronID, errReused if it is
// not. A closed account's cards no longer name it: such a card is refused while patronID's
// account is open (it belongs to another account), and cannot be checked once patronID's
// account is closed too.
func (l *Ledger) holdsCard(card, patronID string) error {
	row, err := l.st.Card(l.keys.CardHash(card))
	switch {
	case errors.Is(err, model.ErrNotFound):
		return errReused
	case err != nil:
		return err
	case !row.Closed:
		if row.PatronID != patronID {
			return errReused
		}
		return nil
	}
	_, err = l.st.Patron(patronID)
	switch {
	case err == nil:
		return errReused
	case errors.Is(err, model.ErrNotFound):
		return nil
	}
	return err
}

// sameCheckOut: the barcode; checked_out_at against the time of item.checked_out; the
// card, through its account, against the patron sealed in item.checked_out while the
// loan's key exists.
func sameCheckOut(l *Ledger, c schemas.CheckOut, evs []appended) error {
	d, err := dataOf[schemas.ItemCheckedOut](evs[0])
	if err != nil {
		return err
	}
	if d.Barcode != c.Barcode || c.CheckedOutAt != nil && !c.CheckedOutAt.Equal(evs[0].Time) {
		return errReused
	}
	patronID, err := seal.OpenPatron(l.keys, evs[0].ID, d.Patron)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil // closed and expunged: no one can tell whose loan it was
	} else if err != nil {
		return err
	}
	return l.holdsCard(c.Card, patronID)
}

// sameReturn: the barcode; returned_at against the time of item.returned.
func sameReturn(l *Ledger, c schemas.Return, evs []appended) error {
	d, err := dataOf[schemas.ItemReturned](evs[0])
	if err != nil {
		return err
	}
	if d.Barcode != c.Barcode {
		return errReused
	}
	back := evs[0].Time
	if c.ReturnedAt != nil {
		if !c.ReturnedAt.Equal(back) {
			return errReused
		}
		return nil
	}
	// Without returned_at the item came back when the ledger decided, which is also when
	// a close in the same command happened. Without a close that time is not on record.
	for _, e := range evs[1:] {
		if e.Type == schemas.TypeTransactionClosed && !e.Time.Equal(back) {
			return errReused
		}
	}
	return nil
}

// sameRenew: the barcode; the card, through its account, against the loan's patron while
// the loan is open (its row holds the link until the close).
func sameRenew(l *Ledger, c schemas.Renew, evs []appended) error {
	d, err := dataOf[schemas.ItemRenewed](evs[0])
	if err != nil {
		return err
	}
	if d.Barcode != c.Barcode {
		return errReused
	}
	t, err := l.st.Txn(d.TxnID)
	if errors.Is(err, model.ErrNotFound) {
		return nil // the loan closed: its link is gone
	} else if err != nil {
		return err
	}
	if t.PatronID == "" {
		return nil // the key was destroyed before the projections were rebuilt
	}
	return l.holdsCard(c.Card, t.PatronID)
}

// sameCatalogItem: every field is in item.cataloged.
func sameCatalogItem(_ *Ledger, c schemas.CatalogItem, evs []appended) error {
	d, err := dataOf[schemas.ItemCataloged](evs[0])
	if err != nil {
		return err
	}
	if d != c.ItemCataloged {
		return errReused
	}
	return nil
}

// sameRegisterPatron: the home branch; the card against card.issued (present exactly when
// the command had a card); the profile, opened with the profile key while the account is
// open.
func sameRegisterPatron(l *Ledger, c schemas.RegisterPatron, evs []appended) error {
	d, err := dataOf[schemas.PatronRegistered](evs[0])
	if err != nil {
		return err
	}
	if d.HomeBranch != c.HomeBranch {
		return errReused
	}
	cards, err := dataOfType[schemas.CardIssued](evs, schemas.TypeCardIssued)
	if err != nil {
		return err
	}
	switch {
	case c.Card == "" && len(cards) != 0, c.Card != "" && len(cards) != 1:
		return errReused
	case c.Card != "" && cards[0].CardHash != l.keys.CardHash(c.Card):
		return errReused
	}
	p, err := seal.OpenProfile(l.keys, d.PatronID, d.Profile)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil // the account is closed: its profile is gone
	} else if err != nil {
		return err
	}
	if !reflect.DeepEqual(p, c.Profile) {
		return errReused
	}
	return nil
}

// sameIssueCard: the patron id and the card's hash.
func sameIssueCard(l *Ledger, c schemas.IssueCard, evs []appended) error {
	d, err := dataOf[schemas.CardIssued](evs[0])
	if err != nil {
		return err
	}
	if d.PatronID != c.PatronID || d.CardHash != l.keys.CardHash(c.Card) {
		return errReused
	}
	return nil
}

// sameReportCardLost: the card's hash.
func sameReportCardLost(l *Ledger, c schemas.ReportCardLost, evs []appended) error {
	d, err := dataOf[schemas.CardReportedLost](evs[0])
	if err != nil {
		return err
	}
	if d.CardHash != l.keys.CardHash(c.Card) {
		return errReused
	}
	return nil
}

// sameDeclareLost: the barcode.
func sameDeclareLost(_ *Ledger, c schemas.DeclareLost, evs []appended) error {
	d, err := dataOf[schemas.ItemDeclaredLost](evs[0])
	if err != nil {
		return err
	}
	if d.Barcode != c.Barcode {
		return errReused
	}
	return nil
}

// sameMarkDamaged: the barcode; the damage fine's amount, the rules' damage fee when the
// command left it out.
func sameMarkDamaged(l *Ledger, c schemas.MarkDamaged, evs []appended) error {
	d, err := dataOf[schemas.ItemDamaged](evs[0])
	if err != nil {
		return err
	}
	if d.Barcode != c.Barcode {
		return errReused
	}
	want := c.AmountCents
	if want == 0 {
		want = l.cfg.Rules.DamageFeeCents
	}
	fines, err := dataOfType[schemas.FineAssessed](evs, schemas.TypeFineAssessed)
	if err != nil {
		return err
	}
	var got int64 // a fee of 0 assesses no damage fine
	for _, f := range fines {
		if f.Reason == schemas.ReasonDamaged {
			got += f.AmountCents
		}
	}
	if got != want {
		return errReused
	}
	return nil
}

// sameAssessFee: the amount; the patron sealed in the fee while its key exists.
func sameAssessFee(l *Ledger, c schemas.AssessFee, evs []appended) error {
	d, err := dataOf[schemas.FineAssessed](evs[0])
	if err != nil {
		return err
	}
	if d.Reason != schemas.ReasonFee || d.Patron == nil || d.AmountCents != c.AmountCents {
		return errReused
	}
	patronID, err := seal.OpenPatron(l.keys, evs[0].ID, *d.Patron)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil // closed and expunged: no one can tell whose fee it was
	} else if err != nil {
		return err
	}
	if patronID != c.PatronID {
		return errReused
	}
	return nil
}

// samePayFine: the fine id and the amount paid.
func samePayFine(_ *Ledger, c schemas.PayFine, evs []appended) error {
	d, err := dataOf[schemas.FinePaid](evs[0])
	if err != nil {
		return err
	}
	if d.FineID != c.FineID || d.AmountCents != c.AmountCents {
		return errReused
	}
	return nil
}

// sameWaiveFine: the fine id.
func sameWaiveFine(_ *Ledger, c schemas.WaiveFine, evs []appended) error {
	d, err := dataOf[schemas.FineWaived](evs[0])
	if err != nil {
		return err
	}
	if d.FineID != c.FineID {
		return errReused
	}
	return nil
}

// sameClosePatron: the patron id.
func sameClosePatron(_ *Ledger, c schemas.ClosePatron, evs []appended) error {
	d, err := dataOf[schemas.PatronClosed](evs[0])
	if err != nil {
		return err
	}
	if d.PatronID != c.PatronID {
		return errReused
	}
	return nil
}

// sameRecordExpunged: the transaction.
func sameRecordExpunged(_ *Ledger, c recordExpunged, evs []appended) error {
	d, err := dataOf[schemas.TransactionExpunged](evs[0])
	if err != nil {
		return err
	}
	if d.TxnID != c.txnID {
		return errReused
	}
	return nil
}
