package schemas

import (
	"errors"
	"time"
)

// ErrBirthDate says a profile's birth date is not a YYYY-MM-DD date, without repeating it.
var ErrBirthDate = errors.New("the birth date is not a date in the form YYYY-MM-DD")

// AgeAt is the patron's age in whole years at t, in the library's time zone loc: the
// birthday counts from midnight local time. An unparsable birth date is ErrBirthDate,
// which does not quote it.
func (p Profile) AgeAt(t time.Time, loc *time.Location) (int, error) {
	birth, err := time.ParseInLocation(time.DateOnly, p.BirthDate, loc)
	if err != nil {
		// Not time's error: it quotes the text it could not parse, a birth date.
		return 0, ErrBirthDate
	}
	now := t.In(loc)
	age := now.Year() - birth.Year()
	if now.Month() < birth.Month() || (now.Month() == birth.Month() && now.Day() < birth.Day()) {
		age--
	}
	return age, nil
}
