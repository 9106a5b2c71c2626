package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/progress"
	"github.com/imagineif/lethe/schemas"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// importNamespace makes an import row's command id a function of its content, so
// importing the same file twice appends nothing new.
var importNamespace = uuid.MustParse("3e0c2b1d-7f5a-4e8b-a6c9-1d2e3f4a5b6c")

var itemColumns = []string{"barcode", "title", "collection", "branch", "replacement_cents"}

// maxShownProblems is how many refused rows the import prints; --report has them all.
const maxShownProblems = 20

// The largest file an import takes. The whole file is checked before anything is sent,
// so it is held in memory, about 400 bytes a row: a larger catalog imports in several
// files.
const (
	maxImportBytes = 256 << 20
	maxImportRows  = 1_000_000
)

// importRetries is how often a request that the server could not take now (unavailable:
// busy, or the stream unreachable) is sent again. Its command ids make that safe.
const importRetries = 6

func cmdItemsImport(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("items import", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	workers := f.Int("workers", 3, fmt.Sprintf("requests in flight, each of up to %d items (at most %d)", ledger.MaxCatalogItems, desk.MaxBulkRequests))
	report := f.str("report", "", "write the rows that break the schema to this CSV file: line,barcode,column,error")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return &exitError{2, errors.New("usage: lethe items import [flags] FILE.csv")}
	}
	if *workers < 1 || *workers > desk.MaxBulkRequests {
		return &exitError{2, fmt.Errorf("--workers must be 1 to %d", desk.MaxBulkRequests)}
	}
	file, err := os.Open(f.Arg(0))
	if err != nil {
		return err
	}
	defer file.Close()
	v, err := schemas.NewValidator()
	if err != nil {
		return err
	}
	start := time.Now()
	rows, problems, err := readItems(file, v)
	if err != nil {
		return err
	}
	if *report != "" {
		if err := writeReport(*report, problems); err != nil {
			return err
		}
	}
	if len(problems) > 0 {
		for _, p := range problems[:min(len(problems), maxShownProblems)] {
			fmt.Fprintln(stderr, p)
		}
		if n := len(problems) - maxShownProblems; n > 0 {
			fmt.Fprintf(stderr, "and %d more rows refused (--report FILE lists them all)\n", n)
		}
		lines := map[int]bool{}
		for _, p := range problems {
			lines[p.line] = true
		}
		return fmt.Errorf("%s of %s rows refused; nothing was sent", count(len(lines)), count(len(rows)+len(lines)))
	}
	if len(rows) == 0 {
		fmt.Fprintln(stdout, "no items in the file; nothing was sent")
		return nil
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	bar := progress.NewBar(stderr, "importing items", int64(len(rows)))
	tally, err := sendItems(ctx, c, rows, *workers, func(n int) { bar.Add(n) })
	bar.Stop()
	elapsed := time.Since(start)
	if err != nil {
		fmt.Fprintf(stderr, "import stopped; done before it: %s\n", tally)
		return err
	}
	fmt.Fprintf(stdout, "items: %s (%s rows in %s, %s rows/s)\n", tally, count(len(rows)),
		elapsed.Round(10*time.Millisecond), count(int(float64(len(rows))/max(elapsed.Seconds(), 1e-3))))
	return nil
}

// itemRow is a checked row of the file: its line, barcode and catalog_item command.
type itemRow struct {
	line    int
	barcode string
	command json.RawMessage
}

// rowProblem is a row that cannot be imported. It names the line, the column and the rule
// broken, never the cell's value; the barcode only if it is a valid one.
type rowProblem struct {
	line    int
	barcode string
	column  string
	err     string
}

func (p rowProblem) String() string {
	s := "line " + strconv.Itoa(p.line)
	if p.barcode != "" {
		s += " (" + p.barcode + ")"
	}
	if p.column != "" {
		s += ", " + p.column
	}
	return s + ": " + p.err
}

// readItems reads the whole CSV and checks every row against the catalog_item schema,
// and every barcode for repeats, before anything is sent: a file with a bad row imports
// nothing. The rows come back as catalog_item commands, with a command id derived from
// the row's content.
func readItems(r io.Reader, v *schemas.Validator) ([]itemRow, []rowProblem, error) {
	lr := &io.LimitedReader{R: r, N: maxImportBytes + 1}
	cr := csv.NewReader(lr)
	cr.FieldsPerRecord = -1 // a row with the wrong number of columns is one refused row
	head, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("read CSV header: %w", err)
	}
	if len(head) > 0 {
		head[0] = strings.TrimPrefix(head[0], "\ufeff") // the byte order mark spreadsheets write
	}
	if len(head) != len(itemColumns) {
		return nil, nil, fmt.Errorf("CSV header must be %s", strings.Join(itemColumns, ","))
	}
	for i, c := range itemColumns {
		if strings.TrimSpace(strings.ToLower(head[i])) != c {
			return nil, nil, fmt.Errorf("CSV header must be %s", strings.Join(itemColumns, ","))
		}
	}
	type record struct {
		line  int
		cells []string
	}
	var recs []record
	var problems []rowProblem
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if pe, ok := errors.AsType[*csv.ParseError](err); ok {
			// csv's own errors name a position and a rule (a bare quote), never the text.
			problems = append(problems, rowProblem{line: pe.StartLine, err: "CSV: " + pe.Err.Error()})
			continue
		} else if err != nil {
			return nil, nil, fmt.Errorf("read CSV: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(itemColumns) {
			problems = append(problems, rowProblem{line: line, barcode: safeBarcode(rec[0]),
				err: fmt.Sprintf("%d columns, want %d (%s)", len(rec), len(itemColumns), strings.Join(itemColumns, ","))})
			continue
		}
		recs = append(recs, record{line, rec})
		if len(recs)+len(problems) > maxImportRows {
			return nil, nil, fmt.Errorf("more than %s rows: import a catalog this large in several files", count(maxImportRows))
		}
	}
	if lr.N <= 0 {
		return nil, nil, fmt.Errorf("the file is larger than %d MiB: import a catalog this large in several files", maxImportBytes>>20)
	}

	// The schema check costs about 10 µs a row: on every core.
	rows := make([]itemRow, len(recs))
	found := make([][]rowProblem, len(recs))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				rows[i], found[i] = checkItem(v, recs[i].line, recs[i].cells)
			}
		})
	}
	wg.Wait()
	var good []itemRow
	first := map[string]int{} // barcode -> line
	for i, row := range rows {
		if len(found[i]) > 0 {
			problems = append(problems, found[i]...)
			continue
		}
		if line, ok := first[row.barcode]; ok {
			problems = append(problems, rowProblem{line: row.line, barcode: row.barcode, column: "barcode",
				err: fmt.Sprintf("repeats the barcode of line %d: one row per item", line)})
			continue
		}
		first[row.barcode] = row.line
		good = append(good, row)
	}
	slices.SortStableFunc(problems, func(a, b rowProblem) int { return cmp.Compare(a.line, b.line) })
	return good, problems, nil
}

// catalogRow is a row as the catalog_item command it becomes.
type catalogRow struct {
	CommandID        string          `json:"command_id"`
	Barcode          string          `json:"barcode"`
	Title            string          `json:"title"`
	Collection       string          `json:"collection"`
	Branch           string          `json:"branch"`
	ReplacementCents json.RawMessage `json:"replacement_cents"`
}

// checkItem makes a row's command and checks it with the schema the server checks it
// with. A problem names the column and the rule, in the schema's words.
func checkItem(v *schemas.Validator, line int, rec []string) (itemRow, []rowProblem) {
	// replacement_cents goes in as a number if it is one, else as a string, so that the
	// schema itself says what is wrong with it.
	cents := rec[4]
	var raw json.RawMessage
	if n, err := strconv.ParseInt(cents, 10, 64); err == nil {
		raw = strconv.AppendInt(nil, n, 10)
	} else if cents != "" && strings.Trim(cents, "0123456789.eE+-") == "" && json.Valid([]byte(cents)) {
		raw = json.RawMessage(cents)
	} else {
		raw, _ = json.Marshal(cents)
	}
	cmd, err := json.Marshal(catalogRow{
		CommandID: uuid.NewSHA1(importNamespace, []byte(strings.Join(rec, "\x00"))).String(),
		Barcode:   rec[0], Title: rec[1], Collection: rec[2], Branch: rec[3], ReplacementCents: raw,
	})
	if err != nil {
		return itemRow{}, []rowProblem{{line: line, err: "cannot be encoded as JSON"}}
	}
	row := itemRow{line: line, barcode: rec[0], command: cmd}
	err = v.Command(schemas.CmdCatalogItem, cmd)
	if err == nil {
		return row, nil
	}
	// "invalid catalog_item: /title is too long (maximum 500 characters); /barcode …":
	// every problem of a command made from a row is at one of the row's fields.
	var problems []rowProblem
	msg := schemas.Public(err).Message
	msg = strings.TrimPrefix(msg, "invalid "+schemas.CmdCatalogItem+": ")
	for p := range strings.SplitSeq(msg, "; ") {
		prob := rowProblem{line: line, barcode: safeBarcode(rec[0]), err: p}
		if field, rule, ok := strings.Cut(p, " "); ok && strings.HasPrefix(field, "/") {
			prob.column, prob.err = field[1:], rule
		}
		problems = append(problems, prob)
	}
	return row, problems
}

// safeBarcode is the barcode to name in a report: a cell that is not a valid barcode may
// be anything (a shifted column), so it is left out.
func safeBarcode(s string) string {
	if ledger.ValidToken(s) {
		return s
	}
	return ""
}

// writeReport writes the refused rows as CSV: line,barcode,column,error. With no
// problems it holds the header only, so a stale report never survives a good run.
func writeReport(path string, problems []rowProblem) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"line", "barcode", "column", "error"})
	for _, p := range problems {
		w.Write([]string{strconv.Itoa(p.line), p.barcode, p.column, p.err})
	}
	w.Flush()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	return nil
}

// importTally counts what the server did with the rows sent, from its answers.
type importTally struct{ desk.CatalogItemsResult }

func (t importTally) String() string {
	s := fmt.Sprintf("%s new, %s updated, %s already cataloged unchanged", count(t.New), count(t.Updated), count(t.Unchanged))
	if t.Repeated > 0 {
		s += fmt.Sprintf(", %s not applied again (imported within the last hour, changed since)", count(t.Repeated))
	}
	return s
}

// sendItems sends rows in bulk requests (at most ledger.MaxCatalogItems rows and
// desk.MaxBulkBodyBytes each), workers at a time, calling done with the number of rows of
// each answered request. It stops at the first request refused. The tally is what the
// server answered for the requests it answered.
func sendItems(ctx context.Context, c *client, rows []itemRow, workers int, done func(int)) (importTally, error) {
	bodies := bulkBodies(rows)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		tally    importTally
		firstErr error
	)
	jobs := make(chan []itemRow)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for batch := range jobs {
				res, err := sendBulk(ctx, c, batch)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					tally.New += res.New
					tally.Updated += res.Updated
					tally.Unchanged += res.Unchanged
					tally.Repeated += res.Repeated
				}
				mu.Unlock()
				if err == nil {
					done(len(batch))
				}
			}
		})
	}
feed:
	for _, b := range bodies {
		select {
		case jobs <- b:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return tally, firstErr
}

// bulkBodies cuts rows into requests that fit the route's limits.
func bulkBodies(rows []itemRow) [][]itemRow {
	var out [][]itemRow
	const envelope = len(`{"commands":[]}`)
	start, size := 0, envelope
	for i, r := range rows {
		if i > start && (i-start == ledger.MaxCatalogItems || size+1+len(r.command) > desk.MaxBulkBodyBytes) {
			out = append(out, rows[start:i])
			start, size = i, envelope
		}
		size += 1 + len(r.command)
	}
	return append(out, rows[start:])
}

// sendBulk sends one bulk request, again while the server answers unavailable, and checks
// that the answer is about the rows sent, one for one.
func sendBulk(ctx context.Context, c *client, batch []itemRow) (desk.CatalogItemsResult, error) {
	var body bytes.Buffer
	body.WriteString(`{"commands":[`)
	for i, r := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(r.command)
	}
	body.WriteString(`]}`)
	var out []byte
	var err error
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		out, err = c.send(ctx, http.MethodPost, desk.CatalogItemsPath, body.Bytes())
		if err == nil || schemas.CodeOf(err) != schemas.CodeUnavailable || attempt == importRetries {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return desk.CatalogItemsResult{}, ctx.Err()
		}
		wait *= 2
	}
	if err != nil {
		return desk.CatalogItemsResult{}, fmt.Errorf("lines %d to %d: %w", batch[0].line, batch[len(batch)-1].line, err)
	}
	var res desk.CatalogItemsResult
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("decode the server's answer: %w", err)
	}
	if len(res.Items) != len(batch) || res.New+res.Updated+res.Unchanged+res.Repeated != len(batch) {
		return res, fmt.Errorf("the server answered for %d items, %d were sent", len(res.Items), len(batch))
	}
	for i, it := range res.Items {
		if it.Barcode != batch[i].barcode {
			return res, fmt.Errorf("line %d: the server answered for another item", batch[i].line)
		}
	}
	return res, nil
}

// count writes n with thousands separators: 100,000.
func count(n int) string { return message.NewPrinter(language.English).Sprintf("%d", n) }
