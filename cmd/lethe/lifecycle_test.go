package main

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
)

const day = 24 * time.Hour

func TestCheckoutReturnExpunged(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B1", 2000)
	h.Register("21000000000001", "Ada Reader", "1980-05-17")
	co := h.Checkout("21000000000001", "B1")
	if !co.OK {
		t.Fatalf("checkout = %+v", co.Error)
	}
	txn := h.TxnOf("B1")
	rec := h.Record("21000000000001")
	if len(rec.Loans) != 1 || rec.Loans[0].Barcode != "B1" {
		t.Fatalf("record loans = %+v, want B1", rec.Loans)
	}
	if _, err := h.S.Keys.Get(keystore.Transaction, txn); err != nil {
		t.Fatalf("transaction key while open: %v", err)
	}
	ret := h.Checkin("B1")
	if ret.FineCents != 0 || ret.Barcode != "B1" {
		t.Fatalf("return = %+v, want no fine", ret)
	}
	h.ExpungeAll()
	h.AssertExpunged(txn)
	if rec := h.Record("21000000000001"); len(rec.Loans) != 0 || len(rec.Fines) != 0 {
		t.Fatalf("record after return = %+v, want empty", rec)
	}
	if it, _ := h.S.Proj.Item("B1"); it.Status != model.ItemAvailable {
		t.Fatalf("item status = %q, want available", it.Status)
	}
}

func TestOverdueFinePartialAndFullPayment(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B2", 2000)
	h.Register("21000000000002", "Bo Late", "1975-01-02")
	h.MustCheckout("21000000000002", "B2")
	txn := h.TxnOf("B2")
	h.Clock.Advance(25 * day) // due after 21 days: four days late
	rec := h.Record("21000000000002")
	if len(rec.Loans) != 1 || !rec.Loans[0].Overdue {
		t.Fatalf("record = %+v, want one overdue loan", rec)
	}
	ret := h.Checkin("B2")
	if ret.FineCents != 4*25 {
		t.Fatalf("overdue fine = %d, want %d", ret.FineCents, 4*25)
	}
	rec = h.Record("21000000000002")
	if len(rec.Fines) != 1 || rec.Fines[0].RemainingCents != 100 || rec.Fines[0].Reason != schemas.ReasonOverdue {
		t.Fatalf("fines = %+v, want one overdue fine of 100", rec.Fines)
	}
	fine := rec.Fines[0].FineID
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdPayFine, schemas.PayFine{CommandID: lethetest.CmdID(), FineID: fine, AmountCents: 40})
	h.ExpungeAll()
	if _, err := h.S.Keys.Get(keystore.Transaction, txn); err != nil {
		t.Fatalf("key after partial payment: %v (the transaction is still open)", err)
	}
	if rec := h.Record("21000000000002"); len(rec.Fines) != 1 || rec.Fines[0].RemainingCents != 60 {
		t.Fatalf("fines after partial payment = %+v, want 60 remaining", rec.Fines)
	}
	if status, _ := h.Desk(schemas.CmdPayFine, schemas.PayFine{CommandID: lethetest.CmdID(), FineID: fine, AmountCents: 61}); status != 400 {
		t.Fatalf("overpayment status = %d, want 400", status)
	}
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdPayFine, schemas.PayFine{CommandID: lethetest.CmdID(), FineID: fine, AmountCents: 60})
	h.ExpungeAll()
	h.AssertExpunged(txn)
}

func TestDeclaredLostReplacementPaid(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B3", 3500)
	h.Catalog("B3b", 1000)
	h.Register("21000000000003", "Cy Lost", "1990-09-09")
	h.MustCheckout("21000000000003", "B3")
	txn := h.TxnOf("B3")
	// Not yet lost: 21 days loan + 59 overdue.
	h.Clock.Advance(80 * day)
	if n, err := h.S.Ledger.SweepRules(testkit.Context(t)); err != nil || n != 0 {
		t.Fatalf("SweepRules before lost-after = %d, %v; want 0", n, err)
	}
	h.Clock.Advance(2 * day)
	if n, err := h.S.Ledger.SweepRules(testkit.Context(t)); err != nil || n != 1 {
		t.Fatalf("SweepRules = %d, %v; want 1 declared lost", n, err)
	}
	if n, err := h.S.Ledger.SweepRules(testkit.Context(t)); err != nil || n != 0 {
		t.Fatalf("second SweepRules = %d, %v; want 0 (applied once)", n, err)
	}
	if it, _ := h.S.Proj.Item("B3"); it.Status != model.ItemLost {
		t.Fatalf("item status = %q, want lost", it.Status)
	}
	rec := h.Record("21000000000003")
	if len(rec.Loans) != 0 || len(rec.Fines) != 1 || rec.Fines[0].RemainingCents != 3500 || rec.Fines[0].Reason != schemas.ReasonLost {
		t.Fatalf("record = %+v, want one lost fine of 3500", rec)
	}
	lethetest.WantCode(t, h.Checkout("21000000000003", "B3"), schemas.CodeConflict)   // lost items cannot go out
	lethetest.WantCode(t, h.Checkout("21000000000003", "B3b"), schemas.CodeForbidden) // owes above the block
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdPayFine, schemas.PayFine{CommandID: lethetest.CmdID(), FineID: rec.Fines[0].FineID, AmountCents: 3500})
	h.ExpungeAll()
	h.AssertExpunged(txn)
	if it, _ := h.S.Proj.Item("B3"); it.Status != model.ItemLost || it.TxnID != "" {
		t.Fatalf("item = %+v, want lost with no transaction", it)
	}
}

func TestStaffDeclareLostAndDamaged(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B4", 0) // no price: the default replacement price applies
	h.Catalog("B5", 1000)
	h.Register("21000000000004", "Di Desk", "1985-02-03")
	for _, b := range []string{"B4", "B5"} {
		h.MustCheckout("21000000000004", b)
	}
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdDeclareLost, schemas.DeclareLost{CommandID: lethetest.CmdID(), Barcode: "B4"})
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdMarkDamaged, schemas.MarkDamaged{CommandID: lethetest.CmdID(), Barcode: "B5", AmountCents: 700})
	rec := h.Record("21000000000004")
	got := map[string]int64{}
	for _, f := range rec.Fines {
		got[f.Reason] = f.RemainingCents
	}
	if got[schemas.ReasonLost] != 2500 || got[schemas.ReasonDamaged] != 700 || len(rec.Loans) != 0 {
		t.Fatalf("record = %+v, want lost 2500 (default price) and damaged 700", rec)
	}
	for _, f := range rec.Fines {
		lethetest.MustDesk[schemas.Accepted](h, schemas.CmdWaiveFine, schemas.WaiveFine{CommandID: lethetest.CmdID(), FineID: f.FineID})
	}
	h.ExpungeAll()
	if n, _ := h.S.Proj.Counts(); n.OpenTxns != 0 {
		t.Fatalf("open transactions after waivers = %d, want 0", n.OpenTxns)
	}
}

func TestRenewLimits(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B6", 1000)
	h.Register("21000000000006", "Ed Renew", "1970-07-07")
	h.Register("21000000000007", "Fi Other", "1971-08-08")
	h.MustCheckout("21000000000006", "B6")
	renew := func(card string) schemas.Reply {
		return h.Kiosk("k1", schemas.CmdRenew, schemas.Renew{CommandID: lethetest.CmdID(), Card: card, Barcode: "B6"})
	}
	lethetest.WantCode(t, renew("21000000000007"), schemas.CodeForbidden) // not this card's loan
	for i := 1; i <= 2; i++ {
		h.Clock.Advance(day)
		r := renew("21000000000006")
		if !r.OK {
			t.Fatalf("renewal %d = %+v", i, r.Error)
		}
	}
	lethetest.WantCode(t, renew("21000000000006"), schemas.CodeForbidden) // no renewals left
	rec := h.Record("21000000000006")
	if rec.Loans[0].Renewals != 2 || !rec.Loans[0].Due.Equal(h.Clock.Now().Add(21*day)) {
		t.Fatalf("loan = %+v, want 2 renewals due 21 days from the last", rec.Loans[0])
	}
}

func TestOverdueItemCannotBeRenewed(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B7", 1000)
	h.Register("21000000000008", "Gu Over", "1960-06-06")
	h.MustCheckout("21000000000008", "B7")
	h.Clock.Advance(22 * day)
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdRenew, schemas.Renew{CommandID: lethetest.CmdID(), Card: "21000000000008", Barcode: "B7"}), schemas.CodeForbidden)
}

func TestLoanLimitAndFineBlock(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithRules(ledger.Rules{MaxLoans: 2, BlockCents: 500}))
	for _, b := range []string{"L1", "L2", "L3"} {
		h.Catalog(b, 1000)
	}
	h.Register("21000000000010", "Hal Limit", "1981-01-01")
	for _, b := range []string{"L1", "L2"} {
		h.MustCheckout("21000000000010", b)
	}
	lethetest.WantCode(t, h.Checkout("21000000000010", "L3"), schemas.CodeForbidden) // loan limit
	// Return one late enough to owe 500: the block.
	h.Clock.Advance(41 * day) // 20 days late: 20*25 = 500, under the 1000 cap
	if ret := h.Checkin("L1"); ret.FineCents != 500 {
		t.Fatalf("fine = %d, want 500", ret.FineCents)
	}
	if ret := h.Checkin("L2"); ret.FineCents != 500 {
		t.Fatalf("fine = %d, want 500", ret.FineCents)
	}
	r := h.Checkout("21000000000010", "L3")
	lethetest.WantCode(t, r, schemas.CodeForbidden)
	if rec := h.Record("21000000000010"); !rec.Blocked || rec.OwedCents != 1000 {
		t.Fatalf("record = %+v, want blocked owing 1000", rec)
	}
}

func TestLostCardRefusedEverywhereAtOnce(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B8", 1000)
	h.Catalog("B9", 1000)
	id := h.Register("21000000000011", "Ivy Stolen", "1999-09-19")
	h.MustCheckout("21000000000011", "B8")
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdReportCardLost, schemas.ReportCardLost{CommandID: lethetest.CmdID(), Card: "21000000000011"})
	// No waiting: the report's reply came after the projections applied it.
	lethetest.WantCode(t, h.Kiosk("k2", schemas.CmdCheckOut, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: "21000000000011", Barcode: "B9"}), schemas.CodeForbidden)
	lethetest.WantCode(t, h.Kiosk("k3", schemas.CmdRenew, schemas.Renew{CommandID: lethetest.CmdID(), Card: "21000000000011", Barcode: "B8"}), schemas.CodeForbidden)
	lethetest.WantCode(t, h.Kiosk("k4", schemas.CmdPatronInfo, schemas.PatronInfo{Card: "21000000000011"}), schemas.CodeForbidden)
	if status, _ := h.Desk(schemas.CmdReportCardLost, schemas.ReportCardLost{CommandID: lethetest.CmdID(), Card: "21000000000011"}); status != 409 {
		t.Fatalf("second report status = %d, want 409", status)
	}
	// A new card works; the old number can never be issued again.
	if status, _ := h.Desk(schemas.CmdIssueCard, schemas.IssueCard{CommandID: lethetest.CmdID(), PatronID: id, Card: "21000000000011"}); status != 409 {
		t.Fatalf("reissue of a lost number status = %d, want 409", status)
	}
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdIssueCard, schemas.IssueCard{CommandID: lethetest.CmdID(), PatronID: id, Card: "21000000000012"})
	if rec := h.Record("21000000000012"); len(rec.Loans) != 1 {
		t.Fatalf("record with the new card = %+v, want the open loan", rec)
	}
	// Returns need no card: the loan can still come back.
	h.Checkin("B8")
}

func TestTwoKiosksRaceForOneItem(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("RACE", 1000)
	h.Register("21000000000020", "Jo Fast", "1980-01-01")
	h.Register("21000000000021", "Ka Faster", "1980-01-02")
	cards := []string{"21000000000020", "21000000000021"}
	const rounds = 30
	for round := range rounds {
		// Two patrons check the same item out at once: one wins.
		race(t, h, round, schemas.CmdCheckOut, func(i int) any {
			return schemas.CheckOut{CommandID: lethetest.CmdID(), Card: cards[i], Barcode: "RACE"}
		})
		// Two kiosks take the same item back at once: one return ends the loan, the other
		// finds nothing on loan. A second return would end a loan that the first one closed.
		race(t, h, round, schemas.CmdReturn, func(int) any {
			return schemas.Return{CommandID: lethetest.CmdID(), Barcode: "RACE"}
		})
	}
	evs := h.Events()
	for typ, want := range map[string]int{schemas.TypeItemCheckedOut: rounds, schemas.TypeItemReturned: rounds, schemas.TypeTransactionClosed: rounds} {
		if n := lethetest.CountType(evs, typ); n != want {
			t.Errorf("%s events = %d, want %d", typ, n, want)
		}
	}
	h.ExpungeAll()
	assertRebuildEqual(h)
}

// race sends different commands named name from several kiosks at once and fails unless
// exactly one succeeds and the others are refused with conflict.
func race(t *testing.T, h *lethetest.Harness, round int, name string, command func(i int) any) {
	t.Helper()
	var wg sync.WaitGroup
	replies := make([]schemas.Reply, 6)
	for i := range replies {
		wg.Go(func() { replies[i] = h.Kiosk(fmt.Sprintf("k%d", i), name, command(i%2)) })
	}
	wg.Wait()
	ok := 0
	for _, r := range replies {
		if r.OK {
			ok++
		} else if r.Error.Code != schemas.CodeConflict {
			t.Fatalf("round %d: %s loser's error = %+v, want conflict", round, name, r.Error)
		}
	}
	if ok != 1 {
		t.Fatalf("round %d: %d of %d %s commands won, want exactly 1", round, ok, len(replies), name)
	}
}

func TestRetriedCommandAppliedOnce(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B10", 1000)
	h.Register("21000000000030", "Li Retry", "1980-03-03")
	co := schemas.CheckOut{CommandID: lethetest.CmdID(), Card: "21000000000030", Barcode: "B10"}
	first := lethetest.MustKiosk[schemas.CheckOutResult](h, schemas.CmdCheckOut, co)
	// The kiosk lost the reply and sends the same command again, from another kiosk even.
	r := h.Kiosk("k9", schemas.CmdCheckOut, co)
	if !r.OK {
		t.Fatalf("retry = %+v, want the original answer", r.Error)
	}
	again := lethetest.MustKiosk[schemas.CheckOutResult](h, schemas.CmdCheckOut, co)
	if !again.Due.Equal(first.Due) || again.Title != first.Title {
		t.Fatalf("retry answer = %+v, want %+v", again, first)
	}
	// A multi-event command (late return with fine) retried is also applied once.
	h.Clock.Advance(30 * day)
	ret := schemas.Return{CommandID: lethetest.CmdID(), Barcode: "B10"}
	a := lethetest.MustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, ret)
	b := lethetest.MustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, ret)
	if a != b || a.FineCents == 0 {
		t.Fatalf("return answers %+v and %+v, want equal with a fine", a, b)
	}
	evs := h.Events()
	for typ, want := range map[string]int{schemas.TypeItemCheckedOut: 1, schemas.TypeItemReturned: 1, schemas.TypeFineAssessed: 1} {
		if n := lethetest.CountType(evs, typ); n != want {
			t.Errorf("%s events = %d, want %d", typ, n, want)
		}
	}
}

func TestLateReturnFromOfflineKiosk(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B11", 1000)
	h.Register("21000000000040", "Mo Offline", "1980-04-04")
	h.MustCheckout("21000000000040", "B11")
	checkedOut := h.Clock.Now()
	h.Clock.Advance(30 * day)
	// Returned on day 10 (on time), sent on day 30: no fine.
	back := checkedOut.Add(10 * day)
	ret := lethetest.MustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, schemas.Return{CommandID: lethetest.CmdID(), Barcode: "B11", ReturnedAt: &back})
	if ret.FineCents != 0 {
		t.Fatalf("fine = %d, want 0 for an on-time return sent late", ret.FineCents)
	}
	future := h.Clock.Now().Add(time.Hour)
	h.Catalog("B12", 1000)
	h.MustCheckout("21000000000040", "B12")
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdReturn, schemas.Return{CommandID: lethetest.CmdID(), Barcode: "B12", ReturnedAt: &future}), schemas.CodeInvalid)
	before := h.Clock.Now().Add(-time.Hour)
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdReturn, schemas.Return{CommandID: lethetest.CmdID(), Barcode: "B12", ReturnedAt: &before}), schemas.CodeInvalid)
}

// TestLateCheckoutFromOfflineKiosk: a checkout sent late with checked_out_at begins the
// loan then: the event's time, the due date and the fine count from it. Not in the
// future, nor older than a loan period.
func TestLateCheckoutFromOfflineKiosk(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B14", 1000)
	h.Register("21000000000041", "Lu Offline", "1980-04-04")
	out := h.Clock.Now().Add(-10 * day)
	res := lethetest.MustKiosk[schemas.CheckOutResult](h, schemas.CmdCheckOut, schemas.CheckOut{
		CommandID: lethetest.CmdID(), Card: "21000000000041", Barcode: "B14", CheckedOutAt: &out})
	if want := out.Add(21 * day); !res.Due.Equal(want) {
		t.Errorf("due %v, want %v: a loan period from when the item went out", res.Due, want)
	}
	for _, ev := range h.Events() {
		if ev.Type == schemas.TypeItemCheckedOut && !ev.Time.Equal(out) {
			t.Errorf("item.checked_out at %v, want %v", ev.Time, out)
		}
	}
	h.Clock.Advance(13 * day) // two days overdue, counted from the offline checkout
	if ret := h.Checkin("B14"); ret.FineCents != 50 {
		t.Errorf("fine = %d, want 50 (two days)", ret.FineCents)
	}
	future, old := h.Clock.Now().Add(time.Hour), h.Clock.Now().Add(-22*day)
	for _, at := range []*time.Time{&future, &old} {
		lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdCheckOut, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: "21000000000041", Barcode: "B14", CheckedOutAt: at}), schemas.CodeInvalid)
	}
}

func TestStandaloneFeeAndClosePatron(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	id := h.Register("21000000000050", "Ned Fee", "1980-05-05")
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdAssessFee, schemas.AssessFee{CommandID: lethetest.CmdID(), PatronID: id, AmountCents: 300})
	rec := h.Record("21000000000050")
	if len(rec.Fines) != 1 || rec.Fines[0].Reason != schemas.ReasonFee {
		t.Fatalf("record = %+v, want one fee", rec)
	}
	if status, _ := h.Desk(schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: id}); status != 409 {
		t.Fatalf("close with a fee open = %d, want 409", status)
	}
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdPayFine, schemas.PayFine{CommandID: lethetest.CmdID(), FineID: rec.Fines[0].FineID, AmountCents: 300})
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: id})
	h.ExpungeAll()
	if _, err := h.S.Keys.Get(keystore.Profile, id); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("profile key after close: %v, want ErrNotFound", err)
	}
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdPatronInfo, schemas.PatronInfo{Card: "21000000000050"}), schemas.CodeForbidden)
	// The card of a closed account is still known, but there is nobody to report it for.
	if status, body := h.Desk(schemas.CmdReportCardLost, schemas.ReportCardLost{CommandID: lethetest.CmdID(), Card: "21000000000050"}); status != 409 {
		t.Fatalf("report lost of a closed account's card = %d %s, want 409", status, body)
	}
	if n, _ := h.S.Proj.Counts(); n.OpenTxns != 0 || n.Patrons != 0 {
		t.Fatalf("counts = %+v, want no open transactions and no patron rows", n)
	}
}

func TestMinorNeedsCaregiver(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	birth := h.Clock.Now().AddDate(-10, 0, 0).Format(time.DateOnly)
	status, _ := h.Desk(schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: lethetest.CmdID(), HomeBranch: "main",
		Profile: schemas.Profile{Name: "Kid NoCarer", BirthDate: birth}})
	if status != 400 {
		t.Fatalf("minor without caregiver = %d, want 400", status)
	}
	lethetest.MustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: lethetest.CmdID(), HomeBranch: "main",
		Profile: schemas.Profile{Name: "Kid WithCarer", BirthDate: birth, Caregiver: &schemas.Caregiver{Name: "Pat Carer"}}})
}

// TestRetriedOfflineReturnAppliedOnce: an offline kiosk's late return carries an old
// occurrence time; its retry must still be recognised, however old that time is.
func TestRetriedOfflineReturnAppliedOnce(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("B13", 1000)
	h.Catalog("B14", 1000)
	h.Register("21000000000041", "Ola Offline", "1980-04-04")
	h.MustCheckout("21000000000041", "B13")
	back := h.Clock.Now().Add(time.Hour)
	h.Clock.Advance(3 * day)
	ret := schemas.Return{CommandID: lethetest.CmdID(), Barcode: "B13", ReturnedAt: &back}
	first := lethetest.MustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, ret)
	if r := h.Checkout("21000000000041", "B14"); !r.OK { // newer events after the return
		t.Fatal(r.Error)
	}
	again := lethetest.MustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, ret)
	if again != first {
		t.Fatalf("retry = %+v, want %+v", again, first)
	}
	if n := lethetest.CountType(h.Events(), schemas.TypeItemReturned); n != 1 {
		t.Fatalf("returned events = %d, want 1", n)
	}
	// Past the deduplication window the projections forget the command: they grow with
	// open work, not with history.
	h.Clock.Advance(ledger.DedupeWindow + time.Minute)
	h.Checkin("B14")
	if seqs, err := h.S.Proj.CommandSeqs(ret.CommandID); err != nil || seqs != nil {
		t.Fatalf("command after the window = %v, %v; want forgotten", seqs, err)
	}
}

// TestPatronRulesHoldUnderRaces races commands whose rules span subjects: two checkouts
// for one patron past a loan limit of 1, a checkout against closing the account, and two
// registrations with one card. Each appends on a different subject, so the stream's
// expectations alone let both through; the ledger serialises them per patron and card.
func TestPatronRulesHoldUnderRaces(t *testing.T) {
	t.Parallel()
	rules := ledger.Rules{MaxLoans: 1}
	h := lethetest.New(t, lethetest.WithRules(rules))
	const rounds = 15
	both := func(f0, f1 func() schemas.Reply) (schemas.Reply, schemas.Reply) {
		var wg sync.WaitGroup
		var r0, r1 schemas.Reply
		wg.Go(func() { r0 = f0() })
		wg.Go(func() { r1 = f1() })
		wg.Wait()
		return r0, r1
	}
	for round := range rounds {
		// The loan limit: two items at once, at two kiosks.
		card := fmt.Sprintf("210000000010%02d", round)
		h.Register(card, "Li Limit", "1980-01-01")
		a, b := fmt.Sprintf("LA%d", round), fmt.Sprintf("LB%d", round)
		h.Catalog(a, 100)
		h.Catalog(b, 100)
		r0, r1 := both(
			func() schemas.Reply {
				return h.Kiosk("k1", schemas.CmdCheckOut, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: card, Barcode: a})
			},
			func() schemas.Reply {
				return h.Kiosk("k2", schemas.CmdCheckOut, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: card, Barcode: b})
			},
		)
		if r0.OK && r1.OK {
			t.Fatalf("round %d: both checkouts passed a loan limit of 1", round)
		}
		if !r0.OK && !r1.OK {
			t.Fatalf("round %d: both checkouts refused: %+v, %+v", round, r0.Error, r1.Error)
		}

		// A checkout against closing the account.
		card2 := fmt.Sprintf("210000000020%02d", round)
		patron := h.Register(card2, "Cy Closing", "1980-01-01")
		c := fmt.Sprintf("LC%d", round)
		h.Catalog(c, 100)
		out, closed := both(
			func() schemas.Reply {
				return h.Kiosk("k3", schemas.CmdCheckOut, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: card2, Barcode: c})
			},
			func() schemas.Reply {
				status, body := h.Desk(schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: patron})
				return schemas.Reply{OK: status == 200, Result: body}
			},
		)
		if out.OK && closed.OK {
			t.Fatalf("round %d: a checkout and the close of its account both passed", round)
		}

		// Two registrations with one card.
		card3 := fmt.Sprintf("210000000030%02d", round)
		reg := func() schemas.Reply {
			status, body := h.Desk(schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: lethetest.CmdID(), HomeBranch: "main", Card: card3,
				Profile: schemas.Profile{Name: "Du Plicate", BirthDate: "1980-01-01"}})
			return schemas.Reply{OK: status == 200, Result: body}
		}
		if r0, r1 := both(reg, reg); r0.OK == r1.OK {
			t.Fatalf("round %d: two registrations with one card: ok %v and %v, want exactly one", round, r0.OK, r1.OK)
		}
	}
	assertRebuildEqual(h)
}
