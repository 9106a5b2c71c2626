package projections

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
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

// asBatches is msgs with each command of several events (consecutive messages of one
// command id on one subject, as the ledger appended them in atomic batches before) made
// one message, a CloudEvents batch, as the ledger appends them now; sequences follow.
func asBatches(t *testing.T, msgs []ledger.Msg) []ledger.Msg {
	t.Helper()
	var out []ledger.Msg
	var parts []json.RawMessage
	var cmd, subject string
	flush := func() {
		if len(parts) == 0 {
			return
		}
		data := []byte(parts[0])
		if len(parts) > 1 {
			var err error
			if data, err = json.Marshal(parts); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, ledger.Msg{Seq: uint64(len(out) + 1), Subject: subject, Data: data})
		parts = nil
	}
	for _, m := range msgs {
		var ev schemas.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.CommandID == "" || ev.CommandID != cmd || m.Subject != subject {
			flush()
		}
		cmd, subject = ev.CommandID, m.Subject
		parts = append(parts, m.Data)
	}
	flush()
	return out
}

// TestMessageShapeDoesNotMatter: a history whose commands of several events are one
// message each (a CloudEvents batch, as the ledger appends them now) gives the same rows
// as the same history with a message per event (as streams written before hold them),
// but for the rows that name a stream sequence; and a command's row names its one
// message, which is what a retry reads back.
func TestMessageShapeDoesNotMatter(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	perEvent := historyMsgs(t, 1)
	batched := asBatches(t, perEvent)
	if len(batched) >= len(perEvent) {
		t.Fatalf("%d messages as batches, %d a message per event: the history has no command of several events", len(batched), len(perEvent))
	}
	a := openTestStore(t, keys, v, "per-event")
	b := openTestStore(t, keys, v, "batched")
	if err := a.Apply(perEvent); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(batched); err != nil {
		t.Fatal(err)
	}
	rows := func(s *Store) map[string]string {
		out := map[string]string{}
		it, err := s.db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			k := string(it.Key())
			switch {
			case strings.HasPrefix(k, pSubject), strings.HasPrefix(k, pCommand), k == pApplied:
				continue // stream sequences
			}
			out[k] = string(it.Value())
		}
		return out
	}
	ra, rb := rows(a), rows(b)
	if len(ra) == 0 || len(ra) != len(rb) {
		t.Fatalf("%d rows from a message per event, %d from batches", len(ra), len(rb))
	}
	for k, va := range ra {
		if rb[k] != va {
			t.Errorf("row %q differs between the shapes", k[:min(2, len(k))])
		}
	}
	checked := 0
	for _, m := range batched {
		evs, err := v.Events(m.Data)
		if err != nil {
			t.Fatalf("sequence %d: %v", m.Seq, err)
		}
		if len(evs) < 2 {
			continue
		}
		seqs, err := b.CommandSeqs(evs[0].CommandID)
		if err != nil {
			t.Fatal(err)
		}
		if seqs != nil { // nil once the command left the deduplication window
			checked++
			if len(seqs) != 1 || seqs[0] != m.Seq {
				t.Errorf("command of sequence %d: its row names %v", m.Seq, seqs)
			}
		}
	}
	if checked == 0 {
		t.Error("no batch's command row was checked")
	}
}
