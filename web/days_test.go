package web_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/staff"
)

// TestCompressedDays: with lethe demo's compressed library days (a day a second), the
// statistics and the auditor's view count those days, not the one calendar day the demo
// runs in.
func TestCompressedDays(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithRules(ledger.Rules{Day: time.Second, LoanDays: 7}))
	h.Register(leeCard, leeName, leeBirth)
	for i := range 5 {
		h.Catalog("D"+strconv.Itoa(i), 1000)
	}
	start := h.Clock.Now()
	for range 3 {
		for i := range 5 {
			h.MustCheckout(leeCard, "D"+strconv.Itoa(i))
			h.Checkin("D" + strconv.Itoa(i))
		}
		h.Clock.Advance(time.Second)
	}
	var days []string
	for i := range 3 {
		days = append(days, start.UTC().AddDate(0, 0, i).Format(time.DateOnly))
	}
	var stats []struct {
		Day     string `json:"day"`
		Measure string `json:"measure"`
		Count   *int64 `json:"count"`
	}
	if status := h.Get("/api/stats", &stats); status != http.StatusOK {
		t.Fatalf("stats = %d", status)
	}
	got := map[string]int64{}
	for _, s := range stats {
		if s.Measure == "checkouts" && s.Count != nil {
			got[s.Day] += *s.Count
		}
	}
	for _, d := range days {
		if got[d] != 5 {
			t.Errorf("checkouts on library day %s = %d, want 5 (all: %v)", d, got[d], got)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, h.S.HTTPURL+"/audit", nil)
	req.Header.Set("Cookie", staff.CookieName+"="+h.Session(lethetest.Admin))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, d := range days {
		if !strings.Contains(string(page), "<td>"+d+"</td><td>5</td>") {
			t.Errorf("the auditor's view has no row for library day %s with 5 checkouts", d)
		}
	}
}
