// Package desk is the staff HTTP API: sessions and roles in front of every route, the
// patron lookup on each basis of Policy 1002, the desk's circulation commands, the
// collections export and the access record. Every route that can disclose a patron's data
// writes exactly one access entry per request, refusals included.
package desk

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// Server is the staff HTTP API.
type Server struct {
	Reads  *Reads // anonymous reads, health and metrics
	Ledger *ledger.Ledger
	Access *access.Log
	Auth   *staff.Auth
	Branch string // the branch desk commands are recorded at; default "main"
	// Collections are the default thresholds of the collections export.
	Collections Thresholds
	Location    *time.Location // the library's time zone, for dates in filters
	Logger      *slog.Logger
	// Backup writes a backup of the whole library (node.Service.Backup): it calls begin
	// with the file's name before the first byte, and writes nothing if begin fails. Nil:
	// POST /api/backup is unavailable.
	Backup func(ctx context.Context, begin func(name string) error, w io.Writer) error
	// Cluster reports and changes the cluster's membership; nil: those routes are
	// unavailable.
	Cluster Cluster

	bulkOnce sync.Once
	bulk     chan struct{} // a slot for each bulk catalog request running (MaxBulkRequests)
}

// Thresholds select the accounts of the collections export: an account is listed when it
// owes at least MinOwedCents or has an item at least MinDaysOverdue days overdue.
type Thresholds struct {
	MinOwedCents   int64
	MinDaysOverdue int
}

// Who may use a route.
type Access int

const (
	Public  Access = iota // anyone: health, metrics, the page, login
	Session               // any staff session; the handler or Action decides further
)

// Route is one route of the API. The route table is the API: Handler serves exactly these
// routes, and the tests walk this table.
type Route struct {
	Pattern string
	Access  Access
	// Action is the permission the route needs, checked with policy.Permit; "" when the
	// route decides by the policy itself (patron lookups) or is public.
	Action policy.Action
	// Discloses is set when the route can disclose a patron's data: it writes exactly one
	// access entry for every request that reaches it with a session.
	Discloses bool
	// MaxBody is the route's own limit on request bodies, when it is not MaxBodyBytes.
	// Such a body is not read before the route: the route reads it after the session
	// and role checks (see limitBody).
	MaxBody int64
	Doc     string
	handler http.HandlerFunc
}

// command is a ledger command the desk sends, and what it takes.
type command struct {
	name      string
	action    policy.Action
	discloses bool // the command names a card, a patron or a fine
}

// commands are the desk's circulation commands, each at POST /api/desk/<name with dashes>.
var commands = []command{
	{schemas.CmdCheckOut, policy.CheckOut, true},
	{schemas.CmdReturn, policy.CheckIn, false},
	{schemas.CmdRenew, policy.Renew, true},
	{schemas.CmdReportCardLost, policy.ReportCardLost, true},
	{schemas.CmdIssueCard, policy.IssueCard, true},
	{schemas.CmdRegisterPatron, policy.RegisterPatron, false},
	{schemas.CmdPayFine, policy.TakePayment, true},
	{schemas.CmdWaiveFine, policy.WaiveFine, true},
	{schemas.CmdAssessFee, policy.AssessFee, true},
	{schemas.CmdDeclareLost, policy.DeclareLost, false},
	{schemas.CmdMarkDamaged, policy.MarkDamaged, false},
	{schemas.CmdClosePatron, policy.ClosePatron, true},
	{schemas.CmdSetPIN, policy.SetPIN, true},
	{schemas.CmdUpdateContact, policy.UpdateContact, true},
	{schemas.CmdCatalogItem, policy.CatalogItem, false},
}

// CommandPath is the route of a desk command, or "" if staff cannot send it.
func CommandPath(name string) string {
	for _, c := range commands {
		if c.name == name {
			return "/api/desk/" + strings.ReplaceAll(name, "_", "-")
		}
	}
	return ""
}

// Routes is the route table.
func (s *Server) Routes() []Route {
	var routes []Route
	anonymous := map[string]policy.Action{
		"GET /api/items": policy.ReadItems, "GET /api/items/{barcode}": policy.ReadItems,
		"GET /api/overdue": policy.ReadItems, "GET /api/stats": policy.ReadStatistics,
		"GET /api/summary": policy.ReadStatistics, "POST /api/sweep": policy.ManageStaff,
		"GET /api/erasure": policy.ReadErasure,
	}
	for pattern, h := range s.Reads.Handlers() {
		r := Route{Pattern: pattern, Access: Public, handler: h, Doc: "anonymous"}
		if a, ok := anonymous[pattern]; ok {
			r.Access, r.Action = Session, a
		}
		routes = append(routes, r)
	}
	routes = append(routes,
		Route{Pattern: "POST /api/login", Access: Public, handler: s.Auth.Login, Doc: "log in"},
		Route{Pattern: "POST /api/logout", Access: Public, handler: s.Auth.Logout, Doc: "log out"},
		Route{Pattern: "GET /api/session", Access: Public, handler: s.Auth.Whoami, Doc: "the current session"},
		Route{Pattern: "GET /api/staff", Access: Session, Action: policy.ManageStaff, handler: s.Auth.ListAccounts, Doc: "list staff accounts"},
		Route{Pattern: "POST /api/staff", Access: Session, Action: policy.ManageStaff, handler: s.Auth.AddAccount, Doc: "add a staff account"},
		Route{Pattern: "POST /api/staff/{name}/disable", Access: Session, Action: policy.ManageStaff, handler: s.Auth.DisableAccount, Doc: "disable a staff account"},
		Route{Pattern: "POST /api/staff/{name}/enable", Access: Session, Action: policy.ManageStaff, handler: s.Auth.EnableAccount, Doc: "enable a staff account"},
		Route{Pattern: "POST /api/staff/{name}/password", Access: Session, Action: policy.ManageStaff, handler: s.Auth.SetPassword, Doc: "set a staff account's password"},
		Route{Pattern: "POST /api/patrons/lookup", Access: Session, Discloses: true, handler: s.lookup, Doc: "a patron's record on a basis of Policy 1002"},
		Route{Pattern: "GET /api/collections", Access: Session, Action: policy.ExportCollections, Discloses: true, handler: s.collections, Doc: "the collections export"},
		Route{Pattern: "GET /api/access-log", Access: Session, Action: policy.ReadAccessLog, Discloses: true, handler: s.accessLog, Doc: "the access record"},
		Route{Pattern: "POST /api/backup", Access: Session, Action: policy.MakeBackup, Discloses: true, handler: s.backup, Doc: "a backup of the whole library, sealed to a key that expires"},
		Route{Pattern: "GET /api/cluster", Access: Session, Action: policy.ReadErasure, handler: s.clusterStatus, Doc: "the cluster's nodes, copies, key-encryption epoch and erasure window"},
		Route{Pattern: "POST /api/cluster/nodes/{name}/remove", Access: Session, Action: policy.ManageCluster, handler: s.removeNode, Doc: "take a node off the cluster's member list"},
		Route{Pattern: "POST /api/projections/skip", Access: Session, Action: policy.ResolveProjections, handler: s.skip, Doc: "let stopped projections pass over an event they cannot apply"},
		Route{Pattern: "POST " + CatalogItemsPath, Access: Session, Action: policy.CatalogItem, MaxBody: MaxBulkBodyBytes,
			handler: s.catalogItems, Doc: "many catalog_item commands at once"},
	)
	for _, c := range commands {
		routes = append(routes, Route{Pattern: "POST " + CommandPath(c.name), Access: Session, Action: c.action,
			Discloses: c.discloses, handler: s.command(c), Doc: "the " + c.name + " command"})
	}
	slices.SortFunc(routes, func(a, b Route) int { return cmp.Compare(a.Pattern, b.Pattern) })
	return routes
}

// Handler serves the route table. Every request first passes the guards of guard.go:
// framing and transport headers on every response, cross-origin protection, and the limit
// on request bodies (MaxBodyBytes, or the route's own MaxBody).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	limits := map[string]int64{}
	for _, r := range s.Routes() {
		var h http.Handler = r.handler
		if r.Access == Session {
			h = s.Auth.Require(s.permit(r, h))
		}
		mux.Handle(r.Pattern, h)
		if r.MaxBody != 0 {
			limits[r.Pattern] = r.MaxBody
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, schemas.Errorf(schemas.CodeNotFound, "no such route"))
	})
	return secureHeaders(s.crossOrigin(s.limitBody(mux, limits)))
}

// permit checks the route's action against the session's role. A refused request on a
// disclosing route is recorded, like every other request on it.
func (s *Server) permit(r Route, h http.Handler) http.Handler {
	if r.Action == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		by := requester(req)
		dec := policy.Permit(by.Role, r.Action)
		if dec.Allowed() {
			h.ServeHTTP(w, req)
			return
		}
		if r.Discloses {
			err := s.Ledger.RecordAccess(req.Context(), ledger.Disclosure{By: by, Action: string(r.Action),
				Scope: policy.Refused, Clause: dec.Clause.ID})
			if err != nil {
				s.fail(w, req, err)
				return
			}
		}
		s.fail(w, req, refusal(dec))
	})
}

func refusal(dec policy.Decision) error {
	return schemas.Errorf(schemas.CodeForbidden, "refused under Policy 1002 (%s): %s", dec.Clause.ID, dec.Reason)
}

func requester(r *http.Request) ledger.Requester {
	sess, _ := staff.SessionFrom(r.Context())
	return ledger.Requester{Name: sess.Account, Role: sess.Role}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	Fail(s.logger(), w, r, err)
}

func (s *Server) location() *time.Location {
	if s.Location == nil {
		return time.Local
	}
	return s.Location
}

// decode reads a JSON object into v, refusing unknown fields. The body is bounded already
// (limitBody).
func decode(r *http.Request, v any) error {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return errBodyUnread
	}
	return schemas.DecodeStrict(raw, v)
}

// LookupRequest is the body of POST /api/patrons/lookup.
type LookupRequest struct {
	Basis          policy.Basis `json:"basis"`
	Card           string       `json:"card,omitempty"`
	Name           string       `json:"name,omitempty"`
	BirthDate      string       `json:"birth_date,omitempty"`
	PhotoIDChecked bool         `json:"photo_id_checked,omitempty"`
	CaregiverName  string       `json:"caregiver_name,omitempty"`
	OrderRef       string       `json:"order_ref,omitempty"`
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	by := requester(r)
	var req LookupRequest
	if err := decode(r, &req); err != nil {
		// Nothing was disclosed, but the request reached a disclosing route: record it.
		if rerr := s.Ledger.RecordAccess(r.Context(), ledger.Disclosure{By: by, Action: "lookup", Scope: policy.Refused, Clause: policy.ClauseConfidentiality}); rerr != nil {
			err = rerr
		}
		s.fail(w, r, err)
		return
	}
	d, err := s.Ledger.Disclose(r.Context(), ledger.DiscloseRequest{
		By: by, Action: "lookup", Basis: req.Basis, Card: req.Card, Name: req.Name, BirthDate: req.BirthDate,
		PhotoIDChecked: req.PhotoIDChecked, CaregiverName: req.CaregiverName, OrderRef: req.OrderRef,
	})
	if err != nil {
		var e *schemas.Error
		if errors.As(err, &e) && e.Code == schemas.CodeForbidden {
			WriteJSON(w, http.StatusForbidden, map[string]any{"error": e, "scope": policy.Refused, "clause": d.Clause})
			return
		}
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, d)
}

// command sends a desk command to the ledger. A command that names a card, a patron or a
// fine is recorded on the access record with the patron it concerns.
func (s *Server) command(c command) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body) // bounded already (limitBody)
		if err != nil {
			err = errBodyUnread
		}
		// Who the command concerns is read before it runs: closing an account removes the
		// rows that say so.
		var patronID string
		var card bool
		if c.discloses && err == nil {
			patronID, card = s.Ledger.CommandPatron(c.name, raw)
		}
		var res any
		if err == nil {
			branch := cmp.Or(s.Branch, "main")
			res, err = s.Ledger.Execute(r.Context(), ledger.Station{Kind: "desk", Branch: branch, ID: "desk"}, c.name, raw)
		}
		if c.discloses {
			if rerr := s.recordCommand(r.Context(), requester(r), c, patronID, card, err); rerr != nil {
				s.fail(w, r, rerr)
				return
			}
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	}
}

// recordCommand writes the access entry of a desk command that concerns a patron.
func (s *Server) recordCommand(ctx context.Context, by ledger.Requester, c command, patronID string, card bool, cmdErr error) error {
	dec := policy.Permit(by.Role, c.action)
	d := ledger.Disclosure{By: by, Action: c.name, Scope: dec.Scope, Clause: dec.Clause.ID}
	if cmdErr != nil {
		// Whatever the code (invalid, not_found, conflict, forbidden, unavailable,
		// internal), a command that did not run disclosed nothing: it was refused.
		d.Scope = policy.Refused
	}
	if card {
		d.Basis = policy.Card
	}
	if patronID != "" {
		d.Patrons = []string{patronID}
	}
	return s.Ledger.RecordAccess(ctx, d)
}

func (s *Server) accessLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := access.Filter{Staff: q.Get("staff"), PatronID: q.Get("patron")}
	var err error
	if f.From, err = s.day(q.Get("from"), 0); err == nil {
		f.To, err = s.day(q.Get("to"), 1)
	}
	if err == nil && q.Get("limit") != "" {
		if err = json.Unmarshal([]byte(q.Get("limit")), &f.Limit); err != nil || f.Limit < 1 || f.Limit > 10000 {
			err = schemas.Errorf(schemas.CodeInvalid, "limit must be 1 to 10000")
		}
	}
	dec := policy.Permit(requester(r).Role, policy.ReadAccessLog)
	entry := ledger.Disclosure{By: requester(r), Action: string(policy.ReadAccessLog), Scope: dec.Scope, Clause: dec.Clause.ID}
	if err != nil {
		entry.Scope = policy.Refused
	}
	// Reading the access record shows which accounts were looked at: it is itself on it.
	if rerr := s.Ledger.RecordAccess(r.Context(), entry); rerr != nil {
		s.fail(w, r, rerr)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := s.Access.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, entries)
}

// day parses a YYYY-MM-DD date in the library's zone, plus days; "" is the zero time.
func (s *Server) day(v string, plus int) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.ParseInLocation(time.DateOnly, v, s.location())
	if err != nil {
		return time.Time{}, schemas.Errorf(schemas.CodeInvalid, "from and to must be dates, YYYY-MM-DD")
	}
	return t.AddDate(0, 0, plus), nil
}
