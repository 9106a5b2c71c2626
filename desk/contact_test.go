package desk_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

const updateContactPath = "/api/desk/update-contact"

// postContact sends update_contact to the desk as a staff account.
func postContact(h *lethetest.Harness, as string, c schemas.UpdateContact) (int, []byte) {
	h.T.Helper()
	body, err := json.Marshal(c)
	if err != nil {
		h.T.Fatal(err)
	}
	return h.RequestAs(as, http.MethodPost, updateContactPath, body)
}

// debtor returns the row of the collections export with the given name: every account
// that owes anything is listed.
func debtor(h *lethetest.Harness, name string) ledger.Debtor {
	h.T.Helper()
	var out struct {
		Accounts []ledger.Debtor `json:"accounts"`
	}
	if status := h.Get("/api/collections?min_owed_cents=1&min_days_overdue=0", &out); status != http.StatusOK {
		h.T.Fatalf("collections = %d", status)
	}
	for _, d := range out.Accounts {
		if d.Name == name {
			return d
		}
	}
	h.T.Fatalf("%s is not in the collections export: %+v", name, out.Accounts)
	return ledger.Debtor{}
}

// errorOf decodes the desk's error body.
func errorOf(t *testing.T, body []byte) schemas.Error {
	t.Helper()
	var r struct {
		Error schemas.Error `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return r.Error
}

// TestUpdateContact: a clerk changes a patron's contact details at the desk, on the access
// record, and the collections export shows them from then on; a clear removes a field; a
// minor's caregiver contact changes, an adult's (no caregiver listed) is refused; a field
// both set and cleared, an unknown patron and a closed one are refused; a retry is
// answered and applied once, a reused command id with another change is refused; an
// auditor is refused, on the access record too; a kiosk cannot send it.
func TestUpdateContact(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Account(clerk, policy.Circulation)
	h.Account(auditorAcct, policy.Auditor)
	const card, minorCard = "21000000000771", "21000000000772"
	adult := h.Register(card, "Una Update", "1971-07-07")
	minor := h.RegisterMinor(minorCard, "Mo Minor", h.Clock.Now().AddDate(-9, 0, 0).Format(time.DateOnly), "Cy Carer")
	for _, id := range []string{adult, minor} { // both owe something: both are in the export
		lethetest.MustDesk[schemas.Accepted](h, schemas.CmdAssessFee, schemas.AssessFee{CommandID: lethetest.CmdID(), PatronID: id, AmountCents: 1500})
	}
	if d := debtor(h, "Una Update"); d.Email != "una.update@example.org" || d.Phone != "" {
		t.Fatalf("before the update: %+v", d)
	}

	// A clerk sets the email and the phone; the access entry names the patron.
	first := schemas.UpdateContact{CommandID: lethetest.CmdID(), PatronID: adult,
		ContactChange: schemas.ContactChange{Email: "una@new.example.org", Phone: "406-555-0161"}}
	before := h.AccessEntries()
	status, reply := postContact(h, clerk, first)
	if status != http.StatusOK {
		t.Fatalf("update-contact = %d %s", status, reply)
	}
	if e := h.LastAccessEntry(); h.AccessEntries() != before+1 || e.Action != string(policy.UpdateContact) || e.Staff != clerk ||
		e.Scope != policy.CurrentRecord || len(e.Patrons) != 1 || e.Patrons[0] != adult {
		t.Errorf("the access record after update-contact: %+v", e)
	}
	if d := debtor(h, "Una Update"); d.Email != "una@new.example.org" || d.Phone != "406-555-0161" || d.Name != "Una Update" {
		t.Errorf("the export after the update: %+v, want the new email and phone, the name as it was", d)
	}

	// A retry is answered with the first reply and appends nothing; the same id with
	// another change is refused.
	last := h.StreamLast()
	if status, again := postContact(h, clerk, first); status != http.StatusOK || !bytes.Equal(again, reply) {
		t.Errorf("retry = %d %s, want %s", status, again, reply)
	}
	reused := first
	reused.Phone = "406-555-0162"
	if status, body := postContact(h, clerk, reused); status != http.StatusConflict {
		t.Errorf("the command id with another phone = %d %s, want 409", status, body)
	}
	if got := h.StreamLast(); got != last {
		t.Errorf("stream last %d after the retries, want %d", got, last)
	}
	if n := lethetest.CountType(h.Events(), schemas.TypePatronContactUpdated); n != 1 {
		t.Errorf("%d contact updates on the stream, want 1", n)
	}

	// A clear removes a field; what it does not name stays.
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdUpdateContact, schemas.UpdateContact{CommandID: lethetest.CmdID(), PatronID: adult,
		ContactChange: schemas.ContactChange{Address: "9 Birch Road", Clear: []string{schemas.ContactPhone}}})
	if d := debtor(h, "Una Update"); d.Phone != "" || d.Email != "una@new.example.org" || d.Address != "9 Birch Road" {
		t.Errorf("the export after clearing the phone: %+v", d)
	}

	// The caregiver's contact of a minor; an adult lists no caregiver.
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdUpdateContact, schemas.UpdateContact{CommandID: lethetest.CmdID(), PatronID: minor,
		ContactChange: schemas.ContactChange{CaregiverContact: "cy.carer@example.org"}})
	if d := debtor(h, "Mo Minor"); d.Caregiver != "Cy Carer" || d.Contact != "cy.carer@example.org" || d.Phone != "406-555-0199" {
		t.Errorf("the minor's row after the caregiver's contact changed: %+v", d)
	}

	for _, tc := range []struct {
		label string
		c     schemas.UpdateContact
		as    string
		code  schemas.Code
		want  string
	}{
		{"caregiver contact of an adult", schemas.UpdateContact{PatronID: adult, ContactChange: schemas.ContactChange{CaregiverContact: "x@example.org"}},
			clerk, schemas.CodeConflict, "lists no caregiver"},
		{"caregiver contact cleared for an adult", schemas.UpdateContact{PatronID: adult, ContactChange: schemas.ContactChange{Clear: []string{schemas.ContactCaregiver}}},
			clerk, schemas.CodeConflict, "lists no caregiver"},
		{"set and cleared", schemas.UpdateContact{PatronID: adult, ContactChange: schemas.ContactChange{Email: "x@example.org", Clear: []string{schemas.ContactEmail}}},
			clerk, schemas.CodeInvalid, "email is both set and cleared"},
		{"nothing to change", schemas.UpdateContact{PatronID: adult}, clerk, schemas.CodeInvalid, "too few properties"},
		{"unknown patron", schemas.UpdateContact{PatronID: lethetest.CmdID(), ContactChange: schemas.ContactChange{Phone: "406-555-0163"}},
			clerk, schemas.CodeNotFound, "no such patron"},
		{"an auditor", schemas.UpdateContact{PatronID: adult, ContactChange: schemas.ContactChange{Phone: "406-555-0164"}},
			auditorAcct, schemas.CodeForbidden, "refused under Policy 1002"},
	} {
		tc.c.CommandID = lethetest.CmdID()
		before, last := h.AccessEntries(), h.StreamLast()
		status, body := postContact(h, tc.as, tc.c)
		if e := errorOf(t, body); status != schemas.HTTPStatus(tc.code) || e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %d %s, want %s containing %q", tc.label, status, body, tc.code, tc.want)
		}
		if e := h.LastAccessEntry(); h.AccessEntries() != before+1 || e.Action != string(policy.UpdateContact) || e.Staff != tc.as || e.Scope != policy.Refused {
			t.Errorf("%s: the access record: %+v, want one refused update_contact entry by %s", tc.label, e, tc.as)
		}
		if got := h.StreamLast(); got != last {
			t.Errorf("%s: the stream moved to %d from %d", tc.label, got, last)
		}
	}

	// A kiosk cannot send it: it is not a kiosk command.
	last = h.StreamLast()
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdUpdateContact, schemas.UpdateContact{CommandID: lethetest.CmdID(), PatronID: adult,
		ContactChange: schemas.ContactChange{Phone: "406-555-0166"}}), schemas.CodeInvalid)
	if got := h.StreamLast(); got != last {
		t.Errorf("a kiosk's update_contact moved the stream to %d from %d", got, last)
	}

	// A closed account's contact details cannot change: its row went with the close.
	fines := h.Record(card).Fines
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdPayFine, schemas.PayFine{CommandID: lethetest.CmdID(), FineID: fines[0].FineID, AmountCents: fines[0].RemainingCents})
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: adult})
	if status, body := postContact(h, clerk, schemas.UpdateContact{CommandID: lethetest.CmdID(), PatronID: adult,
		ContactChange: schemas.ContactChange{Phone: "406-555-0165"}}); status != http.StatusNotFound || errorOf(t, body).Code != schemas.CodeNotFound {
		t.Errorf("update-contact of a closed account = %d %s, want 404", status, body)
	}
}

// TestUpdateContactRace: changes of different fields decided at once on one profile are
// all kept. Each is decided on the profile it read and appended only if nothing came on
// the patron's subject since; the others are decided again on the profile that won.
func TestUpdateContactRace(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	ctx := testkit.Context(t)
	minor := h.RegisterMinor("21000000000781", "Ria Race", h.Clock.Now().AddDate(-12, 0, 0).Format(time.DateOnly), "Rob Race")
	changes := []schemas.ContactChange{
		{Email: "ria@race.example.org"}, {Phone: "406-555-0171"}, {Address: "3 Race Street"},
		{CaregiverContact: "rob@race.example.org"},
	}
	errs := make([]error, len(changes))
	var wg sync.WaitGroup
	for i, c := range changes {
		raw, err := json.Marshal(schemas.UpdateContact{CommandID: lethetest.CmdID(), PatronID: minor, ContactChange: c})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_, errs[i] = h.S.Ledger.Execute(ctx, ledger.Station{Kind: "desk", Branch: "main", ID: "desk"}, schemas.CmdUpdateContact, raw)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("change %+v: %v", changes[i], err)
		}
	}
	p, err := h.S.Proj.Patron(minor)
	if err != nil {
		t.Fatal(err)
	}
	got, err := seal.OpenProfile(h.S.Keys, minor, p.Profile)
	if err != nil {
		t.Fatal(err)
	}
	want := schemas.Profile{Name: "Ria Race", Email: "ria@race.example.org", Phone: "406-555-0171", Address: "3 Race Street",
		BirthDate: got.BirthDate, Caregiver: &schemas.Caregiver{Name: "Rob Race", Contact: "rob@race.example.org"}}
	if got.Email != want.Email || got.Phone != want.Phone || got.Address != want.Address || got.Caregiver == nil || *got.Caregiver != *want.Caregiver {
		t.Errorf("the profile after four changes at once = %+v, want %+v", got, want)
	}
	if n := lethetest.CountType(h.Events(), schemas.TypePatronContactUpdated); n != len(changes) {
		t.Errorf("%d contact updates on the stream, want %d", n, len(changes))
	}
}

// TestContactForgotten: an e-mail address set by update_contact is never in the clear: not
// in the log, not in any reply but the collections export that discloses it, not in the
// stream's events outside their sealed values, not in any file of the data directory; and
// once the account is closed and swept, its profile key is gone and still no file holds
// it. The negative control: an item's title, which the stream holds in the clear, is found
// by the same scan.
func TestContactForgotten(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Account(clerk, policy.Circulation)
	const card, email, phone, title = "21000000000791", "zephyrine.quarrel@forgotten.example", "406-555-0193", "Title UC1"
	needles := map[string][]byte{"email": []byte(email), "phone": []byte(phone)}
	h.Catalog("UC1", 1000)
	id := h.Register(card, "Fay Forgotten", "1965-06-06")
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdAssessFee, schemas.AssessFee{CommandID: lethetest.CmdID(), PatronID: id, AmountCents: 1200})

	if status, body := postContact(h, clerk, schemas.UpdateContact{CommandID: lethetest.CmdID(), PatronID: id,
		ContactChange: schemas.ContactChange{Email: email, Phone: phone}}); status != http.StatusOK {
		t.Fatalf("update-contact = %d %s", status, body)
	}
	// The export discloses them, as it should; every other reply is scanned.
	quiet := h.Replies.String()
	if d := debtor(h, "Fay Forgotten"); d.Email != email || d.Phone != phone {
		t.Fatalf("the export does not show the new contact: %+v", d)
	}
	disclosed := len(h.Replies.String())

	scanEvents := func(when string) {
		t.Helper()
		n := 0
		for _, ev := range h.Events() {
			if found := lethetest.ScanBytes(ev.Data, email, phone); len(found) > 0 {
				t.Errorf("%s: %v in a %s event", when, found, ev.Type)
			}
			if ev.Type == schemas.TypePatronContactUpdated {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d contact updates on the stream, want 1", when, n)
		}
	}
	scanEvents("open")
	if found := lethetest.Scan(t, h.Cfg.Data, needles); len(found) > 0 {
		t.Errorf("the open account's contact details in the data directory's files: %v", found)
	}
	if found := lethetest.Scan(t, h.Cfg.Data, map[string][]byte{"title": []byte(title)}); len(found["title"]) == 0 {
		t.Fatal("negative control: the scan does not find an item's title, which the stream holds in the clear")
	}

	// Closed and swept: the profile key, and with it every sealed copy, is gone.
	fines := h.Record(card).Fines
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdPayFine, schemas.PayFine{CommandID: lethetest.CmdID(), FineID: fines[0].FineID, AmountCents: fines[0].RemainingCents})
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: id})
	h.ExpungeAll()
	if _, err := h.S.Keys.Get(keystore.Profile, id); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("the profile key after close and sweep: %v, want ErrNotFound", err)
	}
	if _, err := h.S.Proj.Patron(id); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("the patron row after close: %v, want ErrNotFound", err)
	}
	scanEvents("closed")
	if found := lethetest.Scan(t, h.Cfg.Data, needles); len(found) > 0 {
		t.Errorf("the closed account's contact details in the data directory's files: %v", found)
	}
	if found := lethetest.ScanBytes([]byte(h.Logs.String()), email, phone); len(found) > 0 {
		t.Errorf("%v in the log", found)
	}
	if found := lethetest.ScanBytes([]byte(quiet+h.Replies.String()[disclosed:]), email, phone); len(found) > 0 {
		t.Errorf("%v in a reply other than the collections export", found)
	}
}
