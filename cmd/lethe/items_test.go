package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/catalog"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

const itemsHeader = "barcode,title,collection,branch,replacement_cents\n"

// importCLI runs lethe with the harness's server and a staff account's password, and
// returns its stdout and stderr.
type importCLI struct {
	h        *lethetest.Harness
	user     string
	password string
}

func (c importCLI) run(args ...string) (stdout, stderr string, err error) {
	env := func(k string) string {
		return map[string]string{"LETHE_USER": c.user, "LETHE_PASSWORD": c.password, "LETHE_SERVER": c.h.S.HTTPURL}[k]
	}
	var out, errOut testkit.SyncBuffer
	err = run(context.Background(), args, env, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

// itemsFile writes a catalog CSV of n items B<prefix>000000…, the title made by title(i).
func itemsFile(t *testing.T, prefix string, n int, title func(int) string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(itemsHeader)
	for i := range n {
		fmt.Fprintf(&b, "%s%06d,\"%s\",fiction,main,%d\n", prefix, i, title(i), 1000+i)
	}
	path := filepath.Join(t.TempDir(), prefix+".csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestItemsImportBulk imports a few thousand rows: every item is cataloged as its row
// says, the summary counts them all as new, and they went in as whole atomic batches (one
// commit per request of ledger.MaxCatalogItems). Importing the file again appends nothing
// and says every row was unchanged; so does importing it after the deduplication window,
// when the projections forgot the command ids. A changed row is an update, a new row is
// new, and a row imported within the hour whose item was cataloged differently since is
// not applied again, and says so.
func TestItemsImportBulk(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	cli := importCLI{h: h, user: lethetest.Admin, password: lethetest.Password}
	const n = 3 * ledger.MaxCatalogItems
	title := func(i int) string { return fmt.Sprintf("Title %d, a book", i) }
	file := itemsFile(t, "B", n, title)

	last := h.StreamLast()
	commits, _ := h.S.Ledger.CommitStats()
	out, errOut, err := cli.run("items", "import", file)
	if err != nil {
		t.Fatalf("import: %v\n%s%s", err, out, errOut)
	}
	if want := "items: 3,000 new, 0 updated, 0 already cataloged unchanged (3,000 rows in "; !strings.HasPrefix(out, want) {
		t.Errorf("import said %q, want it to start %q", out, want)
	}
	if errOut != "" {
		t.Errorf("import wrote %q to stderr, which is not a terminal: want nothing", errOut)
	}
	if got := h.StreamLast() - last; got != n {
		t.Errorf("import appended %d events, want %d", got, n)
	}
	if c, _ := h.S.Ledger.CommitStats(); c-commits > n/ledger.MaxCatalogItems {
		t.Errorf("import took %d commits, want %d: one atomic batch per request", c-commits, n/ledger.MaxCatalogItems)
	}
	for i := range n {
		bc := fmt.Sprintf("B%06d", i)
		it, err := h.S.Proj.Item(bc)
		if err != nil || it.Title != title(i) || it.ReplacementCents != int64(1000+i) || it.Collection != "fiction" ||
			it.Branch != "main" || it.Status != model.ItemAvailable {
			t.Fatalf("item %s = %+v, %v", bc, it, err)
		}
	}

	// Again: nothing appended, and the summary says so.
	last = h.StreamLast()
	out, _, err = cli.run("items", "import", file)
	if err != nil || !strings.HasPrefix(out, "items: 0 new, 0 updated, 3,000 already cataloged unchanged") {
		t.Fatalf("import again: %v\n%s", err, out)
	}
	if got := h.StreamLast(); got != last {
		t.Fatalf("importing the same file again appended %d events, want 0", got-last)
	}

	// Past the deduplication window the command ids are forgotten (an event after it moves
	// the projections' clock); the rows are still unchanged, by their content.
	h.Clock.Advance(2 * ledger.DedupeWindow)
	h.Catalog("LATER", 100)
	id := uuid.NewSHA1(catalog.ImportNamespace, []byte(strings.Join([]string{"B000002", title(2), "fiction", "main", "1002"}, "\x00"))).String()
	if seqs, err := h.S.Proj.CommandSeqs(id); err != nil || seqs != nil {
		t.Fatalf("command id of row B000002 after the window: %v, %v; want forgotten", seqs, err)
	}
	last = h.StreamLast()
	out, _, err = cli.run("items", "import", file)
	if err != nil || !strings.HasPrefix(out, "items: 0 new, 0 updated, 3,000 already cataloged unchanged (") {
		t.Fatalf("import after the window: %v\n%s", err, out)
	}
	if got := h.StreamLast(); got != last {
		t.Errorf("import after the window appended %d events, want 0", got-last)
	}

	// A changed row updates its item; a new row is new. The changed item is cataloged
	// differently at the desk after that: the same file within the hour leaves it so, and
	// says so.
	changed := itemsFile(t, "B", n+1, func(i int) string {
		if i == 7 {
			return "A new edition"
		}
		return title(i)
	})
	out, _, err = cli.run("items", "import", changed)
	if err != nil || !strings.HasPrefix(out, "items: 1 new, 1 updated, 2,999 already cataloged unchanged (") {
		t.Fatalf("import of a changed file: %v\n%s", err, out)
	}
	if it, _ := h.S.Proj.Item("B000007"); it.Title != "A new edition" {
		t.Errorf("updated item = %+v", it)
	}
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdCatalogItem, schemas.CatalogItem{CommandID: lethetest.CmdID(), ItemCataloged: schemas.ItemCataloged{
		Barcode: "B000007", Title: "Rebound", Collection: "fiction", Branch: "main", ReplacementCents: 1007}})
	last = h.StreamLast()
	out, _, err = cli.run("items", "import", changed)
	if err != nil || !strings.HasPrefix(out, "items: 0 new, 0 updated, 3,000 already cataloged unchanged, 1 not applied again") {
		t.Fatalf("import within the hour after a desk change: %v\n%s", err, out)
	}
	if it, _ := h.S.Proj.Item("B000007"); it.Title != "Rebound" || h.StreamLast() != last {
		t.Errorf("a row imported within the hour was applied again: %+v, %d events appended", it, h.StreamLast()-last)
	}
}

// TestItemsImportRefusesBadRows: a file with bad rows among good ones sends nothing (the
// stream's last sequence is unchanged) and reports each bad row by line and column with
// the rule broken, never the cell's value; --report writes them as CSV. A file as a
// spreadsheet saves it (byte order mark, CRLF) imports. A barcode that repeats is refused
// before anything is sent, not even a login: with a wrong password the error is still the
// repeat.
func TestItemsImportRefusesBadRows(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	cli := importCLI{h: h, user: lethetest.Admin, password: lethetest.Password}
	var b strings.Builder
	b.WriteString(itemsHeader)
	for i := range 60 {
		switch i {
		case 24: // line 26: not a whole number of cents, and a title with a control character
			b.WriteString("G000024,\"MARKER-TITLE\x01\",fiction,main,ten dollars\n")
		case 40: // line 42: a barcode that is no subject token
			b.WriteString("MARKER BARCODE,A title,fiction,main,100\n")
		default:
			fmt.Fprintf(&b, "G%06d,Title %d,fiction,main,%d\n", i, i, 100+i)
		}
	}
	bad := writeFile(t, "bad.csv", b.String())
	report := filepath.Join(t.TempDir(), "report.csv")
	last := h.StreamLast()
	out, errOut, err := cli.run("items", "import", "--report", report, bad)
	if err == nil || !strings.Contains(err.Error(), "2 of 60 rows refused; nothing was sent") {
		t.Fatalf("import of a bad file: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{
		"line 26 (G000024), replacement_cents: must be an integer, not a string",
		"line 26 (G000024), title: does not match the required pattern (no control characters)",
		"line 42, barcode: does not match the required pattern (1 to 64 letters, digits, '_' or '-')",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("report on stderr lacks %q:\n%s", want, errOut)
		}
	}
	if got := h.StreamLast(); got != last {
		t.Errorf("a file with bad rows appended %d events, want 0", got-last)
	}
	if _, err := h.S.Proj.Item("G000000"); err == nil {
		t.Error("a file with a bad row imported its good rows")
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil || len(recs) != 4 || strings.Join(recs[0], ",") != "line,barcode,column,error" ||
		strings.Join(recs[3][:3], ",") != "42,,barcode" {
		t.Errorf("report = %q, %v", recs, err)
	}
	for _, m := range []string{"MARKER", "ten dollars"} {
		if strings.Contains(errOut+out+string(raw), m) {
			t.Errorf("the report repeats the cell value %q", m)
		}
	}

	// A file as a spreadsheet saves it, with a byte order mark and CRLF line ends.
	bom := writeFile(t, "bom.csv", "\ufeff"+strings.ReplaceAll(itemsHeader, "\n", "\r\n")+"BOM1,Saved by a spreadsheet,fiction,main,100\r\n")
	if out, _, err := cli.run("items", "import", bom); err != nil || !strings.HasPrefix(out, "items: 1 new,") {
		t.Fatalf("import of a file with a byte order mark: %v\n%s", err, out)
	}
	last = h.StreamLast()

	// A barcode twice: refused before the login (the password is wrong) and before
	// anything is sent.
	dup := writeFile(t, "dup.csv", itemsHeader+"D1,One,fiction,main,100\nD2,Two,fiction,main,100\nD1,One again,fiction,main,100\n")
	wrong := importCLI{h: h, user: lethetest.Admin, password: "not the password at all"}
	_, errOut, err = wrong.run("items", "import", dup)
	if err == nil || !strings.Contains(errOut, "line 4 (D1), barcode: repeats the barcode of line 2: one row per item") {
		t.Fatalf("import of a file with a barcode twice: %v\n%s", err, errOut)
	}
	if got := h.StreamLast(); got != last {
		t.Errorf("a file with a repeated barcode appended %d events, want 0", got-last)
	}
	// The same password on a good file: the login is refused, nothing imported.
	if _, _, err := wrong.run("items", "import", itemsFile(t, "W", 3, func(int) string { return "t" })); schemas.CodeOf(err) != schemas.CodeUnauthenticated {
		t.Fatalf("import with a wrong password: %v, want unauthenticated", err)
	}
}

// TestItemsImportNeedsAdministrator: a circulation account may not catalog; its import is
// refused with 403 and appends nothing, as is the route itself.
func TestItemsImportNeedsAdministrator(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Account("circ", policy.Circulation)
	last := h.StreamLast()
	_, _, err := importCLI{h: h, user: "circ", password: lethetest.Password}.run("items", "import", itemsFile(t, "C", 5, func(int) string { return "t" }))
	if schemas.CodeOf(err) != schemas.CodeForbidden {
		t.Fatalf("import as a circulation account: %v, want forbidden", err)
	}
	status, body := h.RequestAs("circ", http.MethodPost, desk.CatalogItemsPath, bulkBody(t, "C", 2))
	if status != http.StatusForbidden {
		t.Errorf("bulk route as a circulation account = %d %s, want 403", status, body)
	}
	if got := h.StreamLast(); got != last {
		t.Errorf("a circulation account's import appended %d events, want 0", got-last)
	}
}

// TestCatalogItemsRoute: the bulk route refuses, with nothing appended, a list with a
// command that breaks its schema (naming its index and rule), a repeated barcode, a
// command id used before for another command, an empty list and one over
// ledger.MaxCatalogItems. Its own body limit holds: a body that says it is too large is
// refused before the session check; one that is sent chunked is read only with a
// session, and refused when it passes the limit.
func TestCatalogItemsRoute(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	ok := bulkBody(t, "R", 3)
	if status, body := h.Post(desk.CatalogItemsPath, ok); status != http.StatusOK {
		t.Fatalf("bulk = %d %s", status, body)
	} else {
		var res desk.CatalogItemsResult
		if err := json.Unmarshal(body, &res); err != nil || res.New != 3 || len(res.Items) != 3 || res.Items[2].Barcode != "R000002" ||
			res.Items[2].Outcome != ledger.CatalogNew || res.Items[2].Seq != h.StreamLast() {
			t.Errorf("bulk answer = %+v, %v", res, err)
		}
	}
	last := h.StreamLast()
	cmd := func(id, barcode, title string) string {
		return fmt.Sprintf(`{"command_id":%q,"barcode":%q,"title":%q,"collection":"c","branch":"main","replacement_cents":1}`, id, barcode, title)
	}
	var many []string
	for i := range ledger.MaxCatalogItems + 1 {
		many = append(many, cmd(uuid.NewString(), fmt.Sprintf("M%d", i), "t"))
	}
	reused := cmd(uuid.NewString(), "X1", "first")
	if status, body := h.Post(desk.CatalogItemsPath, []byte(`{"commands":[`+reused+`]}`)); status != http.StatusOK {
		t.Fatalf("bulk = %d %s", status, body)
	}
	last = h.StreamLast()
	var reusedID struct {
		ID string `json:"command_id"`
	}
	json.Unmarshal([]byte(reused), &reusedID)
	for _, c := range []struct {
		what, body string
		status     int
		want       string
	}{
		{"a bad command", `{"commands":[` + cmd(uuid.NewString(), "N1", "t") + `,` + cmd(uuid.NewString(), "bad barcode", "t") + `]}`, 400,
			"/commands/1: invalid catalog_item: /barcode does not match the required pattern"},
		{"a barcode twice", `{"commands":[` + cmd(uuid.NewString(), "N1", "t") + `,` + cmd(uuid.NewString(), "N1", "u") + `]}`, 400,
			"/commands/1/barcode repeats the barcode of /commands/0"},
		{"a command id used for another command", `{"commands":[` + cmd(uuid.NewString(), "N1", "t") + `,` + cmd(reusedID.ID, "X1", "second") + `]}`, 409,
			"/commands/1: command_id was already used for a different command"},
		{"no commands", `{"commands":[]}`, 400, "give 1 to 1000 catalog_item commands"},
		{"too many commands", `{"commands":[` + strings.Join(many, ",") + `]}`, 400, "give 1 to 1000 catalog_item commands"},
		{"another property", `{"commands":[],"extra":1}`, 400, "unknown property"},
	} {
		status, body := h.Post(desk.CatalogItemsPath, []byte(c.body))
		if status != c.status || !strings.Contains(string(body), c.want) {
			t.Errorf("bulk with %s = %d %s, want %d and %q", c.what, status, body, c.status, c.want)
		}
	}
	if got := h.StreamLast(); got != last {
		t.Errorf("refused bulk requests appended %d events, want 0", got-last)
	}

	over := bytes.Repeat([]byte(" "), desk.MaxBulkBodyBytes+1)
	client := &http.Client{}
	resp, raw := lethetest.Send(t, client, "POST", h.S.HTTPURL+desk.CatalogItemsPath, bytes.NewReader(over))
	lethetest.WantAPIError(t, "a bulk body over its limit, said up front, without a session", resp, raw, schemas.CodeInvalid)
	resp, raw = lethetest.Send(t, client, "POST", h.S.HTTPURL+desk.CatalogItemsPath, io.MultiReader(bytes.NewReader(over)))
	lethetest.WantUnauthenticated(t, "a bulk body over its limit, chunked, without a session", resp, raw)
	resp, raw = lethetest.Send(t, client, "POST", h.S.HTTPURL+desk.CatalogItemsPath, io.MultiReader(bytes.NewReader(over)),
		"Authorization", "Bearer "+h.Session(lethetest.Admin), "Content-Type", "application/json")
	lethetest.WantAPIError(t, "a bulk body over its limit, chunked, with a session", resp, raw, schemas.CodeInvalid)
	if !strings.Contains(string(raw), "body too large") {
		t.Errorf("a bulk body over its limit = %s, want body too large", raw)
	}
}

// TestItemsImportReportGolden: the report `lethe items import` prints for a file with bad
// rows of every kind it refuses (the wrong number of columns, a bare quote, cents that are
// words, a fraction or negative, a control character, a barcode that is no token, empty
// cells, a title too long, a barcode twice, two problems in one row) is in
// testdata/items-import-refused.txt, and the --report file in
// testdata/items-import-refused.csv. The file is refused before anything is sent, so no
// server is needed.
func TestItemsImportReportGolden(t *testing.T) {
	t.Parallel()
	bad := writeFile(t, "bad.csv", itemsHeader+
		"G01,A good row,fiction,main,100\n"+
		"G02,Too few columns,fiction,main\n"+
		"G03,A \"bare\" quote,fiction,main,100\n"+
		"G04,Cents in words,fiction,main,ten dollars\n"+
		"G05,Cents with a fraction,fiction,main,12.50\n"+
		"G06,Cents below zero,fiction,main,-5\n"+
		"G07,\"A control\x01character\",fiction,main,100\n"+
		"not a token,A barcode with spaces,fiction,main,100\n"+
		"G08,,fiction,main,100\n"+
		"G09,No branch,fiction,,100\n"+
		"G10,"+strings.Repeat("x", 501)+",fiction,main,100\n"+
		"G01,The first barcode again,fiction,main,100\n"+
		"G11,Two problems,,main,twelve\n"+
		"G12,A good row,fiction,main,100,and one more column\n")
	report := filepath.Join(t.TempDir(), "report.csv")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"items", "import", "--report", report, bad}, noEnv, strings.NewReader(""), &out, &errOut)
	if err == nil {
		t.Fatal("import of a file with bad rows succeeded")
	}
	golden(t, "items-import-refused.txt", transcript(out.String(), errOut.String(), err))
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "items-import-refused.csv", raw)
}
