package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/imagineif/lethe/policy"
)

// Server-sent events: the numbers a page shows that change (items on loan, open
// transactions, what waits to be forgotten, health), and the end of the session. The
// stream watches the session without marking it used (staff.Auth.Current): an open page
// does not keep a session alive, and when the session ends on the server (idle, signed
// out elsewhere, account disabled, server restarted) the page learns it within one tick
// and clears itself.

const (
	// maxEventStreams bounds the streams open at once; more are refused with 503, and the
	// browser's EventSource retries.
	maxEventStreams = 256
	// eventTick is how often a stream looks at the session and the numbers.
	eventTick = 2 * time.Second
	// maxStreamLife ends a stream after a while; the browser reconnects, and the
	// connection's deadlines stay bounded.
	maxStreamLife = 10 * time.Minute
)

// live is the numbers of the event stream. None is about a patron.
type live struct {
	Items         int    `json:"items"`
	OnLoan        int    `json:"on_loan"`
	Open          int    `json:"open_transactions"`
	Patrons       int    `json:"patrons"`
	Waiting       int    `json:"waiting_to_be_forgotten"`
	AwaitErasure  int    `json:"awaiting_erasure"`
	ErasureLate   int    `json:"erasure_overdue"`
	Held          string `json:"checkouts_held,omitempty"` // why new checkouts wait, if they do
	Applied       uint64 `json:"applied"`
	HealthProblem string `json:"health_problem,omitempty"`
}

// liveCache computes the numbers at most once a tick for all streams: counting reads
// every item.
type liveCache struct {
	mu  sync.Mutex
	at  time.Time
	val live
	err error
}

func (c *Client) liveNumbers() (live, error) {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	now := time.Now()
	if !c.live.at.IsZero() && now.Sub(c.live.at) < eventTick {
		return c.live.val, c.live.err
	}
	var l live
	var err error
	if c.Store != nil {
		counts, cerr := c.Store.Counts()
		err = cerr
		l.Items, l.OnLoan, l.Open, l.Patrons = counts.Items, counts.OnLoan, counts.OpenTxns, counts.Patrons
		l.Applied = c.Store.Applied()
		if h := c.Store.Health(); h.Stop != nil {
			l.HealthProblem = "the projections stopped at an event: writes are refused"
		}
	}
	if c.Expunger != nil {
		f := c.Expunger.Forgetting()
		l.Waiting, l.AwaitErasure, l.ErasureLate, l.Held = f.Waiting, f.AwaitErasure, f.Overdue, f.Behind
		if f.SweepFailing && l.HealthProblem == "" {
			l.HealthProblem = "the last erasure sweep failed"
		}
	}
	c.live.at, c.live.val, c.live.err = now, l, err
	return l, err
}

// ended answers an event stream whose session is gone: one "ended" event.
func (c *Client) ended(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "event: ended\ndata: {\"reason\":\"your session ended\"}\n\n")
}

// eventStream serves GET /events.
func (c *Client) eventStream(w http.ResponseWriter, r *http.Request, v *view) {
	select {
	case c.events <- struct{}{}:
		defer func() { <-c.events }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many event streams", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(http.StatusOK)
	numbers := policy.Permit(v.Who.Role, policy.ReadStatistics).Allowed()
	send := func(event string, data any) bool {
		raw, err := json.Marshal(data)
		if err != nil {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, raw); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if _, err := fmt.Fprint(w, "retry: 3000\n\n"); err != nil {
		return
	}
	end := time.NewTimer(maxStreamLife)
	defer end.Stop()
	tick := time.NewTicker(eventTick)
	defer tick.Stop()
	for {
		// The session, as every route checks it, but without keeping it alive.
		if _, err := c.Auth.Current(r); err != nil {
			send("ended", map[string]string{"reason": "your session ended"})
			return
		}
		if numbers {
			if l, err := c.liveNumbers(); err == nil && !send("live", l) {
				return
			}
		} else if !send("ping", struct{}{}) {
			return
		}
		select {
		case <-tick.C:
		case <-end.C:
			return
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		}
	}
}
