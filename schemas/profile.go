package schemas

import "time"

// AgeAt is the patron's age in whole years at t, in the library's time zone loc: the
// birthday counts from midnight local time.
func (p Profile) AgeAt(t time.Time, loc *time.Location) (int, error) {
	birth, err := time.ParseInLocation(time.DateOnly, p.BirthDate, loc)
	if err != nil {
		return 0, err
	}
	now := t.In(loc)
	age := now.Year() - birth.Year()
	if now.Month() < birth.Month() || (now.Month() == birth.Month() && now.Day() < birth.Day()) {
		age--
	}
	return age, nil
}
