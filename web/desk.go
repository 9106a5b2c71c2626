package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// The circulation desk: scan a card on a basis, see the record, act on it; the return
// desk. Each lookup is POST /api/patrons/lookup with the person's session, so each is on
// the access record exactly as through the API.

// basisOption is a basis the desk offers, and what it asks for.
type basisOption struct {
	Basis policy.Basis
	Label string
}

// bases are the lookups a role may make: the policy decides each one again in the API.
func bases(role policy.Role) []basisOption {
	out := []basisOption{
		{policy.Card, "Card or card number presented"},
		{policy.InPerson, "The borrower in person: photo ID checked, date of birth verified"},
		{policy.CaregiverWithCard, "Caregiver of a minor, with the child's card"},
		{policy.CaregiverPhotoID, "Caregiver of a minor, without the card, with photo ID (limited view)"},
	}
	if role == policy.Administrator {
		out = append(out, basisOption{policy.CourtOrder, "Court order or subpoena (administrators)"})
	}
	return out
}

// lookupForm is a lookup's basis and evidence. The desk's pages carry it in hidden
// fields, so that after each action the record is looked up again on the same basis;
// never in a URL.
type lookupForm struct {
	Basis          policy.Basis
	Card           string
	Name           string
	BirthDate      string
	PhotoIDChecked bool
	CaregiverName  string
	OrderRef       string
}

func readLookup(get func(string) string) lookupForm {
	return lookupForm{
		Basis: policy.Basis(get("basis")), Card: get("card"), Name: get("name"), BirthDate: get("birth_date"),
		PhotoIDChecked: get("photo_id_checked") == "yes", CaregiverName: get("caregiver_name"), OrderRef: get("order_ref"),
	}
}

func (l lookupForm) request() desk.LookupRequest {
	req := desk.LookupRequest{Basis: l.Basis, PhotoIDChecked: l.PhotoIDChecked, OrderRef: l.OrderRef}
	switch l.Basis {
	case policy.Card, policy.CaregiverWithCard:
		req.Card = l.Card
	case policy.InPerson:
		req.Name, req.BirthDate = l.Name, l.BirthDate
	case policy.CaregiverPhotoID:
		req.Name, req.BirthDate, req.CaregiverName = l.Name, l.BirthDate, l.CaregiverName
	case policy.CourtOrder:
		if l.Card != "" {
			req.Card = l.Card
		} else {
			req.Name, req.BirthDate = l.Name, l.BirthDate
		}
	default:
		req.Card, req.Name, req.BirthDate, req.CaregiverName = l.Card, l.Name, l.BirthDate, l.CaregiverName
	}
	return req
}

// disclosed is the lookup's answer (ledger.Disclosed).
type disclosed struct {
	Basis  policy.Basis `json:"basis"`
	Scope  policy.Scope `json:"scope"`
	Clause struct {
		ID   string `json:"id"`
		Text string `json:"text"`
	} `json:"clause"`
	PatronID string               `json:"patron_id"`
	Record   schemas.PatronRecord `json:"record"`
	History  string               `json:"history"`
}

// deskData is what the desk page shows.
type deskData struct {
	Bases   []basisOption
	Lookup  lookupForm // the basis of the record shown, or of the refused lookup
	Record  *disclosed
	Actions deskActions
	Receipt *receipt
	Confirm bool   // the close-account confirmation
	Issue   string // a patron id whose card was just reported lost: offer a new card
	Return  *schemas.ReturnResult
	Focus   string // the field that gets the keyboard
}

// deskActions are what the page offers for the record shown: what the role may do, on
// what the basis allows.
type deskActions struct {
	CheckOut, Renew, Pay, Waive, Lost, Damaged, CardLost, IssueCard, PIN, Contact, Close bool
}

func actionsFor(role policy.Role, d *disclosed, l lookupForm) deskActions {
	can := func(a policy.Action) bool { return policy.Permit(role, a).Allowed() }
	if d == nil || d.Basis == policy.CourtOrder {
		return deskActions{} // a court order is a disclosure, not a visit to the desk
	}
	withCard := l.Card != "" && (d.Basis == policy.Card || d.Basis == policy.CaregiverWithCard)
	full := d.Scope == policy.CurrentRecord
	return deskActions{
		CheckOut: withCard && can(policy.CheckOut), Renew: withCard && can(policy.Renew),
		Pay: can(policy.TakePayment), Waive: can(policy.WaiveFine),
		Lost: full && can(policy.DeclareLost), Damaged: full && can(policy.MarkDamaged),
		CardLost: withCard && can(policy.ReportCardLost), IssueCard: full && can(policy.IssueCard),
		PIN: full && can(policy.SetPIN), Contact: full && can(policy.UpdateContact),
		Close: full && can(policy.ClosePatron),
	}
}

// receipt is a payment's printable receipt: the fine and the payment, and no patron.
type receipt struct {
	FineID    string
	Number    string // the payment's command id
	Time      time.Time
	Branch    string
	Reason    string
	PaidCents int64
	LeftCents int64
	FineCents int64
	Settled   bool
	StaffName string
}

func newCommandID() string { return uuid.NewString() }

func (c *Client) deskPage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Circulation desk", "desk"
	v.Data = &deskData{Bases: bases(v.Who.Role), Lookup: lookupForm{Basis: policy.Card}, Focus: "card"}
	c.render(w, v, "desk")
}

// deskForm begins the page of a form sent from the desk: the desk's view, the form, and
// the lookup it carries. A form that cannot be read is refused here (ok false).
func (c *Client) deskForm(w http.ResponseWriter, r *http.Request, v *view) (get func(string) string, data *deskData, ok bool) {
	v.Title, v.Active = "Circulation desk", "desk"
	data = &deskData{Bases: bases(v.Who.Role), Focus: "barcode"}
	v.Data = data
	get, err := form(r)
	if err != nil {
		c.refuse(w, v, err)
		return nil, nil, false
	}
	data.Lookup = readLookup(get)
	return get, data, true
}

// lookup scans a card (or takes the evidence of another basis) and shows the record.
func (c *Client) lookup(w http.ResponseWriter, r *http.Request, v *view) {
	if _, data, ok := c.deskForm(w, r, v); ok {
		c.showRecord(w, r, v, data, nil)
	}
}

// showRecord looks the record up on data.Lookup's basis and renders the desk with it and
// with result above it (nil: the lookup's own outcome).
func (c *Client) showRecord(w http.ResponseWriter, r *http.Request, v *view, data *deskData, result *flash) {
	var d disclosed
	err := c.do(r, http.MethodPost, "/api/patrons/lookup", data.Lookup.request(), &d)
	switch {
	case err != nil && result == nil:
		data.Focus = "card"
		c.refuse(w, v, err)
		return
	case err != nil:
		// The action was done, but the record can no longer be read on this basis (the
		// card was reported lost, the account closed).
		data.Focus = "card"
	default:
		data.Record = &d
		data.Actions = actionsFor(v.Who.Role, &d, data.Lookup)
		if !data.Actions.CheckOut {
			data.Focus = "return"
		}
	}
	if data.Receipt != nil {
		// What is still owed is the ledger's, as the record read now says: a fine no
		// longer on it is settled.
		data.Receipt.LeftCents, data.Receipt.Settled = 0, true
		if err == nil {
			for _, f := range d.Record.Fines {
				if f.FineID == data.Receipt.FineID {
					data.Receipt.LeftCents, data.Receipt.Settled = f.RemainingCents, false
				}
			}
		}
	}
	if result != nil {
		v.Flash = result
		v.Sound = !result.OK
	}
	c.render(w, v, "desk")
}

func (c *Client) refuse(w http.ResponseWriter, v *view, err error) {
	v.Flash, v.Sound = refusal(err), true
	if v.status == http.StatusOK {
		v.status = statusOf(err)
	}
	c.render(w, v, "desk")
}

func statusOf(err error) int {
	var e *schemas.Error
	if errors.As(err, &e) {
		return schemas.HTTPStatus(e.Code)
	}
	return http.StatusInternalServerError
}

// act runs one desk command on the record shown, then shows it again.
func (c *Client) act(w http.ResponseWriter, r *http.Request, v *view) {
	get, data, ok := c.deskForm(w, r, v)
	if !ok {
		return
	}
	id := commandID(get)
	patron := get("patron_id")
	op := get("op")
	var (
		path string
		body map[string]any
		what string
	)
	switch op {
	case "checkout", "renew":
		path, body = "/api/desk/"+op, map[string]any{"command_id": id, "card": data.Lookup.Card, "barcode": get("barcode")}
		what = map[string]string{"checkout": "Checked out", "renew": "Renewed"}[op]
	case "pay":
		cents, perr := parseCents(get("amount"))
		if perr != nil {
			c.showRecord(w, r, v, data, refusal(perr))
			return
		}
		path, body, what = "/api/desk/pay-fine", map[string]any{"command_id": id, "fine_id": get("fine_id"), "amount_cents": cents}, "Payment taken"
	case "waive":
		path, body, what = "/api/desk/waive-fine", map[string]any{"command_id": id, "fine_id": get("fine_id")}, "Fine waived"
	case "declare_lost":
		path, body, what = "/api/desk/declare-lost", map[string]any{"command_id": id, "barcode": get("barcode")}, "Declared lost"
	case "mark_damaged":
		body = map[string]any{"command_id": id, "barcode": get("barcode")}
		if a := get("amount"); a != "" {
			cents, perr := parseCents(a)
			if perr != nil {
				c.showRecord(w, r, v, data, refusal(perr))
				return
			}
			body["amount_cents"] = cents
		}
		path, what = "/api/desk/mark-damaged", "Marked damaged"
	case "report_card_lost":
		path, body, what = "/api/desk/report-card-lost", map[string]any{"command_id": id, "card": data.Lookup.Card}, "Card reported lost: it opens nothing from now on"
	case "issue_card":
		path, body, what = "/api/desk/issue-card", map[string]any{"command_id": id, "patron_id": patron, "card": get("new_card")}, "New card issued"
	case "set_pin":
		path, body, what = "/api/desk/set-pin", map[string]any{"command_id": id, "patron_id": patron, "pin": get("pin")}, "PIN set"
	case "update_contact":
		body = map[string]any{"command_id": id, "patron_id": patron}
		var clear []string
		for _, f := range []string{"email", "phone", "address", "caregiver_contact"} {
			if get("clear_"+f) == "yes" {
				clear = append(clear, f)
			} else if val := get(f); val != "" {
				body[f] = val
			}
		}
		if len(clear) > 0 {
			body["clear"] = clear
		}
		path, what = "/api/desk/update-contact", "Contact details updated"
	case "close_confirm":
		data.Confirm = true
		c.showRecord(w, r, v, data, nil)
		return
	case "close":
		path, body, what = "/api/desk/close-patron", map[string]any{"command_id": id, "patron_id": patron}, "Account closed: its profile is forgotten"
	default:
		c.showRecord(w, r, v, data, refusal(schemas.Errorf(schemas.CodeInvalid, "no such desk action")))
		return
	}
	var res map[string]any
	if err := c.do(r, http.MethodPost, path, body, &res); err != nil {
		c.showRecord(w, r, v, data, refusal(err))
		return
	}
	result := done(what)
	switch op {
	case "checkout", "renew":
		if due, ok := res["due"].(string); ok {
			if t, perr := time.Parse(time.RFC3339, due); perr == nil {
				result.Message = "Due " + t.In(c.Location).Format("Mon 2 Jan 2006")
			}
		}
	case "pay":
		data.Receipt = c.receiptFor(v, id, get)
	case "report_card_lost":
		data.Issue = patron
		data.Lookup = lookupForm{Basis: policy.Card}
		v.Flash = result
		data.Focus = "new_card"
		c.render(w, v, "desk")
		return
	case "issue_card":
		data.Lookup = lookupForm{Basis: policy.Card, Card: get("new_card")}
	case "close":
		data.Lookup = lookupForm{Basis: policy.Card}
		v.Flash, data.Focus = result, "card"
		c.render(w, v, "desk")
		return
	}
	c.showRecord(w, r, v, data, result)
}

// receiptFor is the receipt of a payment just taken: the fine as the page showed it and
// the amount paid; what is left is read again with the record (showRecord). It names no
// patron.
func (c *Client) receiptFor(v *view, id string, get func(string) string) *receipt {
	paid, _ := parseCents(get("amount"))
	total, _ := strconv.ParseInt(get("amount_cents"), 10, 64)
	return &receipt{FineID: get("fine_id"), Number: id, Time: c.Now(), Branch: c.Branch, Reason: get("reason"),
		PaidCents: paid, FineCents: total, StaffName: v.Who.Name}
}

// checkIn is the return desk: an item checked in by barcode, with or without a patron.
func (c *Client) checkIn(w http.ResponseWriter, r *http.Request, v *view) {
	get, data, ok := c.deskForm(w, r, v)
	if !ok {
		return
	}
	data.Focus = "return"
	var res schemas.ReturnResult
	err := c.do(r, http.MethodPost, "/api/desk/return", map[string]any{"command_id": commandID(get), "barcode": get("barcode")}, &res)
	var result *flash
	if err != nil {
		result = refusal(err)
	} else {
		data.Return = &res
		result = done("Checked in")
		result.Message = res.Title + " (" + res.Barcode + "), shelve at " + res.Branch
		if res.FineCents > 0 {
			result.Message += "; returned late: a fine of " + money(res.FineCents) + " is now owed"
		}
	}
	if get("basis") != "" {
		// Checked in from a patron's record: show it again.
		c.showRecord(w, r, v, data, result)
		return
	}
	data.Lookup = lookupForm{Basis: policy.Card}
	v.Flash, v.Sound = result, err != nil
	if err != nil {
		v.status = statusOf(err)
	}
	c.render(w, v, "desk")
}

// parseCents reads an amount of money typed at the desk: "12", "12.5", "12.50", "$12.50".
func parseCents(s string) (int64, error) {
	bad := schemas.Errorf(schemas.CodeInvalid, "the amount must be dollars and cents, as 12.50")
	s = strings.TrimPrefix(strings.TrimSpace(s), "$")
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" || len(frac) > 2 || len(whole) > 9 {
		return 0, bad
	}
	if whole == "" {
		whole = "0"
	}
	for len(frac) < 2 {
		frac += "0"
	}
	d, err1 := strconv.ParseUint(whole, 10, 64)
	f, err2 := strconv.ParseUint(frac, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, bad
	}
	return int64(d*100 + f), nil
}

// money writes cents as dollars: $12.50.
func money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return sign + "$" + strconv.FormatInt(cents/100, 10) + "." + strconv.FormatInt(cents%100/10, 10) + strconv.FormatInt(cents%10, 10)
}

// Values are the lookup's fields, for the hidden fields of the record's forms.
func (l lookupForm) Values() url.Values {
	v := url.Values{"basis": {string(l.Basis)}}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("card", l.Card)
	set("name", l.Name)
	set("birth_date", l.BirthDate)
	set("caregiver_name", l.CaregiverName)
	set("order_ref", l.OrderRef)
	if l.PhotoIDChecked {
		v.Set("photo_id_checked", "yes")
	}
	return v
}
