package audit

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// TestStatsSuppressSmallCells: counts from 1 to K-1 are never shown, zero and K and above
// are; a rate built on a suppressed count is not given.
func TestStatsSuppressSmallCells(t *testing.T) {
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	day := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	msg := func(typ, subject string, at time.Time, data any) ledger.Msg {
		seq++
		raw, _ := json.Marshal(data)
		ev := schemas.Event{SpecVersion: schemas.SpecVersion, ID: fmt.Sprintf("0190f3a2-7b4c-7d11-8e25-%012d", seq), Type: typ,
			Source: "lethe/desk", Subject: subject, Time: at, DataContentType: "application/json", DataSchema: schemas.DataSchema(typ), Data: raw}
		b, _ := json.Marshal(ev)
		return ledger.Msg{Seq: seq, Subject: subject, Data: b}
	}
	s := NewStats(v, StatsOptions{K: 5})
	// Six loans of fiction at main on one day, two of poetry at east on another.
	for i := range 8 {
		coll, branch, at := "fiction", "main", day
		if i >= 6 {
			coll, branch, at = "poetry", "east", day.Add(24*time.Hour)
		}
		bc := fmt.Sprintf("S%d", i)
		s.Add(msg(schemas.TypeItemCataloged, "circ.item."+bc, at, schemas.ItemCataloged{Barcode: bc, Title: "t", Collection: coll, Branch: branch, ReplacementCents: 100}))
		s.Add(msg(schemas.TypeItemCheckedOut, "circ.item."+bc, at, schemas.ItemCheckedOut{
			TxnID: fmt.Sprintf("5b1e6f9a-3c2d-4e8f-9a0b-%012d", i), Barcode: bc, Branch: branch, Station: "k1", Due: at.Add(72 * time.Hour),
			Patron: schemas.Sealed{KID: "x", Nonce: make([]byte, 24), CT: make([]byte, 40)},
		}))
	}
	r := s.Report()
	if r.Loans.Count != 8 || r.Loans.Suppressed {
		t.Errorf("loans = %+v, want 8", r.Loans)
	}
	want := map[string]Cell{"fiction": {Key: "fiction", Count: 6}, "poetry": {Key: "poetry", Suppressed: true}}
	for _, c := range r.ByCollection {
		if c != want[c.Key] {
			t.Errorf("collection %+v, want %+v", c, want[c.Key])
		}
	}
	for _, c := range append(r.ByDay, r.ByBranch...) {
		if c.Count > 0 && c.Count < 5 || (c.Suppressed && c.Count != 0) {
			t.Errorf("cell %+v shows a small count", c)
		}
	}
	if r.Suppressed != 3 || r.Renewals.Count != 0 || r.Renewals.Suppressed {
		t.Errorf("suppressed %d cells (want 3: a day, a branch, a collection), renewals %+v", r.Suppressed, r.Renewals)
	}
	out, _ := json.Marshal(r)
	if string(out) == "" {
		t.Fatal("no JSON")
	}
}
