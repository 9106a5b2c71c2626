package expunger

import (
	"context"
	"fmt"
	"time"

	"github.com/imagineif/lethe/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// Forgetting before ingest.
//
// The promise has numbers in it: a closed transaction's key is destroyed within a fraction
// of a second, and its bytes are gone from every file within the window W. Under a load
// the disk cannot carry, it is new checkouts that wait, never forgetting: Admit holds a
// new checkout while forgetting is behind, for up to AdmitWait, and then refuses it with
// unavailable, naming the cause. Returns, payments and everything else that closes a
// transaction are never held: they are how forgetting catches up.
//
// Forgetting is behind while any of these holds:
//
//   - more than MaxWaiting closed transactions wait for their keys to be destroyed;
//   - the oldest of them has waited MaxWaitAge;
//   - the oldest transaction whose key is destroyed but whose bytes await a sweep is three
//     quarters into its window;
//   - the last erasure sweep failed (it is retried every second).

// behind says why forgetting is behind, or "" when it is not.
func (e *Expunger) behind() string {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.behindLocked(now)
}

func (e *Expunger) behindLocked(now time.Time) string {
	w := e.cfg.SweepInterval
	switch {
	case e.sweepErr != nil:
		return "the last erasure sweep failed; it is retried every second"
	case e.waiting > e.cfg.MaxWaiting:
		return fmt.Sprintf("%d closed transactions wait for their keys to be destroyed", e.waiting)
	case e.waiting > 0 && now.Sub(e.oldestWaiting) >= e.cfg.MaxWaitAge:
		return fmt.Sprintf("a closed transaction has waited %s for its key to be destroyed", now.Sub(e.oldestWaiting).Round(time.Millisecond))
	}
	if oldest := e.oldestAwaitingLocked(); !oldest.IsZero() && now.Sub(oldest) >= w*3/4 {
		return fmt.Sprintf("an expunged transaction's bytes are %s into their %s erasure window", now.Sub(oldest).Round(time.Second), w)
	}
	return ""
}

// Admit is asked before a new checkout (or anything else that opens a transaction) is
// decided. While forgetting is behind it waits, for up to AdmitWait, for a destroying pass
// or a sweep to catch up, and then refuses with unavailable and the cause. The time it
// holds checkouts is exported (lethe_ingest_throttled_seconds_total).
func (e *Expunger) Admit(ctx context.Context) error {
	reason := e.behind()
	if reason == "" {
		return nil
	}
	start := time.Now()
	defer func() {
		e.mu.Lock()
		e.throttled += time.Since(start)
		e.mu.Unlock()
	}()
	give := time.NewTimer(e.cfg.AdmitWait)
	defer give.Stop()
	for reason != "" {
		e.mu.Lock()
		progress := e.progress
		e.mu.Unlock()
		select {
		case <-progress:
		case <-give.C:
			return schemas.Errorf(schemas.CodeUnavailable, "forgetting comes first: %s; new checkouts wait until it catches up, retry shortly", reason)
		case <-ctx.Done():
			return schemas.Errorf(schemas.CodeUnavailable, "forgetting comes first: %s; retry shortly", reason)
		}
		reason = e.behind()
	}
	return nil
}

// Forgetting is the state of forgetting now, for /healthz, the dashboard and metrics.
type Forgetting struct {
	Window         time.Duration `json:"window_ns"`
	Behind         string        `json:"behind,omitempty"`        // why new checkouts are held, "" when they are not
	Waiting        int           `json:"waiting"`                 // closed transactions whose key the running pass destroys
	OldestWait     time.Duration `json:"oldest_wait_ns"`          // how long the oldest of them has waited
	AwaitErasure   int           `json:"await_erasure"`           // keys destroyed, bytes awaiting a sweep
	OldestAwaiting time.Duration `json:"oldest_await_erasure_ns"` // since the oldest of those closed
	Overdue        int           `json:"overdue"`                 // awaiting erasure past their deadline now
	MissedTotal    int           `json:"missed_total"`            // erased after their deadline, since the start
	SweepFailing   bool          `json:"sweep_failing"`           // the last sweep failed
	SweepFailures  int           `json:"sweep_failures"`          // sweeps that failed, since the start
	SweepError     string        `json:"sweep_error,omitempty"`   // why, naming the store; no patron data
	Throttled      time.Duration `json:"throttled_ns"`            // time checkouts were held, since the start
	LastSweepTook  time.Duration `json:"last_sweep_took_ns"`      // the last sweep's duration
}

// Forgetting reports the state of forgetting.
func (e *Expunger) Forgetting() Forgetting {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	f := Forgetting{Window: e.cfg.SweepInterval, Behind: e.behindLocked(now), Waiting: e.waiting,
		AwaitErasure: len(e.awaitErasure) + len(e.sweeping), MissedTotal: e.missedTotal, SweepFailing: e.sweepErr != nil, SweepFailures: e.sweepFailures,
		Throttled: e.throttled, LastSweepTook: e.sweepTook}
	if e.waiting > 0 {
		f.OldestWait = now.Sub(e.oldestWaiting)
	}
	if oldest := e.oldestAwaitingLocked(); !oldest.IsZero() {
		f.OldestAwaiting = now.Sub(oldest)
	}
	e.eachAwaitingLocked(func(a awaiting) {
		if now.After(a.closedAt.Add(e.cfg.SweepInterval)) {
			f.Overdue++
		}
	})
	if e.sweepErr != nil {
		f.SweepError = e.sweepErr.Error()
	}
	return f
}

// ErasureReport is what an administrator or auditor reads about the window: the
// transactions erased after their deadline (the most recent ones), and those awaiting
// erasure past their deadline now. Ids are opaque transaction ids, as on the stream.
type ErasureReport struct {
	Window  time.Duration `json:"window_ns"`
	Overdue []Missed      `json:"overdue"` // ErasedAt is zero: not erased yet
	Missed  []Missed      `json:"missed"`
	Total   int           `json:"missed_total"`
}

// Erasure returns the erasure report.
func (e *Expunger) Erasure() ErasureReport {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	r := ErasureReport{Window: e.cfg.SweepInterval, Overdue: []Missed{}, Missed: append([]Missed{}, e.missed...), Total: e.missedTotal}
	e.eachAwaitingLocked(func(a awaiting) {
		if deadline := a.closedAt.Add(e.cfg.SweepInterval); now.After(deadline) {
			r.Overdue = append(r.Overdue, Missed{TxnID: a.txnID, ClosedAt: a.closedAt, Deadline: deadline})
		}
	})
	return r
}

// collectors are the metrics of forgetting; no label, no patron data.
func (e *Expunger) collectors() []prometheus.Collector {
	gauge := func(name, help string, f func(Forgetting) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(e.Forgetting()) })
	}
	counter := func(name, help string, f func(Forgetting) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(e.Forgetting()) })
	}
	return []prometheus.Collector{
		gauge("lethe_forget_waiting", "Closed transactions whose keys the running pass destroys.", func(f Forgetting) float64 { return float64(f.Waiting) }),
		gauge("lethe_forget_oldest_wait_seconds", "How long the oldest closed transaction has waited for its key to be destroyed.", func(f Forgetting) float64 { return f.OldestWait.Seconds() }),
		gauge("lethe_erasure_awaiting", "Transactions whose key is destroyed and whose bytes await a sweep.", func(f Forgetting) float64 { return float64(f.AwaitErasure) }),
		gauge("lethe_erasure_oldest_age_seconds", "Since the oldest transaction awaiting erasure closed.", func(f Forgetting) float64 { return f.OldestAwaiting.Seconds() }),
		gauge("lethe_erasure_overdue", "Transactions awaiting erasure past their deadline (close plus the window).", func(f Forgetting) float64 { return float64(f.Overdue) }),
		gauge("lethe_forget_behind", "1 while forgetting is behind and new checkouts are held.", func(f Forgetting) float64 { return b2f(f.Behind != "") }),
		gauge("lethe_erasure_sweep_failing", "1 while the last erasure sweep failed.", func(f Forgetting) float64 { return b2f(f.SweepFailing) }),
		counter("lethe_erasure_window_missed_total", "Transactions erased after their deadline.", func(f Forgetting) float64 { return float64(f.MissedTotal) }),
		counter("lethe_erasure_sweep_failures_total", "Erasure sweeps that failed (each is retried a second later).", func(f Forgetting) float64 { return float64(f.SweepFailures) }),
		counter("lethe_ingest_throttled_seconds_total", "Time new checkouts were held for forgetting to catch up.", func(f Forgetting) float64 { return f.Throttled.Seconds() }),
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Sample is forgetting over one interval, for the dashboard's chart and lethe bench's
// soak: what waited, how long the keys and bytes of the closes in the interval took, and
// the running totals of checkouts held and windows missed.
type Sample struct {
	Time          time.Time     `json:"time"`
	Waiting       int           `json:"waiting"`
	AwaitErasure  int           `json:"await_erasure"`
	Expunged      int           `json:"expunged"`           // keys destroyed in the interval
	ExpungeLagP50 time.Duration `json:"expunge_lag_p50_ns"` // of those keys
	ExpungeLagP99 time.Duration `json:"expunge_lag_p99_ns"`
	ExpungeLagMax time.Duration `json:"expunge_lag_max_ns"`
	Erased        int           `json:"erased"`             // transactions erased in the interval
	ErasureLagP50 time.Duration `json:"erasure_lag_p50_ns"` // of those transactions
	ErasureLagP99 time.Duration `json:"erasure_lag_p99_ns"`
	ErasureLagMax time.Duration `json:"erasure_lag_max_ns"`
	Throttled     time.Duration `json:"throttled_ns"` // since the start
	MissedTotal   int           `json:"missed_total"`
}

// maxSamples bounds the series: an hour at the default five seconds a sample.
const maxSamples = 720

// sample closes the current interval: the lags observed since the last sample make its
// quantiles.
func (e *Expunger) sample() {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	x, r := e.intervalExpunge, e.intervalErasure
	s := Sample{Time: now, Waiting: e.waiting, AwaitErasure: len(e.awaitErasure) + len(e.sweeping),
		Expunged: x.count, ExpungeLagP50: x.quantile(0.5), ExpungeLagP99: x.quantile(0.99), ExpungeLagMax: x.max,
		Erased: r.count, ErasureLagP50: r.quantile(0.5), ErasureLagP99: r.quantile(0.99), ErasureLagMax: r.max,
		Throttled: e.throttled, MissedTotal: e.missedTotal}
	e.intervalExpunge, e.intervalErasure = newLagWindow(4096), newLagWindow(4096)
	e.series = append(e.series, s)
	if len(e.series) > maxSamples {
		e.series = e.series[len(e.series)-maxSamples:]
	}
}

// Series returns the samples of the last hour, oldest first.
func (e *Expunger) Series() []Sample {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Sample{}, e.series...)
}

// SampleEvery is the series' interval: five seconds, shorter for a short window.
func (e *Expunger) SampleEvery() time.Duration {
	return min(5*time.Second, max(e.cfg.SweepInterval/12, 100*time.Millisecond))
}
