package ledger

import (
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

// Domain errors. Messages are shown to patrons at kiosks and to staff: they never name a
// patron or echo a card number. ErrUnknownCard and ErrCardLost are exported for the kiosk
// API, which counts them as card lookups that missed.
var (
	ErrUnknownCard   = schemas.Errorf(schemas.CodeNotFound, "card not recognised")
	ErrCardLost      = schemas.Errorf(schemas.CodeForbidden, "this card has been reported lost or stolen; please see staff")
	errAccountClosed = schemas.Errorf(schemas.CodeForbidden, "this account is closed")
	errUnknownItem   = schemas.Errorf(schemas.CodeNotFound, "no item with this barcode")
	errUnknownPatron = schemas.Errorf(schemas.CodeNotFound, "no such patron")
	errUnknownFine   = schemas.Errorf(schemas.CodeNotFound, "no such fine")
	errNotOnLoan     = schemas.Errorf(schemas.CodeConflict, "this item is not checked out")
	errItemLost      = schemas.Errorf(schemas.CodeConflict, "this item is recorded as lost; please see staff")
)

// cardPatron resolves a presented card to its open account.
func (l view) cardPatron(card string) (model.Patron, error) {
	c, err := l.st.Card(l.keys.CardHash(card))
	if errors.Is(err, model.ErrNotFound) {
		return model.Patron{}, ErrUnknownCard
	} else if err != nil {
		return model.Patron{}, err
	}
	if c.Lost {
		return model.Patron{}, ErrCardLost
	}
	if c.Closed {
		return model.Patron{}, errAccountClosed
	}
	p, err := l.st.Patron(c.PatronID)
	if err != nil {
		return model.Patron{}, err
	}
	if p.Closed {
		return model.Patron{}, errAccountClosed
	}
	return p, nil
}

func (l view) item(barcode string) (model.Item, string, error) {
	subject, err := ItemSubject(barcode)
	if err != nil {
		return model.Item{}, "", err
	}
	it, err := l.st.Item(barcode)
	if errors.Is(err, model.ErrNotFound) {
		return model.Item{}, "", errUnknownItem
	}
	return it, subject, err
}

// standing is a patron's open loans and what they owe now, overdue fines accrued so far
// included.
func (l view) standing(p model.Patron, now time.Time) (loans int, owed int64, txns []model.Txn, err error) {
	for _, id := range p.Txns {
		t, err := l.st.Txn(id)
		if errors.Is(err, model.ErrNotFound) {
			continue
		} else if err != nil {
			return 0, 0, nil, err
		}
		txns = append(txns, t)
		if t.Loan == model.LoanOpen {
			loans++
			owed += l.cfg.Rules.OverdueFine(t.Due, now)
		}
		for _, f := range t.Fines {
			owed += f.RemainingCents
		}
	}
	return loans, owed, txns, nil
}

func (l view) expectOn(subject string) (Expect, error) {
	seq, err := l.st.SubjectSeq(subject)
	return Expect{Subject: subject, Seq: seq}, err
}

func (l *Ledger) checkOut(at Station, c schemas.CheckOut) decider {
	return func(l view) (plan, error) {
		now := l.cfg.Now()
		// out is when the loan begins: now, or for an offline kiosk's late checkout the
		// time the item really went out. The rules that refuse a checkout (limit, block)
		// are the patron's standing now.
		out := now
		if c.CheckedOutAt != nil {
			out = *c.CheckedOutAt
			if out.After(now) {
				return plan{}, schemas.Errorf(schemas.CodeInvalid, "checked_out_at is in the future")
			}
			if now.Sub(out) > l.cfg.Rules.LoanPeriod() {
				return plan{}, schemas.Errorf(schemas.CodeInvalid, "checked_out_at is older than a loan period")
			}
		}
		p, err := l.cardPatron(c.Card)
		if err != nil {
			return plan{}, err
		}
		it, subject, err := l.item(c.Barcode)
		if err != nil {
			return plan{}, err
		}
		switch it.Status {
		case model.ItemOnLoan:
			return plan{}, schemas.Errorf(schemas.CodeConflict, "this item is already checked out")
		case model.ItemLost:
			return plan{}, errItemLost
		}
		loans, owed, _, err := l.standing(p, now)
		if err != nil {
			return plan{}, err
		}
		if loans >= l.cfg.Rules.MaxLoans {
			return plan{}, schemas.Errorf(schemas.CodeForbidden, "loan limit of %d items reached", l.cfg.Rules.MaxLoans)
		}
		if owed >= l.cfg.Rules.BlockCents {
			return plan{}, schemas.Errorf(schemas.CodeForbidden, "fines owed are at or above the limit; please see staff")
		}
		expect, err := l.expectOn(subject)
		if err != nil {
			return plan{}, err
		}
		seal := func(txnID string, key []byte) ([]schemas.Event, error) {
			ev, err := l.sealedEvent(at, schemas.TypeItemCheckedOut, subject, out, key, p.ID, txnID, func(sealed schemas.Sealed) any {
				return schemas.ItemCheckedOut{
					TxnID: txnID, Barcode: c.Barcode, Patron: sealed,
					Branch: at.Branch, Station: at.ID, Due: out.Add(l.cfg.Rules.LoanPeriod()),
				}
			})
			return []schemas.Event{ev}, err
		}
		// The loan limit, the block and the account being open are the patron's, not the
		// item subject's: decided under the patron's lock.
		return plan{expect: expect, locks: []string{patronLock(p.ID)},
			key: &newKey{kind: keystore.Transaction, seal: seal}}, nil
	}
}

// openLoan returns an item on loan, its transaction and the expectation a command on it
// appends under; or the error any command on a loan gets when there is none.
func (l view) openLoan(barcode string) (model.Item, model.Txn, Expect, error) {
	it, subject, err := l.item(barcode)
	if err != nil {
		return model.Item{}, model.Txn{}, Expect{}, err
	}
	switch it.Status {
	case model.ItemLost:
		return model.Item{}, model.Txn{}, Expect{}, errItemLost
	case model.ItemAvailable:
		return model.Item{}, model.Txn{}, Expect{}, errNotOnLoan
	}
	t, err := l.st.Txn(it.TxnID)
	if err != nil {
		return model.Item{}, model.Txn{}, Expect{}, err
	}
	expect, err := l.expectOn(subject)
	return it, t, expect, err
}

func (l *Ledger) checkIn(at Station, c schemas.Return) decider {
	return func(l view) (plan, error) {
		now := l.cfg.Now()
		_, t, expect, err := l.openLoan(c.Barcode)
		if err != nil {
			return plan{}, err
		}
		subject := expect.Subject
		back := now
		if c.ReturnedAt != nil {
			back = *c.ReturnedAt
			if back.After(now) {
				return plan{}, schemas.Errorf(schemas.CodeInvalid, "returned_at is in the future")
			}
			if back.Before(t.Opened) {
				return plan{}, schemas.Errorf(schemas.CodeInvalid, "returned_at is before the item was checked out")
			}
		}
		returned, err := l.event(at, schemas.TypeItemReturned, subject, back, schemas.ItemReturned{
			TxnID: t.ID, Barcode: c.Barcode, Branch: at.Branch, Station: at.ID,
		})
		if err != nil {
			return plan{}, err
		}
		events := []schemas.Event{returned}
		t.Loan = model.LoanReturned
		if fine := l.cfg.Rules.OverdueFine(t.Due, back); fine > 0 {
			ev, err := l.fine(at, t, subject, schemas.ReasonOverdue, fine, back, nil)
			if err != nil {
				return plan{}, err
			}
			events = append(events, ev)
			t.Fines = append(t.Fines, model.TxnFine{RemainingCents: fine})
		}
		return l.closeIfSettled(at, t, subject, now, plan{expect: expect, events: events})
	}
}

// sealedEvent builds an event whose data carries the patron sealed under a transaction's
// key. The event id is chosen first because it is part of the ciphertext's associated data.
func (l *Ledger) sealedEvent(at Station, typ, subject string, t time.Time, key []byte, patronID, txnID string, data func(schemas.Sealed) any) (schemas.Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return schemas.Event{}, err
	}
	sealed, err := seal.Patron(key, patronID, id.String(), txnID)
	if err != nil {
		return schemas.Event{}, err
	}
	return l.eventWithID(id.String(), at, typ, subject, t, data(sealed))
}

// oneEvent plans a single event on subject, conditional on the subject not having changed
// since the state was read.
func (l view) oneEvent(at Station, typ, subject string, data any) (plan, error) {
	expect, err := l.expectOn(subject)
	if err != nil {
		return plan{}, err
	}
	ev, err := l.event(at, typ, subject, l.cfg.Now(), data)
	if err != nil {
		return plan{}, err
	}
	return plan{expect: expect, events: []schemas.Event{ev}}, nil
}

// closeIfSettled appends transaction.closed to p if, after p, nothing is open in t.
//
// Every command that ends a loan or changes a fine goes through here, and holds the
// transaction's patron's lock: what the patron owes and has open is read by decisions
// on other subjects (a checkout's block, closing the account).
func (l *Ledger) closeIfSettled(at Station, t model.Txn, subject string, now time.Time, p plan) (plan, error) {
	if t.PatronID != "" {
		p.locks = append(p.locks, patronLock(t.PatronID))
	}
	if !t.Settled() {
		return p, nil
	}
	ev, err := l.event(at, schemas.TypeTransactionClosed, subject, now, schemas.TransactionClosed{TxnID: t.ID})
	if err != nil {
		return plan{}, err
	}
	p.events = append(p.events, ev)
	return p, nil
}

func (l *Ledger) fine(at Station, t model.Txn, subject, reason string, cents int64, when time.Time, patron *schemas.Sealed) (schemas.Event, error) {
	return l.event(at, schemas.TypeFineAssessed, subject, when, schemas.FineAssessed{
		TxnID: t.ID, FineID: newID(), Barcode: t.Barcode, Reason: reason, AmountCents: cents, Patron: patron,
	})
}

func (l *Ledger) renew(at Station, c schemas.Renew) decider {
	return func(l view) (plan, error) {
		now := l.cfg.Now()
		p, err := l.cardPatron(c.Card)
		if err != nil {
			return plan{}, err
		}
		_, t, expect, err := l.openLoan(c.Barcode)
		if err != nil {
			return plan{}, err
		}
		if t.PatronID != p.ID {
			// Say no more than that: the holder of this card does not learn who has it.
			return plan{}, schemas.Errorf(schemas.CodeForbidden, "this item is not on loan to this card")
		}
		if t.Renewals >= l.cfg.Rules.MaxRenewals {
			return plan{}, schemas.Errorf(schemas.CodeForbidden, "no renewals left for this item")
		}
		if now.After(t.Due) {
			return plan{}, schemas.Errorf(schemas.CodeForbidden, "this item is overdue; please return it or see staff")
		}
		if _, owed, _, err := l.standing(p, now); err != nil {
			return plan{}, err
		} else if owed >= l.cfg.Rules.BlockCents {
			return plan{}, schemas.Errorf(schemas.CodeForbidden, "fines owed are at or above the limit; please see staff")
		}
		ev, err := l.event(at, schemas.TypeItemRenewed, expect.Subject, now, schemas.ItemRenewed{
			TxnID: t.ID, Barcode: c.Barcode, Due: now.Add(l.cfg.Rules.LoanPeriod()), Renewals: t.Renewals + 1,
		})
		if err != nil {
			return plan{}, err
		}
		// The block on fines owed is the patron's standing, changed on other subjects.
		return plan{expect: expect, events: []schemas.Event{ev}, locks: []string{patronLock(p.ID)}}, nil
	}
}

// declareLost ends a loan with the item lost and charges its replacement price. The rules
// sweeper passes the transaction it found overdue so a loan that changed meanwhile is left
// alone.
func (l *Ledger) declareLost(at Station, barcode, wantTxn string) decider {
	return func(l view) (plan, error) {
		now := l.cfg.Now()
		it, t, expect, err := l.openLoan(barcode)
		if err != nil {
			return plan{}, err
		}
		if wantTxn != "" && t.ID != wantTxn {
			return plan{}, errNotOnLoan
		}
		subject := expect.Subject
		lost, err := l.event(at, schemas.TypeItemDeclaredLost, subject, now, schemas.ItemDeclaredLost{TxnID: t.ID, Barcode: barcode})
		if err != nil {
			return plan{}, err
		}
		events := []schemas.Event{lost}
		t.Loan = model.LoanLost
		price := it.ReplacementCents
		if price == 0 {
			price = l.cfg.Rules.DefaultPriceCents
		}
		fine, err := l.fine(at, t, subject, schemas.ReasonLost, price, now, nil)
		if err != nil {
			return plan{}, err
		}
		events = append(events, fine)
		t.Fines = append(t.Fines, model.TxnFine{RemainingCents: price})
		return l.closeIfSettled(at, t, subject, now, plan{expect: expect, events: events})
	}
}

func (l *Ledger) markDamaged(at Station, c schemas.MarkDamaged) decider {
	return func(l view) (plan, error) {
		now := l.cfg.Now()
		_, t, expect, err := l.openLoan(c.Barcode)
		if err != nil {
			return plan{}, err
		}
		subject := expect.Subject
		dmg, err := l.event(at, schemas.TypeItemDamaged, subject, now, schemas.ItemDamaged{
			TxnID: t.ID, Barcode: c.Barcode, Branch: at.Branch, Station: at.ID,
		})
		if err != nil {
			return plan{}, err
		}
		events := []schemas.Event{dmg}
		t.Loan = model.LoanDamaged
		amount := c.AmountCents
		if amount == 0 {
			amount = l.cfg.Rules.DamageFeeCents
		}
		for _, f := range []struct {
			reason string
			cents  int64
		}{{schemas.ReasonOverdue, l.cfg.Rules.OverdueFine(t.Due, now)}, {schemas.ReasonDamaged, amount}} {
			if f.cents == 0 {
				continue
			}
			ev, err := l.fine(at, t, subject, f.reason, f.cents, now, nil)
			if err != nil {
				return plan{}, err
			}
			events = append(events, ev)
			t.Fines = append(t.Fines, model.TxnFine{RemainingCents: f.cents})
		}
		return l.closeIfSettled(at, t, subject, now, plan{expect: expect, events: events})
	}
}

func (l view) openPatron(id string) (model.Patron, error) {
	p, err := l.st.Patron(id)
	if errors.Is(err, model.ErrNotFound) {
		return model.Patron{}, errUnknownPatron
	} else if err != nil {
		return model.Patron{}, err
	}
	if p.Closed {
		return model.Patron{}, errAccountClosed
	}
	return p, nil
}

// assessFee charges a stand-alone fee: a transaction of its own, with the patron sealed
// under its own key, on its own subject.
func (l *Ledger) assessFee(at Station, c schemas.AssessFee) decider {
	return func(l view) (plan, error) {
		now := l.cfg.Now()
		p, err := l.openPatron(c.PatronID)
		if err != nil {
			return plan{}, err
		}
		fineID := newID()
		subject := FeeSubject(fineID)
		seal := func(txnID string, key []byte) ([]schemas.Event, error) {
			ev, err := l.sealedEvent(at, schemas.TypeFineAssessed, subject, now, key, p.ID, txnID, func(sealed schemas.Sealed) any {
				return schemas.FineAssessed{TxnID: txnID, FineID: fineID, Reason: schemas.ReasonFee, AmountCents: c.AmountCents, Patron: &sealed}
			})
			return []schemas.Event{ev}, err
		}
		// A fee for an account being closed must not open a transaction on it.
		return plan{expect: Expect{Subject: subject}, locks: []string{patronLock(p.ID)},
			key: &newKey{kind: keystore.Transaction, seal: seal}}, nil
	}
}

// settleFine pays part of a fine (waive false) or forgives what remains (waive true), and
// closes the transaction if that settles it.
func (l *Ledger) settleFine(at Station, fineID string, cents int64, waive bool) decider {
	return func(l view) (plan, error) {
		now := l.cfg.Now()
		txnID, err := l.st.FineTxn(fineID)
		if errors.Is(err, model.ErrNotFound) {
			return plan{}, errUnknownFine
		} else if err != nil {
			return plan{}, err
		}
		t, err := l.st.Txn(txnID)
		if errors.Is(err, model.ErrNotFound) {
			return plan{}, errUnknownFine
		} else if err != nil {
			return plan{}, err
		}
		i := slices.IndexFunc(t.Fines, func(f model.TxnFine) bool { return f.FineID == fineID })
		if i < 0 {
			return plan{}, errUnknownFine
		}
		f := &t.Fines[i]
		if f.RemainingCents == 0 {
			return plan{}, schemas.Errorf(schemas.CodeConflict, "this fine is already settled")
		}
		var ev schemas.Event
		if waive {
			ev, err = l.event(at, schemas.TypeFineWaived, t.Subject, now, schemas.FineWaived{TxnID: t.ID, FineID: fineID, AmountCents: f.RemainingCents})
			f.RemainingCents = 0
		} else {
			if cents > f.RemainingCents {
				return plan{}, schemas.Errorf(schemas.CodeInvalid, "payment of %d cents is more than the %d cents owed on this fine", cents, f.RemainingCents)
			}
			f.RemainingCents -= cents
			ev, err = l.event(at, schemas.TypeFinePaid, t.Subject, now, schemas.FinePaid{TxnID: t.ID, FineID: fineID, AmountCents: cents, RemainingCents: f.RemainingCents})
		}
		if err != nil {
			return plan{}, err
		}
		expect, err := l.expectOn(t.Subject)
		if err != nil {
			return plan{}, err
		}
		return l.closeIfSettled(at, t, t.Subject, now, plan{expect: expect, events: []schemas.Event{ev}})
	}
}

func (l *Ledger) catalog(at Station, c schemas.CatalogItem) decider {
	return func(l view) (plan, error) {
		subject, err := ItemSubject(c.Barcode)
		if err != nil {
			return plan{}, err
		}
		return l.oneEvent(at, schemas.TypeItemCataloged, subject, c.ItemCataloged)
	}
}

// cardFree refuses a card number that already belongs to a card, lost or not: a number
// once reported lost must never open an account again.
func (l view) cardFree(hash string) error {
	_, err := l.st.Card(hash)
	switch {
	case err == nil:
		return schemas.Errorf(schemas.CodeConflict, "this card number is already in use")
	case errors.Is(err, model.ErrNotFound):
		return nil
	}
	return err
}

func (l *Ledger) register(at Station, c schemas.RegisterPatron, pinHash string) decider {
	return func(l view) (plan, error) {
		now := l.cfg.Now()
		age, err := c.Profile.AgeAt(now, l.cfg.Location)
		if err != nil {
			return plan{}, schemas.Errorf(schemas.CodeInvalid, "birth_date is not a valid date")
		}
		if age < 0 {
			return plan{}, schemas.Errorf(schemas.CodeInvalid, "birth_date is in the future")
		}
		if age < 18 && c.Profile.Caregiver == nil {
			return plan{}, schemas.Errorf(schemas.CodeInvalid, "a patron under 18 needs the caregiver who signs for the card")
		}
		var hash string
		if c.Card != "" {
			hash = l.keys.CardHash(c.Card)
			if err := l.cardFree(hash); err != nil {
				return plan{}, err
			}
		}
		id := newID()
		subject := PatronSubject(id)
		seal := func(_ string, key []byte) ([]schemas.Event, error) {
			sealed, err := seal.Profile(key, id, c.Profile)
			if err != nil {
				return nil, err
			}
			ev, err := l.event(at, schemas.TypePatronRegistered, subject, now, schemas.PatronRegistered{PatronID: id, HomeBranch: c.HomeBranch, Profile: sealed})
			if err != nil {
				return nil, err
			}
			events := []schemas.Event{ev}
			if pinHash != "" {
				pin, err := seal.PIN(key, id, pinHash)
				if err != nil {
					return nil, err
				}
				ev, err := l.event(at, schemas.TypePatronPINSet, subject, now, schemas.PatronPINSet{PatronID: id, PIN: pin})
				if err != nil {
					return nil, err
				}
				events = append(events, ev)
			}
			if hash == "" {
				return events, nil
			}
			card, err := l.event(at, schemas.TypeCardIssued, subject, now, schemas.CardIssued{PatronID: id, CardHash: hash})
			return append(events, card), err
		}
		p := plan{expect: Expect{Subject: subject}, key: &newKey{kind: keystore.Profile, id: id, seal: seal}}
		if hash != "" {
			p.locks = []string{cardLock(hash)} // one card, one account: two new patrons' subjects
		}
		return p, nil
	}
}

func (l *Ledger) issueCard(at Station, c schemas.IssueCard) decider {
	return func(l view) (plan, error) {
		p, err := l.openPatron(c.PatronID)
		if err != nil {
			return plan{}, err
		}
		hash := l.keys.CardHash(c.Card)
		if err := l.cardFree(hash); err != nil {
			return plan{}, err
		}
		pl, err := l.oneEvent(at, schemas.TypeCardIssued, PatronSubject(p.ID), schemas.CardIssued{PatronID: p.ID, CardHash: hash})
		pl.locks = []string{cardLock(hash)} // a card issued to two accounts at once
		return pl, err
	}
}

func (l *Ledger) reportCardLost(at Station, c schemas.ReportCardLost) decider {
	return func(l view) (plan, error) {
		hash := l.keys.CardHash(c.Card)
		card, err := l.st.Card(hash)
		if errors.Is(err, model.ErrNotFound) {
			return plan{}, ErrUnknownCard
		} else if err != nil {
			return plan{}, err
		}
		if card.Lost {
			return plan{}, schemas.Errorf(schemas.CodeConflict, "this card is already reported lost")
		}
		if card.Closed {
			return plan{}, schemas.Errorf(schemas.CodeConflict, "this card's account is closed; it opens nothing")
		}
		return l.oneEvent(at, schemas.TypeCardReportedLost, PatronSubject(card.PatronID), schemas.CardReportedLost{PatronID: card.PatronID, CardHash: hash})
	}
}

func (l *Ledger) closePatron(at Station, c schemas.ClosePatron) decider {
	return func(l view) (plan, error) {
		p, err := l.openPatron(c.PatronID)
		if err != nil {
			return plan{}, err
		}
		if len(p.Txns) > 0 {
			return plan{}, schemas.Errorf(schemas.CodeConflict, "the account has open loans or fines")
		}
		// "No open loans or fines" is about the subjects of every loan and fee: decided
		// under the patron's lock, which every command opening one holds.
		pl, err := l.oneEvent(at, schemas.TypePatronClosed, PatronSubject(p.ID), schemas.PatronClosed{PatronID: p.ID})
		pl.locks = []string{patronLock(p.ID)}
		return pl, err
	}
}
