package web

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// home sends each role to its daily page.
func (c *Client) home(w http.ResponseWriter, r *http.Request, v *view) {
	to := "/audit"
	if policy.Permit(v.Who.Role, policy.CheckIn).Allowed() {
		to = "/desk"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

type loginData struct {
	Ended bool
}

func (c *Client) loginPage(w http.ResponseWriter, r *http.Request, v *view) {
	if _, err := c.whoami(r); err == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	v.Title = "Sign in"
	v.Data = loginData{Ended: r.URL.Query().Get("ended") == "1"}
	c.render(w, v, "login")
}

// login signs in through POST /api/login, and hands its session cookie to the browser.
func (c *Client) login(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title = "Sign in"
	v.Data = loginData{}
	get, err := form(r)
	if err != nil {
		c.refuseOn(w, v, "login", err)
		return
	}
	body, _ := json.Marshal(map[string]string{"name": get("name"), "password": get("password")})
	rec := c.callWith(r.Context(), r, "", http.MethodPost, "/api/login", body)
	if err := decodeReply(rec, nil); err != nil {
		if rec.header.Get("Retry-After") != "" {
			w.Header().Set("Retry-After", rec.header.Get("Retry-After"))
		}
		c.refuseOn(w, v, "login", err)
		return
	}
	for _, ck := range rec.header.Values("Set-Cookie") {
		w.Header().Add("Set-Cookie", ck)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Client) logout(w http.ResponseWriter, r *http.Request, _ *view) {
	rec := c.call(r, http.MethodPost, "/api/logout", nil)
	for _, ck := range rec.header.Values("Set-Cookie") {
		w.Header().Add("Set-Cookie", ck)
	}
	// Clear-Site-Data empties what the browser kept of the pages (there is no cache:
	// every page is no-store) and its storage.
	w.Header().Set("Clear-Site-Data", `"cache", "storage"`)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// refuseOn renders page with the refusal of err.
func (c *Client) refuseOn(w http.ResponseWriter, v *view, page string, err error) {
	v.Flash, v.Sound = refusal(err), true
	v.status = statusOf(err)
	c.render(w, v, page)
}

// Patrons.

type registerData struct {
	Branch     string
	Registered string // the new patron's card, to open the record with
	Form       url.Values
}

func (c *Client) registerPage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Register a patron", "patrons"
	v.Data = registerData{Branch: c.Branch, Form: url.Values{}}
	c.render(w, v, "register")
}

// register sends register_patron; the form's values come back only in a refused form,
// so the clerk can correct them.
func (c *Client) register(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Register a patron", "patrons"
	get, err := form(r)
	data := registerData{Branch: c.Branch, Form: url.Values{}}
	v.Data = &data
	if err != nil {
		c.refuseOn(w, v, "register", err)
		return
	}
	profile := map[string]any{"name": get("name"), "birth_date": get("birth_date")}
	for _, f := range []string{"email", "phone", "address"} {
		if val := get(f); val != "" {
			profile[f] = val
		}
	}
	if cg := get("caregiver_name"); cg != "" {
		care := map[string]any{"name": cg}
		if ct := get("caregiver_contact"); ct != "" {
			care["contact"] = ct
		}
		profile["caregiver"] = care
	}
	body := map[string]any{"command_id": commandID(get), "home_branch": cmp.Or(get("home_branch"), c.Branch), "profile": profile}
	if card := get("card"); card != "" {
		body["card"] = card
	}
	if pin := get("pin"); pin != "" {
		body["pin"] = pin
	}
	var res schemas.Registered
	if err := c.do(r, http.MethodPost, "/api/desk/register-patron", body, &res); err != nil {
		data.Form = r.PostForm
		data.Form.Del("pin")
		c.refuseOn(w, v, "register", err)
		return
	}
	data.Registered = get("card")
	v.Flash = done("Patron registered")
	if data.Registered == "" {
		v.Flash.Message = "No card yet: issue one from the desk once the patron has one."
	}
	c.render(w, v, "register")
}

// commandID is the command id a form carries (made when the page was drawn, so that
// sending the form twice applies it once), or a new one.
func commandID(get func(string) string) string {
	if id := get("command_id"); uuid.Validate(id) == nil {
		return id
	}
	return newCommandID()
}

// Items.

type item struct {
	Barcode          string    `json:"barcode"`
	Title            string    `json:"title"`
	Collection       string    `json:"collection"`
	Branch           string    `json:"branch"`
	ReplacementCents int64     `json:"replacement_cents"`
	Status           string    `json:"status"`
	Due              time.Time `json:"due"`
}

type itemsData struct {
	Query  string
	Items  []item
	More   string // the barcode to list after, for the next page
	Search bool
}

// itemsPage finds items by barcode or title. The query is a barcode or words of a title:
// catalog data, not patron data, so it may be in the URL.
func (c *Client) itemsPage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Items", "items"
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	data := &itemsData{Query: q, Search: q != ""}
	v.Data = data
	if q == "" {
		after := r.URL.Query().Get("after")
		var items []item
		if err := c.do(r, http.MethodGet, "/api/items?limit=50&after="+url.QueryEscape(after), nil, &items); err != nil {
			c.refuseOn(w, v, "items", err)
			return
		}
		data.Items = items
		if len(items) == 50 {
			data.More = items[len(items)-1].Barcode
		}
		c.render(w, v, "items")
		return
	}
	var found []item
	if ledger.ValidToken(q) {
		var it item
		if err := c.do(r, http.MethodGet, "/api/items/"+url.PathEscape(q), nil, &it); err == nil {
			found = append(found, it)
		}
	}
	var byTitle []item
	if err := c.do(r, http.MethodGet, "/api/items?limit=100&title="+url.QueryEscape(q), nil, &byTitle); err != nil {
		c.refuseOn(w, v, "items", err)
		return
	}
	for _, it := range byTitle {
		if len(found) == 0 || it.Barcode != found[0].Barcode {
			found = append(found, it)
		}
	}
	data.Items = found
	c.render(w, v, "items")
}

// catalogItem catalogs one item.
func (c *Client) catalogItem(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Items", "items"
	v.Data = &itemsData{}
	get, err := form(r)
	if err != nil {
		c.refuseOn(w, v, "items", err)
		return
	}
	cents, err := parseCents(get("replacement"))
	if err != nil {
		c.refuseOn(w, v, "items", err)
		return
	}
	body := map[string]any{"command_id": commandID(get), "barcode": get("barcode"), "title": get("title"),
		"collection": get("collection"), "branch": cmp.Or(get("branch"), c.Branch), "replacement_cents": cents}
	if err := c.do(r, http.MethodPost, "/api/desk/catalog-item", body, nil); err != nil {
		c.refuseOn(w, v, "items", err)
		return
	}
	var it item
	if err := c.do(r, http.MethodGet, "/api/items/"+url.PathEscape(get("barcode")), nil, &it); err == nil {
		v.Data = &itemsData{Items: []item{it}, Search: true, Query: it.Barcode}
	}
	v.Flash = done("Item cataloged")
	c.render(w, v, "items")
}

// Lists.

type overdueData struct {
	Branches []string
	Branch   string
	Groups   []overdueGroup
	Total    int
}

type overdueGroup struct {
	Branch string
	Items  []item
}

// overduePage lists the items overdue now, by branch, with no borrower: a borrower is
// disclosed only by a lookup on a basis, one account at a time.
func (c *Client) overduePage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Overdue items", "overdue"
	data := &overdueData{Branch: r.URL.Query().Get("branch")}
	v.Data = data
	var items []item
	if err := c.do(r, http.MethodGet, "/api/overdue", nil, &items); err != nil {
		c.refuseOn(w, v, "overdue", err)
		return
	}
	by := map[string][]item{}
	for _, it := range items {
		if !slices.Contains(data.Branches, it.Branch) {
			data.Branches = append(data.Branches, it.Branch)
		}
		if data.Branch == "" || data.Branch == it.Branch {
			by[it.Branch] = append(by[it.Branch], it)
			data.Total++
		}
	}
	slices.Sort(data.Branches)
	for _, b := range data.Branches {
		if len(by[b]) > 0 {
			slices.SortFunc(by[b], func(x, y item) int { return x.Due.Compare(y.Due) })
			data.Groups = append(data.Groups, overdueGroup{b, by[b]})
		}
	}
	c.render(w, v, "overdue")
}

type collectionsData struct {
	MinOwed  string
	MinDays  string
	Ran      bool
	Accounts []ledger.Debtor
	Total    int64
}

func (c *Client) collectionsPage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Collections", "collections"
	v.Data = &collectionsData{}
	c.render(w, v, "collections")
}

// collections runs the collections export (one access entry naming every account listed),
// shown as a table or sent as the agency's CSV.
func (c *Client) collections(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Collections", "collections"
	data := &collectionsData{}
	v.Data = data
	get, err := form(r)
	if err != nil {
		c.refuseOn(w, v, "collections", err)
		return
	}
	data.MinOwed, data.MinDays = get("min_owed"), get("min_days")
	q := url.Values{}
	if data.MinOwed != "" {
		cents, err := parseCents(data.MinOwed)
		if err != nil {
			c.refuseOn(w, v, "collections", err)
			return
		}
		q.Set("min_owed_cents", strconv.FormatInt(cents, 10))
	}
	if data.MinDays != "" {
		q.Set("min_days_overdue", data.MinDays)
	}
	if get("format") == "csv" {
		q.Set("format", "csv")
		rec := c.call(r, http.MethodGet, "/api/collections?"+q.Encode(), nil)
		if err := decodeReply(rec, nil); err != nil {
			c.refuseOn(w, v, "collections", err)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="collections.csv"`)
		_, _ = w.Write(rec.body.Bytes())
		return
	}
	var res struct {
		MinOwed  int64           `json:"min_owed_cents"`
		MinDays  int             `json:"min_days_overdue"`
		Accounts []ledger.Debtor `json:"accounts"`
	}
	if err := c.do(r, http.MethodGet, "/api/collections?"+q.Encode(), nil, &res); err != nil {
		c.refuseOn(w, v, "collections", err)
		return
	}
	data.Ran, data.Accounts = true, res.Accounts
	data.MinOwed, data.MinDays = strings.TrimPrefix(money(res.MinOwed), "$"), strconv.Itoa(res.MinDays)
	for _, a := range res.Accounts {
		data.Total += a.OwedCents
	}
	c.render(w, v, "collections")
}

type accessData struct {
	Staff, From, To, Patron string
	Ran                     bool
	Entries                 []access.Listed
}

func (c *Client) accessPage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Access record", "access"
	today := c.Now().In(c.Location).Format(time.DateOnly)
	v.Data = &accessData{From: today, To: today}
	c.render(w, v, "access")
}

// accessLog reads the access record with filters; the filters are POSTed, since one of
// them may be a patron's id. Reading it is itself on the record.
func (c *Client) accessLog(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Access record", "access"
	data := &accessData{}
	v.Data = data
	get, err := form(r)
	if err != nil {
		c.refuseOn(w, v, "access", err)
		return
	}
	data.Staff, data.From, data.To, data.Patron = get("staff"), get("from"), get("to"), get("patron")
	q := url.Values{"limit": {"10000"}}
	for k, val := range map[string]string{"staff": data.Staff, "from": data.From, "to": data.To, "patron": data.Patron} {
		if val != "" {
			q.Set(k, val)
		}
	}
	var entries []access.Listed
	if err := c.do(r, http.MethodGet, "/api/access-log?"+q.Encode(), nil, &entries); err != nil {
		c.refuseOn(w, v, "access", err)
		return
	}
	slices.Reverse(entries) // newest first on the screen
	data.Ran, data.Entries = true, entries
	c.render(w, v, "access")
}

// Staff accounts.

type staffData struct {
	Accounts []staff.Account
	Roles    []policy.Role
}

func (c *Client) staffPage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Staff accounts", "staff"
	c.showStaff(w, r, v)
}

func (c *Client) showStaff(w http.ResponseWriter, r *http.Request, v *view) {
	data := &staffData{Roles: []policy.Role{policy.Circulation, policy.Administrator, policy.Auditor}}
	v.Data = data
	if err := c.do(r, http.MethodGet, "/api/staff", nil, &data.Accounts); err != nil {
		c.refuseOn(w, v, "staff", err)
		return
	}
	c.render(w, v, "staff")
}

// staffChange adds an account, disables or enables one, or sets a password.
func (c *Client) staffChange(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Staff accounts", "staff"
	get, err := form(r)
	if err != nil {
		v.Flash = refusal(err)
		c.showStaff(w, r, v)
		return
	}
	name := get("name")
	var what string
	switch get("op") {
	case "add":
		err = c.do(r, http.MethodPost, "/api/staff", map[string]string{"name": name, "role": get("role"), "password": get("password")}, nil)
		what = "Account added"
	case "disable", "enable":
		err = c.do(r, http.MethodPost, "/api/staff/"+url.PathEscape(name)+"/"+get("op"), nil, nil)
		what = map[string]string{"disable": "Account disabled: its sessions ended", "enable": "Account enabled"}[get("op")]
	case "password":
		err = c.do(r, http.MethodPost, "/api/staff/"+url.PathEscape(name)+"/password", map[string]string{"password": get("password")}, nil)
		what = "Password set: the account's sessions ended"
	default:
		err = schemas.Errorf(schemas.CodeInvalid, "no such change")
	}
	if err != nil {
		v.Flash, v.Sound = refusal(err), true
	} else {
		v.Flash = done(what)
	}
	c.showStaff(w, r, v)
}
