package desk

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// collections is GET /api/collections: the accounts to pursue for the recovery of
// materials and fines, with only the fields recovery needs. ?format=csv for a spreadsheet
// or an agency; thresholds ?min_owed_cents= and ?min_days_overdue= override the defaults.
func (s *Server) collections(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := ledger.CollectionsRequest{By: requester(r), MinOwedCents: s.Collections.MinOwedCents, MinDaysOverdue: s.Collections.MinDaysOverdue}
	var bad error
	if v := q.Get("min_owed_cents"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			bad = schemas.Errorf(schemas.CodeInvalid, "min_owed_cents must be a whole number of cents, 0 or more")
		}
		req.MinOwedCents = n
	}
	if v := q.Get("min_days_overdue"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad = schemas.Errorf(schemas.CodeInvalid, "min_days_overdue must be a whole number of days, 0 or more")
		}
		req.MinDaysOverdue = n
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		bad = schemas.Errorf(schemas.CodeInvalid, "format must be json or csv")
	}
	if bad != nil {
		// Refused before anything was read; still a request on a disclosing route.
		if err := s.Ledger.RecordAccess(r.Context(), ledger.Disclosure{By: req.By, Action: "collections_export", Scope: "refused", Clause: "collections"}); err != nil {
			bad = err
		}
		s.fail(w, r, bad)
		return
	}
	debtors, _, err := s.Ledger.Collections(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if format != "csv" {
		if debtors == nil {
			debtors = []ledger.Debtor{}
		}
		WriteJSON(w, http.StatusOK, map[string]any{
			"min_owed_cents": req.MinOwedCents, "min_days_overdue": req.MinDaysOverdue, "accounts": debtors,
		})
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="collections.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"name", "email", "phone", "address", "caregiver", "caregiver_contact",
		"barcode", "title", "status", "due", "days_overdue", "item_owed_cents", "account_owed_cents"})
	for _, d := range debtors {
		for _, it := range d.Items {
			due := ""
			if !it.Due.IsZero() {
				due = it.Due.In(s.location()).Format(time.DateOnly)
			}
			_ = cw.Write(cells(d.Name, d.Email, d.Phone, d.Address, d.Caregiver, d.Contact, it.Barcode, it.Title, it.Status,
				due, strconv.Itoa(it.DaysOverdue), strconv.FormatInt(it.OwedCents, 10), strconv.FormatInt(d.OwedCents, 10)))
		}
	}
	cw.Flush()
}

// cells guards a CSV row against formula injection: a cell a spreadsheet would evaluate
// (starting with =, +, -, @, tab or carriage return) is prefixed with a quote.
func cells(vs ...string) []string {
	for i, v := range vs {
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				vs[i] = "'" + v
			}
		}
	}
	return vs
}
