package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// TestRetryBeforeAppliedIsUnavailable: a late return (item.returned and an overdue fine,
// one atomic batch) is on the stream, but the projections have not applied it when the
// caller stops waiting; here no projector runs at all. The first attempt and a retry are
// both told "unavailable, retry with the same command id" (they used to get "internal").
// Once the projections catch up, the retry is answered from the stream, and the return was
// applied once.
func TestRetryBeforeAppliedIsUnavailable(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("U1", 1000)
	h.Register("21000000000700", "Ulla Staged", "1980-01-01")
	h.MustCheckout("21000000000700", "U1")
	h.Clock.Advance(30 * day)
	ret := schemas.Return{CommandID: lethetest.CmdID(), Barcode: "U1"}
	raw, _ := json.Marshal(ret)
	h.Offline(func() {
		n, err := node.Open(context.Background(), h.Cfg.Config)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		if err := n.Proj.CatchUp(context.Background(), n.JS); err != nil {
			t.Fatal(err)
		}
		led, err := ledger.New(n.NC, n.Stream, n.Proj, n.Keys, n.V, ledger.Config{Now: h.Clock.Now, Logger: h.Cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		for _, attempt := range []string{"first attempt", "retry"} {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := led.Execute(ctx, ledger.Station{Kind: "kiosk", Branch: "main", ID: "k1"}, schemas.CmdReturn, raw)
			cancel()
			if code := schemas.CodeOf(err); code != schemas.CodeUnavailable {
				t.Fatalf("%s while unapplied = %v (code %s), want unavailable", attempt, err, code)
			}
		}
	})
	r := lethetest.MustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, ret)
	if r.Barcode != "U1" || r.FineCents == 0 {
		t.Fatalf("retry answer = %+v, want the return of U1 with its fine", r)
	}
	evs := h.Events()
	for typ, want := range map[string]int{schemas.TypeItemReturned: 1, schemas.TypeFineAssessed: 1} {
		if n := lethetest.CountType(evs, typ); n != want {
			t.Errorf("%s events = %d, want %d", typ, n, want)
		}
	}
}

// body is a command's JSON object, so a test can change one field at a time.
type body map[string]any

// with returns a copy of b with field set to v.
func (b body) with(field string, v any) body {
	c := maps.Clone(b)
	c[field] = v
	return c
}

// without returns a copy of b without field.
func (b body) without(field string) body {
	c := maps.Clone(b)
	delete(c, field)
	return c
}

// sendAtStation sends a command the way its station does: kiosk commands over NATS, the others to
// the desk over HTTP. It returns the reply as a kiosk reply, the result's bytes as sent.
func sendAtStation(h *lethetest.Harness, name string, b body) schemas.Reply {
	h.T.Helper()
	if slices.Contains(schemas.KioskCommands(), name) {
		return h.Kiosk("k1", name, b)
	}
	status, raw := h.Desk(name, b)
	if status == http.StatusOK {
		return schemas.Reply{OK: true, Result: raw}
	}
	var r schemas.Reply
	if err := json.Unmarshal(raw, &r); err != nil || r.Error == nil {
		h.T.Fatalf("desk %s = %d %s", name, status, raw)
	}
	if want := schemas.HTTPStatus(r.Error.Code); status != want {
		h.T.Fatalf("desk %s = %d with code %s, want status %d", name, status, r.Error.Code, want)
	}
	return r
}

// wantReused checks that a reply refuses a reused command id, in the words of the
// contract and nothing else.
func wantReused(t *testing.T, what string, r schemas.Reply) {
	t.Helper()
	const msg = "command_id was already used for a different command"
	if r.OK || r.Error == nil || r.Error.Code != schemas.CodeConflict || r.Error.Message != msg {
		t.Errorf("%s = ok %v, error %+v, result %s; want conflict %q", what, r.OK, r.Error, r.Result, msg)
	}
}

// retryCase is one command with a command_id: its body, and bodies that differ from it in
// one field each, by what changed.
type retryCase struct {
	name     string // command name
	label    string // subtest name
	body     body   // without command_id
	variants map[string]body
}

// retryCases prepares, in h, the state each command needs, and returns every command that
// carries a command_id with its variants. Each body would be accepted as a new command;
// each variant either would be too, or would fail on its own merits.
func retryCases(h *lethetest.Harness) []retryCase {
	const (
		cardA, cardB, cardF = "21000000000801", "21000000000802", "21000000000803"
		unknownCard         = "21000000000899"
	)
	a := h.Register(cardA, "Ada Retry", "1980-01-01")
	b := h.Register(cardB, "Bo Retry", "1981-02-02")
	f := h.Register(cardF, "Fay Retry", "1982-03-03")
	for _, bc := range []string{"RC1", "RC2", "RC3", "RR1", "RR2", "RR3", "RN1", "RN2", "RD1", "RD2", "RM1", "RM2"} {
		h.Catalog(bc, 1000)
	}
	for _, bc := range []string{"RR1", "RR2", "RR3", "RN1", "RN2", "RD1", "RD2", "RM1", "RM2"} {
		h.MustCheckout(cardA, bc)
	}
	checkedOut := h.Clock.Now()
	h.Clock.Advance(2 * time.Hour)
	back := checkedOut.Add(time.Hour) // from an offline kiosk, on time: the return closes the loan

	noCard := func(name string) string {
		return lethetest.MustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: lethetest.CmdID(), HomeBranch: "main",
			Profile: schemas.Profile{Name: name, BirthDate: "1990-01-01"}}).PatronID
	}
	newcomer, closing, staying := noCard("Cy Newcomer"), noCard("Di Closing"), noCard("Ed Staying")
	fee := func(cents int64) string {
		lethetest.MustDesk[schemas.Accepted](h, schemas.CmdAssessFee, schemas.AssessFee{CommandID: lethetest.CmdID(), PatronID: f, AmountCents: cents})
		fines := h.Record(cardF).Fines
		return fines[len(fines)-1].FineID
	}
	fine1, fine2, fine3, fine4 := fee(500), fee(400), fee(300), fee(200)

	profile := body{"name": "Gil Register", "email": "gil@example.org", "phone": "555-0100", "birth_date": "1979-04-04"}
	register := body{"home_branch": "main", "card": "21000000000811", "profile": profile}
	contact := body{"patron_id": staying, "email": "ed@new.example.org", "phone": "555-0101", "clear": []string{"address"}}
	return []retryCase{
		{name: schemas.CmdCheckOut, body: body{"card": cardA, "barcode": "RC1"}, variants: map[string]body{
			"another account's card": {"card": cardB, "barcode": "RC1"},
			"an unknown card":        {"card": unknownCard, "barcode": "RC1"},
			"another barcode":        {"card": cardA, "barcode": "RC2"},
		}},
		{name: schemas.CmdCheckOut, label: "checkout_offline", body: body{"card": cardA, "barcode": "RC3", "checked_out_at": back}, variants: map[string]body{
			"another checked_out_at": {"card": cardA, "barcode": "RC3", "checked_out_at": back.Add(time.Minute)},
			"another barcode":        {"card": cardA, "barcode": "RC2", "checked_out_at": back},
		}},
		{name: schemas.CmdReturn, label: "return_offline", body: body{"barcode": "RR1", "returned_at": back}, variants: map[string]body{
			"another barcode":     {"barcode": "RR2", "returned_at": back},
			"another returned_at": {"barcode": "RR1", "returned_at": back.Add(time.Minute)},
			"no returned_at":      {"barcode": "RR1"},
		}},
		{name: schemas.CmdReturn, body: body{"barcode": "RR3"}, variants: map[string]body{
			"another barcode": {"barcode": "RR2"},
			"a returned_at":   {"barcode": "RR3", "returned_at": back},
		}},
		{name: schemas.CmdRenew, body: body{"card": cardA, "barcode": "RN1"}, variants: map[string]body{
			"another account's card": {"card": cardB, "barcode": "RN1"},
			"an unknown card":        {"card": unknownCard, "barcode": "RN1"},
			"another barcode":        {"card": cardA, "barcode": "RN2"},
		}},
		{name: schemas.CmdCatalogItem, body: body{"barcode": "RT1", "title": "Retry", "collection": "fiction", "branch": "main", "replacement_cents": 1500}, variants: map[string]body{
			"another barcode":           {"barcode": "RT2", "title": "Retry", "collection": "fiction", "branch": "main", "replacement_cents": 1500},
			"another title":             {"barcode": "RT1", "title": "Retry 2", "collection": "fiction", "branch": "main", "replacement_cents": 1500},
			"another collection":        {"barcode": "RT1", "title": "Retry", "collection": "poetry", "branch": "main", "replacement_cents": 1500},
			"another branch":            {"barcode": "RT1", "title": "Retry", "collection": "fiction", "branch": "east", "replacement_cents": 1500},
			"another replacement_cents": {"barcode": "RT1", "title": "Retry", "collection": "fiction", "branch": "main", "replacement_cents": 1501},
		}},
		{name: schemas.CmdRegisterPatron, body: register, variants: map[string]body{
			"another home_branch":        register.with("home_branch", "east"),
			"another card":               register.with("card", "21000000000812"),
			"no card":                    register.without("card"),
			"another profile name":       register.with("profile", profile.with("name", "Gil Other")),
			"another profile email":      register.with("profile", profile.with("email", "other@example.org")),
			"no profile phone":           register.with("profile", profile.without("phone")),
			"a profile address":          register.with("profile", profile.with("address", "1 Main St")),
			"another profile birth_date": register.with("profile", profile.with("birth_date", "1979-04-05")),
			"a profile caregiver":        register.with("profile", profile.with("caregiver", body{"name": "Hal Carer"})),
		}},
		{name: schemas.CmdIssueCard, body: body{"patron_id": newcomer, "card": "21000000000821"}, variants: map[string]body{
			"another patron_id": {"patron_id": staying, "card": "21000000000821"},
			"another card":      {"patron_id": newcomer, "card": "21000000000822"},
		}},
		{name: schemas.CmdReportCardLost, body: body{"card": cardB}, variants: map[string]body{
			"another card": {"card": cardA},
		}},
		{name: schemas.CmdDeclareLost, body: body{"barcode": "RD1"}, variants: map[string]body{
			"another barcode": {"barcode": "RD2"},
		}},
		{name: schemas.CmdMarkDamaged, body: body{"barcode": "RM1", "amount_cents": 700}, variants: map[string]body{
			"another barcode":      {"barcode": "RM2", "amount_cents": 700},
			"another amount_cents": {"barcode": "RM1", "amount_cents": 800},
			"no amount_cents":      {"barcode": "RM1"},
		}},
		{name: schemas.CmdAssessFee, body: body{"patron_id": a, "amount_cents": 300}, variants: map[string]body{
			"another patron_id":    {"patron_id": b, "amount_cents": 300},
			"another amount_cents": {"patron_id": a, "amount_cents": 301},
		}},
		{name: schemas.CmdPayFine, body: body{"fine_id": fine1, "amount_cents": 200}, variants: map[string]body{
			"another fine_id":      {"fine_id": fine2, "amount_cents": 200},
			"another amount_cents": {"fine_id": fine1, "amount_cents": 100},
		}},
		{name: schemas.CmdWaiveFine, body: body{"fine_id": fine3}, variants: map[string]body{
			"another fine_id": {"fine_id": fine4},
		}},
		{name: schemas.CmdClosePatron, body: body{"patron_id": closing}, variants: map[string]body{
			"another patron_id": {"patron_id": staying},
		}},
		{name: schemas.CmdSetPIN, body: body{"patron_id": staying, "pin": "482913"}, variants: map[string]body{
			"another patron_id": {"patron_id": newcomer, "pin": "482913"},
			"another pin":       {"patron_id": staying, "pin": "482914"},
		}},
		{name: schemas.CmdUpdateContact, body: contact, variants: map[string]body{
			"another patron_id":   contact.with("patron_id", newcomer),
			"another email":       contact.with("email", "ed@other.example.org"),
			"no phone":            contact.without("phone"),
			"an address":          contact.without("clear").with("address", "1 Main St"),
			"no clear":            contact.without("clear"),
			"another clear":       contact.with("clear", []string{"caregiver_contact"}),
			"one more to clear":   contact.without("phone").with("clear", []string{"address", "phone"}),
			"a caregiver_contact": contact.with("caregiver_contact", "555-0102"),
		}},
	}
}

// TestRetryIsAnsweredOnlyForTheSameCommand: for every command that takes a command_id, a
// retry with the identical body gets the identical reply, and a retry with any one field
// changed, or under another command's name, is refused with conflict and appends nothing.
func TestRetryIsAnsweredOnlyForTheSameCommand(t *testing.T) {
	t.Parallel()
	// No expunger loop: nothing appends behind the test's back, so "nothing appended" is
	// the stream's last sequence standing still.
	h := lethetest.New(t, func(c *node.ServiceConfig) { c.NoExpungeLoop = true })
	cases := retryCases(h)
	covered := map[string]bool{}
	ids := make([]string, len(cases))
	for i, c := range cases {
		covered[c.name] = true
		ids[i] = lethetest.CmdID()
		t.Run(cmp.Or(c.label, c.name), func(t *testing.T) {
			first := sendAtStation(h, c.name, c.body.with("command_id", ids[i]))
			if !first.OK {
				t.Fatalf("first attempt = %+v", first.Error)
			}
			last := h.StreamLast()
			again := sendAtStation(h, c.name, c.body.with("command_id", ids[i]))
			if !again.OK || !bytes.Equal(again.Result, first.Result) {
				t.Errorf("identical retry = %+v %s, want the first reply %s", again.Error, again.Result, first.Result)
			}
			for change, v := range c.variants {
				wantReused(t, "retry with "+change, sendAtStation(h, c.name, v.with("command_id", ids[i])))
			}
			if got := h.StreamLast(); got != last {
				t.Errorf("stream last sequence %d after the retries, want %d: a retry was applied", got, last)
			}
		})
	}
	for _, name := range schemas.Commands() {
		if name != schemas.CmdPatronInfo && !covered[name] {
			t.Errorf("command %s has no retry case", name)
		}
	}
	// Another command's name under an id: every other command, with a body it would take.
	last := h.StreamLast()
	for i, c := range cases {
		for _, other := range cases {
			if other.name == c.name {
				continue
			}
			wantReused(t, fmt.Sprintf("%s under the id of a %s", other.name, c.name), sendAtStation(h, other.name, other.body.with("command_id", ids[i])))
		}
	}
	if got := h.StreamLast(); got != last {
		t.Errorf("stream last sequence %d after commands under reused ids, want %d", got, last)
	}
}

// mustSend sends a command that must succeed and returns its reply.
func mustSend(h *lethetest.Harness, name string, b body) schemas.Reply {
	h.T.Helper()
	r := sendAtStation(h, name, b)
	if !r.OK {
		h.T.Fatalf("%s = %+v, want ok", name, r.Error)
	}
	return r
}

// wantSameReply checks that a retry was answered with the first attempt's reply.
func wantSameReply(t *testing.T, what string, first, again schemas.Reply) {
	t.Helper()
	if !again.OK || !bytes.Equal(again.Result, first.Result) {
		t.Errorf("%s = ok %v, error %+v, result %s; want the first reply %s", what, again.OK, again.Error, again.Result, first.Result)
	}
}

// TestRetryChecksWhatIsLeft pins what the README says a retry is checked against once a
// key is gone: the part the key sealed is not checked, everything else still is. It also
// pins the two checks that are weaker by design: a card is checked as its account, and a
// return without returned_at is checked only against a first attempt that closed the loan.
func TestRetryChecksWhatIsLeft(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	const cardA, cardA2, cardB = "21000000000901", "21000000000902", "21000000000903"
	a := h.Register(cardA, "Ida Left", "1980-01-01")
	b := h.Register(cardB, "Jo Left", "1981-01-01")
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdIssueCard, schemas.IssueCard{CommandID: lethetest.CmdID(), PatronID: a, Card: cardA2})
	for _, bc := range []string{"L1", "L2", "L3"} {
		h.Catalog(bc, 1000)
	}

	checkout := body{"command_id": lethetest.CmdID(), "card": cardA, "barcode": "L1"}
	coFirst := mustSend(h, schemas.CmdCheckOut, checkout)
	renew := body{"command_id": lethetest.CmdID(), "card": cardA, "barcode": "L1"}
	rnFirst := mustSend(h, schemas.CmdRenew, renew)
	wantSameReply(t, "checkout retried with another card of the same account", coFirst, sendAtStation(h, schemas.CmdCheckOut, checkout.with("card", cardA2)))
	wantSameReply(t, "renew retried with another card of the same account", rnFirst, sendAtStation(h, schemas.CmdRenew, renew.with("card", cardA2)))

	fee := body{"command_id": lethetest.CmdID(), "patron_id": a, "amount_cents": 300}
	feeFirst := mustSend(h, schemas.CmdAssessFee, fee)
	fineID := h.Record(cardA).Fines[0].FineID
	mustSend(h, schemas.CmdPayFine, body{"command_id": lethetest.CmdID(), "fine_id": fineID, "amount_cents": 300})

	register := body{"command_id": lethetest.CmdID(), "home_branch": "main", "card": "21000000000911",
		"profile": body{"name": "Kai Gone", "birth_date": "1970-07-07"}}
	regFirst := mustSend(h, schemas.CmdRegisterPatron, register)
	var reg schemas.Registered
	if err := json.Unmarshal(regFirst.Result, &reg); err != nil {
		t.Fatal(err)
	}
	contact := body{"command_id": lethetest.CmdID(), "patron_id": reg.PatronID, "email": "kai@gone.example.org"}
	contactFirst := mustSend(h, schemas.CmdUpdateContact, contact)
	h.Checkin("L1")
	// Loan closed: the renew's card is no longer checked, its barcode is.
	wantSameReply(t, "renew retried with another account's card after the close", rnFirst, sendAtStation(h, schemas.CmdRenew, renew.with("card", cardB)))
	wantReused(t, "renew retried with another barcode after the close", sendAtStation(h, schemas.CmdRenew, renew.with("barcode", "L2")))

	mustSend(h, schemas.CmdClosePatron, body{"command_id": lethetest.CmdID(), "patron_id": reg.PatronID})
	h.ExpungeAll()
	last := h.StreamLast()
	// Every key is destroyed: the checkout's card, the fee's patron, the registration's
	// profile and the contact update's change are not checked, everything else is.
	wantSameReply(t, "checkout retried with another account's card after expunge", coFirst, sendAtStation(h, schemas.CmdCheckOut, checkout.with("card", cardB)))
	wantReused(t, "checkout retried with another barcode after expunge", sendAtStation(h, schemas.CmdCheckOut, checkout.with("barcode", "L2")))
	wantSameReply(t, "fee retried for another patron after expunge", feeFirst, sendAtStation(h, schemas.CmdAssessFee, fee.with("patron_id", b)))
	wantReused(t, "fee retried with another amount after expunge", sendAtStation(h, schemas.CmdAssessFee, fee.with("amount_cents", 301)))
	wantSameReply(t, "registration retried with another profile after close", regFirst,
		sendAtStation(h, schemas.CmdRegisterPatron, register.with("profile", body{"name": "Lou Other", "birth_date": "1971-08-08"})))
	wantReused(t, "registration retried with another home branch after close", sendAtStation(h, schemas.CmdRegisterPatron, register.with("home_branch", "east")))
	wantReused(t, "registration retried with another card after close", sendAtStation(h, schemas.CmdRegisterPatron, register.with("card", "21000000000912")))
	wantReused(t, "registration retried without its card after close", sendAtStation(h, schemas.CmdRegisterPatron, register.without("card")))
	wantSameReply(t, "contact update retried with another change after close", contactFirst,
		sendAtStation(h, schemas.CmdUpdateContact, contact.without("email").with("phone", "555-0109")))
	wantReused(t, "contact update retried for another patron after close", sendAtStation(h, schemas.CmdUpdateContact, contact.with("patron_id", b)))

	// A late return from an offline kiosk that assessed a fine leaves the loan open: a
	// retry without returned_at cannot be told from it. With another returned_at it can.
	h.MustCheckout(cardB, "L3")
	h.Clock.Advance(30 * day)
	late := body{"command_id": lethetest.CmdID(), "barcode": "L3", "returned_at": h.Clock.Now().Add(-day)}
	lateFirst := mustSend(h, schemas.CmdReturn, late)
	wantSameReply(t, "fined return retried without returned_at", lateFirst, sendAtStation(h, schemas.CmdReturn, late.without("returned_at")))
	wantReused(t, "fined return retried with another returned_at", sendAtStation(h, schemas.CmdReturn, late.with("returned_at", h.Clock.Now().Add(-2*day))))
	if got, want := h.StreamLast(), last+2; got != want { // the checkout and the return (its two events, one message)
		t.Errorf("stream last sequence %d, want %d: a retry was applied", got, want)
	}
}

// hiddenCommand is the projections with one command missing from the decisions' views:
// a view behind the first attempt of that command. In a running ledger that happens when
// the first attempt is on the stream and not yet applied; the view can then refuse the
// retry on rows newer than the first attempt's decision (a card reported lost in between).
type hiddenCommand struct {
	model.State
	id string
}

func (s hiddenCommand) View() (model.Reader, func()) {
	r, done := s.State.View()
	return hiddenCommandReader{Reader: r, id: s.id}, done
}

type hiddenCommandReader struct {
	model.Reader
	id string
}

func (r hiddenCommandReader) CommandSeqs(id string) ([]uint64, error) {
	if id == r.id {
		return nil, nil
	}
	return r.Reader.CommandSeqs(id)
}

// TestRetryRefusedOnABehindViewIsChecked: a retry that its decision refuses, on a view
// that does not hold the first attempt yet, is not refused on those rows: the ledger looks
// for the command on the stream first, then answers the same command and refuses another
// one as reused.
func TestRetryRefusedOnABehindViewIsChecked(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("V1", 1000)
	h.Register("21000000000951", "Mia Behind", "1980-01-01")
	checkout := body{"command_id": lethetest.CmdID(), "card": "21000000000951", "barcode": "V1"}
	first := mustSend(h, schemas.CmdCheckOut, checkout)
	led, err := ledger.New(h.S.NC, h.S.Stream, hiddenCommand{State: h.S.Proj, id: checkout["command_id"].(string)},
		h.S.Keys, h.S.V, ledger.Config{Now: h.Clock.Now, Logger: h.Cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	execute := func(b body) schemas.Reply {
		raw, _ := json.Marshal(b)
		res, err := led.Execute(testkit.Context(t), ledger.Station{Kind: "kiosk", Branch: "main", ID: "k1"}, schemas.CmdCheckOut, raw)
		if err != nil {
			return schemas.Reply{Error: schemas.Public(err)}
		}
		out, _ := json.Marshal(res)
		return schemas.Reply{OK: true, Result: out}
	}
	last := h.StreamLast()
	// The view says V1 is on loan and the command unknown: decided alone, a conflict.
	wantSameReply(t, "retry decided on a view without its first attempt", first, execute(checkout))
	// The view has no item V9: decided alone, not found.
	wantReused(t, "other command decided on a view without the first attempt", execute(checkout.with("barcode", "V9")))
	if got := h.StreamLast(); got != last {
		t.Errorf("stream last sequence %d, want %d", got, last)
	}
}
