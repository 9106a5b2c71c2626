package policy

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/imagineif/lethe/schemas"
)

func TestLimit(t *testing.T) {
	t.Parallel()
	due := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	onTime := schemas.Loan{Barcode: "31000000000001", Title: "On time", Due: due.AddDate(0, 0, 14)}
	overdue := schemas.Loan{Barcode: "31000000000002", Title: "Overdue", Due: due, Overdue: true}
	damagedOnLoan := schemas.Loan{Barcode: "31000000000005", Title: "Damaged, still out", Due: due.AddDate(0, 0, 14)}
	lost := schemas.Fine{FineID: "f-lost", Barcode: "31000000000003", Reason: schemas.ReasonLost, AmountCents: 2500, RemainingCents: 2500}
	damaged := schemas.Fine{FineID: "f-damaged", Barcode: "31000000000004", Reason: schemas.ReasonDamaged, AmountCents: 800, RemainingCents: 300}
	damagedOut := schemas.Fine{FineID: "f-damaged-out", Barcode: damagedOnLoan.Barcode, Reason: schemas.ReasonDamaged, AmountCents: 500, RemainingCents: 500}
	fee := schemas.Fine{FineID: "f-fee", Reason: schemas.ReasonFee, AmountCents: 100, RemainingCents: 100}

	cases := []struct {
		name string
		in   schemas.PatronRecord
		want schemas.PatronRecord
	}{
		{
			"only the overdue loan and both fines remain",
			schemas.PatronRecord{Loans: []schemas.Loan{onTime, overdue}, Fines: []schemas.Fine{lost, damaged}, OwedCents: 2800, Blocked: true, CardStatus: "active"},
			schemas.PatronRecord{Loans: []schemas.Loan{overdue}, Fines: []schemas.Fine{lost, damaged}, OwedCents: 2800, Blocked: true, CardStatus: "active"},
		},
		{
			"a damaged item still on loan stays, and every open fine",
			schemas.PatronRecord{Loans: []schemas.Loan{damagedOnLoan, onTime}, Fines: []schemas.Fine{damagedOut, fee}, OwedCents: 600, CardStatus: "lost"},
			schemas.PatronRecord{Loans: []schemas.Loan{damagedOnLoan}, Fines: []schemas.Fine{damagedOut, fee}, OwedCents: 600, CardStatus: "lost"},
		},
		{
			"nothing overdue, nothing owed",
			schemas.PatronRecord{Loans: []schemas.Loan{onTime}, CardStatus: "active"},
			schemas.PatronRecord{Loans: []schemas.Loan{}, Fines: []schemas.Fine{}, CardStatus: "active"},
		},
	}
	for _, c := range cases {
		if got := Limit(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Limit(%+v) = %+v, want %+v", c.name, c.in, got, c.want)
		}
	}
}

func TestLimitEncodesEmptyLists(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Limit(schemas.PatronRecord{}))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"loans":[],"fines":[],"owed_cents":0,"blocked":false,"card_status":""}`; string(b) != want {
		t.Errorf("json(Limit(zero)) = %s, want %s", b, want)
	}
}

func TestLimitDoesNotShareTheInput(t *testing.T) {
	t.Parallel()
	in := schemas.PatronRecord{Loans: []schemas.Loan{{Barcode: "1", Overdue: true}}, Fines: []schemas.Fine{{FineID: "f"}}}
	out := Limit(in)
	out.Loans[0].Barcode, out.Fines[0].FineID = "changed", "changed"
	if in.Loans[0].Barcode != "1" || in.Fines[0].FineID != "f" {
		t.Errorf("Limit shares its input's slices: %+v", in)
	}
}
