package desk_test

import (
	"bytes"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// Staff accounts of the policy tests, one per role besides the administrator.
const (
	clerk       = "clerk"   // circulation
	auditorAcct = "auditor" // auditorAcct
)

const day = 24 * time.Hour

// policyLibrary is a small library for the policy tests: an adult with a loan due later
// and an overdue loan, and a ten-year-old with a loan due later, an overdue loan, and a
// damaged-item fine.
type policyLibrary struct {
	adult, child         string // patron ids
	adultCard, childCard string
	childBirth           string
}

func newPolicyLibrary(h *lethetest.Harness) policyLibrary {
	h.T.Helper()
	h.Account(clerk, policy.Circulation)
	h.Account(auditorAcct, policy.Auditor)
	for _, b := range []string{"P1", "P2", "P3", "P4", "P5"} {
		h.Catalog(b, 2000)
	}
	now := h.Clock.Now()
	lib := policyLibrary{adultCard: "21000000000801", childCard: "21000000000802",
		childBirth: now.AddDate(-10, 0, 0).Format(time.DateOnly)}
	lib.adult = h.Register(lib.adultCard, "Ada Adult", "1970-04-04")
	lib.child = h.RegisterMinor(lib.childCard, "Kit Child", lib.childBirth, "Cara Giver")
	h.MustCheckout(lib.adultCard, "P1")
	h.MustCheckout(lib.childCard, "P2")
	h.MustCheckout(lib.childCard, "P5")
	h.Clock.Advance(20 * day)
	h.MustCheckout(lib.adultCard, "P3")
	h.MustCheckout(lib.childCard, "P4")
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdMarkDamaged, schemas.MarkDamaged{CommandID: lethetest.CmdID(), Barcode: "P5", AmountCents: 700})
	h.Clock.Advance(3 * day) // P1 and P2 are overdue now; P3 and P4 are not
	return lib
}

// TestPolicyBases walks each basis of Policy 1002 over HTTP, granted and refused.
func TestPolicyBases(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	lib := newPolicyLibrary(h)
	// A teen who is 17 years and 364 days old today: 18 tomorrow, at midnight in the
	// library's zone.
	now := h.Clock.Now()
	teenBirth := now.AddDate(-18, 0, 1).Format(time.DateOnly)
	teenCard := "21000000000803"
	teen := h.RegisterMinor(teenCard, "Tess Teen", teenBirth, "Gwen Guardian")
	h.Catalog("P6", 1000)
	h.Catalog("P7", 1000)
	h.MustCheckout(teenCard, "P6")
	_ = teen

	type want struct {
		status int
		scope  policy.Scope
		clause string
	}
	cases := []struct {
		clause string
		as     string
		req    map[string]any
		want   want
	}{
		{policy.ClauseCard, clerk, map[string]any{"basis": "card", "card": lib.adultCard}, want{200, policy.CurrentRecord, policy.ClauseCard}},
		{policy.ClauseCard, clerk, map[string]any{"basis": "card", "card": "21000000009999"}, want{403, policy.Refused, ""}},
		{policy.ClauseInPerson, clerk, map[string]any{"basis": "in_person", "name": "ada  ADULT", "birth_date": "1970-04-04", "photo_id_checked": true}, want{200, policy.CurrentRecord, policy.ClauseInPerson}},
		{policy.ClauseInPerson, clerk, map[string]any{"basis": "in_person", "name": "Ada Adult", "birth_date": "1970-04-05", "photo_id_checked": true}, want{403, policy.Refused, policy.ClauseInPerson}},
		{policy.ClauseInPerson, clerk, map[string]any{"basis": "in_person", "name": "Ada Adult", "birth_date": "1970-04-04"}, want{403, policy.Refused, policy.ClauseInPerson}},
		{policy.ClauseCaregiverCard, clerk, map[string]any{"basis": "caregiver_with_card", "card": teenCard}, want{200, policy.CurrentRecord, policy.ClauseCaregiverCard}},
		{policy.ClauseCaregiverMinor, clerk, map[string]any{"basis": "caregiver_with_card", "card": lib.adultCard}, want{403, policy.Refused, ""}},
		{policy.ClauseCaregiverPhotoID, clerk, map[string]any{"basis": "caregiver_photo_id", "name": "Tess Teen", "caregiver_name": "gwen guardian", "photo_id_checked": true}, want{200, policy.Limited, policy.ClauseCaregiverPhotoID}},
		{policy.ClauseCaregiverPhotoID, clerk, map[string]any{"basis": "caregiver_photo_id", "name": "Tess Teen", "caregiver_name": "Someone Else", "photo_id_checked": true}, want{403, policy.Refused, ""}},
		{policy.ClauseCaregiverPhotoID, clerk, map[string]any{"basis": "caregiver_photo_id", "name": "Tess Teen", "caregiver_name": "Gwen Guardian"}, want{403, policy.Refused, ""}},
		{policy.ClauseCourtOrder, lethetest.Admin, map[string]any{"basis": "court_order", "name": "Ada Adult", "order_ref": "DV-26-118 (11th Jud. Dist.)"}, want{200, policy.CurrentRecord, policy.ClauseCourtOrder}},
		{policy.ClauseCourtOrder, clerk, map[string]any{"basis": "court_order", "name": "Ada Adult", "order_ref": "DV-26-118"}, want{403, policy.Refused, policy.ClauseCourtOrder}},
		{policy.ClauseCourtOrder, lethetest.Admin, map[string]any{"basis": "court_order", "name": "Ada Adult"}, want{403, policy.Refused, policy.ClauseCourtOrder}},
	}
	for _, tc := range cases {
		before := h.AccessEntries()
		status, d := h.Lookup(tc.as, tc.req)
		if status != tc.want.status || (status == 200 && d.Scope != tc.want.scope) {
			t.Errorf("clause %s: %s %v = %d scope %q (%+v), want %d %q", tc.clause, tc.as, tc.req, status, d.Scope, d.Error, tc.want.status, tc.want.scope)
			continue
		}
		if tc.want.clause != "" && d.Clause.ID != tc.want.clause {
			t.Errorf("clause %s: decided under %q, want %q", tc.clause, d.Clause.ID, tc.want.clause)
		}
		if status != 200 && (d.Error == nil || d.Error.Code != schemas.CodeForbidden) {
			t.Errorf("clause %s: refusal %+v, want code forbidden", tc.clause, d.Error)
		}
		if n := h.AccessEntries() - before; n != 1 {
			t.Errorf("clause %s: %d access entries, want exactly 1", tc.clause, n)
		}
	}

	// Scopes: the full current record shows every open loan; the caregiver without the
	// card sees the overdue loan of the teen only if it is overdue: P6 is not.
	_, full := h.Lookup(clerk, map[string]any{"basis": "card", "card": lib.adultCard})
	if len(full.Record.Loans) != 2 || full.PatronID != lib.adult {
		t.Errorf("card record = %+v, want both open loans of the adult", full)
	}
	_, limited := h.Lookup(clerk, map[string]any{"basis": "caregiver_photo_id", "name": "Tess Teen", "caregiver_name": "Gwen Guardian", "photo_id_checked": true})
	if len(limited.Record.Loans) != 0 {
		t.Errorf("caregiver without the card sees loans %+v, want none: P6 is on loan and not overdue", limited.Record.Loans)
	}
	// For the child: the overdue loan and the fines, not the loan that is not yet due.
	_, child := h.Lookup(clerk, map[string]any{"basis": "caregiver_photo_id", "name": "Kit Child", "caregiver_name": "Cara Giver", "photo_id_checked": true})
	if child.Scope != policy.Limited || len(child.Record.Loans) != 1 || child.Record.Loans[0].Barcode != "P2" || len(child.Record.Fines) != 1 {
		t.Errorf("caregiver without the card sees %+v, want only the overdue P2 and the damage fine", child.Record)
	}
	_, court := h.Lookup(lethetest.Admin, map[string]any{"basis": "court_order", "card": lib.adultCard, "order_ref": "SUB-2026-7"})
	if court.History != policy.NoHistory {
		t.Errorf("court order reply history = %q, want the statement that closed history does not exist", court.History)
	}

	// 17 years 364 days vs 18: the caregiver's rights end on the birthday, at local midnight.
	if status, d := h.Lookup(clerk, map[string]any{"basis": "caregiver_with_card", "card": teenCard}); status != 200 {
		t.Fatalf("caregiver with the card of a 17-year-old: %d %+v", status, d.Error)
	}
	h.Clock.Set(time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC))
	for _, req := range []map[string]any{
		{"basis": "caregiver_with_card", "card": teenCard},
		{"basis": "caregiver_photo_id", "name": "Tess Teen", "caregiver_name": "Gwen Guardian", "photo_id_checked": true},
	} {
		if status, d := h.Lookup(clerk, req); status != 403 || d.Clause.ID != policy.ClauseCaregiverMinor {
			t.Errorf("caregiver on the 18th birthday (%v): %d under %q, want 403 under %s", req["basis"], status, d.Clause.ID, policy.ClauseCaregiverMinor)
		}
	}
	// The card itself still opens the (now adult) holder's record.
	if status, _ := h.Lookup(clerk, map[string]any{"basis": "card", "card": teenCard}); status != 200 {
		t.Errorf("card of an 18-year-old: %d, want 200", status)
	}

	// Auditors see no patron data on any basis.
	for _, b := range policy.Bases() {
		if b == policy.Collections {
			continue
		}
		status, d := h.Lookup(auditorAcct, map[string]any{"basis": string(b), "card": lib.adultCard, "name": "Ada Adult",
			"birth_date": "1970-04-04", "photo_id_checked": true, "order_ref": "X-1"})
		if status != 403 || d.PatronID != "" || len(d.Record.Loans) != 0 {
			t.Errorf("auditorAcct on basis %s: %d %+v, want 403 and nothing", b, status, d)
		}
	}

	// A lost card opens nothing: at the desk, for a caregiver, and at a kiosk, at once.
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdReportCardLost, schemas.ReportCardLost{CommandID: lethetest.CmdID(), Card: lib.adultCard})
	for _, b := range []string{"card", "caregiver_with_card"} {
		if status, d := h.Lookup(clerk, map[string]any{"basis": b, "card": lib.adultCard}); status != 403 || d.PatronID != "" {
			t.Errorf("lost card on basis %s: %d %+v, want 403", b, status, d)
		}
	}
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdPatronInfo, schemas.PatronInfo{Card: lib.adultCard}), schemas.CodeForbidden)
	if status, _ := h.Desk(schemas.CmdCheckOut, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: lib.adultCard, Barcode: "P7"}); status != 403 {
		t.Errorf("desk checkout with a lost card = %d, want 403", status)
	}
}

// requestSample is a request the route walk sends to a route.
type requestSample struct {
	body   string
	query  string
	as     string // staff account; "" for lethetest.Admin
	status int    // the expected status as that account
}

// TestEveryDisclosingRouteRecordsOnce walks the route table: every route that can
// disclose patron data writes exactly one access entry per request, as the permitted role
// and as a refused one; no other route writes any; and an auditorAcct gets no patron data
// from any route. A route without a sample request fails the test, so a new route cannot
// slip past it.
func TestEveryDisclosingRouteRecordsOnce(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	lib := newPolicyLibrary(h)
	fine := h.Record(lib.childCard).Fines
	if len(fine) == 0 {
		t.Fatal("the child has no fine to pay")
	}
	id := func() string { return `"command_id":"` + lethetest.CmdID() + `"` }
	samples := map[string]requestSample{
		"GET /healthz":             {status: 200},
		"GET /metrics":             {status: 200},
		"GET /favicon.ico":         {status: 204},
		"POST /api/login":          {body: `{"name":"nobody","password":"wrong password!"}`, status: 401},
		"POST /api/logout":         {status: 200},
		"GET /api/session":         {status: 200},
		"GET /api/items":           {status: 200},
		"GET /api/items/{barcode}": {query: "/api/items/P1", status: 200},
		"GET /api/overdue":         {status: 200},
		"GET /api/stats":           {status: 200},
		"GET /api/summary":         {status: 200},
		"GET /api/erasure":         {status: 200},
		"GET /api/cluster":         {status: 200},
		// A single node has no members to remove.
		"POST /api/cluster/nodes/{name}/remove": {query: "/api/cluster/nodes/n2/remove", status: 409},
		"POST /api/sweep":                       {status: 200},
		// The projections are not stopped: a skip is refused, and nothing is appended.
		"POST /api/projections/skip":      {body: `{"seq":1,"reason":"not stopped"}`, status: 409},
		"GET /api/staff":                  {status: 200},
		"POST /api/staff":                 {body: `{"name":"temp","role":"circulation","password":"a long enough password"}`, status: 200},
		"POST /api/staff/{name}/disable":  {query: "/api/staff/temp/disable", status: 200},
		"POST /api/staff/{name}/enable":   {query: "/api/staff/temp/enable", status: 200},
		"POST /api/staff/{name}/password": {query: "/api/staff/temp/password", body: `{"password":"another long password"}`, status: 200},
		"POST /api/patrons/lookup":        {body: `{"basis":"card","card":"` + lib.adultCard + `"}`, as: clerk, status: 200},
		"GET /api/collections":            {query: "/api/collections?format=csv&min_owed_cents=1", status: 200},
		"GET /api/access-log":             {status: 200},
		"POST /api/backup":                {status: 200},
		"POST /api/desk/checkout":         {body: `{` + id() + `,"card":"` + lib.adultCard + `","barcode":"P4"}`, as: clerk, status: 409},
		"POST /api/desk/return":           {body: `{` + id() + `,"barcode":"P3"}`, as: clerk, status: 200},
		"POST /api/desk/renew":            {body: `{` + id() + `,"card":"` + lib.childCard + `","barcode":"P4"}`, as: clerk, status: 403},
		"POST /api/desk/report-card-lost": {body: `{` + id() + `,"card":"21000000000899"}`, as: clerk, status: 404},
		"POST /api/desk/issue-card":       {body: `{` + id() + `,"patron_id":"` + lib.adult + `","card":"21000000000898"}`, as: clerk, status: 200},
		"POST /api/desk/register-patron":  {body: `{` + id() + `,"home_branch":"main","profile":{"name":"New Person","birth_date":"1988-08-08"}}`, as: clerk, status: 200},
		"POST /api/desk/pay-fine":         {body: `{` + id() + `,"fine_id":"` + fine[0].FineID + `","amount_cents":100}`, as: clerk, status: 200},
		"POST /api/desk/waive-fine":       {body: `{` + id() + `,"fine_id":"` + fine[0].FineID + `"}`, status: 200},
		"POST /api/desk/assess-fee":       {body: `{` + id() + `,"patron_id":"` + lib.adult + `","amount_cents":150}`, as: clerk, status: 200},
		"POST /api/desk/declare-lost":     {body: `{` + id() + `,"barcode":"P1"}`, as: clerk, status: 200},
		"POST /api/desk/mark-damaged":     {body: `{` + id() + `,"barcode":"P2"}`, as: clerk, status: 200},
		"POST /api/desk/close-patron":     {body: `{` + id() + `,"patron_id":"` + lib.adult + `"}`, status: 409},
		"POST /api/desk/set-pin":          {body: `{` + id() + `,"patron_id":"` + lib.adult + `","pin":"4821"}`, as: clerk, status: 200},
		"POST /api/desk/update-contact":   {body: `{` + id() + `,"patron_id":"` + lib.adult + `","phone":"555-0123","clear":["address"]}`, as: clerk, status: 200},
		"POST /api/desk/catalog-item":     {body: `{` + id() + `,"barcode":"P9","title":"t","collection":"c","branch":"main","replacement_cents":100}`, status: 200},
		"POST /api/desk/catalog-items":    {body: `{"commands":[{` + id() + `,"barcode":"P10","title":"t","collection":"c","branch":"main","replacement_cents":100}]}`, status: 200},
	}
	markers := []string{lib.adult, lib.child, lib.adultCard, lib.childCard, "Ada Adult", "Kit Child", "Cara Giver", "1970-04-04", lib.childBirth, "406-555"}
	for _, r := range h.S.Desk.Routes() {
		sample, ok := samples[r.Pattern]
		if !ok {
			t.Errorf("route %s has no sample request in this test: add one", r.Pattern)
			continue
		}
		delete(samples, r.Pattern)
		method, path, _ := strings.Cut(r.Pattern, " ")
		if sample.query != "" {
			path = sample.query
		}
		if path == "/{$}" {
			path = "/"
		}
		var body []byte
		if sample.body != "" {
			body = []byte(sample.body)
		}
		as := cmpOr(sample.as, lethetest.Admin)
		if r.Access == desk.Public && r.Pattern != "GET /api/session" && r.Pattern != "POST /api/logout" {
			as = ""
		}

		// As an auditorAcct first: refused or anonymous, never patron data.
		before := h.AccessEntries()
		aStatus, aBody := h.RequestAs(auditorAcct, method, path, body)
		for _, m := range markers {
			if bytes.Contains(aBody, []byte(m)) {
				t.Errorf("%s as auditorAcct (%d) shows patron data %q", r.Pattern, aStatus, m)
			}
		}
		if r.Action != "" && !policy.Permit(policy.Auditor, r.Action).Allowed() && aStatus != http.StatusForbidden {
			t.Errorf("%s as auditorAcct = %d, want 403", r.Pattern, aStatus)
		}
		if r.Pattern == "POST /api/patrons/lookup" && aStatus != http.StatusForbidden {
			t.Errorf("lookup as auditorAcct = %d, want 403", aStatus)
		}
		if r.Pattern == "POST /api/logout" {
			h.Forget(auditorAcct) // that logged the auditorAcct out
		}
		checkEntries(t, h, r.Pattern+" as auditorAcct", before, r.Discloses)

		// Then as the role that may use it.
		before = h.AccessEntries()
		status, got := h.RequestAs(as, method, path, body)
		if status != sample.status {
			t.Errorf("%s as %q = %d %s, want %d", r.Pattern, as, status, got, sample.status)
		}
		if r.Pattern == "POST /api/logout" {
			h.Forget(as)
		}
		checkEntries(t, h, r.Pattern, before, r.Discloses)
	}
	for pattern := range samples {
		t.Errorf("sample for %s, which is not a route", pattern)
	}
	// Nothing any route did put patron data in the log.
	for _, m := range markers {
		if strings.Contains(h.Logs.String(), m) {
			t.Errorf("the log holds patron data %q", m)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func checkEntries(t *testing.T, h *lethetest.Harness, what string, before uint64, discloses bool) {
	t.Helper()
	want := uint64(0)
	if discloses {
		want = 1
	}
	if n := h.AccessEntries() - before; n != want {
		t.Errorf("%s wrote %d access entries, want %d", what, n, want)
	}
}

// TestCollectionsExport: the recovery export lists only accounts over the thresholds, with
// name, contact, items and amounts, and nothing else (no birth date, no card).
func TestCollectionsExport(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, func(c *node.ServiceConfig) { c.Collections = desk.Thresholds{MinOwedCents: 1000, MinDaysOverdue: 30} })
	lib := newPolicyLibrary(h)
	var out struct {
		Accounts []ledger.Debtor `json:"accounts"`
	}
	if status := h.Get("/api/collections?min_owed_cents=1&min_days_overdue=0", &out); status != 200 || len(out.Accounts) != 2 {
		t.Fatalf("collections = %d %+v, want both accounts", status, out)
	}
	for _, d := range out.Accounts {
		if d.Name == "" || len(d.Items) == 0 || d.OwedCents <= 0 {
			t.Errorf("debtor %+v, want a name, items and an amount", d)
		}
		if d.Name == "Kit Child" && (d.Caregiver != "Cara Giver" || d.Phone == "") {
			t.Errorf("minor's row = %+v, want the caregiver to contact", d)
		}
	}
	// The default thresholds (1000 cents, 30 days) leave out small, recent debts.
	if status := h.Get("/api/collections", &out); status != 200 || len(out.Accounts) != 0 {
		t.Errorf("collections at the default thresholds = %d %+v, want none", status, out.Accounts)
	}
	status, body := h.RequestAs(lethetest.Admin, http.MethodGet, "/api/collections?format=csv&min_owed_cents=1", nil)
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if status != 200 || err != nil || len(rows) < 3 || rows[0][0] != "name" {
		t.Fatalf("CSV export = %d %v %q", status, err, body)
	}
	for _, secret := range []string{lib.adultCard, lib.childCard, "1970-04-04", lib.childBirth, lib.adult, lib.child} {
		if bytes.Contains(body, []byte(secret)) {
			t.Errorf("collections export carries %q, which recovery does not need", secret)
		}
	}
	if status, _ := h.RequestAs(clerk, http.MethodGet, "/api/collections", nil); status != 403 {
		t.Errorf("collections as circulation staff = %d, want 403", status)
	}
	// An overdue item returned late is owed as a fine, not listed as overdue.
	if fine := h.Checkin("P1").FineCents; fine == 0 {
		t.Fatal("the late return of P1 assessed no fine")
	}
	if status := h.Get("/api/collections?min_owed_cents=1&min_days_overdue=0", &out); status != 200 {
		t.Fatalf("collections = %d", status)
	}
	var p1 []ledger.DebtItem
	for _, d := range out.Accounts {
		for _, it := range d.Items {
			if it.Status == "overdue" && it.Due.IsZero() {
				t.Errorf("item %s listed overdue without a due date", it.Barcode)
			}
			if it.Barcode == "P1" {
				p1 = append(p1, it)
			}
		}
	}
	if len(p1) != 1 || p1[0].Status != "fine" || p1[0].OwedCents == 0 {
		t.Errorf("P1 after its late return = %+v, want one fine", p1)
	}
}

// TestStaffSessions: expired, forged and cross-site requests are refused; repeated
// failures lock an account out; passwords never reach a log or a reply.
func TestStaffSessions(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, func(c *node.ServiceConfig) { c.Sessions.Idle, c.Sessions.Absolute = 10*time.Minute, time.Hour })
	h.Account(clerk, policy.Circulation)
	tok := h.Session(clerk)
	call := func(token, method, path string, hdr map[string]string) int {
		req, _ := http.NewRequestWithContext(testkit.Context(t), method, h.S.HTTPURL+path, strings.NewReader(`{}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := call(tok, http.MethodGet, "/api/items", nil); s != 200 {
		t.Fatalf("valid session = %d", s)
	}
	if s := call("forged-"+tok[7:], http.MethodGet, "/api/items", nil); s != 401 {
		t.Errorf("forged token = %d, want 401", s)
	}
	if s := call("", http.MethodGet, "/api/items", nil); s != 401 {
		t.Errorf("no session = %d, want 401", s)
	}
	// Cross-site: a page elsewhere cannot make a staff browser post here.
	if s := call(tok, http.MethodPost, "/api/desk/return", map[string]string{"Sec-Fetch-Site": "cross-site"}); s != 403 {
		t.Errorf("cross-site POST = %d, want 403", s)
	}
	if s := call(tok, http.MethodPost, "/api/desk/return", map[string]string{"Origin": "https://evil.example"}); s != 403 {
		t.Errorf("POST from another origin = %d, want 403", s)
	}
	// Idle timeout.
	h.Clock.Advance(11 * time.Minute)
	if s := call(tok, http.MethodGet, "/api/items", nil); s != 401 {
		t.Errorf("idle session = %d, want 401", s)
	}
	// Absolute timeout, however active.
	tok = fresh(h, clerk)
	for range 7 {
		h.Clock.Advance(9 * time.Minute)
		call(tok, http.MethodGet, "/api/items", nil)
	}
	if s := call(tok, http.MethodGet, "/api/items", nil); s != 401 {
		t.Errorf("session past its absolute end = %d, want 401", s)
	}
	// Logout ends the session.
	tok = fresh(h, clerk)
	call(tok, http.MethodPost, "/api/logout", nil)
	if s := call(tok, http.MethodGet, "/api/items", nil); s != 401 {
		t.Errorf("session after logout = %d, want 401", s)
	}
	// Lockout: five wrong passwords, then even the right one is refused for a while.
	login := func(pw string) int {
		raw, _ := json.Marshal(map[string]string{"name": clerk, "password": pw})
		s, _ := h.RequestAs("", http.MethodPost, "/api/login", raw)
		return s
	}
	for i := range 5 {
		if s := login("wrong guess number " + string(rune('a'+i))); s != 401 {
			t.Fatalf("wrong password %d = %d, want 401", i, s)
		}
	}
	if s := login(lethetest.Password); s != 429 {
		t.Errorf("right password while locked out = %d, want 429", s)
	}
	h.Clock.Advance(16 * time.Minute)
	if s := login(lethetest.Password); s != 200 {
		t.Errorf("right password after the lockout = %d, want 200", s)
	}
	// A disabled account's session stops at once.
	tok = fresh(h, clerk)
	if s, b := h.Post("/api/staff/"+clerk+"/disable", nil); s != 200 {
		t.Fatalf("disable = %d %s", s, b)
	}
	if s := call(tok, http.MethodGet, "/api/items", nil); s != 401 {
		t.Errorf("disabled account's session = %d, want 401", s)
	}
	for _, secret := range []string{lethetest.Password, "wrong guess number"} {
		if strings.Contains(h.Logs.String(), secret) || strings.Contains(h.Replies.String(), secret) {
			t.Errorf("a password (%q) reached the log or a reply", secret)
		}
	}
}

// fresh logs an account in anew and returns the new session's token.
func fresh(h *lethetest.Harness, name string) string {
	h.T.Helper()
	h.Forget(name)
	return h.Session(name)
}

// TestSessionCookies: the browser's session cookie is HttpOnly and SameSite=Strict; with
// TLS it is also Secure and carries the __Host- prefix; a cookie session works like a
// token, and the token is only given to clients that ask for it.
func TestSessionCookies(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := testkit.SelfSignedCert(t)
	for _, tc := range []struct {
		name   string
		opt    lethetest.Option
		client *http.Client
		cookie string
		secure bool
	}{
		{"plain HTTP on loopback", func(*node.ServiceConfig) {}, &http.Client{}, "lethe_session", false},
		{"TLS", func(c *node.ServiceConfig) { c.TLSCert, c.TLSKey = certFile, keyFile },
			&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
			"__Host-lethe_session", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := lethetest.New(t, tc.opt)
			if tc.secure != strings.HasPrefix(h.S.HTTPURL, "https://") {
				t.Fatalf("server URL %s", h.S.HTTPURL)
			}
			raw, _ := json.Marshal(map[string]string{"name": lethetest.Admin, "password": lethetest.Password})
			resp, err := tc.client.Post(h.S.HTTPURL+"/api/login", "application/json", bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || bytes.Contains(body, []byte(`"token"`)) {
				t.Fatalf("browser login = %d %s, want 200 without a token in the body", resp.StatusCode, body)
			}
			var c *http.Cookie
			for _, k := range resp.Cookies() {
				if k.Name == tc.cookie {
					c = k
				}
			}
			if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != tc.secure || c.Path != "/" {
				t.Fatalf("session cookie = %+v, want %s, HttpOnly, SameSite=Strict, Secure=%v, Path=/", c, tc.cookie, tc.secure)
			}
			req, _ := http.NewRequest(http.MethodGet, h.S.HTTPURL+"/api/items", nil)
			req.AddCookie(c)
			resp, err = tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("request with the session cookie = %d, want 200", resp.StatusCode)
			}
		})
	}
}

// TestDisclosingRoutesRecordTheirErrors extends the route walk to each disclosing route's
// error paths: a request that fails (malformed, unknown card or patron, a court order on
// a closed account) writes exactly one access entry too, and it says refused, never
// disclosed.
func TestDisclosingRoutesRecordTheirErrors(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	lib := newPolicyLibrary(h)
	// An account closed with its card: nothing open, so close_patron succeeds.
	closedCard := "21000000000897"
	closed := h.Register(closedCard, "Cy Closed", "1975-05-05")
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: closed})
	id := func() string { return `"command_id":"` + lethetest.CmdID() + `"` }
	unknown := `"` + lethetest.CmdID() + `"`
	cases := []struct {
		name, method, path, body string
		as                       string
		status                   int
	}{
		{"lookup, malformed", http.MethodPost, "/api/patrons/lookup", `{"basis":`, clerk, 400},
		{"lookup, unknown field", http.MethodPost, "/api/patrons/lookup", `{"basis":"card","card":"` + lib.adultCard + `","x":1}`, clerk, 400},
		{"lookup, unknown card", http.MethodPost, "/api/patrons/lookup", `{"basis":"card","card":"21000000000890"}`, clerk, 403},
		{"lookup, wrong birth date", http.MethodPost, "/api/patrons/lookup", `{"basis":"in_person","name":"Ada Adult","birth_date":"1970-04-05","photo_id_checked":true}`, clerk, 403},
		{"lookup, court order on a closed account's card", http.MethodPost, "/api/patrons/lookup", `{"basis":"court_order","card":"` + closedCard + `","order_ref":"DV-26-118"}`, lethetest.Admin, 403},
		{"lookup, court order on an unknown name", http.MethodPost, "/api/patrons/lookup", `{"basis":"court_order","name":"Nobody Here","order_ref":"DV-26-119"}`, lethetest.Admin, 403},
		{"checkout, malformed", http.MethodPost, "/api/desk/checkout", `{` + id() + `,"card":1}`, clerk, 400},
		{"checkout, unknown card", http.MethodPost, "/api/desk/checkout", `{` + id() + `,"card":"21000000000891","barcode":"P3"}`, clerk, 404},
		{"checkout, closed account", http.MethodPost, "/api/desk/checkout", `{` + id() + `,"card":"` + closedCard + `","barcode":"P3"}`, clerk, 403},
		{"renew, unknown card", http.MethodPost, "/api/desk/renew", `{` + id() + `,"card":"21000000000892","barcode":"P3"}`, clerk, 404},
		{"report lost, malformed", http.MethodPost, "/api/desk/report-card-lost", `{` + id() + `}`, clerk, 400},
		{"issue card, unknown patron", http.MethodPost, "/api/desk/issue-card", `{` + id() + `,"patron_id":` + unknown + `,"card":"21000000000893"}`, clerk, 404},
		{"pay fine, unknown fine", http.MethodPost, "/api/desk/pay-fine", `{` + id() + `,"fine_id":` + unknown + `,"amount_cents":100}`, clerk, 404},
		{"waive fine, unknown fine", http.MethodPost, "/api/desk/waive-fine", `{` + id() + `,"fine_id":` + unknown + `}`, lethetest.Admin, 404},
		{"assess fee, unknown patron", http.MethodPost, "/api/desk/assess-fee", `{` + id() + `,"patron_id":` + unknown + `,"amount_cents":150}`, clerk, 404},
		{"close patron, with open loans", http.MethodPost, "/api/desk/close-patron", `{` + id() + `,"patron_id":"` + lib.adult + `"}`, lethetest.Admin, 409},
		{"collections, bad threshold", http.MethodGet, "/api/collections?min_owed_cents=x", "", lethetest.Admin, 400},
		{"access log, bad limit", http.MethodGet, "/api/access-log?limit=0", "", lethetest.Admin, 400},
	}
	for _, c := range cases {
		before := h.AccessEntries()
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		status, got := h.RequestAs(c.as, c.method, c.path, body)
		if status != c.status {
			t.Errorf("%s = %d %s, want %d", c.name, status, got, c.status)
		}
		checkEntries(t, h, c.name, before, true)
		if e := h.LastAccessEntry(); e.Outcome != access.Refused {
			t.Errorf("%s recorded outcome %q, want %q", c.name, e.Outcome, access.Refused)
		}
	}
}
