package desk

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imagineif/lethe/expunger"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
)

// Sweeper is the expunger as the API sees it.
type Sweeper interface {
	Sweep(ctx context.Context) error
	StatsJSON() any
	Forgetting() expunger.Forgetting
	Erasure() expunger.ErasureReport
	Series() []expunger.Sample
}

// Reads is the part of the staff HTTP API that reads anonymous projections (health,
// items, statistics, the summary), the sweep and the metrics. Server
// serves it, behind staff sessions and roles where a route needs one.
type Reads struct {
	Store    *projections.Store
	Expunger Sweeper
	Metrics  http.Handler // Prometheus text exposition
	// MinCount suppresses aggregate counts below it in statistics; default 5.
	MinCount int64
	Logger   *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// StreamLast returns the stream's last sequence, for health.
	StreamLast func(context.Context) (uint64, error)
}

// Handlers returns the API's handlers by route pattern. None of them reads patron data.
func (a *Reads) Handlers() map[string]http.HandlerFunc {
	h := map[string]http.HandlerFunc{
		"GET /healthz":             a.health,
		"GET /api/items":           a.items,
		"GET /api/items/{barcode}": a.item,
		"GET /api/overdue":         a.overdue,
		"GET /api/stats":           a.stats,
		"GET /api/summary":         a.summary,
		"POST /api/sweep":          a.sweep,
		"GET /api/erasure":         a.erasure,
		"GET /favicon.ico":         func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) },
	}
	if a.Metrics != nil {
		h["GET /metrics"] = a.Metrics.ServeHTTP
	}
	return h
}

func (a *Reads) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// WriteJSON answers with v as JSON, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Fail answers with a coded error; internal detail goes to logger only.
func Fail(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	pub := schemas.Public(err)
	logger.Log(r.Context(), schemas.LogLevel(err), "http request refused", "method", r.Method, "route", r.Pattern, "code", pub.Code, "err", err)
	WriteJSON(w, schemas.HTTPStatus(pub.Code), map[string]any{"error": pub})
}

func (a *Reads) fail(w http.ResponseWriter, r *http.Request, err error) { Fail(a.logger(), w, r, err) }

// Health is the body of GET /healthz.
type Health struct {
	// Status is "ok"; "degraded" when a start found events lost from the stream (still
	// serving what was applied); "stopped" when the projector waits at an event it cannot
	// apply or cannot write (writes are refused); "stream_short" when the stream holds
	// fewer events than were applied; "stream_unavailable" when it cannot be read.
	Status     string            `json:"status"`
	Applied    uint64            `json:"applied"`
	StreamLast uint64            `json:"stream_last"`
	Stopped    *projections.Stop `json:"stopped,omitempty"`
	// Forgetting is how forgetting keeps its window: what waits for its key to be
	// destroyed, what awaits a sweep, what is past its deadline, whether checkouts are
	// held and why.
	Forgetting *expunger.Forgetting `json:"forgetting,omitempty"`
	Damage     string               `json:"damage,omitempty"`
}

// health answers 200 while kiosks and desks can write, 503 otherwise.
func (a *Reads) health(w http.ResponseWriter, r *http.Request) {
	h := a.Store.Health()
	body := Health{Status: "ok", Applied: h.Applied, Stopped: h.Stop, Damage: h.Damage}
	status := http.StatusOK
	if a.StreamLast != nil {
		last, err := a.StreamLast(r.Context())
		if err != nil {
			body.Status, status = "stream_unavailable", http.StatusServiceUnavailable
		}
		body.StreamLast = last
		if err == nil && last < h.Applied {
			body.Status, status = "stream_short", http.StatusServiceUnavailable
		}
	}
	var f expunger.Forgetting
	if a.Expunger != nil {
		f = a.Expunger.Forgetting()
		body.Forgetting = &f
	}
	switch {
	case status != http.StatusOK:
	case h.Stop != nil:
		body.Status, status = "stopped", http.StatusServiceUnavailable
	case f.SweepFailing:
		body.Status, status = "erasure_failing", http.StatusServiceUnavailable
	case f.Overdue > 0:
		body.Status, status = "erasure_overdue", http.StatusServiceUnavailable
	case f.Behind != "":
		body.Status = "forgetting_first" // checkouts are held; everything else flows
	case h.Damage != "":
		body.Status = "degraded"
	}
	WriteJSON(w, status, body)
}

func (a *Reads) items(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			a.fail(w, r, schemas.Errorf(schemas.CodeInvalid, "limit must be 1 to 1000"))
			return
		}
		limit = n
	}
	var items []model.Item
	var err error
	if title := r.URL.Query().Get("title"); title != "" {
		items, err = a.findTitle(title, limit)
	} else {
		items, err = a.Store.Items(r.URL.Query().Get("after"), limit)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]itemView, len(items))
	for i, it := range items {
		out[i] = viewItem(it)
	}
	WriteJSON(w, http.StatusOK, out)
}

// findTitle returns up to limit items whose title holds every word of q, ignoring case,
// in barcode order. It reads the catalog a page at a time: a library's catalog, not a
// search engine's.
func (a *Reads) findTitle(q string, limit int) ([]model.Item, error) {
	words := strings.Fields(strings.ToLower(q))
	if len(words) == 0 || len(q) > 200 {
		return nil, schemas.Errorf(schemas.CodeInvalid, "title must be 1 to 200 characters of words")
	}
	var out []model.Item
	after := ""
	for {
		page, err := a.Store.Items(after, 1000)
		if err != nil {
			return nil, err
		}
		for _, it := range page {
			t := strings.ToLower(it.Title)
			match := true
			for _, w := range words {
				if !strings.Contains(t, w) {
					match = false
					break
				}
			}
			if match {
				out = append(out, it)
				if len(out) == limit {
					return out, nil
				}
			}
		}
		if len(page) < 1000 {
			return out, nil
		}
		after = page[len(page)-1].Barcode
	}
}

// itemView is an item as staff see it without a disclosure basis: no transaction id, no
// patron.
type itemView struct {
	schemas.ItemCataloged
	Status string    `json:"status"`
	Due    time.Time `json:"due,omitzero"`
}

func viewItem(it model.Item) itemView {
	return itemView{ItemCataloged: it.ItemCataloged, Status: it.Status, Due: it.Due}
}

func (a *Reads) item(w http.ResponseWriter, r *http.Request) {
	barcode := r.PathValue("barcode")
	if !ledger.ValidToken(barcode) {
		a.fail(w, r, schemas.Errorf(schemas.CodeInvalid, "barcode must be 1 to 64 letters, digits, '-' or '_'"))
		return
	}
	it, err := a.Store.Item(barcode)
	if errors.Is(err, model.ErrNotFound) {
		a.fail(w, r, schemas.Errorf(schemas.CodeNotFound, "no item with this barcode"))
		return
	} else if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, viewItem(it))
}

func (a *Reads) overdue(w http.ResponseWriter, r *http.Request) {
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	due, err := a.Store.Overdue(now(), 1000)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := []itemView{}
	for _, o := range due {
		it, err := a.Store.Item(o.Barcode)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out = append(out, viewItem(it))
	}
	WriteJSON(w, http.StatusOK, out)
}

// stats returns aggregate counts. Counts of events below MinCount are suppressed (reported
// as null with "suppressed": true) so a small branch's rare event cannot point at a
// person. Cent totals are sums over many patrons and are suppressed on the same rule.
func (a *Reads) stats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	to := q.Get("to")
	if to == "" {
		to = "9999-12-31" // days are in the library's zone; no default cut-off can disagree with it
	}
	from := q.Get("from")
	if from == "" {
		from = "0000-01-01"
	}
	for _, d := range []string{from, to} {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			a.fail(w, r, schemas.Errorf(schemas.CodeInvalid, "from and to must be dates, YYYY-MM-DD"))
			return
		}
	}
	stats, err := a.Store.Stats(from, to)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	minCount := a.MinCount
	if minCount == 0 {
		minCount = 5
	}
	type row struct {
		projections.Stat
		Count      *int64 `json:"count"`
		Suppressed bool   `json:"suppressed,omitempty"`
	}
	out := make([]row, len(stats))
	for i, s := range stats {
		out[i] = row{Stat: s}
		if s.Count < minCount {
			out[i].Suppressed = true
		} else {
			out[i].Count = &stats[i].Count
		}
	}
	WriteJSON(w, http.StatusOK, out)
}

func (a *Reads) summary(w http.ResponseWriter, r *http.Request) {
	c, err := a.Store.Counts()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body := map[string]any{"counts": c, "applied": a.Store.Applied()}
	if a.Expunger != nil {
		body["expunger"] = a.Expunger.StatsJSON()
		body["forgetting"] = a.Expunger.Forgetting()
		body["forgetting_series"] = a.Expunger.Series()
	}
	WriteJSON(w, http.StatusOK, body)
}

func (a *Reads) sweep(w http.ResponseWriter, r *http.Request) {
	if a.Expunger == nil {
		a.fail(w, r, schemas.Errorf(schemas.CodeUnavailable, "no expunger in this process"))
		return
	}
	if err := a.Expunger.Sweep(r.Context()); err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, a.Expunger.StatsJSON())
}

// erasure answers the erasure report: transactions erased after their deadline, and those
// past it now. Ids are opaque transaction ids, as on the stream.
func (a *Reads) erasure(w http.ResponseWriter, r *http.Request) {
	if a.Expunger == nil {
		a.fail(w, r, schemas.Errorf(schemas.CodeUnavailable, "no expunger in this process"))
		return
	}
	WriteJSON(w, http.StatusOK, a.Expunger.Erasure())
}
