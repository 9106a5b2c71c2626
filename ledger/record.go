package ledger

import (
	"errors"
	"slices"

	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
)

// record is the current circulation record of a patron: open loans and open fines.
// Closed transactions are not part of it because they no longer exist. Only Disclose
// calls it, after the policy has decided and the decision is on the access record.
func (l view) record(patronID string) (schemas.PatronRecord, error) {
	p, err := l.st.Patron(patronID)
	if errors.Is(err, model.ErrNotFound) {
		return schemas.PatronRecord{}, errUnknownPatron
	} else if err != nil {
		return schemas.PatronRecord{}, err
	}
	now := l.cfg.Now()
	_, owed, txns, err := l.standing(p, now)
	if err != nil {
		return schemas.PatronRecord{}, err
	}
	rec := schemas.PatronRecord{Loans: []schemas.Loan{}, Fines: []schemas.Fine{}, OwedCents: owed, CardStatus: "active"}
	if p.Closed {
		rec.CardStatus = "closed"
	}
	rec.Blocked = owed >= l.cfg.Rules.BlockCents
	for _, t := range txns {
		if t.Loan == model.LoanOpen {
			it, err := l.st.Item(t.Barcode)
			if err != nil {
				return schemas.PatronRecord{}, err
			}
			rec.Loans = append(rec.Loans, schemas.Loan{
				Barcode: t.Barcode, Title: it.Title, Due: t.Due, Renewals: t.Renewals, Overdue: now.After(t.Due),
			})
		}
		for _, f := range t.Fines {
			if f.RemainingCents > 0 {
				rec.Fines = append(rec.Fines, schemas.Fine{
					FineID: f.FineID, Barcode: t.Barcode, Reason: f.Reason, AmountCents: f.AmountCents, RemainingCents: f.RemainingCents,
				})
			}
		}
	}
	slices.SortFunc(rec.Loans, func(a, b schemas.Loan) int { return a.Due.Compare(b.Due) })
	return rec, nil
}
