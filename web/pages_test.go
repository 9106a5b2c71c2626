package web_test

import (
	"bufio"
	"cmp"
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/staff"
	"github.com/imagineif/lethe/web"
)

// samples are a request for each page route: a form that the page takes.
func samples(role string) map[string]url.Values {
	card := map[string]string{"circulation": "21000000000901", "administrator": "21000000000902", "auditor": "21000000000903"}[role]
	return map[string]url.Values{
		"POST /desk/lookup":       {"basis": {"card"}, "card": {adaCard}},
		"POST /desk/act":          {"op": {"renew"}, "basis": {"card"}, "card": {adaCard}, "barcode": {"B5"}, "command_id": {lethetest.CmdID()}},
		"POST /desk/return":       {"barcode": {"B1"}, "command_id": {lethetest.CmdID()}},
		"POST /patrons/new":       {"name": {"Pat " + role}, "birth_date": {"1990-01-01"}, "card": {card}, "command_id": {lethetest.CmdID()}},
		"POST /items/catalog":     {"barcode": {"C-" + role}, "title": {"A title"}, "collection": {"fiction"}, "replacement": {"10"}},
		"POST /lists/collections": {"format": {"html"}, "min_days": {"1"}},
		"POST /lists/access":      {"staff": {"clerk"}},
		"POST /staff":             {"op": {"enable"}, "name": {"clerk"}},
		"POST /login":             {"name": {"nobody"}, "password": {"not the password"}},
	}
}

// TestPagesByRole walks the route table of the pages as nobody and as each role: a page
// without a session sends to the sign-in page; a role that may not use a page is refused
// with 403 before anything runs; every answer is no-store and unframeable; no title, no
// redirect and no link, form or image address carries patron data; and the log holds
// none.
func TestPagesByRole(t *testing.T) {
	t.Parallel()
	lib := newLibrary(t)
	h := lib.h
	h.Account("clerk2", policy.Circulation)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	titleRe := regexp.MustCompile(`<title>([^<]*)</title>`)
	addrRe := regexp.MustCompile(`(?:href|src|action)="([^"]*)"`)
	secrets := markers(lib.ada, lib.kit)

	roles := []struct {
		account string
		role    policy.Role
	}{{"", ""}, {"clerk2", policy.Circulation}, {lethetest.Admin, policy.Administrator}, {"reader", policy.Auditor}}
	for _, who := range roles {
		cookie := ""
		if who.account != "" {
			cookie = staff.CookieName + "=" + h.Session(who.account)
		}
		forms := samples(string(who.role))
		routes := web.Routes()
		// Signing out last: it ends the session the other requests use.
		last := func(r web.Route) int {
			if strings.HasSuffix(r.Pattern, "/logout") {
				return 1
			}
			return 0
		}
		slices.SortStableFunc(routes, func(a, b web.Route) int { return cmp.Compare(last(a), last(b)) })
		for _, rt := range routes {
			method, path, _ := strings.Cut(rt.Pattern, " ")
			path = strings.NewReplacer("{$}", "", "{id}", "nosuchimport", "{name}", "circulation.svg").Replace(path)
			what := rt.Pattern + " as " + string(cmp.Or(who.role, "nobody"))
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader(forms[rt.Pattern].Encode())
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, method, h.S.HTTPURL+path, body)
			if method == http.MethodPost {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			resp, err := client.Do(req)
			if err != nil {
				cancel()
				t.Fatalf("%s: %v", what, err)
			}
			var page []byte
			if strings.HasSuffix(path, "/events") {
				// A stream: its first event is enough.
				line, _ := bufio.NewReader(resp.Body).ReadString('\n')
				page = []byte(line)
			} else {
				page, _ = io.ReadAll(resp.Body)
			}
			resp.Body.Close()
			cancel()

			status := resp.StatusCode
			switch {
			case rt.Public:
				if status >= 500 {
					t.Errorf("%s = %d", what, status)
				}
			case who.account == "" && rt.Watch:
				if !strings.Contains(string(page), "ended") && !strings.HasPrefix(string(page), "event: ended") {
					t.Errorf("%s without a session = %d %q, want the ended event", what, status, page)
				}
			case who.account == "":
				if status != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
					t.Errorf("%s without a session = %d to %q, want 303 to /login", what, status, resp.Header.Get("Location"))
				}
			case rt.Action != "" && !policy.Permit(who.role, rt.Action).Allowed():
				if status != http.StatusForbidden {
					t.Errorf("%s = %d, want 403", what, status)
				}
			default:
				if status >= 500 || status == http.StatusSeeOther && resp.Header.Get("Location") == "/login" ||
					status == http.StatusForbidden && !strings.Contains(string(page), "Refused by the library") {
					t.Errorf("%s = %d:\n%s", what, status, page)
				}
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("%s: Cache-Control %q, want no-store", what, cc)
			}
			if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
				t.Errorf("%s: framing or content policy missing: %v", what, resp.Header)
			}
			var public []string
			public = append(public, resp.Header.Get("Location"))
			if m := titleRe.FindSubmatch(page); m != nil {
				public = append(public, string(m[1]))
			}
			for _, m := range addrRe.FindAllSubmatch(page, -1) {
				public = append(public, string(m[1]))
			}
			for _, p := range public {
				for _, s := range secrets {
					if strings.Contains(p, s) {
						t.Errorf("%s: patron data %q in a title or an address: %q", what, s, p)
					}
				}
			}
		}
	}
	// A form sent from another site is refused before it runs.
	req, _ := http.NewRequest(http.MethodPost, h.S.HTTPURL+"/desk/return", strings.NewReader("barcode=B3"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", staff.CookieName+"="+h.Session(lethetest.Admin))
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("a cross-site form post = %d %v, want 403, unframeable, no-store", resp.StatusCode, resp.Header)
	}
	if it := h.Record(kitCard); len(it.Loans) != 2 {
		t.Errorf("the cross-site check-in ran: Kit has %d loans", len(it.Loans))
	}
	for _, s := range secrets {
		if strings.Contains(h.Logs.String(), s) {
			t.Errorf("the server log holds patron data %q", s)
		}
	}
}
