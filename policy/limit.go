package policy

import "github.com/imagineif/lethe/schemas"

// Limit returns the part of a current record that the Limited scope allows: "materials that
// are overdue, lost or damaged, or related to fines owed". It keeps the loans overdue at the
// moment, the loans of items with an open lost or damaged fine, every open fine (fines cover
// lost and damaged items and overdue charges), the amount owed, whether the account is
// blocked, and the card status. Slices are never nil, so they encode as JSON [].
func Limit(rec schemas.PatronRecord) schemas.PatronRecord {
	out := schemas.PatronRecord{
		Loans:      []schemas.Loan{},
		Fines:      []schemas.Fine{},
		OwedCents:  rec.OwedCents,
		Blocked:    rec.Blocked,
		CardStatus: rec.CardStatus,
	}
	lostOrDamaged := map[string]bool{}
	for _, f := range rec.Fines {
		out.Fines = append(out.Fines, f)
		if f.Barcode != "" && (f.Reason == schemas.ReasonLost || f.Reason == schemas.ReasonDamaged) {
			lostOrDamaged[f.Barcode] = true
		}
	}
	for _, l := range rec.Loans {
		if l.Overdue || lostOrDamaged[l.Barcode] {
			out.Loans = append(out.Loans, l)
		}
	}
	return out
}
