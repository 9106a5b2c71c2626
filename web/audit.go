package web

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"image/color"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/expunger"
	"github.com/imagineif/lethe/policy"
)

// The auditor's view: anonymous data only. Circulation by day, branch and collection from
// GET /api/stats (counts under the suppression threshold stay suppressed), forgetting
// over time from the expunger's samples, the stream's position and health, and the state
// of the signed checkpoints.

// stat is a row of GET /api/stats.
type stat struct {
	Day        string `json:"day"`
	Branch     string `json:"branch"`
	Collection string `json:"collection"`
	Measure    string `json:"measure"`
	Count      *int64 `json:"count"`
	Suppressed bool   `json:"suppressed"`
}

// Checkpoints is the state of the signed checkpoints, as the node keeps them.
type Checkpoints struct {
	Seq         uint64    // the stream sequence of the last checkpoint appended; 0: none yet
	At          time.Time // when it was appended
	TreeSize    uint64    // messages it covers
	Hashed      uint64    // messages hashed into the tree so far
	Broken      string    // a hole found in the stream: no checkpoint from it on
	VerifierKey string    // the note verifier key auditors check checkpoints with
}

// tally is a total by one dimension over the chosen days. A measure with a suppressed
// count is at least its total.
type tally struct {
	Key                          string
	Checkouts, Returns, Renewals count
}

// count is a total of counts, some of which may be suppressed.
type count struct {
	N       int64
	Partial bool // some counts in it were under the threshold and left out
}

// String writes the total: "under 5" when all of it was suppressed, "12+" when part was.
func (c count) String() string {
	switch {
	case c.Partial && c.N == 0:
		return "under 5"
	case c.Partial:
		return strconv.FormatInt(c.N, 10) + "+"
	}
	return strconv.FormatInt(c.N, 10)
}

type auditData struct {
	From, To    string
	Query       string // from=…&to=…, for the charts' URLs
	Days        []tally
	Branches    []tally
	Collections []tally
	Suppressed  int // rows whose count is under the threshold
	Summary     summary
	Health      desk.Health
	Erasure     *expunger.ErasureReport
	Forgetting  []expunger.Sample
	Checkpoints *Checkpoints
	Now         time.Time
}

type summary struct {
	Counts struct {
		Items, OnLoan, Lost, OpenTxns, Patrons, PendingExpunge int
	} `json:"counts"`
	Applied  uint64 `json:"applied"`
	Expunger struct {
		Expunged      int64         `json:"expunged"`
		ExpungeLagP50 time.Duration `json:"expunge_lag_p50_ns"`
		ExpungeLagP99 time.Duration `json:"expunge_lag_p99_ns"`
		ErasureLagP50 time.Duration `json:"erasure_lag_p50_ns"`
		ErasureLagP99 time.Duration `json:"erasure_lag_p99_ns"`
	} `json:"expunger"`
	Forgetting expunger.Forgetting `json:"forgetting"`
}

// auditRange reads from and to (YYYY-MM-DD): by default the last 14 days.
func (c *Client) auditRange(r *http.Request) (from, to string) {
	// The library's day: with lethe demo's compressed days, the day the statistics count.
	today := c.Now().In(c.Location)
	if c.Store != nil {
		if d, err := time.ParseInLocation(time.DateOnly, c.Store.Day(c.Now()), c.Location); err == nil {
			today = d
		}
	}
	from, to = r.URL.Query().Get("from"), r.URL.Query().Get("to")
	if _, err := time.Parse(time.DateOnly, to); err != nil {
		to = today.Format(time.DateOnly)
	}
	if _, err := time.Parse(time.DateOnly, from); err != nil {
		from = today.AddDate(0, 0, -13).Format(time.DateOnly)
	}
	if from > to {
		from, to = to, from
	}
	return from, to
}

func (c *Client) auditPage(w http.ResponseWriter, r *http.Request, v *view) {
	v.Title, v.Active = "Statistics and forgetting", "audit"
	from, to := c.auditRange(r)
	data := &auditData{From: from, To: to, Query: url.Values{"from": {from}, "to": {to}}.Encode(), Now: c.Now()}
	v.Data = data
	var stats []stat
	if err := c.do(r, http.MethodGet, "/api/stats?"+data.Query, nil, &stats); err != nil {
		c.refuseOn(w, v, "audit", err)
		return
	}
	data.Days = totals(stats, func(s stat) string { return s.Day })
	data.Branches = totals(stats, func(s stat) string { return s.Branch })
	data.Collections = totals(stats, func(s stat) string { return s.Collection })
	for _, s := range stats {
		if s.Suppressed {
			data.Suppressed++
		}
	}
	if err := c.do(r, http.MethodGet, "/api/summary", nil, &data.Summary); err != nil {
		c.refuseOn(w, v, "audit", err)
		return
	}
	// Health answers 503 with its body when writes are refused: read the body either way.
	rec := c.call(r, http.MethodGet, "/healthz", nil)
	_ = json.Unmarshal(rec.body.Bytes(), &data.Health)
	if policy.Permit(v.Who.Role, policy.ReadErasure).Allowed() {
		var rep expunger.ErasureReport
		if err := c.do(r, http.MethodGet, "/api/erasure", nil, &rep); err == nil {
			data.Erasure = &rep
		}
	}
	if c.Expunger != nil {
		data.Forgetting = c.Expunger.Series()
	}
	if c.Checkpoints != nil {
		cp := c.Checkpoints()
		data.Checkpoints = &cp
	}
	c.render(w, v, "audit")
}

// totals adds the circulation measures of stats by key; suppressed counts add nothing,
// and are counted apart so the page can say totals are at least what they show.
func totals(stats []stat, key func(stat) string) []tally {
	idx := map[string]int{}
	var out []tally
	for _, s := range stats {
		if s.Measure != "checkouts" && s.Measure != "returns" && s.Measure != "renewals" {
			continue
		}
		k := key(s)
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, tally{Key: k})
		}
		var m *count
		switch s.Measure {
		case "checkouts":
			m = &out[i].Checkouts
		case "returns":
			m = &out[i].Returns
		default:
			m = &out[i].Renewals
		}
		if s.Count == nil {
			m.Partial = true
		} else {
			m.N += *s.Count
		}
	}
	slices.SortFunc(out, func(a, b tally) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// chart renders a chart as SVG on the server, with gonum/plot. The page shows it as an
// image, next to a table of the same numbers for those who do not see it.
func (c *Client) chart(w http.ResponseWriter, r *http.Request, v *view) {
	var (
		p   *plot.Plot
		err error
	)
	switch r.PathValue("name") {
	case "circulation.svg":
		from, to := c.auditRange(r)
		var stats []stat
		if err = c.do(r, http.MethodGet, "/api/stats?"+url.Values{"from": {from}, "to": {to}}.Encode(), nil, &stats); err == nil {
			p, err = circulationChart(stats, from, to)
		}
	case "forgetting.svg":
		var series []expunger.Sample
		var window time.Duration
		if c.Expunger != nil {
			series, window = c.Expunger.Series(), c.Expunger.Forgetting().Window
		}
		p, err = forgettingChart(series, window)
	default:
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "the chart could not be drawn", statusOf(err))
		return
	}
	var buf bytes.Buffer
	wt, err := p.WriterTo(18*vg.Centimeter, 7*vg.Centimeter, "svg")
	if err == nil {
		_, err = wt.WriteTo(&buf)
	}
	if err != nil {
		c.Logger.Error("web: draw chart", "err", err)
		http.Error(w, "the chart could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write(buf.Bytes())
}

var (
	blue   = color.RGBA{R: 0x1f, G: 0x5f, B: 0xa8, A: 0xff}
	green  = color.RGBA{R: 0x1c, G: 0x7a, B: 0x3a, A: 0xff}
	red    = color.RGBA{R: 0xb0, G: 0x23, B: 0x1f, A: 0xff}
	purple = color.RGBA{R: 0x6a, G: 0x3d, B: 0x9a, A: 0xff}
	grey   = color.RGBA{R: 0x66, G: 0x66, B: 0x66, A: 0xff}
)

// circulationChart is checkouts and returns per day, every day of the range shown (a day
// with none is a gap, not a missing bar).
func circulationChart(stats []stat, from, to string) (*plot.Plot, error) {
	f, _ := time.Parse(time.DateOnly, from)
	t, _ := time.Parse(time.DateOnly, to)
	var days []string
	for d := f; !d.After(t) && len(days) < 366; d = d.AddDate(0, 0, 1) {
		days = append(days, d.Format(time.DateOnly))
	}
	out, in := make(plotter.Values, len(days)), make(plotter.Values, len(days))
	pos := map[string]int{}
	for i, d := range days {
		pos[d] = i
	}
	for _, s := range stats {
		i, ok := pos[s.Day]
		if !ok || s.Count == nil {
			continue
		}
		switch s.Measure {
		case "checkouts":
			out[i] += float64(*s.Count)
		case "returns":
			in[i] += float64(*s.Count)
		}
	}
	p := plot.New()
	p.Title.Text = "Checkouts and returns per day"
	p.Y.Label.Text = "events"
	width := vg.Points(max(2, min(14, 360/float64(2*len(days)+1))))
	bo, err := plotter.NewBarChart(out, width)
	if err != nil {
		return nil, err
	}
	bi, err := plotter.NewBarChart(in, width)
	if err != nil {
		return nil, err
	}
	bo.Color, bo.LineStyle.Width = blue, 0
	bi.Color, bi.LineStyle.Width = green, 0
	bo.Offset, bi.Offset = -width/2, width/2
	p.Add(bo, bi)
	p.Y.Min, p.Y.Max = 0, max(p.Y.Max, 5)
	p.Legend.Add("checkouts", bo)
	p.Legend.Add("returns", bi)
	p.Legend.Top = true
	labels := make([]string, len(days))
	step := max(1, len(days)/10)
	for i, d := range days {
		if i%step == 0 {
			labels[i] = d[5:] // MM-DD
		}
	}
	p.NominalX(labels...)
	return p, nil
}

// forgettingChart is expunge and erasure lag over the samples (p50 and p99 of the keys
// destroyed and the transactions erased in each interval), against the erasure window.
func forgettingChart(series []expunger.Sample, window time.Duration) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Forgetting: lag from close to key destroyed and to bytes erased"
	p.Y.Label.Text = "seconds"
	p.X.Label.Text = "minutes ago"
	if len(series) == 0 {
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = -60, 0, 0, max(1, window.Seconds())
		return p, nil
	}
	now := series[len(series)-1].Time
	line := func(get func(expunger.Sample) (time.Duration, bool)) plotter.XYs {
		var xy plotter.XYs
		for _, s := range series {
			if d, ok := get(s); ok {
				xy = append(xy, plotter.XY{X: s.Time.Sub(now).Minutes(), Y: d.Seconds()})
			}
		}
		return xy
	}
	add := func(label string, xy plotter.XYs, col color.Color, dashed bool) error {
		if len(xy) == 0 {
			return nil
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color, l.Width = col, vg.Points(1.5)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(label, l)
		return nil
	}
	erased := func(s expunger.Sample) bool { return s.Erased > 0 }
	expunged := func(s expunger.Sample) bool { return s.Expunged > 0 }
	for _, l := range []struct {
		label  string
		get    func(expunger.Sample) (time.Duration, bool)
		col    color.Color
		dashed bool
	}{
		{"erasure lag p99", func(s expunger.Sample) (time.Duration, bool) { return s.ErasureLagP99, erased(s) }, red, false},
		{"erasure lag p50", func(s expunger.Sample) (time.Duration, bool) { return s.ErasureLagP50, erased(s) }, red, true},
		{"expunge lag p99", func(s expunger.Sample) (time.Duration, bool) { return s.ExpungeLagP99, expunged(s) }, purple, false},
		{"expunge lag p50", func(s expunger.Sample) (time.Duration, bool) { return s.ExpungeLagP50, expunged(s) }, purple, true},
	} {
		if err := add(l.label, line(l.get), l.col, l.dashed); err != nil {
			return nil, err
		}
	}
	if window > 0 {
		first := series[0].Time.Sub(now).Minutes()
		wl, err := plotter.NewLine(plotter.XYs{{X: min(first, -1), Y: window.Seconds()}, {X: 0, Y: window.Seconds()}})
		if err != nil {
			return nil, err
		}
		wl.Color, wl.Dashes = grey, []vg.Length{vg.Points(2), vg.Points(2)}
		p.Add(wl)
		p.Legend.Add(fmt.Sprintf("erasure window (%s)", window), wl)
	}
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	return p, nil
}
