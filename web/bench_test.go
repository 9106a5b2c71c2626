package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/demo"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/staff"
)

// BenchmarkPages measures each page's server time on the demo's data: 2,000 items and
// 300 patrons, after simulated kiosks ran for five seconds, 25 days later (the loans
// still out are overdue). The handler is called
// directly, so the time is the server's own, with no network.
//
//	go test -run '^$' -bench BenchmarkPages -benchtime 50x ./web
func BenchmarkPages(b *testing.B) {
	h := lethetest.New(b)
	ctx := context.Background()
	c := demo.NewLocal(h.S)
	defer c.Close()
	lib, err := demo.Seed(ctx, c, 2000, 300, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := lib.Run(runCtx, c, demo.RunConfig{Kiosks: 6}); err != nil {
		b.Fatal(err)
	}
	cancel()
	// Three weeks and more later: the loans still out are overdue.
	h.Clock.Advance(25 * 24 * time.Hour)
	handler := h.S.Handler()
	cookie := staff.CookieName + "=" + h.Session(lethetest.Admin)
	pages := []struct {
		name, method, path string
		form               url.Values
	}{
		{"desk", "GET", "/desk", nil},
		{"lookup", "POST", "/desk/lookup", url.Values{"basis": {"card"}, "card": {lib.Cards[0]}}},
		{"items", "GET", "/items", nil},
		{"items search", "GET", "/items?q=" + url.QueryEscape("the"), nil},
		{"overdue", "GET", "/lists/overdue", nil},
		{"collections", "POST", "/lists/collections", url.Values{"format": {"html"}}},
		{"access record", "POST", "/lists/access", url.Values{"staff": {lethetest.Admin}}},
		{"staff", "GET", "/staff", nil},
		{"audit", "GET", "/audit", nil},
		{"chart circulation", "GET", "/audit/chart/circulation.svg", nil},
		{"chart forgetting", "GET", "/audit/chart/forgetting.svg", nil},
		{"register", "GET", "/patrons/new", nil},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				var body io.Reader
				if p.form != nil {
					body = strings.NewReader(p.form.Encode())
				}
				req := httptest.NewRequest(p.method, p.path, body)
				req.Header.Set("Cookie", cookie)
				if p.form != nil {
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				}
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s %s = %d", p.method, p.path, rec.Code)
				}
			}
		})
	}
}
