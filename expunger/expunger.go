// Package expunger carries out Lethe's forgetting. When a transaction closes it destroys
// the transaction's key (after which no copy of the stream can tie the loan to a patron),
// records transaction.expunged, and on every erasure sweep makes the deletion physical in
// every file of the keystore and the projections (keystore.Erase). It also destroys the
// profile key of a closed account.
//
// It is idempotent and resumable: the work lives in the projections (rows e/ and k/, written
// in the same batch that applies the closing event), so a crash between "closed" and
// "expunged" is finished at the next start. At start it also destroys keys that no open
// transaction or patron uses: keys created for a command whose append never happened.
//
// Expunge lag is close → key destroyed; erasure lag is close → bytes gone from files, and
// is bounded by the sweep interval.
package expunger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/projections"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures an Expunger. The zero value of each field means the default in its
// comment.
type Config struct {
	SweepInterval time.Duration         // erasure sweep period, the erasure window; default 60s
	Now           func() time.Time      // clock; default time.Now
	Logger        *slog.Logger          // default: discard
	Registerer    prometheus.Registerer // where lag histograms are registered; nil: not registered
}

// Expunger destroys keys of closed transactions and accounts and sweeps.
type Expunger struct {
	cfg  Config
	keys *keystore.Store
	proj *projections.Store
	led  *ledger.Ledger

	mu           sync.Mutex  // serialises expunge passes; guards the fields below
	sweepMu      sync.Mutex  // serialises sweeps
	awaitErasure []time.Time // close times of transactions expunged since the last sweep
	expungeLag   *lagWindow
	erasureLag   *lagWindow
	expunged     int
	erased       int
	profiles     int
	sweeps       int
	lastSweep    time.Time
	expungeHist  prometheus.Histogram
	erasureHist  prometheus.Histogram
}

// New returns an Expunger.
func New(keys *keystore.Store, proj *projections.Store, led *ledger.Ledger, cfg Config) (*Expunger, error) {
	if cfg.SweepInterval < 0 {
		return nil, errors.New("sweep interval must not be negative")
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Expunger{cfg: cfg, keys: keys, proj: proj, led: led,
		expungeLag: newLagWindow(10000), erasureLag: newLagWindow(10000),
		expungeHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lethe_expunge_lag_seconds", Help: "Time from a transaction closing to its key being destroyed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		erasureHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lethe_erasure_lag_seconds", Help: "Time from a transaction closing to its bytes being erased from every file.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{e.expungeHist, e.erasureHist} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Run expunges as transactions close and sweeps every SweepInterval until ctx ends. Call
// Reconcile first, once, before kiosks are served. Sweeps run beside expunging, so a close
// during a sweep is expunged at once and erased at the next sweep.
func (e *Expunger) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(e.cfg.SweepInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := e.Sweep(ctx); err != nil && ctx.Err() == nil {
					e.cfg.Logger.Error("erasure sweep", "err", err)
				}
			}
		}
	}()
	defer func() { <-done }()
	// The periodic pass is a safety net: Work is signalled for every close.
	t := time.NewTicker(e.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.proj.Work():
		case <-t.C:
		}
		if _, err := e.ExpungeNow(ctx); err != nil && ctx.Err() == nil {
			e.cfg.Logger.Error("expunge", "err", err)
		}
	}
}

// ExpungeNow destroys the key of every closed transaction still waiting, records each as
// expunged, and destroys the profile keys of closed accounts. It returns how many
// transactions it expunged.
func (e *Expunger) ExpungeNow(ctx context.Context) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	closed, err := e.proj.PendingExpunges()
	if err != nil {
		return 0, err
	}
	// Destroy every key first: that is what ends the link, and it waits for nothing else.
	destroyed := make([]time.Time, len(closed))
	for i, c := range closed {
		if err := e.keys.Destroy(keystore.Transaction, c.TxnID); err != nil {
			return 0, fmt.Errorf("destroy transaction key: %w", err)
		}
		destroyed[i] = e.cfg.Now()
		lag := destroyed[i].Sub(c.ClosedAt)
		e.expungeLag.add(lag)
		e.expungeHist.Observe(lag.Seconds())
	}
	// Then record them, concurrently, so the ledger commits the records together instead
	// of one commit each. A record that fails leaves its transaction pending: the next
	// round destroys nothing new for it (destroying twice is harmless) and records it again.
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, maxConcurrentRecords)
		failMu   sync.Mutex
		firstErr error
		recorded = make([]bool, len(closed))
	)
	for i, c := range closed {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := e.led.RecordExpunged(ctx, c.TxnID, c.ClosedAt, destroyed[i]); err != nil {
				failMu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("record expunged: %w", err)
				}
				failMu.Unlock()
				return
			}
			recorded[i] = true
		})
	}
	wg.Wait()
	n := 0
	for i, c := range closed {
		if recorded[i] {
			e.awaitErasure = append(e.awaitErasure, c.ClosedAt)
			e.expunged++
			n++
		}
	}
	if firstErr != nil {
		return n, firstErr
	}
	patrons, err := e.proj.ClosedPatrons()
	if err != nil {
		return n, err
	}
	for _, id := range patrons {
		if err := e.keys.Destroy(keystore.Profile, id); err != nil {
			return n, fmt.Errorf("destroy profile key: %w", err)
		}
		if err := e.proj.ProfileErased(id); err != nil {
			return n, err
		}
		e.profiles++
	}
	return n, nil
}

// maxConcurrentRecords bounds the transaction.expunged records in flight at once.
const maxConcurrentRecords = 64

// Sweep makes every deletion so far physical: the keystore and the projections are
// flushed and compacted and their obsolete files removed, so no file under the data
// directory still holds a destroyed key, its wrapped form, or a closed link. Expunging goes
// on while a sweep runs; what is expunged meanwhile waits for the next sweep.
func (e *Expunger) Sweep(ctx context.Context) error {
	e.sweepMu.Lock()
	defer e.sweepMu.Unlock()
	// A sweep waits for Pebble to remove obsolete files; something holding them open must
	// not stall it for ever: it fails, says so, and the next sweep tries again.
	ctx, cancel := context.WithTimeout(ctx, e.sweepTimeout())
	defer cancel()
	e.mu.Lock()
	covered := e.awaitErasure
	e.awaitErasure = nil
	e.mu.Unlock()
	start := e.cfg.Now()
	err := e.keys.Sweep(ctx)
	if err != nil {
		err = fmt.Errorf("sweep keystore: %w", err)
	} else if err = keystore.Erase(ctx, e.proj.DB()); err != nil {
		err = fmt.Errorf("sweep projections: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.awaitErasure = append(covered, e.awaitErasure...) // still waiting
		return err
	}
	done := e.cfg.Now()
	e.erased += len(covered)
	for _, closedAt := range covered {
		lag := done.Sub(closedAt)
		e.erasureLag.add(lag)
		e.erasureHist.Observe(lag.Seconds())
	}
	e.sweeps++
	e.lastSweep = done
	e.cfg.Logger.Debug("erasure sweep", "elapsed", done.Sub(start))
	return nil
}

// sweepTimeout bounds one sweep: the sweep interval, and at least a minute.
func (e *Expunger) sweepTimeout() time.Duration { return max(e.cfg.SweepInterval, time.Minute) }

// Reconcile finishes what a crash interrupted: it expunges every closed transaction still
// waiting and destroys keys that no open transaction or account uses (created for a command
// whose append never happened). The projections must have caught up with the stream, and
// no command may be in flight.
func (e *Expunger) Reconcile(ctx context.Context) error {
	if _, err := e.ExpungeNow(ctx); err != nil {
		return err
	}
	orphans := 0
	for _, k := range []struct {
		kind keystore.Kind
		has  func([]byte) (bool, error)
	}{{keystore.Transaction, e.proj.HasTxn}, {keystore.Profile, e.proj.HasPatron}} {
		entries, err := e.keys.List(k.kind)
		if err != nil {
			return err
		}
		for _, en := range entries {
			r := en.Ref
			ok, err := k.has(r.Hash[:])
			if err != nil {
				return err
			}
			if !ok {
				if err := e.keys.DestroyRef(r); err != nil {
					return err
				}
				orphans++
			}
		}
	}
	if orphans > 0 {
		e.cfg.Logger.Info("destroyed keys no open transaction or account uses", "count", orphans)
	}
	return e.Sweep(ctx)
}

// Stats is what the expunger has done since it started.
type Stats struct {
	Expunged        int           `json:"expunged"`
	Erased          int           `json:"erased"` // expunged and swept from every file
	ProfilesErased  int           `json:"profiles_erased"`
	AwaitingErasure int           `json:"awaiting_erasure"`
	Sweeps          int           `json:"sweeps"`
	LastSweep       time.Time     `json:"last_sweep,omitzero"`
	ExpungeLagP50   time.Duration `json:"expunge_lag_p50_ns"`
	ExpungeLagP99   time.Duration `json:"expunge_lag_p99_ns"`
	ErasureLagP50   time.Duration `json:"erasure_lag_p50_ns"`
	ErasureLagP99   time.Duration `json:"erasure_lag_p99_ns"`
}

// Stats returns the counters and lag quantiles over the most recent transactions.
func (e *Expunger) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{
		Expunged: e.expunged, Erased: e.erased, ProfilesErased: e.profiles, AwaitingErasure: len(e.awaitErasure),
		Sweeps: e.sweeps, LastSweep: e.lastSweep,
		ExpungeLagP50: e.expungeLag.quantile(0.5), ExpungeLagP99: e.expungeLag.quantile(0.99),
		ErasureLagP50: e.erasureLag.quantile(0.5), ErasureLagP99: e.erasureLag.quantile(0.99),
	}
}

// StatsJSON is Stats for the HTTP API.
func (e *Expunger) StatsJSON() any { return e.Stats() }
