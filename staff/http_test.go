package staff

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/phc"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// seedHashes holds one hash per test password, so that each test's accounts do not cost
// an argon2 run each (a quarter of a second under -race).
var seedHashes sync.Map

// seed stores an account as Add would, with a cached hash of pw.
func seed(t *testing.T, s *Store, name string, role policy.Role, pw string) {
	t.Helper()
	h, ok := seedHashes.Load(pw)
	if !ok {
		enc, err := phc.New(pw)
		if err != nil {
			t.Fatal(err)
		}
		h, _ = seedHashes.LoadOrStore(pw, enc)
	}
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.put(name, record{Role: role, Created: now, PasswordChanged: now, Hash: h.(string)}); err != nil {
		t.Fatal(err)
	}
}

const (
	alicePW = "alice-secret-4f1b9e"
	bobPW   = "bob-secret-83c2aa07"
)

// env is a staff HTTP API over a real store, with alice (administrator) and bob
// (circulation). Every password it sees is checked, at the end of the test, to appear in
// no response and no log line.
type env struct {
	t       *testing.T
	auth    *Auth
	clock   *fakeClock
	srv     *httptest.Server
	logs    *testkit.SyncBuffer
	mu      sync.Mutex
	seen    bytes.Buffer // every response: status line, headers, body
	secrets []string
}

func newEnv(t *testing.T, secure bool) *env {
	t.Helper()
	e := &env{t: t, clock: newFakeClock(), logs: &testkit.SyncBuffer{}, secrets: []string{alicePW, bobPW}}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := openStore(t, t.TempDir(), logger)
	seed(t, store, "alice", policy.Administrator, alicePW)
	seed(t, store, "bob", policy.Circulation, bobPW)
	e.auth = &Auth{
		Store:    store,
		Sessions: NewSessions(SessionConfig{Now: e.clock.Now}),
		Limiter:  NewLimiter(LimitConfig{Now: e.clock.Now}),
		Secure:   secure,
		Logger:   logger,
	}
	// The server's route table is desk's; these are the same routes.
	mux := http.NewServeMux()
	admin := func(h http.HandlerFunc) http.Handler { return e.auth.Require(h) }
	mux.HandleFunc("POST /api/login", e.auth.Login)
	mux.HandleFunc("POST /api/logout", e.auth.Logout)
	mux.HandleFunc("GET /api/session", e.auth.Whoami)
	mux.Handle("POST /api/staff", admin(e.auth.AddAccount))
	mux.Handle("GET /api/staff", admin(e.auth.ListAccounts))
	mux.Handle("POST /api/staff/{name}/disable", admin(e.auth.DisableAccount))
	mux.Handle("POST /api/staff/{name}/enable", admin(e.auth.EnableAccount))
	mux.Handle("POST /api/staff/{name}/password", admin(e.auth.SetPassword))
	mux.Handle("GET /api/private", e.auth.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := SessionFrom(r.Context())
		if !ok {
			t.Errorf("SessionFrom in a Require'd handler = false")
		}
		io.WriteString(w, s.Account+" "+string(s.Role))
	})))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	t.Cleanup(e.checkNoLeaks) // runs before the server closes
	return e
}

// checkNoLeaks is the rule that passwords never appear in responses or logs.
func (e *env) checkNoLeaks() {
	e.mu.Lock()
	seen := e.seen.String()
	secrets := e.secrets
	e.mu.Unlock()
	logs := e.logs.String()
	if !strings.Contains(logs, "staff") {
		e.t.Errorf("the captured log has no staff lines: the leak check looks at nothing")
	}
	for _, pw := range secrets {
		if strings.Contains(seen, pw) {
			e.t.Errorf("a response contained the password %q", pw)
		}
		if strings.Contains(logs, pw) {
			e.t.Errorf("the log contains the password %q:\n%s", pw, logs)
		}
	}
	if strings.Contains(seen, "$argon2id$") || strings.Contains(logs, "$argon2id$") {
		e.t.Errorf("a response or log line contains a password hash")
	}
}

func (e *env) secret(pw string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, pw)
	return pw
}

type response struct {
	status int
	header http.Header
	body   []byte
	reply  schemas.Reply
}

// do sends a request. auth is a Cookie header value ("name=value"), a bearer token
// ("Bearer x"), or empty.
func (e *env) do(method, path, auth string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(auth, "Bearer "):
		req.Header.Set("Authorization", auth)
	case auth != "":
		req.Header.Set("Cookie", auth)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	resp.Header.Write(&e.seen)
	e.seen.Write(raw)
	e.mu.Unlock()
	r := response{status: resp.StatusCode, header: resp.Header, body: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.reply); err != nil {
			e.t.Fatalf("%s %s: reply %q is not JSON: %v", method, path, raw, err)
		}
	}
	return r
}

// login logs in and returns the session cookie as a Cookie header value.
func (e *env) login(name, pw string) string {
	e.t.Helper()
	r := e.do("POST", "/api/login", "", map[string]string{"name": name, "password": pw})
	if r.status != http.StatusOK {
		e.t.Fatalf("login(%s) = %d %s, want 200", name, r.status, r.body)
	}
	c := cookieOf(e.t, r.header)
	return c.Name + "=" + c.Value
}

func cookieOf(t *testing.T, h http.Header) *http.Cookie {
	t.Helper()
	cs := (&http.Response{Header: h}).Cookies()
	if len(cs) != 1 {
		t.Fatalf("Set-Cookie = %q, want one cookie", h.Values("Set-Cookie"))
	}
	return cs[0]
}

func wantError(t *testing.T, what string, r response, status int, code schemas.Code) {
	t.Helper()
	if r.status != status || r.reply.OK || r.reply.Error == nil || r.reply.Error.Code != code {
		t.Errorf("%s = %d %s, want %d with code %s", what, r.status, r.body, status, code)
	}
}

func TestLoginCookie(t *testing.T) {
	t.Parallel()
	for _, secure := range []bool{false, true} {
		t.Run("secure="+strconv.FormatBool(secure), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, secure)
			r := e.do("POST", "/api/login", "", map[string]string{"name": "alice", "password": alicePW})
			if r.status != http.StatusOK || !r.reply.OK {
				t.Fatalf("login = %d %s, want 200 ok", r.status, r.body)
			}
			c := cookieOf(t, r.header)
			wantName := "lethe_session"
			if secure {
				wantName = "__Host-lethe_session"
			}
			if c.Name != wantName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != secure ||
				c.Path != "/" || c.Domain != "" || c.RawExpires != "" || c.MaxAge != 0 || c.Value == "" {
				t.Errorf("cookie = %q, want %s, HttpOnly, SameSite=Strict, Secure=%v, Path=/, no Domain, no expiry",
					r.header.Get("Set-Cookie"), wantName, secure)
			}
			var info SessionInfo
			if err := json.Unmarshal(r.reply.Result, &info); err != nil {
				t.Fatal(err)
			}
			want := SessionInfo{Name: "alice", Role: policy.Administrator, IdleTimeoutSeconds: 900, Expires: e.clock.Now().Add(8 * time.Hour)}
			if info != want {
				t.Errorf("login result = %+v, want %+v", info, want)
			}
			if strings.Contains(string(r.body), c.Value) || strings.Contains(string(r.body), `"token"`) {
				t.Errorf("a browser's login reply %s carries the token", r.body)
			}
			if !strings.Contains(e.logs.String(), `msg="staff login" name=alice role=administrator`) {
				t.Errorf("log lacks the login line:\n%s", e.logs)
			}

			cookie := c.Name + "=" + c.Value
			if r := e.do("GET", "/api/session", cookie, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"name":"alice"`) {
				t.Errorf("GET /api/session with the cookie = %d %s, want 200 alice", r.status, r.body)
			}
			if r := e.do("GET", "/api/private", cookie, nil); r.status != http.StatusOK || string(r.body) != "alice administrator" {
				t.Errorf("GET /api/private with the cookie = %d %s, want alice administrator", r.status, r.body)
			}
			// The other cookie name is not accepted.
			other := "__Host-lethe_session"
			if secure {
				other = "lethe_session"
			}
			wantError(t, "GET /api/session with the other cookie name", e.do("GET", "/api/session", other+"="+c.Value, nil), 401, schemas.CodeUnauthenticated)

			r = e.do("POST", "/api/logout", cookie, nil)
			gone := cookieOf(t, r.header)
			if r.status != http.StatusOK || gone.Name != wantName || gone.MaxAge >= 0 {
				t.Errorf("logout = %d, Set-Cookie %q; want 200 and the cookie expired", r.status, r.header.Get("Set-Cookie"))
			}
			wantError(t, "GET /api/session after logout", e.do("GET", "/api/session", cookie, nil), 401, schemas.CodeUnauthenticated)
			if r := e.do("POST", "/api/logout", "", nil); r.status != http.StatusOK {
				t.Errorf("logout without a session = %d, want 200", r.status)
			}
		})
	}
}

func TestLoginCLIToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	r := e.do("POST", "/api/login", "", map[string]string{"name": "bob", "password": bobPW}, ClientHeader, "cli")
	var info SessionInfo
	if err := json.Unmarshal(r.reply.Result, &info); err != nil || info.Token == "" {
		t.Fatalf("CLI login = %d %s, want a token", r.status, r.body)
	}
	if c := cookieOf(t, r.header); c.Value != info.Token {
		t.Errorf("token in the reply differs from the cookie's")
	}
	if r := e.do("GET", "/api/private", "Bearer "+info.Token, nil); r.status != http.StatusOK || string(r.body) != "bob circulation" {
		t.Errorf("GET /api/private with the bearer token = %d %s, want bob circulation", r.status, r.body)
	}
	if r := e.do("POST", "/api/logout", "Bearer "+info.Token, nil); r.status != http.StatusOK {
		t.Errorf("logout with the bearer token = %d", r.status)
	}
	wantError(t, "bearer token after logout", e.do("GET", "/api/private", "Bearer "+info.Token, nil), 401, schemas.CodeUnauthenticated)
}

func TestForgedTokenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.login("alice", alicePW) // a live session exists, and is not the one forged
	forged := strings.Repeat("A", 43)
	for _, auth := range []string{"", "lethe_session=" + forged, "Bearer " + forged, "Bearer ", "lethe_session="} {
		for _, path := range []string{"/api/session", "/api/private", "/api/staff"} {
			r := e.do("GET", path, auth, nil)
			wantError(t, "GET "+path+" with "+strconv.Quote(auth), r, 401, schemas.CodeUnauthenticated)
		}
	}
}

func TestExpiredSessionRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	cookie := e.login("bob", bobPW)
	e.clock.Advance(14 * time.Minute)
	if r := e.do("GET", "/api/private", cookie, nil); r.status != http.StatusOK {
		t.Fatalf("GET /api/private after 14m = %d, want 200", r.status)
	}
	e.clock.Advance(15 * time.Minute)
	wantError(t, "GET /api/private after 15m idle", e.do("GET", "/api/private", cookie, nil), 401, schemas.CodeUnauthenticated)
}

func TestLoginFailuresLookAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	if err := e.auth.Store.Disable("bob"); err != nil {
		t.Fatal(err)
	}
	wrong := e.secret("not-alices-password")
	var bodies []string
	for _, c := range []struct{ what, name, pw string }{
		{"wrong password", "alice", wrong},
		{"unknown account", "nobody", alicePW},
		{"disabled account", "bob", bobPW},
		{"malformed name", "no such name!", alicePW},
	} {
		r := e.do("POST", "/api/login", "", map[string]string{"name": c.name, "password": c.pw})
		wantError(t, "login with a "+c.what, r, 401, schemas.CodeUnauthenticated)
		if r.reply.Error != nil && r.reply.Error.Message != "wrong name or password" {
			t.Errorf("login with a %s: message %q, want %q", c.what, r.reply.Error.Message, "wrong name or password")
		}
		if len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("login with a %s set a cookie", c.what)
		}
		bodies = append(bodies, string(r.body))
	}
	for i := range bodies {
		if bodies[i] != bodies[0] {
			t.Errorf("failed login bodies differ: %q and %q", bodies[0], bodies[i])
		}
	}
	if !strings.Contains(e.logs.String(), `msg="staff login failed" addr=127.0.0.1`+"\n") {
		t.Errorf("log lacks the failure line with the address and nothing more:\n%s", e.logs)
	}
}

// TestFailedLoginNamesNotLogged: what was typed into the name field of a failed or refused
// login reaches no log line, whether it names an account, nobody, or is a password typed
// into the wrong field.
func TestFailedLoginNamesNotLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	typed := []string{"alice", "Tr0ub4dor-marker-3x", "nobody-marker-41", "no such marker name!"}
	wrong := e.secret("wrong-password-marker")
	statuses := map[int]int{}
	for range 2 {
		for _, name := range typed {
			r := e.do("POST", "/api/login", "", map[string]string{"name": name, "password": wrong})
			statuses[r.status]++
		}
	}
	// Five failures, then the address is locked: the refusals are logged too (at debug).
	if statuses[401] != 5 || statuses[429] != 3 {
		t.Fatalf("statuses of 8 wrong logins = %v, want 5 401s and 3 429s", statuses)
	}
	logs := e.logs.String()
	for _, line := range []string{`msg="staff login failed"`, `msg="staff logins locked: too many failures"`, `msg="staff login refused: too many failures"`} {
		if !strings.Contains(logs, line) {
			t.Fatalf("the log lacks %s: the scan looks at nothing\n%s", line, logs)
		}
	}
	for _, name := range typed {
		if strings.Contains(logs, name) {
			t.Errorf("the log contains the typed name %q:\n%s", name, logs)
		}
	}
}

func TestLoginRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	for i := range 5 {
		pw := e.secret("wrong-password-number-" + strconv.Itoa(i))
		r := e.do("POST", "/api/login", "", map[string]string{"name": "alice", "password": pw})
		wantError(t, "failed login "+strconv.Itoa(i+1), r, 401, schemas.CodeUnauthenticated)
	}
	r := e.do("POST", "/api/login", "", map[string]string{"name": "alice", "password": alicePW})
	wantError(t, "6th login, with the right password", r, 429, schemas.CodeRateLimited)
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra != 900 {
		t.Errorf("Retry-After = %q, want 900", r.header.Get("Retry-After"))
	}
	if len(r.header.Values("Set-Cookie")) != 0 {
		t.Errorf("a locked login set a cookie")
	}
	// The address is locked too: bob cannot log in from it.
	wantError(t, "bob's login from the locked address", e.do("POST", "/api/login", "", map[string]string{"name": "bob", "password": bobPW}), 429, schemas.CodeRateLimited)
	e.clock.Advance(10 * time.Minute)
	r = e.do("POST", "/api/login", "", map[string]string{"name": "alice", "password": alicePW})
	if ra := r.header.Get("Retry-After"); r.status != 429 || ra != "300" {
		t.Errorf("login 10m into the lockout = %d, Retry-After %q; want 429, 300", r.status, ra)
	}
	e.clock.Advance(5 * time.Minute)
	e.login("alice", alicePW)
}

func TestDisabledAccountSessionRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	admin := e.login("alice", alicePW)
	bob1 := e.login("bob", bobPW)

	// Disabled offline-style, straight in the store: the next request is refused.
	if err := e.auth.Store.Disable("bob"); err != nil {
		t.Fatal(err)
	}
	wantError(t, "disabled bob's request", e.do("GET", "/api/private", bob1, nil), 401, schemas.CodeUnauthenticated)
	if err := e.auth.Store.Enable("bob"); err != nil {
		t.Fatal(err)
	}
	wantError(t, "bob's old session after re-enabling", e.do("GET", "/api/private", bob1, nil), 401, schemas.CodeUnauthenticated)

	// Disabled over HTTP by an administrator.
	bob2 := e.login("bob", bobPW)
	r := e.do("POST", "/api/staff/bob/disable", admin, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"disabled":true`) {
		t.Fatalf("POST /api/staff/bob/disable = %d %s, want 200 disabled", r.status, r.body)
	}
	if n := e.auth.Sessions.Len(); n != 1 {
		t.Errorf("sessions after disabling bob = %d, want 1 (alice's)", n)
	}
	wantError(t, "bob's session after disable", e.do("GET", "/api/session", bob2, nil), 401, schemas.CodeUnauthenticated)
	wantError(t, "disabling oneself", e.do("POST", "/api/staff/alice/disable", admin, nil), 409, schemas.CodeConflict)
	if r := e.do("POST", "/api/staff/bob/enable", admin, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"disabled":false`) {
		t.Errorf("POST /api/staff/bob/enable = %d %s, want 200 enabled", r.status, r.body)
	}
}

func TestStaffManagementAdminOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	bob := e.login("bob", bobPW)
	pw := e.secret("carols-password-6b0e")
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/staff", nil},
		{"POST", "/api/staff", map[string]string{"name": "carol", "role": "administrator", "password": pw}},
		{"POST", "/api/staff/alice/disable", nil},
		{"POST", "/api/staff/alice/enable", nil},
		{"POST", "/api/staff/alice/password", map[string]string{"password": pw}},
	} {
		wantError(t, c.method+" "+c.path+" as circulation", e.do(c.method, c.path, bob, c.body), 403, schemas.CodeForbidden)
		wantError(t, c.method+" "+c.path+" logged out", e.do(c.method, c.path, "", c.body), 401, schemas.CodeUnauthenticated)
	}
	if _, err := e.auth.Store.Get("carol"); err == nil {
		t.Errorf("carol exists: a circulation account added her")
	}
	if _, err := e.auth.Store.Verify("alice", alicePW); err != nil {
		t.Errorf("alice's password changed by a circulation account: %v", err)
	}
}

func TestStaffManagement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	admin := e.login("alice", alicePW)
	carolPW := e.secret("carols-password-6b0e")
	carolPW2 := e.secret("carols-new-password-91d")
	weak := e.secret("short-pw")

	wantError(t, "add with a weak password", e.do("POST", "/api/staff", admin, map[string]string{"name": "carol", "role": "auditor", "password": weak}), 400, schemas.CodeInvalid)
	wantError(t, "add with a bad role", e.do("POST", "/api/staff", admin, map[string]string{"name": "carol", "role": "kiosk", "password": carolPW}), 400, schemas.CodeInvalid)
	wantError(t, "add with an unknown field", e.do("POST", "/api/staff", admin, map[string]string{"name": "carol", "role": "auditor", "password": carolPW, "admin": "yes"}), 400, schemas.CodeInvalid)
	wantError(t, "add with two objects", e.do("POST", "/api/staff", admin, `{"name":"carol","role":"auditor","password":"`+carolPW+`"} {}`), 400, schemas.CodeInvalid)
	wantError(t, "add an existing name", e.do("POST", "/api/staff", admin, map[string]string{"name": "bob", "role": "auditor", "password": carolPW}), 409, schemas.CodeConflict)

	r := e.do("POST", "/api/staff", admin, map[string]string{"name": "carol", "role": "auditor", "password": carolPW})
	var acct Account
	if r.status != http.StatusOK || json.Unmarshal(r.reply.Result, &acct) != nil || acct.Name != "carol" || acct.Role != policy.Auditor {
		t.Fatalf("add carol = %d %s, want 200 with the auditor carol", r.status, r.body)
	}
	r = e.do("GET", "/api/staff", admin, nil)
	var list []Account
	if err := json.Unmarshal(r.reply.Result, &list); err != nil || len(list) != 3 {
		t.Fatalf("GET /api/staff = %d %s, want three accounts", r.status, r.body)
	}
	if strings.Contains(strings.ToLower(string(r.body)), "hash") {
		t.Errorf("GET /api/staff = %s, which mentions a hash", r.body)
	}

	carol := e.login("carol", carolPW)
	wantError(t, "weak new password", e.do("POST", "/api/staff/carol/password", admin, map[string]string{"password": weak}), 400, schemas.CodeInvalid)
	wantError(t, "password of an unknown account", e.do("POST", "/api/staff/nobody/password", admin, map[string]string{"password": carolPW2}), 404, schemas.CodeNotFound)
	if r := e.do("POST", "/api/staff/carol/password", admin, map[string]string{"password": carolPW2}); r.status != http.StatusOK {
		t.Fatalf("set carol's password = %d %s, want 200", r.status, r.body)
	}
	wantError(t, "carol's session after a password change", e.do("GET", "/api/session", carol, nil), 401, schemas.CodeUnauthenticated)
	if r := e.do("GET", "/api/session", admin, nil); r.status != http.StatusOK {
		t.Errorf("alice's session after changing carol's password = %d, want 200", r.status)
	}
	wantError(t, "carol's old password", e.do("POST", "/api/login", "", map[string]string{"name": "carol", "password": carolPW}), 401, schemas.CodeUnauthenticated)
	e.login("carol", carolPW2)
}

// TestLoginBadRequests: malformed logins are refused as invalid and are no guess. (Bodies
// too large are refused before any handler, by desk's server: TestBodyLimitOnEveryRoute.)
func TestLoginBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	for _, body := range []string{
		"",
		"not json",
		`{"name":"alice"`,
		`{"name":"alice","password":"` + alicePW + `","extra":1}`,
		`{"name":"alice","password":"` + alicePW + `"}{}`,
		`["alice","` + alicePW + `"]`,
	} {
		r := e.do("POST", "/api/login", "", body)
		wantError(t, "login with "+strconv.Quote(body[:min(len(body), 40)]), r, 400, schemas.CodeInvalid)
	}
	// Malformed requests are not password guesses: alice can still log in.
	if _, ok := e.auth.Limiter.Check("alice", "127.0.0.1"); !ok {
		t.Errorf("malformed login requests counted as failures")
	}
	if r := e.do("GET", "/api/login", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/login = %d, want 405", r.status)
	}
}

// TestParallelGuessesReserved races 100 wrong guesses at once. An attempt counts from the
// moment it starts, so at most the limit's five reach argon2 (each a 401); the rest are
// refused (429) without a password check. Checked for one address trying many names, and
// for one account tried from many addresses.
func TestParallelGuessesReserved(t *testing.T) {
	t.Parallel()
	const guesses, limit = 100, 5
	for _, tc := range []struct {
		what      string
		name      func(i int) string
		localAddr func(i int) string
	}{
		{"one address", func(i int) string { return "guess" + strconv.Itoa(i) }, func(int) string { return "127.0.0.1" }},
		{"one account", func(int) string { return "alice" }, func(i int) string { return "127.0.1." + strconv.Itoa(i+1) }},
	} {
		t.Run(tc.what, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, false)
			wrong := e.secret("parallel-wrong-guess-7d1")
			statuses := make([]int, guesses)
			errs := make([]error, guesses)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range guesses {
				wg.Go(func() {
					statuses[i], errs[i] = rawLogin(e.srv.URL, tc.localAddr(i), tc.name(i), wrong, start)
				})
			}
			close(start)
			wg.Wait()
			evaluated, refused := 0, 0
			for i, s := range statuses {
				switch {
				case errs[i] != nil:
					t.Fatalf("guess %d: %v", i, errs[i])
				case s == http.StatusUnauthorized:
					evaluated++
				case s == http.StatusTooManyRequests:
					refused++
				default:
					t.Errorf("guess %d = %d, want 401 or 429", i, s)
				}
			}
			t.Logf("%d parallel wrong guesses: %d checked by argon2, %d refused", guesses, evaluated, refused)
			if evaluated < 1 || evaluated > limit {
				t.Errorf("%d of %d parallel wrong guesses were checked, want 1 to %d", evaluated, guesses, limit)
			}
			if _, ok := e.auth.Limiter.Check(tc.name(0), tc.localAddr(0)); ok {
				t.Errorf("after %d wrong guesses, another attempt may be tried; want it locked", evaluated)
			}
		})
	}
}

// rawLogin posts one login from localAddr once start is closed, without the env's
// helpers, which may not fail the test from another goroutine.
func rawLogin(url, localAddr, name, password string, start <-chan struct{}) (int, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localAddr)}}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	raw, err := json.Marshal(map[string]string{"name": name, "password": password})
	if err != nil {
		return 0, err
	}
	<-start
	resp, err := client.Post(url+"/api/login", "application/json", bytes.NewReader(raw))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}
