// Package web is the staff web client that lethe serve serves at /: server-rendered pages
// for the circulation desk, patrons, items, lists, staff accounts and the auditor's view.
//
// The client is a client of the staff HTTP API in the same process. Every page that reads
// or changes anything does it with a request to the API's handler carrying the signed-in
// person's own session, so a page can never do more than the API allows that person, a
// refusal is the API's coded error, and every disclosure is on the access record exactly
// as it is through the API. The pages add only what a browser needs: HTML, forms that
// POST (so no patron data is ever in a URL, a title or the history), no caching, and a
// stream of server-sent events that updates the numbers and ends the page when the
// session ends on the server.
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// MaxFormBytes bounds a form's body on every page but the catalog import.
const MaxFormBytes = 64 << 10

// MaxImportBytes bounds a catalog file uploaded through the page; a larger catalog
// imports with lethe items import, which takes 256 MiB.
const MaxImportBytes = 16 << 20

// Client is the staff web client.
type Client struct {
	API      http.Handler // the staff HTTP API: desk.Server.Handler()
	Auth     *staff.Auth  // to watch a session without keeping it alive (the event stream)
	Store    *projections.Store
	Expunger desk.Sweeper
	// Checkpoints reports the signed checkpoints, for the auditor's view; nil: not shown.
	Checkpoints func() Checkpoints
	Branch      string         // the branch the desk is at; default "main"
	Location    *time.Location // the library's time zone, for dates shown
	Logger      *slog.Logger
	Now         func() time.Time // default time.Now

	once   sync.Once
	pages  map[string]*template.Template
	tplErr error
	done   chan struct{}  // closed by Close: event streams and imports end
	wg     sync.WaitGroup // imports running
	jobs   jobs
	live   liveCache
	events chan struct{} // a slot for each event stream open (maxEventStreams)
}

func (c *Client) init() {
	c.once.Do(func() {
		c.done = make(chan struct{})
		c.events = make(chan struct{}, maxEventStreams)
		if c.Location == nil {
			c.Location = time.Local
		}
		c.pages, c.tplErr = parsePages(c.Location)
		if c.Logger == nil {
			c.Logger = slog.New(slog.DiscardHandler)
		}
		if c.Now == nil {
			c.Now = time.Now
		}
		if c.Branch == "" {
			c.Branch = "main"
		}
	})
}

// Check parses the pages' templates: a server that cannot render its pages does not start.
func (c *Client) Check() error {
	c.init()
	return c.tplErr
}

// Close ends the event streams and stops running imports, and waits for them. Call it
// when the HTTP server starts shutting down (http.Server.RegisterOnShutdown): an event
// stream never ends by itself.
func (c *Client) Close() {
	c.init()
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.wg.Wait()
}

// Route is one page route. The table is the client: Handler serves exactly these, and
// the tests walk it.
type Route struct {
	Pattern string
	// Action is what the page needs the session's role to permit (policy.Permit); "" for
	// pages every staff session may open, and for the sign-in page.
	Action policy.Action
	Public bool // no session needed
	// Watch: the page watches its session rather than acting in it; the session is
	// checked without being marked used (the event stream).
	Watch   bool
	handler func(c *Client, w http.ResponseWriter, r *http.Request, v *view)
}

// Routes is the route table of the pages.
func Routes() []Route {
	return []Route{
		{Pattern: "GET /{$}", handler: (*Client).home},
		{Pattern: "GET /login", Public: true, handler: (*Client).loginPage},
		{Pattern: "POST /login", Public: true, handler: (*Client).login},
		{Pattern: "POST /logout", Public: true, handler: (*Client).logout},
		{Pattern: "GET /desk", Action: policy.CheckIn, handler: (*Client).deskPage},
		{Pattern: "POST /desk/lookup", Action: policy.CheckIn, handler: (*Client).lookup},
		{Pattern: "POST /desk/act", Action: policy.CheckIn, handler: (*Client).act},
		{Pattern: "POST /desk/return", Action: policy.CheckIn, handler: (*Client).checkIn},
		{Pattern: "GET /patrons/new", Action: policy.RegisterPatron, handler: (*Client).registerPage},
		{Pattern: "POST /patrons/new", Action: policy.RegisterPatron, handler: (*Client).register},
		{Pattern: "GET /items", Action: policy.ReadItems, handler: (*Client).itemsPage},
		{Pattern: "POST /items/catalog", Action: policy.CatalogItem, handler: (*Client).catalogItem},
		{Pattern: "GET /items/import", Action: policy.CatalogItem, handler: (*Client).importPage},
		{Pattern: "POST /items/import", Action: policy.CatalogItem, handler: (*Client).importFile},
		{Pattern: "GET /items/import/{id}", Action: policy.CatalogItem, handler: (*Client).importJob},
		{Pattern: "GET /items/import/{id}/report.csv", Action: policy.CatalogItem, handler: (*Client).importReport},
		{Pattern: "GET /items/import/{id}/events", Action: policy.CatalogItem, handler: (*Client).importEvents},
		{Pattern: "GET /lists/overdue", Action: policy.ReadItems, handler: (*Client).overduePage},
		{Pattern: "GET /lists/collections", Action: policy.ExportCollections, handler: (*Client).collectionsPage},
		{Pattern: "POST /lists/collections", Action: policy.ExportCollections, handler: (*Client).collections},
		{Pattern: "GET /lists/access", Action: policy.ReadAccessLog, handler: (*Client).accessPage},
		{Pattern: "POST /lists/access", Action: policy.ReadAccessLog, handler: (*Client).accessLog},
		{Pattern: "GET /staff", Action: policy.ManageStaff, handler: (*Client).staffPage},
		{Pattern: "POST /staff", Action: policy.ManageStaff, handler: (*Client).staffChange},
		{Pattern: "GET /audit", Action: policy.ReadStatistics, handler: (*Client).auditPage},
		{Pattern: "GET /audit/chart/{name}", Action: policy.ReadStatistics, handler: (*Client).chart},
		{Pattern: "GET /events", Watch: true, handler: (*Client).eventStream},
	}
}

// Handler serves the pages, their assets, and every other path with the API's handler.
// The API guards its own routes; the pages get the same guards here: no framing, no
// sniffing, cross-origin form posts refused, bodies bounded.
func (c *Client) Handler() http.Handler {
	c.init()
	mux := http.NewServeMux()
	for _, rt := range Routes() {
		mux.Handle(rt.Pattern, c.page(rt))
	}
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})))
	mux.Handle("/", c.API)
	return mux
}

// view is what every page template gets.
type view struct {
	Title   string
	Who     *staff.SessionInfo
	Nav     []navItem
	Flash   *flash
	Active  string // the nav item of this page
	Data    any
	Now     time.Time
	Loc     *time.Location
	Sound   bool // play the refusal sound
	request *http.Request
	status  int
}

type navItem struct {
	Href, Label, Key string
}

// flash is a result shown above the page: done, or refused with the ledger's code.
type flash struct {
	OK      bool
	Title   string
	Code    schemas.Code
	Plain   string // the code in plain words
	Message string // the API's message, which never carries patron data
}

// page wraps a route: security headers, then cross-origin form posts refused (on the
// API's routes the API refuses them, in its own JSON words), the body limit, the session
// and the role.
func (c *Client) page(rt Route) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.refusedPage(w, r, http.StatusForbidden, "This form was sent from another site, and refused.")
	}))
	checked := cop.Handler(c.gate(rt))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// No page is cached: most show patron data, and a back button after sign-out must
		// not show any.
		h.Set("Cache-Control", "no-store")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		checked.ServeHTTP(w, r)
	})
}

// gate bounds the body and checks the session and the role, then runs the page.
func (c *Client) gate(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(MaxFormBytes)
		if rt.Pattern == "POST /items/import" {
			limit = MaxImportBytes
		}
		if r.ContentLength > limit {
			c.refusedPage(w, r, http.StatusRequestEntityTooLarge, "The form is too large.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if c.tplErr != nil {
			http.Error(w, "the pages could not be parsed; see the server log", http.StatusInternalServerError)
			return
		}
		v := &view{Now: c.Now(), Loc: c.Location, request: r, status: http.StatusOK}
		if rt.Watch {
			s, err := c.Auth.Current(r)
			if err != nil {
				c.ended(w)
				return
			}
			v.Who = &staff.SessionInfo{Name: s.Account, Role: s.Role}
		} else if !rt.Public {
			who, err := c.whoami(r)
			if err != nil {
				c.toLogin(w, r)
				return
			}
			v.Who = &who
			v.Nav = nav(who.Role)
			if rt.Action != "" && !policy.Permit(who.Role, rt.Action).Allowed() {
				v.status = http.StatusForbidden
				v.Title = "Not for your role"
				v.Flash = refusal(schemas.Errorf(schemas.CodeForbidden, "a %s account cannot open this page", who.Role))
				c.render(w, v, "forbidden")
				return
			}
		}
		rt.handler(c, w, r, v)
	})
}

// nav is the menu of a role: only what it may open.
func nav(role policy.Role) []navItem {
	var out []navItem
	add := func(a policy.Action, href, label, key string) {
		if policy.Permit(role, a).Allowed() {
			out = append(out, navItem{href, label, key})
		}
	}
	add(policy.CheckIn, "/desk", "Desk", "desk")
	add(policy.RegisterPatron, "/patrons/new", "New patron", "patrons")
	add(policy.ReadItems, "/items", "Items", "items")
	add(policy.ReadItems, "/lists/overdue", "Overdue", "overdue")
	add(policy.ExportCollections, "/lists/collections", "Collections", "collections")
	add(policy.ReadAccessLog, "/lists/access", "Access record", "access")
	add(policy.ManageStaff, "/staff", "Staff", "staff")
	add(policy.ReadStatistics, "/audit", "Statistics", "audit")
	return out
}

// toLogin sends a browser without a live session to the sign-in page.
func (c *Client) toLogin(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (c *Client) render(w http.ResponseWriter, v *view, name string) {
	t, ok := c.pages[name]
	if !ok {
		c.Logger.Error("web: no such page template", "page", name)
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		c.Logger.Error("web: render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(v.status)
	_, _ = w.Write(buf.Bytes())
}

// refusedPage answers a request refused before its page ran.
func (c *Client) refusedPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	v := &view{Title: "Refused", Now: c.Now(), Loc: c.Location, request: r, status: status,
		Flash: &flash{Title: "Refused", Plain: msg}}
	w.Header().Set("Cache-Control", "no-store")
	c.render(w, v, "forbidden")
}

// The in-process API client.

// recorder is the ResponseWriter of a request to the API.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// call sends a request to the API as the person who sent r: with r's cookies, address
// and TLS state, so the API sees the same session and the same client.
func (c *Client) call(r *http.Request, method, path string, body []byte) *recorder {
	return c.callWith(r.Context(), r, r.Header.Get("Cookie"), method, path, body)
}

func (c *Client) callWith(ctx context.Context, r *http.Request, cookie, method, path string, body []byte) *recorder {
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	rec := &recorder{header: http.Header{}}
	if err != nil {
		rec.status = http.StatusInternalServerError
		rec.body.WriteString(`{"error":{"code":"internal","message":"the request could not be made"}}`)
		return rec
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.RemoteAddr, req.TLS, req.Host = r.RemoteAddr, r.TLS, r.Host
	c.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec
}

// do sends in as JSON and decodes the answer into out: the result itself, or, from the
// session and staff routes, the "result" of {"ok":true,"result":…}. A refusal is the
// API's *schemas.Error.
func (c *Client) do(r *http.Request, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return decodeReply(c.call(r, method, path, body), out)
}

func decodeReply(rec *recorder, out any) error {
	if rec.status/100 != 2 {
		var e struct {
			Error *schemas.Error `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) != nil || e.Error == nil {
			return schemas.Errorf(schemas.CodeInternal, "the API answered %d", rec.status)
		}
		return e.Error
	}
	if out == nil {
		return nil
	}
	raw := rec.body.Bytes()
	var wrapped struct {
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
	}
	if bytes.HasPrefix(raw, []byte(`{"ok":`)) && json.Unmarshal(raw, &wrapped) == nil && wrapped.OK {
		raw = wrapped.Result
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return schemas.Errorf(schemas.CodeInternal, "the API's answer could not be read")
	}
	return nil
}

// whoami is the session of r, marked used: every page is the person's activity.
func (c *Client) whoami(r *http.Request) (staff.SessionInfo, error) {
	var s staff.SessionInfo
	err := c.do(r, http.MethodGet, "/api/session", nil, &s)
	return s, err
}

// refusal is the flash of an API error, in plain words.
func refusal(err error) *flash {
	var e *schemas.Error
	if !errors.As(err, &e) {
		e = schemas.Public(err)
	}
	return &flash{Title: "Refused", Code: e.Code, Plain: plainWords(e.Code), Message: e.Message}
}

func done(title string) *flash { return &flash{OK: true, Title: title} }

// plainWords says what a code means to the person at the desk.
func plainWords(code schemas.Code) string {
	switch code {
	case schemas.CodeInvalid:
		return "That was not accepted as typed."
	case schemas.CodeNotFound:
		return "Lethe has no record of that."
	case schemas.CodeConflict:
		return "Not possible in the item's or the account's current state."
	case schemas.CodeForbidden:
		return "Refused by the library's rules."
	case schemas.CodeUnavailable:
		return "Lethe cannot take this right now: try again in a moment."
	case schemas.CodeUnauthenticated:
		return "Your session has ended: sign in again."
	case schemas.CodeRateLimited:
		return "Too many attempts: wait a few minutes and try again."
	case schemas.CodeInternal:
		return "Something failed inside Lethe; the details are in the server log."
	}
	return "Refused."
}

// form reads a POSTed form (urlencoded, bounded by page) and returns the trimmed value
// of each field.
func form(r *http.Request) (func(string) string, error) {
	if err := r.ParseForm(); err != nil {
		return nil, schemas.Errorf(schemas.CodeInvalid, "the form could not be read")
	}
	return func(k string) string { return strings.TrimSpace(r.PostForm.Get(k)) }, nil
}

// drain reads what is left of a body, so a connection can be reused.
func drain(r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }
