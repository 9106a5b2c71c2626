package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagineif/lethe/demo"
	"github.com/imagineif/lethe/expunger"
	"github.com/imagineif/lethe/node"
)

// soakKiosks is the soak's load: as many kiosks as the largest ingest run, each sending
// as fast as it is answered, which is the highest load a closed loop of kiosks can make.
const soakKiosks = 64

// Soak is what lethe bench --soak measured: the run's totals and one sample per interval.
type Soak struct {
	Duration float64        `json:"duration_s"`
	Window   float64        `json:"window_s"` // the erasure window W (the sweep interval)
	Kiosks   int            `json:"kiosks"`
	Every    float64        `json:"sample_every_s"`
	Samples  []SoakSample   `json:"samples"`
	Stats    expunger.Stats `json:"expunger"` // whole-run lags: a uniform sample, exact maxima
	// Checkouts admitted and refused over the run; refusals are by error code.
	Checkouts int64            `json:"checkouts"`
	Refused   map[string]int64 `json:"refused,omitempty"`
	Throttled float64          `json:"throttled_s"` // time new checkouts were held
	Missed    int              `json:"missed_windows"`
	Overdue   int              `json:"overdue_at_end"`
}

// SoakSample is one interval of the soak. Lags are of the keys destroyed and the
// transactions erased in the interval (zero when there were none); sizes are at its end.
type SoakSample struct {
	At            float64 `json:"t_s"` // seconds since the load started
	EventsPerSec  float64 `json:"events_per_s"`
	CheckoutsPS   float64 `json:"checkouts_per_s"`
	Waiting       int     `json:"waiting"`       // closes waiting for their keys to be destroyed
	AwaitErasure  int     `json:"await_erasure"` // keys destroyed, bytes awaiting a sweep
	Expunged      int     `json:"expunged"`
	ExpungeLagP99 float64 `json:"expunge_lag_p99_ms"`
	ExpungeLagMax float64 `json:"expunge_lag_max_ms"`
	Erased        int     `json:"erased"`
	ErasureLagP50 float64 `json:"erasure_lag_p50_s"`
	ErasureLagP99 float64 `json:"erasure_lag_p99_s"`
	ErasureLagMax float64 `json:"erasure_lag_max_s"`
	Throttled     float64 `json:"throttled_s"` // held this interval
	Keystore      int64   `json:"keystore_bytes"`
	Projections   int64   `json:"projections_bytes"`
	Stream        int64   `json:"stream_bytes"`
}

// soakWindow is the soak's erasure window: --sweep-interval if given, else Lethe's
// default (60 s), or 6 s for the quick run, so that it sees several windows.
func (b *bencher) soakWindow() time.Duration {
	switch {
	case b.soakSweep > 0:
		return b.soakSweep
	case b.plan.quick:
		return 6 * time.Second
	}
	return time.Minute
}

// soak runs soakKiosks kiosks as fast as Lethe answers for the plan's soak duration on a
// fresh service with the soak window, sampling forgetting, throughput and store sizes at
// the expunger's own sampling interval, then lets forgetting finish and reports.
func (b *bencher) soak(ctx context.Context) error {
	window, d := b.soakWindow(), b.plan.soakFor
	b.prog.set("soak: seeding")
	dir := b.tempDir("soak")
	s, err := b.startLethe(ctx, dir, window, nil)
	if err != nil {
		return err
	}
	defer s.Stop()
	lib, err := demo.Seed(ctx, demo.NewLocal(s), max(b.plan.items, 4*soakKiosks), soakKiosks, io.Discard)
	if err != nil {
		return err
	}
	kc := node.NewKioskClients(s)
	defer kc.Close()

	every := s.Expunger.SampleEvery()
	res := &Soak{Duration: d.Seconds(), Window: window.Seconds(), Kiosks: soakKiosks, Every: every.Seconds()}
	var (
		checkouts atomic.Int64
		ref       refusals
		wg        sync.WaitGroup
		errs      = make(chan error, soakKiosks)
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	start := time.Now()
	for k := range soakKiosks {
		items := kioskItems(lib.Barcodes, k, soakKiosks)
		card := lib.Cards[k%len(lib.Cards)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, in latencies // roundTrip's; the soak reports rates, not latencies
			name := "soak" + strconv.Itoa(k)
			for i := 0; loadCtx.Err() == nil; i++ {
				refused := false
				err := roundTrip(loadCtx, kc, name, card, items[i%len(items)], &out, &in, func(code string) {
					refused = true
					ref.add(code)
				})
				if err != nil {
					if loadCtx.Err() == nil {
						errs <- err
					}
					return
				}
				if !refused {
					checkouts.Add(1)
				}
				out, in = out[:0], in[:0]
				b.prog.count.Add(2)
			}
		}()
	}

	sampleErr := b.soakSample(ctx, s, dir, start, d, every, &checkouts, res)
	stopLoad()
	wg.Wait()
	close(errs)
	if err := errors.Join(append(collect(errs), sampleErr)...); err != nil {
		return err
	}
	// Let forgetting finish what the load left: every close is expunged and swept, and
	// its lag counted, before the totals are read.
	b.prog.set("soak: forgetting what the load left")
	if _, err := s.Expunger.ExpungeNow(ctx); err != nil {
		return err
	}
	if err := s.Expunger.Sweep(ctx); err != nil {
		return err
	}
	f := s.Expunger.Forgetting()
	res.Stats = s.Expunger.Stats()
	res.Checkouts, res.Refused = checkouts.Load(), ref.m
	res.Throttled, res.Missed, res.Overdue = f.Throttled.Seconds(), f.MissedTotal, f.Overdue
	b.soakResult = res
	b.soakRows(res)
	return nil
}

// soakSample samples every interval until d has passed since start.
func (b *bencher) soakSample(ctx context.Context, s *node.Service, dir string, start time.Time, d, every time.Duration, checkouts *atomic.Int64, res *Soak) error {
	last, err := s.StreamLast(ctx)
	if err != nil {
		return err
	}
	var (
		lastCheckouts int64
		lastThrottled time.Duration
		lastSample    time.Time
		prev          = start
	)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			seq, err := s.StreamLast(ctx)
			if err != nil {
				return err
			}
			n := checkouts.Load()
			f := s.Expunger.Forgetting()
			secs := now.Sub(prev).Seconds()
			smp := SoakSample{At: now.Sub(start).Seconds(), EventsPerSec: float64(seq-last) / secs,
				CheckoutsPS: float64(n-lastCheckouts) / secs, Waiting: f.Waiting, AwaitErasure: f.AwaitErasure,
				Throttled: (f.Throttled - lastThrottled).Seconds()}
			// The expunger's samples since the last tick: usually one, as both tick at
			// the same interval; when two land in one tick their counts add and their
			// quantiles take the worse.
			for _, x := range s.Expunger.Series() {
				if !x.Time.After(lastSample) {
					continue
				}
				lastSample = x.Time
				smp.Expunged += x.Expunged
				smp.ExpungeLagP99 = max(smp.ExpungeLagP99, ms(x.ExpungeLagP99))
				smp.ExpungeLagMax = max(smp.ExpungeLagMax, ms(x.ExpungeLagMax))
				smp.Erased += x.Erased
				smp.ErasureLagP50 = max(smp.ErasureLagP50, x.ErasureLagP50.Seconds())
				smp.ErasureLagP99 = max(smp.ErasureLagP99, x.ErasureLagP99.Seconds())
				smp.ErasureLagMax = max(smp.ErasureLagMax, x.ErasureLagMax.Seconds())
			}
			for _, st := range []struct {
				sub string
				n   *int64
			}{{"keystore", &smp.Keystore}, {"projections", &smp.Projections}, {"nats", &smp.Stream}} {
				if *st.n, err = dirBytes(filepath.Join(dir, st.sub)); err != nil {
					return err
				}
			}
			res.Samples = append(res.Samples, smp)
			last, lastCheckouts, lastThrottled, prev = seq, n, f.Throttled, now
			elapsed := now.Sub(start)
			b.prog.set("soak: %d kiosks, %s of %s, %s events/s, %s awaiting erasure", soakKiosks,
				elapsed.Round(time.Second), d, thousands(int64(smp.EventsPerSec)), thousands(int64(smp.AwaitErasure)))
			if elapsed >= d {
				return nil
			}
		}
	}
}

// soakRows are the soak's summary rows. The soak has no raw counterpart: it measures
// whether Lethe keeps its own promise under the load it can take.
func (b *bencher) soakRows(r *Soak) {
	sec := fmt.Sprintf("soak %s, %d kiosks, W = %s", time.Duration(r.Duration*float64(time.Second)).Round(time.Second), r.Kiosks, time.Duration(r.Window*float64(time.Second)))
	var events, peakAwait float64
	var peakKeys, peakProj, endStream float64
	for _, s := range r.Samples {
		events += s.EventsPerSec * r.Every
		peakAwait = max(peakAwait, float64(s.AwaitErasure))
		peakKeys, peakProj = max(peakKeys, float64(s.Keystore)), max(peakProj, float64(s.Projections))
		endStream = float64(s.Stream)
	}
	w := r.Window * 1000
	st := r.Stats
	b.add(newRow(sec, "sustained rate", "events/s", nil, events/r.Duration).
		note(fmt.Sprintf("%s checkouts admitted (%.0f/s), the throughput the throttle leaves", thousands(r.Checkouts), float64(r.Checkouts)/r.Duration)))
	b.add(newRow(sec, "expunge lag p99", "ms", nil, ms(st.ExpungeLagP99)).note(fmt.Sprintf("max %s", formatValue(ms(st.ExpungeLagMax), "ms"))))
	b.add(newRow(sec, "erasure lag p50", "ms", nil, ms(st.ErasureLagP50)).note(fmt.Sprintf("%s transactions erased", thousands(int64(st.Erased)))))
	b.add(newRow(sec, "erasure lag p99", "ms", nil, ms(st.ErasureLagP99)).target("≤ W", ms(st.ErasureLagP99) <= w))
	b.add(newRow(sec, "erasure lag max", "ms", nil, ms(st.ErasureLagMax)).target("≤ W + 1 s", ms(st.ErasureLagMax) <= w+1000))
	b.add(newRow(sec, "windows missed", "transactions", nil, float64(r.Missed+r.Overdue)).target("0", r.Missed+r.Overdue == 0))
	b.add(newRow(sec, "time throttled", "s", nil, r.Throttled).note(fmt.Sprintf("%.1f%% of the run", 100*r.Throttled/r.Duration)))
	b.add(newRow(sec, "peak awaiting erasure", "transactions", nil, peakAwait))
	b.add(newRow(sec, "peak keystore", "bytes", nil, peakKeys))
	b.add(newRow(sec, "peak projections", "bytes", nil, peakProj))
	b.add(newRow(sec, "stream at the end", "bytes", nil, endStream))
	for code, n := range r.Refused {
		b.warn("%s: %d kiosk requests refused (%s)", sec, n, code)
	}
}
