package ledger

import (
	"testing"
	"time"
)

func TestOverdueFine(t *testing.T) {
	t.Parallel()
	r := Rules{}.WithDefaults() // 25 cents a day, capped at 1000
	due := time.Date(2026, 3, 1, 17, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		back time.Time
		want int64
	}{
		{due.Add(-time.Hour), 0},
		{due, 0},
		{due.Add(time.Second), 25}, // every started day counts
		{due.Add(24 * time.Hour), 25},
		{due.Add(24*time.Hour + time.Second), 50},
		{due.Add(40 * 24 * time.Hour), 1000}, // 40 days would be 1000: the cap
		{due.Add(400 * 24 * time.Hour), 1000},
	} {
		if got := r.OverdueFine(due, tc.back); got != tc.want {
			t.Errorf("OverdueFine(due, due%+v) = %d, want %d", tc.back.Sub(due), got, tc.want)
		}
	}
	short := Rules{Day: time.Second}.WithDefaults()
	if got := short.OverdueFine(due, due.Add(3*time.Second)); got != 75 {
		t.Errorf("OverdueFine with a one-second day, 3 s late = %d, want 75", got)
	}
}

func TestRulesDefaultsAndValidate(t *testing.T) {
	t.Parallel()
	r := Rules{LoanDays: 14}.WithDefaults()
	if r.LoanDays != 14 || r.MaxRenewals != 2 || r.Day != 24*time.Hour || r.LoanPeriod() != 14*24*time.Hour {
		t.Errorf("WithDefaults = %+v, want loan days kept and the rest defaulted", r)
	}
	for _, bad := range []Rules{{LoanDays: -1}, {DailyFineCents: -5}, {Day: -time.Hour}} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
	if err := (Rules{}).Validate(); err != nil {
		t.Errorf("Validate(zero) = %v, want nil", err)
	}
}

func TestValidToken(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"30000001": true, "A-b_9": true, "": false, "a.b": false, "a b": false, "*": false, ">": false,
		"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd":  true,
		"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcde": false,
	} {
		if got := ValidToken(s); got != want {
			t.Errorf("ValidToken(%q) = %v, want %v", s, got, want)
		}
	}
}
