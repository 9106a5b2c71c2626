package ledger

import (
	"errors"
	"time"
)

// Rules are the library's loan rules. The zero value of each field means the default
// given in its comment, which suits a small public library.
type Rules struct {
	LoanDays          int   // loan period; default 21
	MaxRenewals       int   // renewals per loan; default 2
	MaxLoans          int   // open loans per patron; default 50
	DailyFineCents    int64 // overdue fine per day; default 25
	MaxFineCents      int64 // cap on one loan's overdue fine; default 1000
	BlockCents        int64 // checkouts and renewals refused at or above this owed; default 1000
	LostAfterDays     int   // days overdue before the sweeper declares an item lost; default 60
	DamageFeeCents    int64 // damage fine when staff give no amount; default 500
	DefaultPriceCents int64 // replacement fee for items with no price; default 2500
	// Day is the length of a day for loan periods, fines and lost-after: 24h. Only the
	// demo and tests shorten it, to watch weeks of circulation in a minute.
	Day time.Duration
}

// WithDefaults returns r with zero fields set to their defaults.
func (r Rules) WithDefaults() Rules {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&r.LoanDays, 21)
	def(&r.MaxRenewals, 2)
	def(&r.MaxLoans, 50)
	def64(&r.DailyFineCents, 25)
	def64(&r.MaxFineCents, 1000)
	def64(&r.BlockCents, 1000)
	def(&r.LostAfterDays, 60)
	def64(&r.DamageFeeCents, 500)
	def64(&r.DefaultPriceCents, 2500)
	if r.Day == 0 {
		r.Day = 24 * time.Hour
	}
	return r
}

// Validate reports rules that cannot work.
func (r Rules) Validate() error {
	var errs []error
	if r.LoanDays < 0 || r.MaxRenewals < 0 || r.MaxLoans < 0 || r.LostAfterDays < 0 {
		errs = append(errs, errors.New("loan days, renewals, loans and lost-after days must not be negative"))
	}
	if r.Day < 0 {
		errs = append(errs, errors.New("day must not be negative"))
	}
	if r.DailyFineCents < 0 || r.MaxFineCents < 0 || r.BlockCents < 0 || r.DamageFeeCents < 0 || r.DefaultPriceCents < 0 {
		errs = append(errs, errors.New("amounts must not be negative"))
	}
	return errors.Join(errs...)
}

// LoanPeriod is the length of one loan or renewal.
func (r Rules) LoanPeriod() time.Duration { return time.Duration(r.LoanDays) * r.Day }

// LostAfter is how long past due a loan is declared lost.
func (r Rules) LostAfter() time.Duration { return time.Duration(r.LostAfterDays) * r.Day }

// OverdueFine is the fine for an item due at due and returned at back: the daily fine for
// every started day late, capped.
func (r Rules) OverdueFine(due, back time.Time) int64 {
	if !back.After(due) {
		return 0
	}
	days := int64((back.Sub(due) + r.Day - 1) / r.Day)
	return min(days*r.DailyFineCents, r.MaxFineCents)
}
