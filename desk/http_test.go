package desk_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// The trust boundary of the staff HTTP API, through the real server: the headers on every
// response, cross-origin refusals in the API's error shape, and one body limit.

// routePath is a request path for a route pattern, with its wildcards filled in.
func routePath(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	return method, strings.NewReplacer("{barcode}", "X1", "{name}", "nobody", "{$}", "").Replace(path)
}

// TestResponseHeaders: every response, on every route of the table, a refusal, an unknown
// route or a body too large, forbids framing (CSP frame-ancestors 'none' and
// X-Frame-Options: DENY) and carries HSTS exactly when the server speaks TLS.
func TestResponseHeaders(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := testkit.SelfSignedCert(t)
	for _, tc := range []struct {
		name   string
		opt    lethetest.Option
		client *http.Client
		tls    bool
	}{
		{"plain HTTP", func(*node.ServiceConfig) {}, &http.Client{}, false},
		{"TLS", func(c *node.ServiceConfig) { c.TLSCert, c.TLSKey = certFile, keyFile },
			&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := lethetest.New(t, tc.opt)
			check := func(what string, resp *http.Response) {
				t.Helper()
				hd := resp.Header
				if csp := hd.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
					t.Errorf("%s: Content-Security-Policy %q lacks frame-ancestors 'none'", what, csp)
				}
				if xfo := hd.Get("X-Frame-Options"); xfo != "DENY" {
					t.Errorf("%s: X-Frame-Options %q, want DENY", what, xfo)
				}
				if hsts := hd.Get("Strict-Transport-Security"); (hsts == "max-age=31536000") != tc.tls || (hsts != "") != tc.tls {
					t.Errorf("%s: Strict-Transport-Security %q; want max-age=31536000 exactly when TLS (%v)", what, hsts, tc.tls)
				}
			}
			routes := h.S.Desk.Routes()
			for _, r := range routes {
				method, path := routePath(r.Pattern)
				resp, body := lethetest.Send(t, tc.client, method, h.S.HTTPURL+path, nil)
				if resp.StatusCode >= 500 {
					t.Errorf("%s = %d %s", r.Pattern, resp.StatusCode, body)
				}
				check(r.Pattern, resp)
			}
			resp, _ := lethetest.Send(t, tc.client, "GET", h.S.HTTPURL+"/api/no-such-route", nil)
			check("an unknown route", resp)
			resp, _ = lethetest.Send(t, tc.client, "POST", h.S.HTTPURL+"/api/logout", nil, "Sec-Fetch-Site", "cross-site")
			check("a cross-origin refusal", resp)
			resp, _ = lethetest.Send(t, tc.client, "POST", h.S.HTTPURL+"/api/login", bytes.NewReader(make([]byte, desk.MaxBodyBytes+1)))
			check("a body too large", resp)
			// The staff web client's pages have their own policy: it must still forbid
			// framing.
			resp, _ = lethetest.Send(t, tc.client, "GET", h.S.HTTPURL+"/login", nil)
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("the sign-in page's Content-Security-Policy is %q, want its own", csp)
			}
			check("the sign-in page", resp)
			if len(routes) < 20 {
				t.Fatalf("the route table has %d routes: the walk is wrong", len(routes))
			}
		})
	}
}

// TestCrossOriginRefusedAsJSON: a state-changing request that a browser says comes from
// another site is refused with 403 and the API's error shape, before it does anything; a
// same-origin one is not refused.
func TestCrossOriginRefusedAsJSON(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	tok := h.Session(lethetest.Admin)
	client := &http.Client{}
	body := func() io.Reader {
		raw, _ := json.Marshal(schemas.CatalogItem{CommandID: lethetest.CmdID(), ItemCataloged: schemas.ItemCataloged{
			Barcode: "CO1", Title: "Cross origin", Collection: "fiction", Branch: "main", ReplacementCents: 100}})
		return bytes.NewReader(raw)
	}
	catalog := h.S.HTTPURL + desk.CommandPath(schemas.CmdCatalogItem)
	before := len(h.Events())
	for _, c := range []struct {
		what   string
		header []string
	}{
		{"Sec-Fetch-Site: cross-site", []string{"Sec-Fetch-Site", "cross-site"}},
		{"Sec-Fetch-Site: same-site", []string{"Sec-Fetch-Site", "same-site"}},
		{"an Origin of another host", []string{"Origin", "https://evil.example"}},
	} {
		resp, raw := lethetest.Send(t, client, "POST", catalog, body(), append(c.header, "Authorization", "Bearer "+tok, "Content-Type", "application/json")...)
		lethetest.WantAPIError(t, "catalog with "+c.what, resp, raw, schemas.CodeForbidden)
		resp, raw = lethetest.Send(t, client, "POST", h.S.HTTPURL+"/api/login", strings.NewReader(`{"name":"admin","password":"`+lethetest.Password+`"}`), c.header...)
		lethetest.WantAPIError(t, "login with "+c.what, resp, raw, schemas.CodeForbidden)
		if len(resp.Cookies()) != 0 {
			t.Errorf("a cross-origin login with %s set a cookie", c.what)
		}
	}
	if n := len(h.Events()); n != before {
		t.Errorf("cross-origin requests appended %d events, want none", n-before)
	}
	resp, raw := lethetest.Send(t, client, "POST", catalog, body(), "Sec-Fetch-Site", "same-origin", "Authorization", "Bearer "+tok, "Content-Type", "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a same-origin catalog = %d %s, want 200", resp.StatusCode, raw)
	}
}

// TestBodyLimitOnEveryRoute: on every route of the table, a body one byte over
// desk.MaxBodyBytes is refused, with its length said up front or not (chunked), as
// invalid "body too large", before the session check; a body of exactly the limit is not.
// A route with a limit of its own (the bulk catalog route) refuses a body over that limit
// before the session check when its length says so, and reads a chunked one only with a
// session (TestCatalogItemsRoute): without one, it is unauthenticated.
func TestBodyLimitOnEveryRoute(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	client := &http.Client{}
	for _, r := range h.S.Desk.Routes() {
		method, path := routePath(r.Pattern)
		limit := int64(desk.MaxBodyBytes)
		if r.MaxBody != 0 {
			limit = r.MaxBody
		}
		over := bytes.Repeat([]byte(" "), int(limit)+1)
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(over)
			if chunked {
				body = io.MultiReader(bytes.NewReader(over)) // no length: sent chunked
			}
			resp, raw := lethetest.Send(t, client, method, h.S.HTTPURL+path, body)
			what := r.Pattern + " with a body over the limit"
			if chunked {
				what += ", chunked"
			}
			if chunked && r.MaxBody != 0 {
				lethetest.WantUnauthenticated(t, what+", without a session", resp, raw)
				continue
			}
			lethetest.WantAPIError(t, what, resp, raw, schemas.CodeInvalid)
			if !strings.Contains(string(raw), "body too large") {
				t.Errorf("%s = %s, want the message to say body too large", what, raw)
			}
		}
	}
	// At the limit: not refused for its size. Login is public: it reads the body.
	atLimit := `{"name":"admin","password":"` + strings.Repeat("x", desk.MaxBodyBytes-len(`{"name":"admin","password":""}`)) + `"}`
	if len(atLimit) != desk.MaxBodyBytes {
		t.Fatalf("body of %d bytes, want %d", len(atLimit), desk.MaxBodyBytes)
	}
	resp, raw := lethetest.Send(t, client, "POST", h.S.HTTPURL+"/api/login", strings.NewReader(atLimit))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a login body of exactly the limit = %d %s, want 401: read, and the password is wrong", resp.StatusCode, raw)
	}
	// The CLI's login still works after all that: refused bodies were no guesses.
	h.Session(lethetest.Admin)
}
