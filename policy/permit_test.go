package policy

import "testing"

// permitCase is one row of the Permit table; clause is the clause the row checks.
type permitCase struct {
	role   Role
	action Action
	clause string
	want   bool
}

// permitCases is the whole role × action table, written out so that a change to the
// permissions shows in this file.
func permitCases() []permitCase {
	allowed := map[Role][]Action{
		Circulation: {CheckOut, CheckIn, Renew, ReportCardLost, IssueCard, RegisterPatron, TakePayment,
			AssessFee, DeclareLost, MarkDamaged, ReadStatistics, ReadItems, SetPIN, UpdateContact},
		Administrator: {CheckOut, CheckIn, Renew, ReportCardLost, IssueCard, RegisterPatron, TakePayment,
			WaiveFine, AssessFee, DeclareLost, MarkDamaged, ClosePatron, CatalogItem, ExportCollections,
			ReadAccessLog, ManageStaff, ReadStatistics, ReadItems, ResolveProjections, ReadErasure, MakeBackup, SetPIN, UpdateContact, ManageCluster},
		Auditor: {ReadStatistics, ReadItems, ReadErasure},
		Kiosk:   {CheckOut, CheckIn, Renew},
	}
	clause := map[Action]string{
		CheckOut: ClauseFunction, CheckIn: ClauseFunction, Renew: ClauseFunction,
		ReportCardLost: ClauseLostCard, IssueCard: ClauseFunction, RegisterPatron: ClauseFunction,
		TakePayment: ClauseFunction, WaiveFine: ClauseFunction, AssessFee: ClauseFunction,
		DeclareLost: ClauseFunction, MarkDamaged: ClauseFunction, ClosePatron: ClauseFunction,
		CatalogItem: ClauseFunction, ExportCollections: ClauseCollections, ReadAccessLog: ClauseEmployees,
		ManageStaff: ClauseEmployees, ReadStatistics: ClauseStatistics, ReadItems: ClauseFunction,
		ResolveProjections: ClauseFunction, ReadErasure: ClauseStatistics, MakeBackup: ClauseFunction, SetPIN: ClauseCard,
		UpdateContact: ClauseFunction, ManageCluster: ClauseFunction,
	}
	var cases []permitCase
	for _, role := range []Role{Circulation, Administrator, Auditor, Kiosk} {
		for _, a := range Actions() {
			ok := false
			for _, x := range allowed[role] {
				ok = ok || x == a
			}
			c := permitCase{role, a, clause[a], ok}
			if !ok && role == Auditor {
				c.clause = ClauseStatistics // auditors read anonymous data only
			}
			cases = append(cases, c)
		}
	}
	for _, a := range []Action{"", "delete_history", "Checkout"} {
		cases = append(cases, permitCase{Administrator, a, ClauseConfidentiality, false})
	}
	for _, r := range []Role{"", "janitor", "Administrator"} {
		cases = append(cases, permitCase{r, CheckOut, ClauseConfidentiality, false})
	}
	return cases
}

func TestPermit(t *testing.T) {
	t.Parallel()
	for _, c := range permitCases() {
		d := Permit(c.role, c.action)
		want := Refused
		if c.want {
			want = CurrentRecord
		}
		if d.Scope != want || d.Clause.ID != c.clause || d.Allowed() != c.want || d.Reason == "" {
			t.Errorf("Permit(%q, %q) = %+v, want scope %s by clause %s", c.role, c.action, d, want, c.clause)
		}
	}
}

func TestActions(t *testing.T) {
	t.Parallel()
	seen := map[Action]bool{}
	for _, a := range Actions() {
		if !a.Valid() || seen[a] {
			t.Errorf("Actions has %q: valid %v, repeated %v", a, a.Valid(), seen[a])
		}
		seen[a] = true
	}
	if len(seen) != 24 {
		t.Errorf("len(Actions()) = %d, want 24", len(seen))
	}
	if Action("delete_history").Valid() {
		t.Error(`Action("delete_history").Valid() = true, want false`)
	}
}

// TestListsAreCopies: the lists of roles, bases and actions cannot be changed by an
// importer, so nothing can add a role, basis or action that then validates.
func TestListsAreCopies(t *testing.T) {
	t.Parallel()
	StaffRoles()[0] = "janitor"
	Bases()[0] = "rumour"
	Actions()[0] = "delete_history"
	if Role("janitor").Valid() || StaffRoles()[0] != Circulation {
		t.Error("StaffRoles() shares storage: a role was added")
	}
	if Basis("rumour").Valid() || Bases()[0] != Card {
		t.Error("Bases() shares storage: a basis was added")
	}
	if Action("delete_history").Valid() || Actions()[0] != CheckOut {
		t.Error("Actions() shares storage: an action was added")
	}
}
