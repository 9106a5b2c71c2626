package web

import (
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/imagineif/lethe/policy"
)

// parsePages parses each page with the layout: templates/<page>.html defines "content".
func parsePages(loc *time.Location) (map[string]*template.Template, error) {
	base, err := template.New("layout").Funcs(funcs(loc)).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// funcs are the templates' helpers; times are written in loc, the library's zone.
func funcs(loc *time.Location) template.FuncMap {
	return template.FuncMap{
		"money":   money,
		"dollars": func(c int64) string { return strings.TrimPrefix(money(c), "$") },
		"cmdid":   newCommandID,
		"date":    func(t time.Time) string { return t.In(loc).Format("Mon 2 Jan 2006") },
		"datetime": func(t time.Time) string {
			return t.In(loc).Format("2 Jan 2006 15:04:05")
		},
		"clock": func(t time.Time) string { return t.In(loc).Format("15:04:05") },
		"dur": func(d time.Duration) string {
			switch {
			case d == 0:
				return "0"
			case d < time.Millisecond:
				return d.Round(time.Microsecond).String()
			case d < time.Second:
				return d.Round(100 * time.Microsecond).String()
			default:
				return d.Round(100 * time.Millisecond).String()
			}
		},
		"basis": func(b policy.Basis) string {
			switch b {
			case policy.Card:
				return "card presented"
			case policy.InPerson:
				return "in person, photo ID and date of birth"
			case policy.CaregiverWithCard:
				return "caregiver with the child's card"
			case policy.CaregiverPhotoID:
				return "caregiver with photo ID, without the card"
			case policy.CourtOrder:
				return "court order"
			}
			return string(b)
		},
		"scope": func(s policy.Scope) string {
			switch s {
			case policy.CurrentRecord:
				return "current record"
			case policy.Limited:
				return "limited"
			}
			return string(s)
		},
		"reason": func(r string) string {
			switch r {
			case "overdue":
				return "Returned late"
			case "lost":
				return "Lost item"
			case "damaged":
				return "Damaged item"
			case "fee":
				return "Fee"
			}
			if r == "" {
				return "Fine"
			}
			return strings.ToUpper(r[:1]) + r[1:]
		},
		// can says whether the page's session may do action: only to show a control; the API
		// decides again.
		"can": func(v *view, action string) bool {
			return v.Who != nil && policy.Permit(v.Who.Role, policy.Action(action)).Allowed()
		},
	}
}
