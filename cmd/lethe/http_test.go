package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// The trust boundary of the staff HTTP API, through the real server: the headers on every
// response, cross-origin refusals in the API's error shape, and one body limit.

// send makes one request with client and returns the response (body closed) and its body.
func send(t *testing.T, client *http.Client, method, url string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp, raw
}

// routePath is a request path for a route pattern, with its wildcards filled in.
func routePath(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	return method, strings.NewReplacer("{barcode}", "X1", "{name}", "nobody", "{$}", "").Replace(path)
}

// wantAPIError checks that a reply is exactly {"error":{"code":code,"message":…}} with the
// status of code.
func wantAPIError(t *testing.T, what string, resp *http.Response, body []byte, code schemas.Code) {
	t.Helper()
	var r map[string]json.RawMessage
	var e schemas.Error
	if resp.StatusCode != schemas.HTTPStatus(code) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
		json.Unmarshal(body, &r) != nil || len(r) != 1 || json.Unmarshal(r["error"], &e) != nil || e.Code != code || e.Message == "" {
		t.Errorf("%s = %d %q %.200s, want %d with {\"error\":{\"code\":%q,\"message\":…}}", what, resp.StatusCode,
			resp.Header.Get("Content-Type"), body, schemas.HTTPStatus(code), code)
	}
}

// TestResponseHeaders: every response, on every route of the table, a refusal, an unknown
// route or a body too large, forbids framing (CSP frame-ancestors 'none' and
// X-Frame-Options: DENY) and carries HSTS exactly when the server speaks TLS.
func TestResponseHeaders(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSignedCert(t)
	for _, tc := range []struct {
		name   string
		opt    harnessOption
		client *http.Client
		tls    bool
	}{
		{"plain HTTP", func(*node.ServiceConfig) {}, &http.Client{}, false},
		{"TLS", func(c *node.ServiceConfig) { c.TLSCert, c.TLSKey = certFile, keyFile },
			&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.opt)
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
			routes := h.s.Desk.Routes()
			for _, r := range routes {
				method, path := routePath(r.Pattern)
				resp, body := send(t, tc.client, method, h.s.HTTPURL+path, nil)
				if resp.StatusCode >= 500 {
					t.Errorf("%s = %d %s", r.Pattern, resp.StatusCode, body)
				}
				check(r.Pattern, resp)
			}
			resp, _ := send(t, tc.client, "GET", h.s.HTTPURL+"/api/no-such-route", nil)
			check("an unknown route", resp)
			resp, _ = send(t, tc.client, "POST", h.s.HTTPURL+"/api/logout", nil, "Sec-Fetch-Site", "cross-site")
			check("a cross-origin refusal", resp)
			resp, _ = send(t, tc.client, "POST", h.s.HTTPURL+"/api/login", bytes.NewReader(make([]byte, desk.MaxBodyBytes+1)))
			check("a body too large", resp)
			// The dashboard has its own policy: it must still forbid framing.
			resp, _ = send(t, tc.client, "GET", h.s.HTTPURL+"/", nil)
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("the dashboard's Content-Security-Policy is %q, want its own", csp)
			}
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
	h := newHarness(t)
	tok := h.session(adminName)
	client := &http.Client{}
	body := func() io.Reader {
		raw, _ := json.Marshal(schemas.CatalogItem{CommandID: cmdID(), ItemCataloged: schemas.ItemCataloged{
			Barcode: "CO1", Title: "Cross origin", Collection: "fiction", Branch: "main", ReplacementCents: 100}})
		return bytes.NewReader(raw)
	}
	catalog := h.s.HTTPURL + desk.CommandPath(schemas.CmdCatalogItem)
	before := len(h.events())
	for _, c := range []struct {
		what   string
		header []string
	}{
		{"Sec-Fetch-Site: cross-site", []string{"Sec-Fetch-Site", "cross-site"}},
		{"Sec-Fetch-Site: same-site", []string{"Sec-Fetch-Site", "same-site"}},
		{"an Origin of another host", []string{"Origin", "https://evil.example"}},
	} {
		resp, raw := send(t, client, "POST", catalog, body(), append(c.header, "Authorization", "Bearer "+tok, "Content-Type", "application/json")...)
		wantAPIError(t, "catalog with "+c.what, resp, raw, schemas.CodeForbidden)
		resp, raw = send(t, client, "POST", h.s.HTTPURL+"/api/login", strings.NewReader(`{"name":"admin","password":"`+staffPassword+`"}`), c.header...)
		wantAPIError(t, "login with "+c.what, resp, raw, schemas.CodeForbidden)
		if len(resp.Cookies()) != 0 {
			t.Errorf("a cross-origin login with %s set a cookie", c.what)
		}
	}
	if n := len(h.events()); n != before {
		t.Errorf("cross-origin requests appended %d events, want none", n-before)
	}
	resp, raw := send(t, client, "POST", catalog, body(), "Sec-Fetch-Site", "same-origin", "Authorization", "Bearer "+tok, "Content-Type", "application/json")
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
	h := newHarness(t)
	client := &http.Client{}
	for _, r := range h.s.Desk.Routes() {
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
			resp, raw := send(t, client, method, h.s.HTTPURL+path, body)
			what := r.Pattern + " with a body over the limit"
			if chunked {
				what += ", chunked"
			}
			if chunked && r.MaxBody != 0 {
				wantUnauthenticated(t, what+", without a session", resp, raw)
				continue
			}
			wantAPIError(t, what, resp, raw, schemas.CodeInvalid)
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
	resp, raw := send(t, client, "POST", h.s.HTTPURL+"/api/login", strings.NewReader(atLimit))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a login body of exactly the limit = %d %s, want 401: read, and the password is wrong", resp.StatusCode, raw)
	}
	// The CLI's login still works after all that: refused bodies were no guesses.
	h.session(adminName)
}

// TestHTTPLimitFlags: the connection caps come from the flag, else LETHE_*, else the
// defaults, and nonsense is refused before anything starts.
func TestHTTPLimitFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args          []string
		env           map[string]string
		total, per    int
		wantErrSubstr string
	}{
		{nil, nil, desk.DefaultMaxConns, desk.DefaultMaxConnsPerIP, ""},
		{[]string{"--http-max-conns", "100", "--http-max-conns-per-ip", "100"}, nil, 100, 100, ""},
		{nil, map[string]string{"LETHE_HTTP_MAX_CONNS": "2000", "LETHE_HTTP_MAX_CONNS_PER_IP": "500"}, 2000, 500, ""},
		{[]string{"--http-max-conns-per-ip", "8"}, map[string]string{"LETHE_HTTP_MAX_CONNS_PER_IP": "500"}, desk.DefaultMaxConns, 8, ""},
		{[]string{"--http-max-conns", "0"}, nil, 0, 0, "--http-max-conns must"},
		{[]string{"--http-max-conns", "10", "--http-max-conns-per-ip", "11"}, nil, 0, 0, "--http-max-conns-per-ip must"},
		{nil, map[string]string{"LETHE_HTTP_MAX_CONNS_PER_IP": "many"}, 0, 0, "--http-max-conns-per-ip must"},
	} {
		var stderr syncBuffer
		f := newFlags("serve", func(k string) string { return c.env[k] }, &stderr)
		build := serviceFlags(f, t.TempDir(), "60s", "127.0.0.1:4222")
		if err := f.parse(c.args); err != nil {
			t.Fatalf("parse(%q): %v", c.args, err)
		}
		cfg, err := build()
		if c.wantErrSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErrSubstr) {
				t.Errorf("serve %q with %v: %v, want an error with %q", c.args, c.env, err, c.wantErrSubstr)
			}
			continue
		}
		if err != nil || cfg.HTTPServer.MaxConns != c.total || cfg.HTTPServer.MaxConnsPerIP != c.per {
			t.Errorf("serve %q with %v: caps %d, %d per address, %v; want %d, %d", c.args, c.env,
				cfg.HTTPServer.MaxConns, cfg.HTTPServer.MaxConnsPerIP, err, c.total, c.per)
		}
	}
}
