package audit

import (
	"cmp"
	"slices"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// Anonymous aggregates.
//
// Stats counts loans by day, branch and collection, renewal and fine rates and the
// distribution of expunge lags over a range of the history, from the events alone. A
// count below K (default 5) but above zero is not shown, only that it was suppressed: a
// cell of one or two loans of one collection on one day could single a reader out to
// someone who saw them at the shelf.

// DefaultK is the smallest count Stats shows.
const DefaultK = 5

// StatsOptions are the range and the suppression threshold.
type StatsOptions struct {
	From, To time.Time      // events at or after From and before To; zero: unbounded
	K        int            // counts in [1, K) are suppressed; default DefaultK
	Location *time.Location // the library's zone, for days; default UTC
}

// Cell is one count; Suppressed says it was between 1 and K-1 and Count is 0.
type Cell struct {
	Key        string `json:"key"`
	Count      int    `json:"count"`
	Suppressed bool   `json:"suppressed,omitempty"`
}

// StatsReport is what Stats found.
type StatsReport struct {
	From         time.Time `json:"from,omitzero"`
	To           time.Time `json:"to,omitzero"`
	K            int       `json:"k"`
	Loans        Cell      `json:"loans"`
	ByDay        []Cell    `json:"loans_by_day"`
	ByBranch     []Cell    `json:"loans_by_branch"`
	ByCollection []Cell    `json:"loans_by_collection"`
	Renewals     Cell      `json:"renewals"`
	Returns      Cell      `json:"returns"`
	LateFines    Cell      `json:"overdue_fines"`
	RenewalRate  float64   `json:"renewal_rate"` // renewals per loan, when neither is suppressed
	FineRate     float64   `json:"fine_rate"`    // overdue fines per return
	LagP50       Duration  `json:"expunge_lag_p50"`
	LagP99       Duration  `json:"expunge_lag_p99"`
	LagMax       Duration  `json:"expunge_lag_max"`
	Suppressed   int       `json:"cells_suppressed"`
}

// Stats aggregates a history. Add every message, then Report.
type Stats struct {
	v       *schemas.Validator
	opts    StatsOptions
	items   map[string]schemas.ItemCataloged
	byDay   map[string]int
	byBr    map[string]int
	byColl  map[string]int
	loans   int
	renews  int
	returns int
	fines   int
	lags    []time.Duration
}

// NewStats starts an aggregation.
func NewStats(v *schemas.Validator, opts StatsOptions) *Stats {
	if opts.K <= 0 {
		opts.K = DefaultK
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	return &Stats{v: v, opts: opts, items: map[string]schemas.ItemCataloged{},
		byDay: map[string]int{}, byBr: map[string]int{}, byColl: map[string]int{}}
}

// Add counts one message's events; a message that does not match its schemas is left out
// (verify says so).
func (s *Stats) Add(m ledger.Msg) {
	evs, data, err := s.v.EventsData(m.Data)
	if err != nil {
		return
	}
	for i, ev := range evs {
		s.add(ev, data[i])
	}
}

// add counts one event.
func (s *Stats) add(ev schemas.Event, data any) {
	if d, ok := data.(schemas.ItemCataloged); ok {
		s.items[d.Barcode] = d // catalog data before the range still names collections
		return
	}
	if (!s.opts.From.IsZero() && ev.Time.Before(s.opts.From)) || (!s.opts.To.IsZero() && !ev.Time.Before(s.opts.To)) {
		return
	}
	switch d := data.(type) {
	case schemas.ItemCheckedOut:
		s.loans++
		s.byDay[ev.Time.In(s.opts.Location).Format(time.DateOnly)]++
		s.byBr[d.Branch]++
		s.byColl[cmp.Or(s.items[d.Barcode].Collection, "(uncataloged)")]++
	case schemas.ItemRenewed:
		s.renews++
	case schemas.ItemReturned:
		s.returns++
	case schemas.FineAssessed:
		if d.Reason == schemas.ReasonOverdue {
			s.fines++
		}
	case schemas.TransactionExpunged:
		s.lags = append(s.lags, d.KeyDestroyedAt.Sub(d.ClosedAt))
	}
}

func (s *Stats) cell(key string, n int, suppressed *int) Cell {
	if n > 0 && n < s.opts.K {
		*suppressed++
		return Cell{Key: key, Suppressed: true}
	}
	return Cell{Key: key, Count: n}
}

func (s *Stats) cells(m map[string]int, suppressed *int) []Cell {
	out := make([]Cell, 0, len(m))
	for k, n := range m {
		out = append(out, s.cell(k, n, suppressed))
	}
	slices.SortFunc(out, func(a, b Cell) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// Report returns the aggregates, with small cells suppressed.
func (s *Stats) Report() StatsReport {
	r := StatsReport{From: s.opts.From, To: s.opts.To, K: s.opts.K}
	r.Loans = s.cell("loans", s.loans, &r.Suppressed)
	r.Renewals = s.cell("renewals", s.renews, &r.Suppressed)
	r.Returns = s.cell("returns", s.returns, &r.Suppressed)
	r.LateFines = s.cell("overdue fines", s.fines, &r.Suppressed)
	r.ByDay = s.cells(s.byDay, &r.Suppressed)
	r.ByBranch = s.cells(s.byBr, &r.Suppressed)
	r.ByCollection = s.cells(s.byColl, &r.Suppressed)
	if !r.Loans.Suppressed && !r.Renewals.Suppressed && s.loans > 0 {
		r.RenewalRate = float64(s.renews) / float64(s.loans)
	}
	if !r.Returns.Suppressed && !r.LateFines.Suppressed && s.returns > 0 {
		r.FineRate = float64(s.fines) / float64(s.returns)
	}
	if len(s.lags) > 0 {
		slices.Sort(s.lags)
		q := func(p float64) Duration { return Duration(s.lags[int(p*float64(len(s.lags)-1))]) }
		r.LagP50, r.LagP99, r.LagMax = q(0.5), q(0.99), Duration(s.lags[len(s.lags)-1])
	}
	return r
}
