package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/audit"
	"github.com/imagineif/lethe/demo"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fillHistory makes in dir the stream that replay, rebuild and start read: kiosks checking
// items out and in over the kiosk API, as in the ingest runs, but on a service that syncs
// the stream every minute instead of before every acknowledgement, so that a large history
// takes seconds (or, for a million events, minutes). The events are the same. The
// service's clock runs an hour a second, so the history spans a library's day or so (a
// million events, ten days), as a real stream spans months: most command ids have left the
// one-hour deduplication window by its end, as they have in a real rebuild. Kiosks have
// no rate limit: with one (20 requests a second each) most requests were refused, the
// kiosks lost track of their items, and the history stopped growing near 14,000 events.
// It fills for plan.historyFill, or with plan.historyEvents until the stream holds that
// many events; refusals are reported as warnings.
func (b *bencher) fillHistory(ctx context.Context, dir string) error {
	const kiosks = 64
	b.prog.set("history: seeding")
	start := time.Now()
	cfg := node.ServiceConfig{
		Config: node.Config{Data: dir, NATSListen: "off", Sync: "1m", Replicas: 1,
			Location: time.UTC, Logger: b.logger},
		HTTP: "off", SweepInterval: time.Hour, RulesInterval: time.Hour,
		Now: func() time.Time { return start.Add(time.Since(start) * 3600) },
		// As fast as answered, as in the ingest runs.
		Kiosks: kiosk.Config{Rate: -1},
	}
	s, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	lib, err := demo.Seed(ctx, demo.NewLocal(s), 4*kiosks, kiosks, io.Discard)
	if err != nil {
		return err
	}
	kc := node.NewKioskClients(s)
	defer kc.Close()
	refused := map[string]int64{}
	load := func(d time.Duration) error {
		res, err := b.letheLoad(ctx, s, kc, lib, kiosks, d)
		for code, n := range res.refused {
			refused[code] += n
		}
		return err
	}
	if want := b.plan.historyEvents; want > 0 {
		// In slices of 1 to 10 s, each as long as the last slice's rate says is left.
		slice := time.Second
		for {
			last, err := s.StreamLast(ctx)
			if err != nil {
				return err
			}
			if last >= uint64(want) {
				break
			}
			b.prog.set("history: %s of %s messages, 64 kiosks", thousands(int64(last)), thousands(int64(want)))
			t0 := time.Now()
			if err := load(slice); err != nil {
				return err
			}
			after, err := s.StreamLast(ctx)
			if err != nil {
				return err
			}
			if after <= last {
				return fmt.Errorf("the history stopped growing at %d messages (refusals: %v)", after, refused)
			}
			rate := float64(after-last) / time.Since(t0).Seconds()
			slice = min(10*time.Second, max(time.Second, time.Duration(float64(uint64(want)-min(after, uint64(want)))/rate*float64(time.Second))))
		}
	} else {
		b.prog.set("history: %d kiosks for %s", kiosks, b.plan.historyFill)
		if err := load(b.plan.historyFill); err != nil {
			return err
		}
	}
	for code, n := range refused {
		b.warn("history: %s kiosk requests refused (%s)", thousands(n), code)
	}
	// Let the expunger finish, so the history ends quiet.
	if _, err := s.Expunger.ExpungeNow(ctx); err != nil {
		return err
	}
	last, err := s.StreamLast(ctx)
	if err != nil {
		return err
	}
	b.historyFilled = fmt.Sprintf("filled in %.0f s (%s events/s)", time.Since(start).Seconds(), thousands(int64(float64(last)/time.Since(start).Seconds())))
	stopped = true
	return s.Stop()
}

// FillHistory makes in dir, an empty data directory, the history that a run replays and
// rebuilds: 64 kiosks checking items out and in for d, as the run's history section does.
// Open it with node.Open. logger is Lethe's own log; nil writes nowhere.
func FillHistory(ctx context.Context, dir string, d time.Duration, logger *slog.Logger) error {
	b := &bencher{plan: plan{historyFill: d}, logger: discardNil(logger), prog: newProgressLine(nil)}
	return b.fillHistory(ctx, dir)
}

// RawRead reads the whole CIRC stream with an ordered consumer and does nothing with the
// messages but count their bytes: the engine's own replay rate.
func RawRead(ctx context.Context, js jetstream.JetStream) (int, time.Duration, error) {
	start := time.Now()
	s, err := js.Stream(ctx, ledger.StreamName)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	total := int(info.State.Msgs)
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return 0, 0, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return 0, 0, err
	}
	defer it.Stop()
	n, size := 0, 0
	for n < total {
		m, err := it.Next()
		if err != nil {
			return n, 0, err
		}
		size += len(m.Data())
		n++
	}
	if size == 0 {
		return n, 0, errors.New("empty stream")
	}
	return n, time.Since(start), nil
}

// AuditRead is lethe audit replay without its output: the expunged records first, then
// every event through the auditor's decode path (type, data, patron status). It returns
// the events decoded and the time of both passes.
func AuditRead(ctx context.Context, nc *nats.Conn, v *schemas.Validator) (int, time.Duration, error) {
	// Timed from the first read, as lethe audit replay does it: the transaction.expunged
	// records first, then every message.
	start := time.Now()
	expunged, err := audit.ExpungedTxns(ctx, nc)
	if err != nil {
		return 0, 0, err
	}
	a := audit.New(v, expunged)
	n, sealed := 0, 0
	read := func(fn func(ledger.Msg) error) error { return ledger.ReadDirect(ctx, nc, ledger.ReadOptions{}, fn) }
	err = audit.InOrder(read, runtime.GOMAXPROCS(0), a.Decode, func(d audit.Decoded) error {
		if d.Err != nil {
			return fmt.Errorf("sequence %d: %w", d.Seq, d.Err)
		}
		for _, l := range d.Lines {
			if l.Patron == "sealed" {
				sealed++
			}
		}
		n += len(d.Lines)
		return nil
	})
	return n, time.Since(start), err
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// replayAndRebuild replays the ingest service's stream raw and as the auditor does, and
// rebuilds its projections, as lethe projections rebuild does (server stopped).
func (b *bencher) replayAndRebuild(ctx context.Context) error {
	b.prog.set("replay: opening the history")
	n, err := node.Open(ctx, node.Config{Data: b.history, NATSListen: "off", Sync: "always", Location: time.UTC, Logger: b.logger})
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Proj.CatchUp(ctx, n.JS); err != nil {
		return err
	}
	msgs := int(n.Proj.Applied())
	events := 0 // counted by the auditor's first read: a command's several events are one message
	// A first read warms the page cache for both.
	if _, _, err := RawRead(ctx, n.JS); err != nil {
		return err
	}
	var raws, audits, rebuilds []float64
	var unchecked uint64 // messages the rebuild decoded without schemas, under the signed checkpoint
	for i := range b.plan.replayRuns {
		b.prog.set("replay %d/%d: raw ordered consumer, %s messages", i+1, b.plan.replayRuns, thousands(int64(msgs)))
		rn, rd, err := RawRead(ctx, n.JS)
		if err != nil {
			return err
		}
		if rn != msgs {
			return fmt.Errorf("the raw read read %d messages of %d", rn, msgs)
		}
		b.prog.set("replay %d/%d: auditor's decode path", i+1, b.plan.replayRuns)
		var an int
		var ad time.Duration
		pprof.Do(ctx, pprof.Labels("bench", "replay"), func(ctx context.Context) {
			an, ad, err = AuditRead(ctx, n.NC, n.V)
		})
		if err != nil {
			return err
		}
		if events == 0 {
			events = an
		} else if an != events {
			return fmt.Errorf("the auditor read %d events, then %d", events, an)
		}
		// Raw reads the same messages, which hold the same events: its rate in events.
		raws = append(raws, float64(events)/rd.Seconds())
		audits = append(audits, float64(an)/ad.Seconds())
		if !b.runs("rebuild") {
			continue
		}
		b.prog.set("rebuild %d/%d: projections from %s events", i+1, b.plan.replayRuns, thousands(int64(events)))
		dir, err := os.MkdirTemp(b.history, "rebuild-")
		if err != nil {
			return err
		}
		var diff projections.Diff
		start := time.Now()
		// The label lets a profile (--cpuprofile) pick out the rebuild: -tagfocus bench=rebuild.
		pprof.Do(ctx, pprof.Labels("bench", "rebuild"), func(ctx context.Context) {
			// As lethe projections rebuild does it, under the last signed checkpoint.
			diff, err = n.RebuildProjections(ctx, filepath.Join(dir, "projections"), projections.Config{Location: time.UTC, Logger: b.logger})
		})
		elapsed := time.Since(start)
		os.RemoveAll(dir)
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		if !diff.Equal() {
			b.warn("the rebuilt projections differ from the live ones: %d missing, %d extra, %d changed", diff.Missing, diff.Extra, diff.Changed)
		}
		rebuilds = append(rebuilds, float64(events)/elapsed.Seconds())
		unchecked = diff.Unchecked
	}
	raw := median(raws)
	note := fmt.Sprintf("%s events in %s messages, %s; median of %d", thousands(int64(events)), thousands(int64(msgs)), b.historyFilled, b.plan.replayRuns)
	if b.runs("replay") {
		audit := median(audits)
		b.add(newRow("replay", "auditor decode", "events/s", ptr(raw), audit).
			target("≥ 0.7× raw", audit >= 0.7*raw).note(note))
	}
	if len(rebuilds) > 0 {
		reb := median(rebuilds)
		b.add(newRow("rebuild", "projection rebuild from the stream", "events/s", ptr(raw), reb).
			target("≥ 100,000 events/s", reb >= 100000).note(fmt.Sprintf("%s; %s of the messages under the last signed checkpoint, not checked against their schemas again; raw: the ordered-consumer read alone", note, thousands(int64(unchecked)))))
	}
	return nil
}

// clock is the service's clock in the growth runs: real time plus an offset the
// bench moves forward, past the deduplication window.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// growth measures the keystore's and the projections' bytes on disk with n open
// transactions, then after 10×n more transactions opened and closed: they must follow the
// open transactions, not the history.
func (b *bencher) growth(ctx context.Context) error {
	for _, open := range b.plan.growth {
		if err := b.growthRun(ctx, open); err != nil {
			return err
		}
	}
	return nil
}

func (b *bencher) growthRun(ctx context.Context, open int) error {
	const kiosks = 16
	var clk clock
	b.prog.set("growth %d: seeding", open)
	s, err := b.startLethe(ctx, b.tempDir("growth"+strconv.Itoa(open)), time.Hour, clk.Now)
	if err != nil {
		return err
	}
	defer s.Stop()
	// Cards for the open loans (at most 40 each, under the loan limit), and one per kiosk.
	holders := (open + 39) / 40
	lib, err := demo.Seed(ctx, demo.NewLocal(s), open+4*kiosks, holders+kiosks, io.Discard)
	if err != nil {
		return err
	}
	kc := node.NewKioskClients(s)
	defer kc.Close()

	b.prog.set("growth %d: opening %d loans", open, open)
	if err := parallel(ctx, kiosks, open, func(i int) error {
		code, err := kioskRequest(ctx, kc, "growth"+strconv.Itoa(i%kiosks), schemas.CmdCheckOut,
			schemas.CheckOut{CommandID: uuid.NewString(), Card: lib.Cards[i%holders], Barcode: lib.Barcodes[i]})
		if err == nil && code != "" {
			err = fmt.Errorf("checkout refused: %s", code)
		}
		b.prog.count.Add(1)
		return err
	}); err != nil {
		return err
	}
	measure := func() (keys, proj int64, err error) {
		if _, err := s.Expunger.ExpungeNow(ctx); err != nil {
			return 0, 0, err
		}
		if err := s.Expunger.Sweep(ctx); err != nil {
			return 0, 0, err
		}
		if keys, err = dirBytes(filepath.Join(s.Config().Data, "keystore")); err != nil {
			return 0, 0, err
		}
		proj, err = dirBytes(filepath.Join(s.Config().Data, "projections"))
		return keys, proj, err
	}
	keys0, proj0, err := measure()
	if err != nil {
		return err
	}

	closed := 10 * open
	b.prog.set("growth %d: %d transactions opened and closed", open, closed)
	pool := lib.Barcodes[open:]
	var next atomic.Int64
	if err := parallel(ctx, kiosks, kiosks, func(k int) error {
		var out, in latencies
		items := kioskItems(pool, k, kiosks)
		card := lib.Cards[holders+k]
		for i := 0; next.Add(1) <= int64(closed); i++ {
			if err := roundTrip(ctx, kc, "growth"+strconv.Itoa(k), card, items[i%len(items)], &out, &in, func(code string) {
				b.warn("growth: a kiosk request was refused (%s)", code)
			}); err != nil {
				return err
			}
			b.prog.count.Add(1)
		}
		return nil
	}); err != nil {
		return err
	}
	keys1, proj1, err := measure()
	if err != nil {
		return err
	}
	// Move the clock past the deduplication window; the next event applied lets the
	// projections forget the command ids they kept for retries.
	clk.offset.Store(int64(ledger.DedupeWindow + time.Minute))
	var out, in latencies
	if err := roundTrip(ctx, kc, "growth-late", lib.Cards[holders], pool[0], &out, &in, func(code string) {
		b.warn("growth: a kiosk request was refused (%s)", code)
	}); err != nil {
		return err
	}
	keys2, proj2, err := measure()
	if err != nil {
		return err
	}
	counts, err := s.Proj.Counts()
	if err != nil {
		return err
	}
	if counts.OpenTxns != open {
		b.warn("growth %d: %d open transactions at the end, want %d", open, counts.OpenTxns, open)
	}
	sec := fmt.Sprintf("growth, %s open", thousands(int64(open)))
	name := fmt.Sprintf("%s with %s open → after %s more closed", "%s", thousands(int64(open)), thousands(int64(closed)))
	b.add(newRow(sec, fmt.Sprintf(name, "keystore bytes"), "bytes", ptr(float64(keys0)), float64(keys2)).
		target("flat (≤ 1.25×)", float64(keys2) <= 1.25*float64(keys0)).
		note(fmt.Sprintf("raw column: before; %s right after the closes", formatValue(float64(keys1), "bytes"))))
	b.add(newRow(sec, fmt.Sprintf(name, "projection bytes"), "bytes", ptr(float64(proj0)), float64(proj2)).
		target("flat (≤ 1.25×)", float64(proj2) <= 1.25*float64(proj0)).
		note(fmt.Sprintf("raw column: before; %s right after the closes, while their command ids are kept for retries (%s)",
			formatValue(float64(proj1), "bytes"), ledger.DedupeWindow)))
	return nil
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		return err
	}
	return ctx.Err()
}
