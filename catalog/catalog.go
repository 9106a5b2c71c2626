// Package catalog reads a library's catalog from CSV (barcode, title, collection,
// branch, replacement_cents) into catalog_item commands, checked against the command's
// schema row by row, and cuts them into the bulk catalog route's requests. The command
// line's import and the staff web client's both read files with it.
package catalog

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// ImportNamespace makes an import row's command id a function of its content, so
// importing the same file twice appends nothing new.
var ImportNamespace = uuid.MustParse("3e0c2b1d-7f5a-4e8b-a6c9-1d2e3f4a5b6c")

// Columns are the header of a catalog file, in order.
var Columns = []string{"barcode", "title", "collection", "branch", "replacement_cents"}

// The largest file an import takes. The whole file is checked before anything is sent,
// so it is held in memory, about 400 bytes a row: a larger catalog imports in several
// files.
const (
	MaxBytes = 256 << 20
	MaxRows  = 1_000_000
)

// Row is a checked row of the file: its line, barcode and catalog_item command.
type Row struct {
	Line    int
	Barcode string
	Command json.RawMessage // the catalog_item command
}

// Problem is a row that cannot be imported. It names the line, the column and the rule
// broken, never the cell's value; the barcode only if it is a valid one.
type Problem struct {
	Line    int    `json:"line"`
	Barcode string `json:"barcode,omitempty"`
	Column  string `json:"column,omitempty"`
	Err     string `json:"error"`
}

func (p Problem) String() string {
	s := "line " + strconv.Itoa(p.Line)
	if p.Barcode != "" {
		s += " (" + p.Barcode + ")"
	}
	if p.Column != "" {
		s += ", " + p.Column
	}
	return s + ": " + p.Err
}

// Read reads the whole CSV and checks every row against the catalog_item schema,
// and every barcode for repeats, before anything is sent: a file with a bad row imports
// nothing. The rows come back as catalog_item commands, with a command id derived from
// the row's content.
func Read(r io.Reader, v *schemas.Validator) ([]Row, []Problem, error) {
	lr := &io.LimitedReader{R: r, N: MaxBytes + 1}
	cr := csv.NewReader(lr)
	cr.FieldsPerRecord = -1 // a row with the wrong number of columns is one refused row
	head, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("read CSV header: %w", err)
	}
	if len(head) > 0 {
		head[0] = strings.TrimPrefix(head[0], "\ufeff") // the byte order mark spreadsheets write
	}
	if len(head) != len(Columns) {
		return nil, nil, fmt.Errorf("CSV header must be %s", strings.Join(Columns, ","))
	}
	for i, c := range Columns {
		if strings.TrimSpace(strings.ToLower(head[i])) != c {
			return nil, nil, fmt.Errorf("CSV header must be %s", strings.Join(Columns, ","))
		}
	}
	type record struct {
		line  int
		cells []string
	}
	var recs []record
	var problems []Problem
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if pe, ok := errors.AsType[*csv.ParseError](err); ok {
			// csv's own errors name a position and a rule (a bare quote), never the text.
			problems = append(problems, Problem{Line: pe.StartLine, Err: "CSV: " + pe.Err.Error()})
			continue
		} else if err != nil {
			return nil, nil, fmt.Errorf("read CSV: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(Columns) {
			problems = append(problems, Problem{Line: line, Barcode: safeBarcode(rec[0]),
				Err: fmt.Sprintf("%d columns, want %d (%s)", len(rec), len(Columns), strings.Join(Columns, ","))})
			continue
		}
		recs = append(recs, record{line, rec})
		if len(recs)+len(problems) > MaxRows {
			return nil, nil, fmt.Errorf("more than %s rows: import a catalog this large in several files", "1,000,000")
		}
	}
	if lr.N <= 0 {
		return nil, nil, fmt.Errorf("the file is larger than %d MiB: import a catalog this large in several files", MaxBytes>>20)
	}

	// The schema check costs about 10 µs a row: on every core.
	rows := make([]Row, len(recs))
	found := make([][]Problem, len(recs))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				rows[i], found[i] = checkRow(v, recs[i].line, recs[i].cells)
			}
		})
	}
	wg.Wait()
	var good []Row
	first := map[string]int{} // barcode -> line
	for i, row := range rows {
		if len(found[i]) > 0 {
			problems = append(problems, found[i]...)
			continue
		}
		if line, ok := first[row.Barcode]; ok {
			problems = append(problems, Problem{Line: row.Line, Barcode: row.Barcode, Column: "barcode",
				Err: fmt.Sprintf("repeats the barcode of line %d: one row per item", line)})
			continue
		}
		first[row.Barcode] = row.Line
		good = append(good, row)
	}
	slices.SortStableFunc(problems, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
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

// checkRow makes a row's command and checks it with the schema the server checks it
// with. A problem names the column and the rule, in the schema's words.
func checkRow(v *schemas.Validator, line int, rec []string) (Row, []Problem) {
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
		CommandID: uuid.NewSHA1(ImportNamespace, []byte(strings.Join(rec, "\x00"))).String(),
		Barcode:   rec[0], Title: rec[1], Collection: rec[2], Branch: rec[3], ReplacementCents: raw,
	})
	if err != nil {
		return Row{}, []Problem{{Line: line, Err: "cannot be encoded as JSON"}}
	}
	row := Row{Line: line, Barcode: rec[0], Command: cmd}
	err = v.Command(schemas.CmdCatalogItem, cmd)
	if err == nil {
		return row, nil
	}
	// "invalid catalog_item: /title is too long (maximum 500 characters); /barcode …":
	// every problem of a command made from a row is at one of the row's fields.
	var problems []Problem
	msg := schemas.Public(err).Message
	msg = strings.TrimPrefix(msg, "invalid "+schemas.CmdCatalogItem+": ")
	for p := range strings.SplitSeq(msg, "; ") {
		prob := Problem{Line: line, Barcode: safeBarcode(rec[0]), Err: p}
		if field, rule, ok := strings.Cut(p, " "); ok && strings.HasPrefix(field, "/") {
			prob.Column, prob.Err = field[1:], rule
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

// WriteReport writes the refused rows as CSV: line,barcode,column,error. With no
// problems it is the header only.
func WriteReport(w io.Writer, problems []Problem) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"line", "barcode", "column", "error"})
	for _, p := range problems {
		cw.Write([]string{strconv.Itoa(p.Line), p.Barcode, p.Column, p.Err})
	}
	cw.Flush()
	return cw.Error()
}

// Batches cuts rows into requests that fit the route's limits.
func Batches(rows []Row) [][]Row {
	var out [][]Row
	const envelope = len(`{"commands":[]}`)
	start, size := 0, envelope
	for i, r := range rows {
		if i > start && (i-start == ledger.MaxCatalogItems || size+1+len(r.Command) > desk.MaxBulkBodyBytes) {
			out = append(out, rows[start:i])
			start, size = i, envelope
		}
		size += 1 + len(r.Command)
	}
	return append(out, rows[start:])
}

// Body is the bulk catalog route's request for batch: {"commands":[…]}.
func Body(batch []Row) []byte {
	var body bytes.Buffer
	body.WriteString(`{"commands":[`)
	for i, r := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(r.Command)
	}
	body.WriteString(`]}`)
	return body.Bytes()
}
