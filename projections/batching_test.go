package projections

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// historyMsgs is a varied history: items and patrons, loans returned on time and late
// with fines paid in parts or waived, renewals, lost items, stand-alone fees, expunged
// records, commands of several events, and hours of event time, so that command ids
// leave the deduplication window.
func historyMsgs(t *testing.T, seed uint64) []ledger.Msg {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	var msgs []ledger.Msg
	add := func(typ, subject, cmd string, data any) {
		raw, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		ev := schemas.Event{SpecVersion: "1.0", ID: uuid.Must(uuid.NewV7()).String(), Type: typ, Source: "lethe/test",
			Subject: subject, Time: at, DataContentType: "application/json", DataSchema: schemas.DataSchema(typ),
			CommandID: cmd, Data: raw}
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, ledger.Msg{Seq: uint64(len(msgs) + 1), Subject: subject, Data: body})
	}
	sealed := func(kid string) schemas.Sealed {
		return schemas.Sealed{KID: kid, Nonce: make([]byte, 24), CT: make([]byte, 52)}
	}
	var patrons []string
	for i := range 5 {
		id := uuid.NewString()
		patrons = append(patrons, id)
		cmd := uuid.NewString()
		subject := ledger.PatronSubject(id)
		add(schemas.TypePatronRegistered, subject, cmd, schemas.PatronRegistered{PatronID: id, HomeBranch: "main", Profile: sealed(id)})
		add(schemas.TypeCardIssued, subject, cmd, schemas.CardIssued{PatronID: id, CardHash: fmt.Sprintf("%064x", i+1)})
	}
	const items = 12
	for i := range items {
		bc := fmt.Sprintf("H%03d", i)
		add(schemas.TypeItemCataloged, "circ.item."+bc, uuid.NewString(), schemas.ItemCataloged{Barcode: bc, Title: "t", Collection: "c", Branch: "main", ReplacementCents: 900})
	}
	expunge := func(txn string) {
		add(schemas.TypeTransactionExpunged, ledger.ExpungedSubject, uuid.NewString(),
			schemas.TransactionExpunged{TxnID: txn, ClosedAt: at, KeyDestroyedAt: at})
	}
	out := map[int]string{} // item -> open transaction
	for range 400 {
		at = at.Add(time.Duration(1+rng.IntN(20)) * time.Minute)
		i := rng.IntN(items)
		bc := fmt.Sprintf("H%03d", i)
		subject := "circ.item." + bc
		cmd := uuid.NewString()
		txn, open := out[i]
		switch r := rng.IntN(10); {
		case !open:
			txn = uuid.NewString()
			out[i] = txn
			add(schemas.TypeItemCheckedOut, subject, cmd, schemas.ItemCheckedOut{TxnID: txn, Barcode: bc, Patron: sealed(txn),
				Branch: "main", Station: "k1", Due: at.Add(time.Duration(rng.IntN(3)) * time.Hour)})
		case r < 2:
			add(schemas.TypeItemRenewed, subject, cmd, schemas.ItemRenewed{TxnID: txn, Barcode: bc, Due: at.Add(3 * time.Hour), Renewals: 1})
		case r < 4:
			// Late: a fine, paid in part, then waived; then closed.
			fine := uuid.NewString()
			add(schemas.TypeItemReturned, subject, cmd, schemas.ItemReturned{TxnID: txn, Barcode: bc, Branch: "main", Station: "k2"})
			add(schemas.TypeFineAssessed, subject, cmd, schemas.FineAssessed{TxnID: txn, FineID: fine, Barcode: bc, Reason: schemas.ReasonOverdue, AmountCents: 50})
			add(schemas.TypeFinePaid, subject, uuid.NewString(), schemas.FinePaid{TxnID: txn, FineID: fine, AmountCents: 20, RemainingCents: 30})
			waive := uuid.NewString()
			add(schemas.TypeFineWaived, subject, waive, schemas.FineWaived{TxnID: txn, FineID: fine, AmountCents: 30})
			add(schemas.TypeTransactionClosed, subject, waive, schemas.TransactionClosed{TxnID: txn})
			delete(out, i)
			expunge(txn)
		case r < 5:
			fine := uuid.NewString()
			add(schemas.TypeItemDeclaredLost, subject, cmd, schemas.ItemDeclaredLost{TxnID: txn, Barcode: bc})
			add(schemas.TypeFineAssessed, subject, cmd, schemas.FineAssessed{TxnID: txn, FineID: fine, Barcode: bc, Reason: schemas.ReasonLost, AmountCents: 900})
			pay := uuid.NewString()
			add(schemas.TypeFinePaid, subject, pay, schemas.FinePaid{TxnID: txn, FineID: fine, AmountCents: 900})
			add(schemas.TypeTransactionClosed, subject, pay, schemas.TransactionClosed{TxnID: txn})
			add(schemas.TypeItemCataloged, subject, uuid.NewString(), schemas.ItemCataloged{Barcode: bc, Title: "t2", Collection: "c", Branch: "main", ReplacementCents: 900})
			delete(out, i)
			expunge(txn)
		case r < 6:
			// A stand-alone fee, paid at once.
			fee, fine := uuid.NewString(), uuid.NewString()
			fsub := ledger.FeeSubject(fine)
			p := sealed(fee)
			add(schemas.TypeFineAssessed, fsub, cmd, schemas.FineAssessed{TxnID: fee, FineID: fine, Reason: schemas.ReasonFee, AmountCents: 75, Patron: &p})
			pay := uuid.NewString()
			add(schemas.TypeFinePaid, fsub, pay, schemas.FinePaid{TxnID: fee, FineID: fine, AmountCents: 75})
			add(schemas.TypeTransactionClosed, fsub, pay, schemas.TransactionClosed{TxnID: fee})
			expunge(fee)
		default:
			add(schemas.TypeItemReturned, subject, cmd, schemas.ItemReturned{TxnID: txn, Barcode: bc, Branch: "main", Station: "k2"})
			add(schemas.TypeTransactionClosed, subject, cmd, schemas.TransactionClosed{TxnID: txn})
			delete(out, i)
			if rng.IntN(3) > 0 {
				expunge(txn)
			}
		}
	}
	add(schemas.TypePatronClosed, ledger.PatronSubject(patrons[0]), uuid.NewString(), schemas.PatronClosed{PatronID: patrons[0]})
	return msgs
}

// TestBatchingDoesNotMatter: the projections are the same, row for row, however the
// stream is cut into batches, with or without what the projector carries across batches
// (known rows, decoded rows).
func TestBatchingDoesNotMatter(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	for seed := range uint64(3) {
		msgs := historyMsgs(t, seed)
		whole := openTestStore(t, keys, v, fmt.Sprint("whole", seed))
		if err := whole.Apply(msgs); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 99))
		for _, tc := range []struct {
			name  string
			state bool
			size  func() int
		}{
			{"one by one", false, func() int { return 1 }},
			{"one by one, carried state", true, func() int { return 1 }},
			{"random batches, carried state", true, func() int { return 1 + rng.IntN(40) }},
			{"random batches", false, func() int { return 1 + rng.IntN(40) }},
		} {
			s := openTestStore(t, keys, v, fmt.Sprint(tc.name, seed))
			var st *applyState
			if tc.state {
				var err error
				if st, err = s.newApplyState(); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < len(msgs); {
				j := min(i+tc.size(), len(msgs))
				if err := s.applyDecoded(st, s.decodeAll(msgs[i:j])); err != nil {
					t.Fatalf("%s: apply %d..%d: %v", tc.name, i, j, err)
				}
				i = j
			}
			d, err := compare(whole.db, s.db)
			if err != nil {
				t.Fatal(err)
			}
			if !d.Equal() {
				t.Errorf("seed %d, %s: differs from one batch: %+v", seed, tc.name, d)
			}
		}
	}
}
