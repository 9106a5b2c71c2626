package schemas

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAgeAt(t *testing.T) {
	t.Parallel()
	mt, err := time.LoadLocation("America/Denver") // Montana
	if err != nil {
		t.Fatal(err)
	}
	p := Profile{BirthDate: "2008-11-28"}
	for _, tc := range []struct {
		at   time.Time
		want int
	}{
		// 17 years 364 days: one second before local midnight of the 18th birthday.
		{time.Date(2026, 11, 27, 23, 59, 59, 0, mt), 17},
		{time.Date(2026, 11, 28, 0, 0, 0, 0, mt), 18},
		// 06:59 UTC on the birthday is still the day before in Montana.
		{time.Date(2026, 11, 28, 6, 59, 0, 0, time.UTC), 17},
		{time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC), 18},
	} {
		got, err := p.AgeAt(tc.at, mt)
		if err != nil || got != tc.want {
			t.Errorf("AgeAt(%v) = %d, %v; want %d", tc.at, got, err, tc.want)
		}
	}
	leap := Profile{BirthDate: "2008-02-29"}
	if got, _ := leap.AgeAt(time.Date(2026, 2, 28, 12, 0, 0, 0, mt), mt); got != 17 {
		t.Errorf("born 29 February, on 28 February 2026: %d, want 17 (the birthday counts from 1 March)", got)
	}
	if got, _ := leap.AgeAt(time.Date(2026, 3, 1, 0, 0, 0, 0, mt), mt); got != 18 {
		t.Errorf("born 29 February, on 1 March 2026: %d, want 18", got)
	}
	if _, err := (Profile{BirthDate: "28/11/2008"}).AgeAt(time.Now(), mt); !errors.Is(err, ErrBirthDate) || strings.Contains(err.Error(), "28/11") {
		t.Errorf("AgeAt with a malformed date = %v, want ErrBirthDate, which does not quote the date", err)
	}
}
