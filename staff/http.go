package staff

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// Cookie names. With TLS the cookie carries the __Host- prefix: browsers then accept it
// only with Secure, Path=/ and no Domain, so no other host or plain-HTTP page can plant
// or shadow it.
const (
	CookieName       = "lethe_session"
	SecureCookieName = "__Host-lethe_session"
)

// ClientHeader, set to "cli", asks Login to return the session token in its reply, for
// clients that are not browsers. Browsers get the token only in an HttpOnly cookie.
const ClientHeader = "X-Lethe-Client"

// Errors of the HTTP layer.
var (
	errNoSession = schemas.Errorf(schemas.CodeUnauthenticated, "no valid session: log in")
	errNotAdmin  = schemas.Errorf(schemas.CodeForbidden, "only an administrator may manage staff accounts")
	errBadBody   = schemas.Errorf(schemas.CodeInvalid, "the body must be one JSON object with exactly the documented fields")
)

// Auth is the staff HTTP authentication: login, logout, sessions, and the staff account
// management routes.
type Auth struct {
	Store    *Store
	Sessions *Sessions
	Limiter  *Limiter
	// Secure is set when the server speaks TLS: the cookie is then Secure and named
	// with the __Host- prefix.
	Secure bool
	Logger *slog.Logger
}

// SessionInfo is the result of a login and of GET /api/session.
type SessionInfo struct {
	Name               string      `json:"name"`
	Role               policy.Role `json:"role"`
	IdleTimeoutSeconds int64       `json:"idle_timeout_seconds"`
	Expires            time.Time   `json:"expires"` // the absolute end of the session
	// Token is the session token, only in a login reply to a request with
	// X-Lethe-Client: cli.
	Token string `json:"token,omitempty"`
}

type ctxKey struct{}

// SessionFrom returns the session that Require put in ctx.
func SessionFrom(ctx context.Context) (Session, bool) {
	s, ok := ctx.Value(ctxKey{}).(Session)
	return s, ok
}

func (a *Auth) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

func (a *Auth) cookieName() string {
	if a.Secure {
		return SecureCookieName
	}
	return CookieName
}

func writeReply(w http.ResponseWriter, status int, rep schemas.Reply) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(rep)
}

func (a *Auth) ok(w http.ResponseWriter, r *http.Request, result any) {
	raw, err := json.Marshal(result)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeReply(w, http.StatusOK, schemas.Reply{OK: true, Result: raw})
}

// fail answers with a coded error; internal detail goes to the log only.
func (a *Auth) fail(w http.ResponseWriter, r *http.Request, err error) {
	pub := schemas.Public(err)
	if pub.Code == schemas.CodeInternal || pub.Code == schemas.CodeUnavailable {
		a.logger().Error("staff http request", slog.String("method", r.Method), slog.String("route", r.Pattern),
			slog.String("code", string(pub.Code)), slog.Any("err", err))
	}
	if pub.Code == schemas.CodeUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lethe"`)
	}
	writeReply(w, schemas.HTTPStatus(pub.Code), schemas.Reply{Error: pub})
}

// decode reads a JSON body strictly into v with the one strict decoder
// (schemas.DecodeStrict: one object, known fields only, no repeated or case-folded
// names). Its error never repeats the body, which may hold a password. The server in
// front bounds the body's size (desk.MaxBodyBytes), once for every route.
func decode(r *http.Request, v any) error {
	raw, err := io.ReadAll(r.Body)
	if err != nil || schemas.DecodeStrict(raw, v) != nil {
		return errBadBody
	}
	return nil
}

// clientAddr is the client's IP address, without the port. Lethe does not trust
// X-Forwarded-For: behind a reverse proxy every client shares the proxy's address.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// token returns the session token of r: from "Authorization: Bearer", else the cookie.
func (a *Auth) token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	if c, err := r.Cookie(a.cookieName()); err == nil {
		return c.Value
	}
	return ""
}

// authenticate returns the live session of r. The account is read again on every
// request: a disabled or removed account's sessions end at once, and the role is the
// account's current one.
func (a *Auth) authenticate(r *http.Request) (Session, error) { return a.session(r, true) }

// Current returns the live session of r, as every route checks it, without marking it
// used: it is for watching a session, not for acting in it.
func (a *Auth) Current(r *http.Request) (Session, error) { return a.session(r, false) }

func (a *Auth) session(r *http.Request, touch bool) (Session, error) {
	tok := a.token(r)
	s, ok := a.Sessions.lookup(tok, touch)
	if !ok {
		return Session{}, errNoSession
	}
	acct, err := a.Store.Get(s.Account)
	if errors.Is(err, ErrNotFound) || (err == nil && acct.Disabled) {
		a.Sessions.DeleteAccount(s.Account)
		return Session{}, errNoSession
	}
	if err != nil {
		return Session{}, err
	}
	s.Role = acct.Role
	return s, nil
}

func (a *Auth) info(s Session) SessionInfo {
	return SessionInfo{
		Name:               s.Account,
		Role:               s.Role,
		IdleTimeoutSeconds: int64(a.Sessions.IdleTimeout() / time.Second),
		Expires:            s.Expires.UTC(),
	}
}

type loginRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// Login checks a name and password and starts a session. See Routes.
func (a *Auth) Login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		a.fail(w, r, schemas.Errorf(schemas.CodeInvalid, "use POST"))
		return
	}
	var req loginRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	addr := clientAddr(r)
	// A malformed name counts against the address only: it is no account, and it must
	// not grow the limiter's table with arbitrary strings.
	name := req.Name
	if !ValidName(name) {
		name = ""
	}
	// The attempt is reserved before the argon2 work: parallel guesses cannot all pass the
	// limit before the first of them fails.
	attempt, wait, ok := a.Limiter.Reserve(name, addr)
	if !ok {
		secs := int64(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		// Debug only: a flood of refused guesses must not become a flood of log lines.
		a.logger().Debug("staff login refused: too many failures", slog.String("addr", addr))
		a.fail(w, r, schemas.Errorf(schemas.CodeRateLimited, "too many failed logins; try again in %d seconds", secs))
		return
	}
	// A no-op once Fail or Succeed has ended the attempt; otherwise (the store failed, or
	// Verify panicked) the place is given back instead of being held for good.
	defer attempt.Release()
	acct, err := a.Store.Verify(req.Name, req.Password)
	if errors.Is(err, ErrBadCredentials) {
		locked := attempt.Fail()
		// No name: what was typed into the name field may be a password, or nobody's.
		a.logger().Warn("staff login failed", slog.String("addr", addr))
		if locked {
			a.logger().Warn("staff logins locked: too many failures", slog.String("addr", addr),
				slog.Duration("for", a.Limiter.cfg.Lockout))
		}
		a.fail(w, r, err)
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	attempt.Succeed()
	tok, s := a.Sessions.Create(acct)
	http.SetCookie(w, &http.Cookie{
		Name:     a.cookieName(),
		Value:    tok,
		Path:     "/",
		HttpOnly: true,
		Secure:   a.Secure,
		SameSite: http.SameSiteStrictMode,
	})
	info := a.info(s)
	if r.Header.Get(ClientHeader) == "cli" {
		info.Token = tok
	}
	a.logger().Info("staff login", slog.String("name", acct.Name), slog.String("role", string(acct.Role)))
	a.ok(w, r, info)
}

// Logout ends the request's session, if any, and expires the cookie. See Routes.
func (a *Auth) Logout(w http.ResponseWriter, r *http.Request) {
	if tok := a.token(r); tok != "" {
		if s, ok := a.Sessions.Lookup(tok); ok {
			a.logger().Info("staff logout", slog.String("name", s.Account))
		}
		a.Sessions.Delete(tok)
	}
	http.SetCookie(w, &http.Cookie{
		Name:     a.cookieName(),
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		Expires:  time.Unix(0, 0),
		HttpOnly: true,
		Secure:   a.Secure,
		SameSite: http.SameSiteStrictMode,
	})
	a.ok(w, r, struct{}{})
}

// Whoami answers with the request's session, or 401. See Routes.
func (a *Auth) Whoami(w http.ResponseWriter, r *http.Request) {
	s, err := a.authenticate(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.ok(w, r, a.info(s))
}

// Require passes only requests with a live session of an enabled account to h, with the
// Session in the request context (SessionFrom). Others get 401, code unauthenticated.
func (a *Auth) Require(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := a.authenticate(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
	})
}

// admin returns the session of r if it is an administrator's; otherwise it answers and
// returns false. Handlers behind Require only.
func (a *Auth) admin(w http.ResponseWriter, r *http.Request) (Session, bool) {
	s, ok := SessionFrom(r.Context())
	if !ok {
		a.fail(w, r, errNoSession)
		return Session{}, false
	}
	if s.Role != policy.Administrator {
		a.fail(w, r, errNotAdmin)
		return Session{}, false
	}
	return s, true
}

type addRequest struct {
	Name     string      `json:"name"`
	Role     policy.Role `json:"role"`
	Password string      `json:"password"`
}

// AddAccount creates a staff account (administrators only, behind Require). See Routes.
func (a *Auth) AddAccount(w http.ResponseWriter, r *http.Request) {
	s, ok := a.admin(w, r)
	if !ok {
		return
	}
	var req addRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.Store.Add(req.Name, req.Role, req.Password); err != nil {
		a.fail(w, r, err)
		return
	}
	a.logger().Info("staff account added over http", slog.String("name", req.Name), slog.String("role", string(req.Role)), slog.String("by", s.Account))
	a.reply(w, r, req.Name)
}

// ListAccounts lists the staff accounts (administrators only, behind Require).
func (a *Auth) ListAccounts(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.admin(w, r); !ok {
		return
	}
	list, err := a.Store.List()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.ok(w, r, list)
}

// DisableAccount disables an account and ends its sessions (administrators only, behind
// Require). An administrator cannot disable their own account here: that could leave no
// one able to manage staff. `lethe staff disable` can.
func (a *Auth) DisableAccount(w http.ResponseWriter, r *http.Request) {
	s, ok := a.admin(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if name == s.Account {
		a.fail(w, r, schemas.Errorf(schemas.CodeConflict, "you cannot disable your own account"))
		return
	}
	if err := a.Store.Disable(name); err != nil {
		a.fail(w, r, err)
		return
	}
	a.Sessions.DeleteAccount(name)
	a.logger().Info("staff account disabled over http", slog.String("name", name), slog.String("by", s.Account))
	a.reply(w, r, name)
}

// EnableAccount enables an account (administrators only, behind Require).
func (a *Auth) EnableAccount(w http.ResponseWriter, r *http.Request) {
	s, ok := a.admin(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if err := a.Store.Enable(name); err != nil {
		a.fail(w, r, err)
		return
	}
	a.logger().Info("staff account enabled over http", slog.String("name", name), slog.String("by", s.Account))
	a.reply(w, r, name)
}

type passwordRequest struct {
	Password string `json:"password"`
}

// SetPassword sets an account's password and ends all its sessions, the caller's own
// included when it is theirs (administrators only, behind Require).
func (a *Auth) SetPassword(w http.ResponseWriter, r *http.Request) {
	s, ok := a.admin(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	var req passwordRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.Store.SetPassword(name, req.Password); err != nil {
		a.fail(w, r, err)
		return
	}
	a.Sessions.DeleteAccount(name)
	a.logger().Info("staff password changed over http", slog.String("name", name), slog.String("by", s.Account))
	a.reply(w, r, name)
}

// reply answers with the account name as it is now.
func (a *Auth) reply(w http.ResponseWriter, r *http.Request, name string) {
	acct, err := a.Store.Get(name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.ok(w, r, acct)
}
