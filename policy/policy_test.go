package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones below, whatever the machine has installed
)

// decideCase is one row of the Decide table. clause is the clause the row checks; by is the
// clause the decision must cite when that is another one (a refusal clause checked "the
// other way" is granted by the basis's own clause), and "" means clause.
type decideCase struct {
	name   string
	clause string
	by     string
	req    Request
	want   Scope
}

func location(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

// decideCases is the Decide table. Every row names the clause it checks.
func decideCases(t *testing.T) []decideCase {
	denver := location(t, "America/Denver")
	tokyo := location(t, "Asia/Tokyo")
	now := time.Date(2026, 3, 10, 15, 0, 0, 0, denver)

	adult := Facts{Found: true, BirthDate: "1985-07-04"}
	// The child turns 18 on 2026-06-15.
	child := Facts{Found: true, BirthDate: "2008-06-15", CaregiverName: "Dana  Q. Example"}
	card := Evidence{CardPresented: true}
	photo := Evidence{PhotoIDChecked: true, BirthDate: "1985-07-04"}
	caregiverID := Evidence{PhotoIDChecked: true, CaregiverName: "dana q. EXAMPLE"}
	order := Evidence{OrderRef: "Flathead County 2026-CV-0042"}

	req := func(role Role, b Basis, e Evidence, f Facts) Request {
		return Request{Role: role, Basis: b, Evidence: e, Facts: f, At: now, Location: denver}
	}
	at := func(r Request, t time.Time, loc *time.Location) Request {
		r.At, r.Location = t, loc
		return r
	}
	with := func(e Evidence, f func(*Evidence)) Evidence { f(&e); return e }
	facts := func(x Facts, f func(*Facts)) Facts { f(&x); return x }

	// 23:59 local the day before the 18th birthday: still a minor in Denver, though it is
	// already 05:59 on the birthday in UTC.
	eve := time.Date(2026, 6, 14, 23, 59, 0, 0, denver)
	// 00:00 local on the birthday: 18 in Denver.
	birthday := time.Date(2026, 6, 15, 0, 0, 0, 0, denver)
	// 00:00 local on the birthday in Tokyo: 18 there, though UTC still says 2026-06-14.
	tokyoBirthday := time.Date(2026, 6, 15, 0, 0, 0, 0, tokyo)

	withCard := req(Circulation, CaregiverWithCard, card, child)
	withPhoto := req(Circulation, CaregiverPhotoID, caregiverID, child)

	cases := []decideCase{
		// confidentiality: the default refusals.
		{"zero time refused", ClauseConfidentiality, "", at(req(Circulation, Card, card, adult), time.Time{}, denver), Refused},
		{"unknown role refused", ClauseConfidentiality, "", req("janitor", Card, card, adult), Refused},
		{"empty role refused", ClauseConfidentiality, "", req("", Card, card, adult), Refused},
		{"unknown basis refused", ClauseConfidentiality, "", req(Administrator, "psychic", card, adult), Refused},
		{"no account on card refused", ClauseConfidentiality, "", req(Kiosk, Card, card, Facts{}), Refused},
		{"no account in person refused", ClauseConfidentiality, "", req(Circulation, InPerson, photo, Facts{BirthDate: "1985-07-04"}), Refused},
		{"no account caregiver with card refused", ClauseConfidentiality, "", req(Circulation, CaregiverWithCard, card, facts(child, func(f *Facts) { f.Found = false })), Refused},
		{"no account caregiver photo id refused", ClauseConfidentiality, "", req(Circulation, CaregiverPhotoID, caregiverID, facts(child, func(f *Facts) { f.Found = false })), Refused},
		{"no account court order refused", ClauseConfidentiality, "", req(Administrator, CourtOrder, order, Facts{}), Refused},
		{"account found, time given: granted", ClauseConfidentiality, ClauseCard, req(Circulation, Card, card, adult), CurrentRecord},

		// card
		{"kiosk card granted", ClauseCard, "", req(Kiosk, Card, card, adult), CurrentRecord},
		{"circulation card granted", ClauseCard, "", req(Circulation, Card, card, adult), CurrentRecord},
		{"administrator card granted", ClauseCard, "", req(Administrator, Card, card, adult), CurrentRecord},
		{"card without location granted (UTC)", ClauseCard, "", at(req(Kiosk, Card, card, adult), now, nil), CurrentRecord},
		{"no card presented refused", ClauseCard, "", req(Kiosk, Card, Evidence{}, adult), Refused},
		{"card of closed account refused", ClauseCard, "", req(Kiosk, Card, card, facts(adult, func(f *Facts) { f.AccountClosed = true })), Refused},
		{"child's card of closed account refused", ClauseCard, "", req(Circulation, CaregiverWithCard, card, facts(child, func(f *Facts) { f.AccountClosed = true })), Refused},

		// lost-card
		{"lost card refused at kiosk", ClauseLostCard, "", req(Kiosk, Card, with(card, func(e *Evidence) { e.CardLost = true }), adult), Refused},
		{"lost card refused at desk", ClauseLostCard, "", req(Administrator, Card, with(card, func(e *Evidence) { e.CardLost = true }), adult), Refused},
		{"lost child's card refused", ClauseLostCard, "", req(Circulation, CaregiverWithCard, with(card, func(e *Evidence) { e.CardLost = true }), child), Refused},
		{"card not reported lost granted", ClauseLostCard, ClauseCard, req(Kiosk, Card, card, adult), CurrentRecord},
		{"child's card not reported lost granted", ClauseLostCard, ClauseCaregiverCard, withCard, CurrentRecord},

		// in-person
		{"photo id and birth date granted", ClauseInPerson, "", req(Circulation, InPerson, photo, adult), CurrentRecord},
		{"administrator in person granted", ClauseInPerson, "", req(Administrator, InPerson, photo, adult), CurrentRecord},
		{"birth date with spaces granted", ClauseInPerson, "", req(Circulation, InPerson, with(photo, func(e *Evidence) { e.BirthDate = " 1985-07-04 " }), adult), CurrentRecord},
		{"closed account in person granted", ClauseInPerson, "", req(Circulation, InPerson, photo, facts(adult, func(f *Facts) { f.AccountClosed = true })), CurrentRecord},
		{"photo id not checked refused", ClauseInPerson, "", req(Circulation, InPerson, with(photo, func(e *Evidence) { e.PhotoIDChecked = false }), adult), Refused},
		{"wrong birth date refused", ClauseInPerson, "", req(Circulation, InPerson, with(photo, func(e *Evidence) { e.BirthDate = "1985-07-05" }), adult), Refused},
		{"birth date not entered refused", ClauseInPerson, "", req(Circulation, InPerson, with(photo, func(e *Evidence) { e.BirthDate = "" }), adult), Refused},
		{"malformed birth date refused", ClauseInPerson, "", req(Circulation, InPerson, with(photo, func(e *Evidence) { e.BirthDate = "7/4/1985" }), adult), Refused},
		{"unpadded birth date refused", ClauseInPerson, "", req(Circulation, InPerson, with(photo, func(e *Evidence) { e.BirthDate = "1985-7-4" }), adult), Refused},
		{"record without birth date refused", ClauseInPerson, "", req(Circulation, InPerson, photo, facts(adult, func(f *Facts) { f.BirthDate = "" })), Refused},
		{"card alone is not in person", ClauseInPerson, "", req(Circulation, InPerson, card, adult), Refused},

		// caregiver-minor: the 18th birthday starts at local midnight.
		{"with card 23:59 before 18th birthday in Denver granted", ClauseCaregiverMinor, ClauseCaregiverCard, at(withCard, eve, denver), CurrentRecord},
		{"photo id 23:59 before 18th birthday in Denver granted", ClauseCaregiverMinor, ClauseCaregiverPhotoID, at(withPhoto, eve, denver), Limited},
		{"with card 00:00 on 18th birthday in Denver refused", ClauseCaregiverMinor, "", at(withCard, birthday, denver), Refused},
		{"photo id 00:00 on 18th birthday in Denver refused", ClauseCaregiverMinor, "", at(withPhoto, birthday, denver), Refused},
		{"with card 00:00 on 18th birthday in Tokyo refused", ClauseCaregiverMinor, "", at(withCard, tokyoBirthday, tokyo), Refused},
		{"photo id 00:00 on 18th birthday in Tokyo refused", ClauseCaregiverMinor, "", at(withPhoto, tokyoBirthday, tokyo), Refused},
		{"same instant as Tokyo birthday in Denver granted", ClauseCaregiverMinor, ClauseCaregiverCard, at(withCard, tokyoBirthday, denver), CurrentRecord},
		{"Denver eve without location is UTC, refused", ClauseCaregiverMinor, "", at(withCard, eve, nil), Refused},
		{"with card, adult cardholder refused", ClauseCaregiverMinor, "", req(Circulation, CaregiverWithCard, card, facts(adult, func(f *Facts) { f.CaregiverName = child.CaregiverName })), Refused},
		{"with card, no caregiver listed refused", ClauseCaregiverMinor, "", req(Circulation, CaregiverWithCard, card, facts(child, func(f *Facts) { f.CaregiverName = " " })), Refused},
		{"photo id, no caregiver listed refused", ClauseCaregiverMinor, "", req(Circulation, CaregiverPhotoID, with(caregiverID, func(e *Evidence) { e.CaregiverName = "" }), facts(child, func(f *Facts) { f.CaregiverName = "" })), Refused},
		{"record birth date unusable refused", ClauseCaregiverMinor, "", req(Circulation, CaregiverWithCard, card, facts(child, func(f *Facts) { f.BirthDate = "2008-13-01" })), Refused},
		{"record birth date in the future refused", ClauseCaregiverMinor, "", req(Circulation, CaregiverWithCard, card, facts(child, func(f *Facts) { f.BirthDate = "2030-01-01" })), Refused},

		// caregiver-card
		{"caregiver with card granted", ClauseCaregiverCard, "", withCard, CurrentRecord},
		{"administrator, caregiver with card granted", ClauseCaregiverCard, "", req(Administrator, CaregiverWithCard, card, child), CurrentRecord},
		{"caregiver without card refused", ClauseCaregiverCard, "", req(Circulation, CaregiverWithCard, caregiverID, child), Refused},

		// caregiver-photo-id
		{"caregiver photo id granted limited", ClauseCaregiverPhotoID, "", withPhoto, Limited},
		{"administrator, caregiver photo id granted limited", ClauseCaregiverPhotoID, "", req(Administrator, CaregiverPhotoID, caregiverID, child), Limited},
		{"caregiver with card and photo id still limited", ClauseCaregiverPhotoID, "", req(Circulation, CaregiverPhotoID, with(caregiverID, func(e *Evidence) { e.CardPresented = true }), child), Limited},
		{"caregiver photo id not checked refused", ClauseCaregiverPhotoID, "", req(Circulation, CaregiverPhotoID, with(caregiverID, func(e *Evidence) { e.PhotoIDChecked = false }), child), Refused},
		{"another person's photo id refused", ClauseCaregiverPhotoID, "", req(Circulation, CaregiverPhotoID, with(caregiverID, func(e *Evidence) { e.CaregiverName = "Dana Q. Exampel" }), child), Refused},
		{"photo id without a name refused", ClauseCaregiverPhotoID, "", req(Circulation, CaregiverPhotoID, with(caregiverID, func(e *Evidence) { e.CaregiverName = "  " }), child), Refused},

		// court-order
		{"administrator with court order granted", ClauseCourtOrder, "", req(Administrator, CourtOrder, order, adult), CurrentRecord},
		// A closed account has no current record and its closed history was expunged: the
		// order is answered, on the record, with "nothing to release".
		{"court order for closed account refused: nothing to release", ClauseCourtOrder, "", req(Administrator, CourtOrder, order, facts(adult, func(f *Facts) { f.AccountClosed = true })), Refused},
		{"reference of 200 characters granted", ClauseCourtOrder, "", req(Administrator, CourtOrder, Evidence{OrderRef: strings.Repeat("é", MaxOrderRef)}, adult), CurrentRecord},
		{"circulation staff cannot use court order", ClauseCourtOrder, "", req(Circulation, CourtOrder, order, adult), Refused},
		{"court order without reference refused", ClauseCourtOrder, "", req(Administrator, CourtOrder, Evidence{}, adult), Refused},
		{"court order with blank reference refused", ClauseCourtOrder, "", req(Administrator, CourtOrder, Evidence{OrderRef: " \t "}, adult), Refused},
		{"reference of 201 characters refused", ClauseCourtOrder, "", req(Administrator, CourtOrder, Evidence{OrderRef: strings.Repeat("x", MaxOrderRef+1)}, adult), Refused},
		{"reference with a control character refused", ClauseCourtOrder, "", req(Administrator, CourtOrder, Evidence{OrderRef: "2026-CV\n0042"}, adult), Refused},
		{"reference not UTF-8 refused", ClauseCourtOrder, "", req(Administrator, CourtOrder, Evidence{OrderRef: "2026-\xff"}, adult), Refused},

		// collections
		{"administrator collections export granted", ClauseCollections, "", req(Administrator, Collections, Evidence{}, Facts{}), CollectionsFields},
		{"collections with a patron found granted", ClauseCollections, "", req(Administrator, Collections, Evidence{}, adult), CollectionsFields},
		{"circulation collections refused", ClauseCollections, "", req(Circulation, Collections, Evidence{}, Facts{}), Refused},
	}

	// statistics: auditors read anonymous data only, refused on every basis even with every
	// piece of evidence in order.
	all := Evidence{CardPresented: true, PhotoIDChecked: true, BirthDate: child.BirthDate, CaregiverName: child.CaregiverName, OrderRef: order.OrderRef}
	for _, b := range Bases() {
		cases = append(cases, decideCase{"auditor refused on " + string(b), ClauseStatistics, "", req(Auditor, b, all, child), Refused})
	}
	// A kiosk can only use the card basis; on any other it is refused by that basis's clause.
	kiosk := map[Basis]string{
		InPerson: ClauseInPerson, CaregiverWithCard: ClauseCaregiverCard, CaregiverPhotoID: ClauseCaregiverPhotoID,
		CourtOrder: ClauseCourtOrder, Collections: ClauseCollections,
	}
	for _, b := range Bases() {
		if b == Card {
			continue
		}
		cases = append(cases, decideCase{"kiosk refused on " + string(b), kiosk[b], "", req(Kiosk, b, all, child), Refused})
	}
	return cases
}

func TestDecide(t *testing.T) {
	t.Parallel()
	for _, c := range decideCases(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := Decide(c.req)
			by := c.by
			if by == "" {
				by = c.clause
			}
			if d.Scope != c.want || d.Clause.ID != by {
				t.Errorf("Decide(%+v) = %+v, want scope %s by clause %s", c.req, d, c.want, by)
			}
			if d.Allowed() != (c.want != Refused) {
				t.Errorf("Decide(%+v).Allowed() = %v, want %v", c.req, d.Allowed(), c.want != Refused)
			}
			if d.Reason == "" || d.Clause.Text == "" {
				t.Errorf("Decide(%+v) = %+v, want a reason and the clause's text", c.req, d)
			}
		})
	}
}

// TestDecideAgeBoundary walks the last minutes of a minor's 17th year and the first of the
// 18th in several zones, for both caregiver bases.
func TestDecideAgeBoundary(t *testing.T) {
	t.Parallel()
	child := Facts{Found: true, BirthDate: "2008-06-15", CaregiverName: "Dana Q. Example"}
	for _, zone := range []string{"America/Denver", "Asia/Tokyo", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"} {
		loc := location(t, zone)
		for _, b := range []Basis{CaregiverWithCard, CaregiverPhotoID} {
			for m := -3; m < 3; m++ {
				at := time.Date(2026, 6, 15, 0, 0, 0, 0, loc).Add(time.Duration(m) * time.Minute)
				r := Request{
					Role: Circulation, Basis: b, Facts: child, At: at.UTC(), Location: loc,
					Evidence: Evidence{CardPresented: true, PhotoIDChecked: true, CaregiverName: "Dana Q. Example"},
				}
				d := Decide(r)
				if want := m < 0; d.Allowed() != want {
					t.Errorf("Decide(%s at %s local) = %+v, want allowed %v", b, at.In(loc).Format(time.DateTime), d, want)
				}
			}
		}
	}
}

// TestReasonCarriesNoRequestValue fills every field of the request with markers and
// checks that no decision, on any basis and role, repeats one.
func TestReasonCarriesNoRequestValue(t *testing.T) {
	t.Parallel()
	markers := []string{
		"Zebulon Quux-Marker", "Zebulon", "Quux", "Wilhelmina Frobnitz", "Frobnitz",
		"2011-04-23", "1977-11-05", "ORD-7f3a9c-MARKER", "7f3a9c",
		"role-marker-x", "basis-marker-y", "Europe/Vilnius",
	}
	vilnius := location(t, "Europe/Vilnius")
	roles := []Role{Circulation, Administrator, Auditor, Kiosk, "role-marker-x", ""}
	bases := append(append([]Basis{}, Bases()...), "basis-marker-y", "")
	dates := []string{"2011-04-23", "1977-11-05", "not-a-date-1977-11-05"}
	names := []string{"Zebulon Quux-Marker", "Wilhelmina Frobnitz", ""}
	refs := []string{"ORD-7f3a9c-MARKER", strings.Repeat("7f3a9c", 50), ""}
	times := []time.Time{time.Date(2026, 3, 10, 15, 0, 0, 0, vilnius), {}}
	// Decisions are few and requests many: scan each distinct decision once, naming the
	// first request that produced it.
	seen := map[Decision]string{}
	n := 0
	for _, role := range roles {
		for _, b := range bases {
			for _, at := range times {
				for i := range 1 << 6 {
					bit := func(k int) bool { return i&(1<<k) != 0 }
					for _, ed := range dates {
						for _, en := range names {
							for _, ref := range refs {
								r := Request{
									Role: role, Basis: b, At: at, Location: vilnius,
									Evidence: Evidence{CardPresented: bit(0), CardLost: bit(1), PhotoIDChecked: bit(2), BirthDate: ed, CaregiverName: en, OrderRef: ref},
									Facts:    Facts{Found: bit(3), AccountClosed: bit(4), BirthDate: dates[i%2], CaregiverName: names[(i/2)%2]},
								}
								if bit(5) {
									r.Facts.BirthDate, r.Facts.CaregiverName = ed, en
								}
								n++
								if d := Decide(r); seen[d] == "" {
									seen[d] = fmt.Sprintf("Decide(%+v)", r)
								}
							}
						}
					}
				}
			}
		}
	}
	for _, role := range roles {
		for _, a := range append(append([]Action{}, Actions()...), "action-marker-z") {
			if d := Permit(role, a); seen[d] == "" {
				seen[d] = fmt.Sprintf("Permit(%q, %q)", role, a)
			}
		}
	}
	markers = append(markers, "action-marker-z")
	for d, call := range seen {
		for _, s := range []string{d.Reason, d.Clause.ID, d.Clause.Text} {
			for _, m := range markers {
				if strings.Contains(strings.ToLower(s), strings.ToLower(m)) {
					t.Errorf("%s = %+v, which contains %q from the request", call, d, m)
				}
			}
		}
		if d.Reason == "" || d.Clause.ID == "" {
			t.Errorf("%s = %+v, want a clause and a reason", call, d)
		}
	}
	// The product must reach every decision the Decide table reaches, or it scans too little.
	for _, c := range decideCases(t) {
		if d := Decide(c.req); seen[d] == "" {
			t.Errorf("the markers never produce %+v (row %q): widen the product", d, c.name)
		}
	}
	if n < 10000 {
		t.Fatalf("checked %d requests, want the whole product", n)
	}
}

func TestDecisionAllowed(t *testing.T) {
	t.Parallel()
	for s, want := range map[Scope]bool{CurrentRecord: true, Limited: true, CollectionsFields: true, Refused: false, "": false, "everything": false} {
		if got := (Decision{Scope: s}).Allowed(); got != want {
			t.Errorf("Decision{Scope: %q}.Allowed() = %v, want %v", s, got, want)
		}
	}
}

func TestBasisValid(t *testing.T) {
	t.Parallel()
	for _, b := range Bases() {
		if !b.Valid() {
			t.Errorf("Basis(%q).Valid() = false, want true", b)
		}
	}
	for _, b := range []Basis{"", "Card", "card ", "history"} {
		if b.Valid() {
			t.Errorf("Basis(%q).Valid() = true, want false", b)
		}
	}
}

func TestSameName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		want bool
	}{
		{"Dana Q. Example", "Dana Q. Example", true},
		{"dana  q.\texample", " DANA Q. EXAMPLE ", true},
		{"Dana Example", "Dana Q. Example", false},
		{"", "", false},
		{"  ", "\t", false},
		{"Dana", "", false},
	}
	for _, c := range cases {
		if got := SameName(c.a, c.b); got != c.want {
			t.Errorf("SameName(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
