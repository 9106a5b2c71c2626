package web_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// The planted patrons of the desk tests: their names, cards, contacts and birth dates are
// markers no page may show to anyone without a basis.
const (
	adaCard   = "21000000000501"
	adaName   = "Ada Quillfeather"
	adaBirth  = "1980-05-17"
	adaEmail  = "ada.quillfeather@example.org"
	kitCard   = "21000000000502"
	kitName   = "Kit Quillfeather"
	kitBirth  = "2016-03-09"
	kitCarer  = "Morgan Quillfeather"
	leeCard   = "21000000000503"
	leeName   = "Lee Marchbanks"
	leeBirth  = "1991-01-30"
	kitPhone  = "406-555-0199"
	carerCont = "406-555-0142"
)

func markers(ids ...string) []string {
	return append([]string{adaCard, adaName, adaBirth, adaEmail, kitCard, kitName, kitBirth, kitCarer, kitPhone, carerCont,
		leeCard, leeName, leeBirth}, ids...)
}

// library is a Lethe with two patrons and a history: Ada's and Kit's loans a month old
// (overdue now), Kit's new one (not due), and staff accounts of each role.
type library struct {
	h          *lethetest.Harness
	ada, kit   string // patron ids
	lateTxn    string // Ada's overdue loan of B5
	kitOverdue string
}

func newLibrary(t *testing.T) *library {
	h := lethetest.New(t)
	for _, b := range []string{"B1", "B2", "B3", "B4", "B5"} {
		h.Catalog(b, 2000)
	}
	lib := &library{h: h}
	lib.ada = h.Register(adaCard, adaName, adaBirth)
	lib.kit = h.RegisterMinor(kitCard, kitName, kitBirth, kitCarer)
	h.MustCheckout(adaCard, "B5")
	h.MustCheckout(kitCard, "B3")
	lib.lateTxn = h.TxnOf("B5")
	h.Clock.Advance(25 * 24 * time.Hour)
	// Five days of circulation by a third patron, enough a day (5 and more) that the
	// auditor's counts are not suppressed; then today: 21-day loans are 9 days late.
	h.Register(leeCard, leeName, leeBirth)
	for i := range 6 {
		h.Catalog("H"+strconv.Itoa(i), 1500)
	}
	for day := range 5 {
		for i := range 5 + day%2 {
			b := "H" + strconv.Itoa(i)
			h.MustCheckout(leeCard, b)
			h.Checkin(b)
		}
		// Forgotten the same day, as a running server does.
		h.ExpungeAll()
		if err := h.S.Expunger.Sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
		h.Clock.Advance(24 * time.Hour)
	}
	h.MustCheckout(kitCard, "B4")
	h.Account("clerk", policy.Circulation)
	h.Account("reader", policy.Auditor)
	return lib
}

// TestDeskDay is a day at the desk in a real browser: a clerk scans a card, checks two
// items out, checks one in at the return desk, renews the other, checks in a late one,
// takes a partial and a full payment (the transaction is then expunged and leaves the
// screen), answers a caregiver without the card with the limited view, and signs out;
// an administrator runs the collections export and reads the access record with those
// lookups on it; an auditor sees the charts and no patron data anywhere in the page.
func TestDeskDay(t *testing.T) {
	t.Parallel()
	lib := newLibrary(t)
	h := lib.h
	b := newBrowser(t, h.S.HTTPURL, 1100)

	b.signIn("clerk")
	if loc := evalAs[string](b, `location.pathname`); loc != "/desk" {
		t.Fatalf("a clerk lands on %s, want /desk", loc)
	}
	if f := b.focused(); f != "card" {
		t.Fatalf("the desk opens with the keyboard on %q, want the card field", f)
	}

	// Scan a card: the record, on the card basis; the keyboard moves to the barcode.
	b.submit("scan Ada's card", b.typeKeys(adaCard+pressEnter))
	if txt := b.text(); !strings.Contains(txt, "Patron record") || !strings.Contains(txt, "card presented") || !strings.Contains(txt, "B5") {
		t.Fatalf("after scanning a card the page shows:\n%s", txt)
	}
	if f := b.focused(); f != "barcode" {
		t.Fatalf("after a scan the keyboard is on %q, want the barcode field", f)
	}
	for _, item := range []string{"B1", "B2"} {
		b.submit("check out "+item, b.typeKeys(item+pressEnter))
		b.wantFlash("check out "+item, "Checked out")
		if f := b.focused(); f != "barcode" {
			t.Fatalf("after a checkout the keyboard is on %q, want the barcode field", f)
		}
	}
	if n := evalAs[int](b, `document.querySelectorAll('table[aria-labelledby=loans-h] tbody tr').length`); n != 3 {
		t.Fatalf("Ada's record shows %d loans, want 3 (B1, B2, B5)", n)
	}
	// A refusal is the ledger's code in plain words.
	b.submit("check out an item on loan", b.typeKeys("B1"+pressEnter))
	b.wantFlash("check out an item on loan", "conflict")
	b.wantFlash("check out an item on loan", "Not possible in the item's or the account's current state")
	b.screenshot("desk.png")

	// The return desk: B1 back, no patron needed.
	b.do("scan at the return desk", chromedp.Focus(chromedp.ID("return")), b.typeKeys("B1"))
	b.submit("check in B1", b.typeKeys(pressEnter))
	b.wantFlash("check in B1", "Checked in")
	if strings.Contains(b.text(), "Patron record") {
		t.Errorf("the return desk shows a patron record after a check-in without a patron")
	}

	// Back to Ada: renew B2, check in the late B5 from her record.
	b.navigate("/desk")
	b.submit("scan Ada's card again", b.typeKeys(adaCard+pressEnter))
	b.submit("renew B2", chromedp.Click(chromedp.CSS(`tr[data-barcode=B2] button[aria-label^="Renew"]`)))
	b.wantFlash("renew B2", "Renewed")
	// Declaring an item lost asks first; answered no, nothing is sent.
	b.do("decline to declare B5 lost", chromedp.Evaluate[chromedp.Void](`window.confirm = () => false; window.__stay = true`),
		chromedp.Click(chromedp.CSS(`tr[data-barcode=B5] button[aria-label^="Declare"]`)))
	if !evalAs[bool](b, `window.__stay === true`) || !strings.Contains(b.flash(), "Renewed") {
		t.Fatalf("a declined confirmation sent the form: %s", b.flash())
	}
	b.submit("check in B5", chromedp.Click(chromedp.CSS(`tr[data-barcode=B5] button[aria-label^="Check in"]`)))
	b.wantFlash("check in B5", "returned late: a fine of $2.25")
	for _, ev := range h.Events() {
		if ev.Type == schemas.TypeItemDeclaredLost {
			t.Fatalf("a declined confirmation declared an item lost")
		}
	}
	if !strings.Contains(b.text(), "Patron record") {
		t.Fatalf("a check-in from the record leaves the record: %s", b.text())
	}

	// Pay part of the fine, then the rest: the receipt names no patron; the settled fine
	// closes its transaction, which is expunged and leaves the screen.
	b.do("type a partial payment", chromedp.SetValue(chromedp.CSS(`input.money`), "1.00"), chromedp.Focus(chromedp.CSS(`input.money`)))
	b.submit("pay $1.00", b.typeKeys(pressEnter))
	b.wantFlash("pay $1.00", "Payment taken")
	receipt := evalAs[string](b, `document.getElementById('receipt').innerText`)
	if !strings.Contains(receipt, "$1.00") || !strings.Contains(receipt, "$1.25") {
		t.Errorf("the receipt of a partial payment says:\n%s", receipt)
	}
	for _, m := range markers(lib.ada) {
		if strings.Contains(receipt, m) {
			t.Errorf("the receipt names %q", m)
		}
	}
	if got := evalAs[string](b, `document.querySelector('input.money').value`); got != "1.25" {
		t.Errorf("after a partial payment the amount offered is %q, want the remaining 1.25", got)
	}
	b.screenshot("receipt.png")
	b.do("focus the payment", chromedp.Focus(chromedp.CSS(`input.money`)))
	b.submit("pay the rest", b.typeKeys(pressEnter))
	b.wantFlash("pay the rest", "Payment taken")
	if n := evalAs[int](b, `document.querySelectorAll('table[aria-labelledby=fines-h] tbody tr').length`); n != 0 {
		t.Errorf("the settled fine is still on the screen (%d rows)", n)
	}
	h.ExpungeAll()
	h.AssertExpunged(lib.lateTxn)

	// A caregiver without the card: the limited view, overdue only.
	b.navigate("/desk")
	b.do("choose the caregiver basis", chromedp.SetValue(chromedp.ID("basis"), "caregiver_photo_id"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('basis').dispatchEvent(new Event('change'))`),
		chromedp.SendKeys(chromedp.ID("lname"), kitName), chromedp.Click(chromedp.ID("photo")),
		chromedp.SendKeys(chromedp.ID("cgname"), kitCarer))
	b.submit("look up as a caregiver", chromedp.Click(chromedp.ID("lookup")))
	txt := b.text()
	if !strings.Contains(txt, "Limited view") || !strings.Contains(txt, "B3") || strings.Contains(txt, "B4") {
		t.Fatalf("a caregiver without the card sees (want B3, overdue, and not B4, not yet due):\n%s", txt)
	}
	b.screenshot("lookup-limited.png")
	b.checkConsole()
	b.signOut()
	// Back shows nothing: no page was cached (Chromium refuses to show the POST's answer
	// again, net::ERR_CACHE_MISS, which is the point).
	if err := chromedp.Do(b.ctx, chromedp.NavigateBack()); err != nil && !strings.Contains(err.Error(), "ERR_CACHE_MISS") {
		t.Fatalf("go back: %v", err)
	}
	if strings.Contains(b.text(), "Patron record") || strings.Contains(b.text(), "B5") {
		t.Errorf("after signing out, Back shows a patron record")
	}

	// An administrator: the collections export, then the access record with the clerk's
	// lookups on it.
	b.signIn(lethetest.Admin)
	b.navigate("/lists/collections")
	b.do("set a threshold", chromedp.SendKeys(chromedp.ID("min_days"), "1"))
	b.submit("run the export", chromedp.Click(chromedp.CSS(`button[value=html]`)))
	if txt := b.text(); !strings.Contains(txt, kitName) || !strings.Contains(txt, carerCont) {
		t.Errorf("the collections export does not list Kit (9 days overdue) with the caregiver's contact:\n%s", txt)
	}
	b.navigate("/lists/access")
	// No dates: the access record seeks its stream by the stream's own clock, which the
	// test's clock (a month ahead) does not move.
	b.do("filter by the clerk", chromedp.SendKeys(chromedp.ID("a-staff"), "clerk"),
		chromedp.SetValue(chromedp.ID("a-from"), ""), chromedp.SetValue(chromedp.ID("a-to"), ""))
	b.submit("read the access record", chromedp.Click(chromedp.CSS(`form.grid button`)))
	var want []access.Listed
	if status := h.Get("/api/access-log?staff=clerk", &want); status != 200 {
		t.Fatalf("access log = %d", status)
	}
	lookups := 0
	for _, e := range want {
		if e.Action == "lookup" {
			lookups++
		}
	}
	got := evalAs[int](b, `[...document.querySelectorAll('table.access tbody tr td:nth-child(3)')].filter(td => td.innerText === 'lookup').length`)
	if lookups < 6 || got != lookups {
		t.Logf("the access record page (from %q to %q, staff %q):\n%s", evalAs[string](b, `document.getElementById('a-from').value`),
			evalAs[string](b, `document.getElementById('a-to').value`), evalAs[string](b, `document.getElementById('a-staff').value`), b.text())
		for _, e := range want {
			t.Logf("entry %s %s %s", e.Time, e.Staff, e.Action)
		}
		t.Errorf("the access record page shows %d of the clerk's lookups, the API %d (want at least 6: every scan and every record shown again)", got, lookups)
	}
	b.screenshot("access-record.png")
	b.checkConsole()
	b.signOut()

	// An auditor: charts and counts, and no patron data anywhere in the page.
	b.signIn("reader")
	if loc := evalAs[string](b, `location.pathname`); loc != "/audit" {
		t.Fatalf("an auditor lands on %s, want /audit", loc)
	}
	testkit.WaitFor(t, "the charts drawn", func() bool {
		return evalAs[bool](b, `[...document.querySelectorAll('img.chart')].every(i => i.complete && i.naturalWidth > 0)`)
	})
	if n := evalAs[int](b, `document.querySelectorAll('img.chart').length`); n != 2 {
		t.Errorf("the auditor's view has %d charts, want 2", n)
	}
	if txt := b.text(); !strings.Contains(txt, "By day") || !strings.Contains(txt, "Erasure window") {
		t.Errorf("the auditor's view shows:\n%s", txt)
	}
	dom := b.dom()
	for _, m := range markers(lib.ada, lib.kit) {
		if strings.Contains(dom, m) {
			t.Errorf("the auditor's page holds patron data %q", m)
		}
	}
	b.screenshot("audit.png")
	b.checkConsole()
	b.navigate("/desk") // answered 403, which the console reports
	if !strings.Contains(b.text(), "cannot open this page") {
		t.Errorf("an auditor opened the desk: %s", b.text())
	}
	for _, m := range markers(lib.ada, lib.kit) {
		if strings.Contains(h.Logs.String(), m) {
			t.Errorf("the server log holds patron data %q", m)
		}
	}
}

// TestSessionEndsOnScreen: when the server ends a session, the open page clears what it
// showed and says so, without a click.
func TestSessionEndsOnScreen(t *testing.T) {
	t.Parallel()
	lib := newLibrary(t)
	b := newBrowser(t, lib.h.S.HTTPURL, 1000)
	b.signIn("clerk")
	b.submit("scan a card", b.typeKeys(adaCard+pressEnter))
	if !strings.Contains(b.text(), "B5") {
		t.Fatalf("the record is not shown: %s", b.text())
	}
	// An administrator disables the account: its sessions end on the server.
	if status, body := lib.h.Post("/api/staff/clerk/disable", nil); status != 200 {
		t.Fatalf("disable = %d %s", status, body)
	}
	testkit.WaitForWithin(t, "the page to clear", 15*time.Second, func() bool {
		return evalAs[bool](b, `!document.getElementById('ended').hidden`)
	})
	if txt := b.text(); strings.Contains(txt, "B5") || strings.Contains(txt, "Patron record") {
		t.Errorf("after the session ended the page still shows:\n%s", txt)
	}
	b.checkConsole()
}

// TestKeyboardAndAccessibility: the check-out flow with the keyboard alone, every control
// named in Chromium's accessibility tree on every page, focus in document order with no
// positive tabindex, and nothing wider than an 800 px window.
func TestKeyboardAndAccessibility(t *testing.T) {
	t.Parallel()
	lib := newLibrary(t)
	b := newBrowser(t, lib.h.S.HTTPURL, 800)
	b.signIn(lethetest.Admin)

	// Keyboard alone: the card field has the focus; a scan and Enter; the barcode field
	// has it; a scan and Enter; done.
	if f := b.focused(); f != "card" {
		t.Fatalf("keyboard starts on %q, want card", f)
	}
	b.submit("scan", b.typeKeys(adaCard+pressEnter))
	b.submit("check out", b.typeKeys("B1"+pressEnter))
	b.wantFlash("keyboard checkout", "Checked out")

	// Tab walks the controls in document order.
	order := evalAs[[]string](b, `[...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, summary')]
	  .filter(e => !e.disabled && e.offsetParent !== null).map(e => e.id || e.textContent.trim() || e.name)`)
	if n := evalAs[int](b, `document.querySelectorAll('[tabindex]:not([tabindex="-1"]):not([tabindex="0"])').length`); n != 0 {
		t.Errorf("%d elements with a positive tabindex: focus order would not be document order", n)
	}
	b.do("focus the first control", chromedp.Focus(chromedp.CSS("a.skip")))
	walked := []string{order[0]}
	for range min(len(order), 16) - 1 {
		b.do("tab", b.typeKeys(kbTab))
		walked = append(walked, evalAs[string](b, `(e => e.id || e.textContent.trim() || e.name)(document.activeElement)`))
	}
	for i, w := range walked {
		if w != order[i] {
			t.Errorf("tab stop %d is %q, want %q (document order %v)", i+1, w, order[i], order[:len(walked)])
			break
		}
	}

	pages := []string{"/desk", "/patrons/new", "/items", "/items/import", "/lists/overdue", "/lists/collections",
		"/lists/access", "/staff", "/audit"}
	for _, p := range pages {
		b.navigate(p)
		for _, problem := range b.axProblems() {
			t.Errorf("%s: %s", p, problem)
		}
		if w := evalAs[int](b, `document.documentElement.scrollWidth`); w > 800 {
			t.Errorf("%s is %d px wide in an 800 px window", p, w)
		}
	}
	// The record, with its forms.
	b.navigate("/desk")
	b.submit("scan", b.typeKeys(adaCard+pressEnter))
	b.do("open the account controls", chromedp.Click(chromedp.CSS("details.account summary")))
	for _, problem := range b.axProblems() {
		t.Errorf("the record: %s", problem)
	}
	if w := evalAs[int](b, `document.documentElement.scrollWidth`); w > 800 {
		t.Errorf("the record is %d px wide in an 800 px window", w)
	}
	b.checkConsole()
}

const kbTab = "\t"

// TestPatronAccount: an administrator registers a minor with a caregiver in the browser,
// opens the new record, sets a PIN, updates the caregiver's contact (the collections
// export then shows it), reports the card lost and issues a new one, and closes the
// account after a confirmation that says what will be forgotten.
func TestPatronAccount(t *testing.T) {
	t.Parallel()
	lib := newLibrary(t)
	h := lib.h
	b := newBrowser(t, h.S.HTTPURL, 1000)
	b.signIn(lethetest.Admin)
	b.navigate("/patrons/new")
	const (
		card    = "21000000000777"
		newCard = "21000000000778"
		name    = "Rowan Thistlewood"
		carer   = "Sam Thistlewood"
	)
	b.do("fill the registration", chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SetValue(chromedp.ID("birth_date"), "2015-06-01"),
		chromedp.SendKeys(chromedp.ID("caregiver_name"), carer), chromedp.SendKeys(chromedp.ID("caregiver_contact"), "sam@example.org"),
		chromedp.SendKeys(chromedp.ID("card"), card))
	b.submit("register", chromedp.Click(chromedp.CSS(`form.grid button[type=submit]`)))
	b.wantFlash("register", "Patron registered")
	b.submit("open the record", chromedp.Click(chromedp.CSS(`form.card button`)))
	if !strings.Contains(b.text(), "Patron record") {
		t.Fatalf("the new patron's record is not shown: %s", b.text())
	}
	b.do("open the account controls", chromedp.Click(chromedp.CSS("details.account summary")))
	b.do("type a PIN", chromedp.SendKeys(chromedp.ID("pin"), "4321"))
	b.submit("set the PIN", chromedp.Submit(chromedp.ID("pin")))
	b.wantFlash("set the PIN", "PIN set")

	b.do("open the account controls", chromedp.Click(chromedp.CSS("details.account summary")))
	b.do("type the new contact", chromedp.SendKeys(chromedp.ID("c-care"), "sam.new@example.org"))
	b.submit("update the contact", chromedp.Submit(chromedp.ID("c-care")))
	b.wantFlash("update the contact", "Contact details updated")
	// The collections export reads the profile: with a fee owed, the account is listed
	// with the caregiver's new contact.
	_, rec := h.Lookup(lethetest.Admin, map[string]any{"basis": "card", "card": card})
	fee, _ := json.Marshal(map[string]any{"command_id": lethetest.CmdID(), "patron_id": rec.PatronID, "amount_cents": 1500})
	if status, body := h.Post("/api/desk/assess-fee", fee); status != 200 {
		t.Fatalf("assess a fee = %d %s", status, body)
	}
	if status, body := h.RequestAs(lethetest.Admin, "GET", "/api/collections?min_owed_cents=1000", nil); status != 200 ||
		!strings.Contains(string(body), "sam.new@example.org") || strings.Contains(string(body), "sam@example.org") {
		t.Errorf("the collections export after the update = %d %s, want the new caregiver contact only", status, body)
	}
	b.do("open the account controls", chromedp.Click(chromedp.CSS("details.account summary")))
	b.do("accept the confirmation", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.submit("report the card lost", chromedp.Click(chromedp.CSS(`input[value=report_card_lost] ~ button`)))
	b.wantFlash("report the card lost", "Card reported lost")
	if f := b.focused(); f != "new_card" {
		t.Errorf("after a lost card the keyboard is on %q, want the new card field", f)
	}
	b.submit("issue a new card", b.typeKeys(newCard+pressEnter))
	b.wantFlash("issue a new card", "New card issued")
	if !strings.Contains(b.text(), "Patron record") {
		t.Fatalf("the record on the new card is not shown: %s", b.text())
	}

	// The fee first: an account that owes is not closed.
	b.do("focus the payment", chromedp.Focus(chromedp.CSS(`input.money`)))
	b.submit("pay the fee", b.typeKeys(pressEnter))
	b.wantFlash("pay the fee", "Payment taken")
	b.do("open the account controls", chromedp.Click(chromedp.CSS("details.account summary")))
	b.submit("ask to close", chromedp.Click(chromedp.CSS(`input[value=close_confirm] ~ button`)))
	confirm := evalAs[string](b, `document.querySelector('.confirm').innerText`)
	for _, want := range []string{"name, birth date, contact details, caregiver or PIN", "cards stop opening anything", "erased"} {
		if !strings.Contains(confirm, want) {
			t.Errorf("the confirmation does not say %q:\n%s", want, confirm)
		}
	}
	b.submit("close", chromedp.Click(chromedp.CSS(`.confirm button.danger`)))
	b.wantFlash("close", "Account closed")
	b.submit("scan the closed card", b.typeKeys(newCard+pressEnter))
	b.wantFlash("scan the closed card", "Refused")
	b.checkConsole()
	for _, m := range []string{card, newCard, name, carer, "sam@example.org", "sam.new@example.org"} {
		if strings.Contains(h.Logs.String(), m) {
			t.Errorf("the server log holds %q", m)
		}
	}
	// The PIN as a number of its own: four digits also turn up inside durations and
	// sequence numbers (a run once logged one of 1.4321 ms).
	if regexp.MustCompile(`(^|[^0-9.])4321([^0-9.]|$)`).MatchString(h.Logs.String()) {
		t.Errorf("the server log holds the PIN")
	}
}

// TestCatalogImport: a file with a bad row imports nothing and gives a report by line
// and column; a good file imports with a progress bar to the end.
func TestCatalogImport(t *testing.T) {
	t.Parallel()
	lib := newLibrary(t)
	h := lib.h
	b := newBrowser(t, h.S.HTTPURL, 1000)
	b.signIn(lethetest.Admin)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	good := filepath.Join(dir, "good.csv")
	var rows strings.Builder
	rows.WriteString("barcode,title,collection,branch,replacement_cents\n")
	for i := range 2500 {
		fmt.Fprintf(&rows, "IMP%05d,Imported title %d,fiction,main,1200\n", i, i)
	}
	if err := os.WriteFile(good, []byte(rows.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("barcode,title,collection,branch,replacement_cents\nOK1,A title,fiction,main,100\nOK2,,fiction,main,100\nOK3,Another,fiction,main,lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	b.navigate("/items/import")
	b.do("choose the bad file", chromedp.SetUploadFiles(chromedp.ID("file"), []string{bad}))
	b.submit("import the bad file", chromedp.Submit(chromedp.ID("file")))
	report := b.text()
	if !strings.Contains(report, "Nothing was imported: 2 rows") || !strings.Contains(report, "title") || !strings.Contains(report, "replacement_cents") {
		t.Fatalf("the report of a bad file:\n%s", report)
	}
	if n := evalAs[int](b, `document.querySelectorAll('table tbody tr').length`); n != 2 {
		t.Errorf("the report lists %d rows, want 2 (lines 3 and 4)", n)
	}
	var it map[string]any
	if status := h.Get("/api/items/OK1", &it); status != 404 {
		t.Errorf("a file with bad rows imported its good row: %d", status)
	}

	b.navigate("/items/import")
	b.do("choose the good file", chromedp.SetUploadFiles(chromedp.ID("file"), []string{good}))
	b.submit("import the good file", chromedp.Submit(chromedp.ID("file")))
	testkit.WaitForWithin(t, "the import to finish on the page", 60*time.Second, func() bool {
		return strings.Contains(evalAs[string](b, `document.getElementById('import-status').innerText`), "Finished")
	})
	status := evalAs[string](b, `document.getElementById('import-status').innerText`)
	if !strings.Contains(status, "2500 of 2500 sent; 2500 new") {
		t.Errorf("the import's end says %q", status)
	}
	if v := evalAs[float64](b, `document.getElementById('progress').value`); v != 2500 {
		t.Errorf("the progress bar stands at %v, want 2500", v)
	}
	if status := h.Get("/api/items/IMP02499", &it); status != 200 {
		t.Errorf("the last row's item = %d", status)
	}
	b.checkConsole()
}
