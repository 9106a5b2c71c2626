// Package expunger carries out Lethe's forgetting. When a transaction closes it destroys
// the transaction's key (after which no copy of the stream can tie the loan to a patron),
// records transaction.expunged, and on every erasure sweep makes the deletion physical in
// every file of the keystore and the projections (their Sweep methods). It also destroys the
// profile key of a closed account.
//
// It is idempotent and resumable: the work lives in the projections (rows e/ and k/, written
// in the same batch that applies the closing event), so a crash between "closed" and
// "expunged" is finished at the next start. A record that fails leaves its transaction
// waiting to be recorded again; its key is destroyed once, and its lag observed once. At
// start it also destroys keys that no open transaction or patron uses: keys created for a
// command whose append never happened.
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
	// SweepInterval is the erasure window W: every transaction's bytes must be gone from
	// every file within W of its close. Sweeps run every W/2 (and earlier when a deadline
	// comes near), each allowed W/2, so a close waits at most W. Default 60s.
	SweepInterval time.Duration
	// Forgetting before ingest: while more than MaxWaiting closed transactions wait for
	// their keys to be destroyed, or the oldest has waited MaxWaitAge, or the oldest
	// expunged transaction not yet erased is three quarters into its window, or the last
	// sweep failed, Admit holds new checkouts for up to AdmitWait and then refuses them.
	// Defaults 512, 1s and 2s.
	MaxWaiting int
	MaxWaitAge time.Duration
	AdmitWait  time.Duration
	// Drag is added before every destroying pass and every sweep: a slow disk on demand,
	// for tests and drills that the window holds under load. There is no flag for it.
	Drag time.Duration
	// OrphanGrace spares, in Reconcile, keys created less than this long ago: on a node of a
	// cluster, another node's command may have made its key and not yet appended its
	// event (keystore.Remote). 0 on a single node, where nothing else makes keys.
	OrphanGrace time.Duration
	// StateFile keeps the erasure watermark across restarts (watermark.go); empty: none.
	StateFile  string
	Now        func() time.Time      // clock; default time.Now
	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // where the metrics are registered; nil: not registered
}

// Expunger destroys keys of closed transactions and accounts and sweeps.
//
// Three kinds of work run beside one another and never wait for each other: destroying
// keys (which ends the link, and needs only the keystore), recording the destructions on
// the stream (appends, which wait for JetStream and the projector), and sweeps (which wait
// for compactions). Each has its own lock; mu only guards the counters and the
// bookkeeping below, and is never held across I/O, so Stats always answers at once.
type Expunger struct {
	cfg  Config
	keys *keystore.Store
	proj *projections.Store
	led  *ledger.Ledger

	destroyMu sync.Mutex // serialises the destroying step of passes
	sweepMu   sync.Mutex // serialises sweeps

	mu sync.Mutex // guards the fields below; held for bookkeeping only, never across I/O
	// destroyed holds the transactions whose key is destroyed and whose record has not
	// landed yet, by transaction id (in memory only): their lag is taken when the record
	// lands, once, from the first destruction.
	destroyed map[string]destruction
	recording map[string]bool // transactions whose record is being appended
	// landed holds transactions whose record landed while a destroying pass may still
	// list them as waiting: that pass must neither destroy nor count them again.
	landed map[string]bool
	// awaitErasure are the transactions whose key is destroyed and whose bytes the next
	// sweep erases, in the order they were destroyed.
	awaitErasure []awaiting
	sweeping     []awaiting // those the running sweep erases: awaiting still, until it ends
	// waiting and oldestWaiting are what the last destroying pass found still to destroy
	// (its count, and the oldest close among them); zero once the pass is done.
	waiting         int
	oldestWaiting   time.Time
	missed          []Missed // the most recent transactions erased after their deadline
	missedTotal     int
	sweepErr        error // the last sweep's failure; nil after a success
	sweepFailures   int
	sweepStarted    time.Time // of the last sweep that ran (started), for the schedule
	sweepTook       time.Duration
	throttled       time.Duration // the time Admit held checkouts
	progress        chan struct{} // closed and replaced whenever a pass or a sweep ends
	series          []Sample
	intervalExpunge *lagWindow // lags of the current sample's interval
	intervalErasure *lagWindow
	expungeLag      *lagWindow
	erasureLag      *lagWindow
	expunged        int
	erased          int
	profiles        int
	sweeps          int
	lastSweep       time.Time
	expungeHist     prometheus.Histogram
	erasureHist     prometheus.Histogram
}

// destruction is a closed transaction whose key is destroyed.
type destruction struct {
	closedAt, destroyedAt time.Time
}

// awaiting is a transaction whose key is destroyed and whose bytes await a sweep.
type awaiting struct {
	txnID                 string
	closedAt, destroyedAt time.Time
}

// Missed is a transaction whose bytes were not provably gone from every file by its
// deadline (its close plus the window): the erasure window was missed. Its id is an
// opaque transaction id, as on the stream.
type Missed struct {
	TxnID    string    `json:"txn_id"`
	ClosedAt time.Time `json:"closed_at"`
	Deadline time.Time `json:"deadline"`
	ErasedAt time.Time `json:"erased_at"`
}

// maxMissedListed bounds the list of missed transactions kept for administrators.
const maxMissedListed = 1000

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
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = 512
	}
	if cfg.MaxWaitAge <= 0 {
		cfg.MaxWaitAge = time.Second
	}
	if cfg.AdmitWait <= 0 {
		cfg.AdmitWait = 2 * time.Second
	}
	e := &Expunger{cfg: cfg, keys: keys, proj: proj, led: led, progress: make(chan struct{}),
		destroyed: map[string]destruction{}, recording: map[string]bool{}, landed: map[string]bool{},
		expungeLag: newLagWindow(10000), erasureLag: newLagWindow(10000),
		intervalExpunge: newLagWindow(4096), intervalErasure: newLagWindow(4096),
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
		for _, c := range append([]prometheus.Collector{e.expungeHist, e.erasureHist}, e.collectors()...) {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Run expunges as transactions close and sweeps every SweepInterval until ctx ends, and
// returns once the goroutines it started are done. Call Reconcile first, once, before
// kiosks are served. Keys are destroyed on this goroutine; records are appended on a
// second and sweeps run on a third, so neither a slow append nor a sweep delays a key's
// destruction. A close during a sweep is expunged at once and erased at the next sweep.
func (e *Expunger) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// The schedule is checked every second (or more often, for a short window): a
		// sweep is due every W/2, when the oldest transaction awaiting erasure comes
		// within two sweeps' time of its deadline, and a second after a failed one.
		t := time.NewTicker(min(time.Second, e.cfg.SweepInterval/4))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !e.sweepDue() {
					continue
				}
				if err := e.Sweep(ctx); err != nil && ctx.Err() == nil {
					e.cfg.Logger.Error("erasure sweep failed: retrying; checkouts are held until one succeeds", "err", err)
				}
			}
		}
	})
	wg.Go(func() {
		t := time.NewTicker(e.SampleEvery())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				e.sample()
			}
		}
	})
	record := make(chan struct{}, 1)
	wg.Go(func() {
		// The periodic pass retries records that failed.
		t := time.NewTicker(e.cfg.SweepInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-record:
			case <-t.C:
			}
			if _, err := e.record(ctx); ledger.InProcess(err) {
				e.cfg.Logger.Debug("record expunged transactions: another node is recording them", "err", err)
			} else if err != nil && ctx.Err() == nil {
				e.cfg.Logger.Error("record expunged transactions", "err", err)
			}
		}
	})
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
		if err := e.destroy(); err != nil {
			e.cfg.Logger.Error("expunge", "err", err)
		}
		select {
		case record <- struct{}{}:
		default: // a pass is already due
		}
	}
}

// Hold keeps keys from being destroyed until release is called. A backup takes the
// streams first and the keys after them: a key destroyed in between would leave a loan
// open in the backup without its key. Closes wait meanwhile, and count against forgetting
// before ingest as always; the caller keeps the hold short.
func (e *Expunger) Hold() (release func()) {
	e.destroyMu.Lock()
	return sync.OnceFunc(e.destroyMu.Unlock)
}

// ExpungeNow destroys the key of every closed transaction still waiting, and the profile
// keys of closed accounts, then records each transaction as expunged. It returns how many
// transactions it recorded; one whose record another pass is appending is left to it.
func (e *Expunger) ExpungeNow(ctx context.Context) (int, error) {
	if err := e.destroy(); err != nil {
		return 0, err
	}
	return e.record(ctx)
}

// destroy destroys the keys of closed transactions and accounts. It waits for nothing but
// the keystore: that is what ends the link.
func (e *Expunger) destroy() error {
	e.destroyMu.Lock()
	defer e.destroyMu.Unlock()
	defer e.signal()
	e.drag()
	closed, err := e.proj.PendingExpunges()
	if err != nil {
		return err
	}
	pending := make(map[string]bool, len(closed))
	var todo []projections.ClosedTxn
	var oldest time.Time
	e.mu.Lock()
	for _, c := range closed {
		pending[c.TxnID] = true
		if _, done := e.destroyed[c.TxnID]; done || e.landed[c.TxnID] {
			continue // its record failed, is on its way, or landed since the list was read
		}
		todo = append(todo, c)
		if oldest.IsZero() || c.ClosedAt.Before(oldest) {
			oldest = c.ClosedAt
		}
	}
	e.waiting, e.oldestWaiting = len(todo), oldest
	e.mu.Unlock()
	ids := make([]string, len(todo))
	for i, c := range todo {
		ids[i] = c.TxnID
	}
	// One synced batch for every key of the pass: forgetting keeps up with any rate of
	// closes, at one fsync a pass.
	if err := e.keys.DestroyAll(keystore.Transaction, ids); err != nil {
		return fmt.Errorf("destroy transaction keys: %w", err)
	}
	now := e.cfg.Now()
	e.mu.Lock()
	for _, c := range todo {
		e.destroyed[c.TxnID] = destruction{closedAt: c.ClosedAt, destroyedAt: now}
		e.awaitErasure = append(e.awaitErasure, awaiting{txnID: c.TxnID, closedAt: c.ClosedAt, destroyedAt: now})
	}
	e.waiting, e.oldestWaiting = 0, time.Time{}
	// A transaction no longer waiting, and not being recorded, had its record land
	// although the append reported a failure (a timeout after the stream accepted it).
	for id, d := range e.destroyed {
		if !pending[id] && !e.recording[id] {
			delete(e.destroyed, id)
			e.landedLocked(d)
		}
	}
	for id := range e.landed {
		if !pending[id] {
			delete(e.landed, id) // the next list cannot hold it
		}
	}
	e.mu.Unlock()
	patrons, err := e.proj.ClosedPatrons()
	if err != nil {
		return err
	}
	for _, id := range patrons {
		if err := e.keys.Destroy(keystore.Profile, id); err != nil {
			return fmt.Errorf("destroy profile key: %w", err)
		}
		if err := e.proj.ProfileErased(id); err != nil {
			return err
		}
		e.mu.Lock()
		e.profiles++
		e.mu.Unlock()
	}
	return nil
}

// signal wakes everyone waiting for forgetting to progress (Admit).
func (e *Expunger) signal() {
	e.mu.Lock()
	close(e.progress)
	e.progress = make(chan struct{})
	e.mu.Unlock()
}

// drag waits cfg.Drag (see Config).
func (e *Expunger) drag() {
	if e.cfg.Drag > 0 {
		time.Sleep(e.cfg.Drag)
	}
}

// landedLocked counts a transaction whose record landed: the only place its lag is
// observed. The caller holds mu and has removed it from destroyed.
func (e *Expunger) landedLocked(d destruction) {
	lag := d.destroyedAt.Sub(d.closedAt)
	e.expungeLag.add(lag)
	e.intervalExpunge.add(lag)
	e.expungeHist.Observe(lag.Seconds())
	e.expunged++
}

// record appends transaction.expunged for every destroyed key not yet recorded, except
// those another pass is recording. The records go concurrently, so the ledger commits
// them together instead of one commit each. A record that fails stays to be recorded
// again; it keeps the time its key was first destroyed.
func (e *Expunger) record(ctx context.Context) (int, error) {
	type todo struct {
		id string
		d  destruction
	}
	var batch []todo
	e.mu.Lock()
	for id, d := range e.destroyed {
		if !e.recording[id] {
			e.recording[id] = true
			batch = append(batch, todo{id, d})
		}
	}
	e.mu.Unlock()
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, maxConcurrentRecords)
		failMu   sync.Mutex
		firstErr error
		n        int
	)
	for _, r := range batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := e.led.RecordExpunged(ctx, r.id, r.d.closedAt, r.d.destroyedAt)
			e.mu.Lock()
			delete(e.recording, r.id)
			if err == nil {
				if d, ok := e.destroyed[r.id]; ok {
					delete(e.destroyed, r.id)
					e.landed[r.id] = true
					e.landedLocked(d)
					n++
				}
			}
			e.mu.Unlock()
			if err != nil {
				failMu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("record expunged: %w", err)
				}
				failMu.Unlock()
			}
		})
	}
	wg.Wait()
	return n, firstErr
}

// maxConcurrentRecords bounds the transaction.expunged records in flight at once.
const maxConcurrentRecords = 64

// Sweep makes every deletion so far physical: the keystore and the projections are
// flushed and compacted where something was deleted and their obsolete files removed, so
// no file under the data directory still holds a destroyed key, its wrapped form, or a
// closed link. Expunging goes on while a sweep runs; what is expunged meanwhile waits for
// the next sweep.
func (e *Expunger) Sweep(ctx context.Context) error {
	e.sweepMu.Lock()
	defer e.sweepMu.Unlock()
	defer e.signal()
	// A sweep waits for Pebble to remove obsolete files; something holding them open must
	// not stall it for ever: it fails, says so, is retried, and holds checkouts meanwhile.
	ctx, cancel := context.WithTimeout(ctx, e.sweepTimeout())
	defer cancel()
	start := e.cfg.Now()
	applied := e.proj.Applied() // every record at or before it is of a key destroyed by now
	e.mu.Lock()
	covered := e.awaitErasure
	e.awaitErasure, e.sweeping = nil, covered
	e.sweepStarted = start
	e.mu.Unlock()
	e.drag()
	// Each store's Sweep says which store failed.
	err := e.keys.Sweep(ctx)
	if err == nil {
		err = e.proj.Sweep(ctx)
	}
	done := e.cfg.Now()
	if err == nil {
		// After mu is released (defers run last in, first out): no I/O under mu.
		defer func() {
			if werr := e.writeWatermark(applied); werr != nil {
				e.cfg.Logger.Error("erasure watermark", "err", werr) // the next start may then not count a downtime's misses
			}
		}()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sweeping = nil
	e.sweepTook = done.Sub(start)
	if err != nil {
		e.awaitErasure = append(covered, e.awaitErasure...) // still waiting
		e.sweepErr = err
		e.sweepFailures++
		return err
	}
	e.sweepErr = nil
	e.erased += len(covered)
	for _, a := range covered {
		lag := done.Sub(a.closedAt)
		e.erasureLag.add(lag)
		e.intervalErasure.add(lag)
		e.erasureHist.Observe(lag.Seconds())
		if deadline := a.closedAt.Add(e.cfg.SweepInterval); done.After(deadline) {
			e.missedTotal++
			e.missed = append(e.missed, Missed{TxnID: a.txnID, ClosedAt: a.closedAt, Deadline: deadline, ErasedAt: done})
			if len(e.missed) > maxMissedListed {
				e.missed = e.missed[len(e.missed)-maxMissedListed:]
			}
		}
	}
	e.sweeps++
	e.lastSweep = done
	e.cfg.Logger.Debug("erasure sweep", "elapsed", done.Sub(start), "erased", len(covered))
	return nil
}

// sweepTimeout bounds one sweep: half the window, so that a close waits at most a whole
// window (half for its sweep to begin, half for it to end), and at least ten seconds.
func (e *Expunger) sweepTimeout() time.Duration { return max(e.cfg.SweepInterval/2, 10*time.Second) }

// sweepDue reports whether the schedule calls for a sweep now.
func (e *Expunger) sweepDue() bool {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.sweepErr != nil:
		return true // at the next tick: a second (real time, whatever the clock says) after the failure
	case now.Sub(e.sweepStarted) >= e.cfg.SweepInterval/2:
		return true
	case len(e.awaitErasure) > 0:
		deadline := e.oldestAwaitingLocked().Add(e.cfg.SweepInterval)
		return deadline.Sub(now) <= max(2*e.sweepTook, time.Second)
	}
	return false
}

// oldestAwaitingLocked is the earliest close among the transactions awaiting erasure, or
// the zero time. mu is held.
func (e *Expunger) oldestAwaitingLocked() time.Time {
	var oldest time.Time
	e.eachAwaitingLocked(func(a awaiting) {
		if oldest.IsZero() || a.closedAt.Before(oldest) {
			oldest = a.closedAt
		}
	})
	return oldest
}

// eachAwaitingLocked calls f for every transaction awaiting erasure: those waiting for a
// sweep and those the running sweep erases. mu is held.
func (e *Expunger) eachAwaitingLocked(f func(awaiting)) {
	for _, a := range e.sweeping {
		f(a)
	}
	for _, a := range e.awaitErasure {
		f(a)
	}
}

// Reconcile finishes what a crash interrupted: it expunges every closed transaction still
// waiting and destroys keys that no open transaction or account uses (created for a command
// whose append never happened, or held ready by a key pool that a crash ended; the keys a
// running pool holds are not listed, so not destroyed). The projections must have caught
// up with the stream, and no command may be in flight.
func (e *Expunger) Reconcile(ctx context.Context) error {
	if _, err := e.ExpungeNow(ctx); err != nil {
		return err
	}
	var orphans []keystore.Ref
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
			if e.cfg.OrphanGrace > 0 && e.cfg.Now().Sub(en.Created) < e.cfg.OrphanGrace {
				continue
			}
			ok, err := k.has(r.Hash[:])
			if err != nil {
				return err
			}
			if !ok {
				orphans = append(orphans, r)
			}
		}
	}
	// One synced batch for all of them: after a crash they include every key a running
	// key pool held ready (keystore.Pool), so a start pays one fsync, not one a key.
	if err := e.keys.DestroyRefs(orphans); err != nil {
		return err
	}
	if len(orphans) > 0 {
		e.cfg.Logger.Info("destroyed keys no open transaction or account uses", "count", len(orphans))
	}
	// The keys are gone; what a failed sweep leaves is their bytes, which the running
	// expunger's retries erase, with /healthz saying erasure_failing meanwhile. A start is
	// not refused for it.
	if err := e.Sweep(ctx); err != nil {
		e.cfg.Logger.Error("the erasure sweep at the start failed; it is retried", "err", err)
	}
	return nil
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
	ExpungeLagMax   time.Duration `json:"expunge_lag_max_ns"`
	ErasureLagP50   time.Duration `json:"erasure_lag_p50_ns"`
	ErasureLagP99   time.Duration `json:"erasure_lag_p99_ns"`
	ErasureLagMax   time.Duration `json:"erasure_lag_max_ns"`
}

// Stats returns the counters, and lag quantiles estimated from a uniform sample of every
// transaction since the start (the maxima are exact).
func (e *Expunger) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{
		Expunged: e.expunged, Erased: e.erased, ProfilesErased: e.profiles, AwaitingErasure: len(e.awaitErasure) + len(e.sweeping),
		Sweeps: e.sweeps, LastSweep: e.lastSweep,
		ExpungeLagP50: e.expungeLag.quantile(0.5), ExpungeLagP99: e.expungeLag.quantile(0.99), ExpungeLagMax: e.expungeLag.max,
		ErasureLagP50: e.erasureLag.quantile(0.5), ErasureLagP99: e.erasureLag.quantile(0.99), ErasureLagMax: e.erasureLag.max,
	}
}

// StatsJSON is Stats for the HTTP API.
func (e *Expunger) StatsJSON() any { return e.Stats() }
