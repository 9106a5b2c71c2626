package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/demo"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// finish records what a run appended since the stream was at before, and what was refused.
func (r *loadResult) finish(ctx context.Context, s *node.Service, before uint64, ref *refusals) error {
	after, err := s.StreamLast(ctx)
	if err != nil {
		return err
	}
	r.events, _, err = countEvents(ctx, s.JS, before, after)
	r.refused = ref.m
	return err
}

// errCounted ends countEvents' read.
var errCounted = errors.New("counted")

// countEvents counts the events of the stream's messages after before up to last (to the
// stream's end when last is math.MaxUint64), and their bytes: a command of several events
// is one message (a CloudEvents batch), so messages are not events.
func countEvents(ctx context.Context, js jetstream.JetStream, before, last uint64) (n, size int64, err error) {
	if last <= before {
		return 0, 0, nil
	}
	err = ledger.Read(ctx, js, ledger.ReadOptions{From: before + 1}, func(m ledger.Msg) error {
		if m.Seq > last {
			return errCounted
		}
		events, err := schemas.SplitEvents(m.Data)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", m.Seq, err)
		}
		for _, e := range events {
			n++
			size += int64(len(e))
		}
		if m.Seq == last {
			return errCounted
		}
		return nil
	})
	if errors.Is(err, errCounted) {
		err = nil
	}
	return n, size, err
}

// loadResult is what one ingest run measured.
type loadResult struct {
	events  int64         // messages appended to the stream during the run
	elapsed time.Duration // from the first request to the last reply
	all     latencies     // every request
	byCmd   map[string]latencies
	refused map[string]int64 // replies that were not ok, by error code
	// perCommit is the mean number of commands per commit (JetStream publish or atomic
	// batch): above 1 when group commit put several in one.
	perCommit float64
	// backlog is how many closed transactions still wait for their expunged record
	// when the run ends.
	backlog int
}

func (r loadResult) rate() float64 { return float64(r.events) / r.elapsed.Seconds() }

// merge adds one worker's latencies.
func (r *loadResult) merge(mu *sync.Mutex, cmd string, l latencies) {
	mu.Lock()
	defer mu.Unlock()
	r.all = append(r.all, l...)
	if r.byCmd == nil {
		r.byCmd = map[string]latencies{}
	}
	r.byCmd[cmd] = append(r.byCmd[cmd], l...)
}

// startLethe starts a fresh Lethe service in dir, a temporary directory: embedded NATS with
// fsync before every acknowledgement, no HTTP, kiosks over an in-process connection.
func (b *bencher) startLethe(ctx context.Context, dir string, sweep time.Duration, now func() time.Time) (*node.Service, error) {
	cfg := node.ServiceConfig{
		Config: node.Config{Data: dir, NATSListen: "off", Sync: "always", Replicas: 1,
			Location: time.UTC, Logger: b.logger},
		HTTP: "off", SweepInterval: sweep, RulesInterval: time.Hour, Now: now,
		// A benchmark kiosk sends as fast as it is answered: no per-kiosk rate limit.
		Kiosks: kiosk.Config{Rate: -1},
	}
	return node.Start(ctx, cfg)
}

// startRaw starts an embedded NATS server configured exactly as Lethe's (node.OpenNATS,
// fsync before every acknowledgement) with the CIRC stream's configuration, and returns
// it with a connection as privileged as the ledger's, for the raw runs.
func (b *bencher) startRaw(ctx context.Context) (*node.Node, error) {
	n, err := node.OpenNATS(node.Config{Data: b.tempDir("raw"), NATSListen: "off", Sync: "always", Logger: b.logger})
	if err != nil {
		return nil, err
	}
	n.JS, err = jetstream.New(n.NC)
	if err == nil {
		_, _, err = ledger.EnsureStream(ctx, n.JS, 1, 0)
	}
	if err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// kioskRequest sends one kiosk command as kiosk main/<kiosk> and returns the reply's error
// code ("" if ok).
func kioskRequest(ctx context.Context, kc *node.KioskClients, kiosk, cmd string, v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := kc.Request(ctx, "main", kiosk, cmd, raw)
	if err != nil {
		return "", err
	}
	var r schemas.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return "", fmt.Errorf("kiosk reply: %w", err)
	}
	if !r.OK {
		if r.Error == nil {
			return string(schemas.CodeInternal), nil
		}
		return string(r.Error.Code), nil
	}
	return "", nil
}

// roundTrip checks an item out to a card and returns it, timing each request.
func roundTrip(ctx context.Context, nc *node.KioskClients, kiosk, card, barcode string, out, in *latencies, refused func(string)) error {
	t := time.Now()
	code, err := kioskRequest(ctx, nc, kiosk, schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: card, Barcode: barcode})
	if err != nil {
		return err
	}
	*out = append(*out, time.Since(t))
	if code != "" {
		refused("checkout " + code)
		return nil
	}
	t = time.Now()
	code, err = kioskRequest(ctx, nc, kiosk, schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: barcode})
	if err != nil {
		return err
	}
	*in = append(*in, time.Since(t))
	if code != "" {
		refused("return " + code)
	}
	return nil
}

// refusals counts refused requests by code, safely across workers.
type refusals struct {
	mu sync.Mutex
	m  map[string]int64
}

func (r *refusals) add(code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]int64{}
	}
	r.m[code]++
}

// letheLoad runs kiosks concurrent kiosks for d, each checking its own items out and back
// in as fast as Lethe answers.
func (b *bencher) letheLoad(ctx context.Context, s *node.Service, nc *node.KioskClients, lib *demo.Library, kiosks int, d time.Duration) (loadResult, error) {
	before, err := s.StreamLast(ctx)
	if err != nil {
		return loadResult{}, err
	}
	var (
		res  loadResult
		mu   sync.Mutex
		ref  refusals
		wg   sync.WaitGroup
		errs = make(chan error, kiosks)
	)
	start := time.Now()
	deadline := start.Add(d)
	for k := range kiosks {
		items := kioskItems(lib.Barcodes, k, kiosks)
		card := lib.Cards[k%len(lib.Cards)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, in latencies
			name := "bench" + strconv.Itoa(k)
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				if err := roundTrip(ctx, nc, name, card, items[i%len(items)], &out, &in, ref.add); err != nil {
					errs <- err
					return
				}
				b.prog.count.Add(2)
			}
			res.merge(&mu, schemas.CmdCheckOut, out)
			res.merge(&mu, schemas.CmdReturn, in)
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		return res, err
	}
	err = res.finish(ctx, s, before, &ref)
	return res, err
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// kioskItems are the barcodes kiosk k of n works on: its own, so kiosks never race.
func kioskItems(barcodes []string, k, n int) []string {
	var out []string
	for i := k; i < len(barcodes); i += n {
		out = append(out, barcodes[i])
	}
	return out
}

// rawPublish is one request-publish to the CIRC stream, as the ledger appends: a message
// of size bytes with a Nats-Msg-Id, waiting for the stream's acknowledgement.
func rawPublish(ctx context.Context, nc *nats.Conn, subject string, payload []byte) error {
	m := nats.NewMsg(subject)
	m.Data = payload
	m.Header.Set("Nats-Msg-Id", uuid.NewString())
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return err
	}
	var ack struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return err
	}
	if ack.Error != nil {
		return fmt.Errorf("raw publish refused: %s", ack.Error.Description)
	}
	return nil
}

// rawLoad runs publishers concurrent publishers for d, each publishing one message at a
// time to its own subject.
func (b *bencher) rawLoad(ctx context.Context, nc *nats.Conn, publishers, size int, d time.Duration) (loadResult, error) {
	payload := rawPayload(size)
	var (
		res  loadResult
		mu   sync.Mutex
		wg   sync.WaitGroup
		n    atomic.Int64
		errs = make(chan error, publishers)
	)
	start := time.Now()
	deadline := start.Add(d)
	for k := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var l latencies
			subject := "circ.item.raw" + strconv.Itoa(k)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				if err := rawPublish(ctx, nc, subject, payload); err != nil {
					errs <- err
					return
				}
				l = append(l, time.Since(t))
				n.Add(1)
				b.prog.count.Add(1)
			}
			res.merge(&mu, "publish", l)
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	close(errs)
	res.events = n.Load()
	return res, errors.Join(collect(errs)...)
}

// rawPayload is size bytes of JSON-like text (the stream stores it as it is).
func rawPayload(size int) []byte {
	p := make([]byte, max(size, 2))
	for i := range p {
		p[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i%36]
	}
	p[0], p[len(p)-1] = '{', '}'
	return p
}

// meanEventSize is the mean size of the stream's events after sequence from.
func meanEventSize(ctx context.Context, js jetstream.JetStream, from uint64) (int, error) {
	n, size, err := countEvents(ctx, js, from-1, math.MaxUint64)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("no kiosk events to measure")
	}
	return int(size / n), nil
}

// ingest compares raw request-publish with kiosk round trips at each concurrency, on one
// seeded Lethe service whose stream then serves as the replay and rebuild history.
func (b *bencher) ingest(ctx context.Context) error {
	maxKiosks := slices.Max(b.plan.kiosks)
	b.prog.set("ingest: seeding %d items and %d patrons", b.plan.items, maxKiosks)
	s, err := b.startLethe(ctx, b.tempDir("ingest"), time.Hour, nil)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	lib, err := demo.Seed(ctx, demo.NewLocal(s), b.plan.items, maxKiosks, io.Discard)
	if err != nil {
		return err
	}
	kc := node.NewKioskClients(s)
	defer kc.Close()
	// Warm up, and measure the size of the events a round trip appends.
	seeded, err := s.StreamLast(ctx)
	if err != nil {
		return err
	}
	b.prog.set("ingest: warming up")
	if _, err := b.letheLoad(ctx, s, kc, lib, 4, 300*time.Millisecond); err != nil {
		return err
	}
	if _, err := s.Expunger.ExpungeNow(ctx); err != nil {
		return err
	}
	if b.eventSize, err = meanEventSize(ctx, s.JS, seeded+1); err != nil {
		return err
	}
	rawNode, err := b.startRaw(ctx)
	if err != nil {
		return err
	}
	defer rawNode.Close()
	rc := rawNode.NC
	if err := rawPublish(ctx, rc, "circ.item.warmup", rawPayload(b.eventSize)); err != nil {
		return err
	}
	if b.runs("ingest") {
		for _, k := range b.plan.kiosks {
			b.prog.set("ingest: raw JetStream, %d publishers", k)
			var raw loadResult
			rawFlushes, err := b.flushes.during(func() (err error) {
				raw, err = b.rawLoad(ctx, rc, k, b.eventSize, b.plan.runFor)
				return err
			})
			if err != nil {
				return err
			}
			b.prog.set("ingest: Lethe, %d kiosks", k)
			commits0, commands0 := s.Ledger.CommitStats()
			var lethe loadResult
			letheFlushes, err := b.flushes.during(func() (err error) {
				pprof.Do(ctx, pprof.Labels("bench", fmt.Sprintf("ingest-%d", k)), func(ctx context.Context) {
					lethe, err = b.letheLoad(ctx, s, kc, lib, k, b.plan.runFor)
				})
				return err
			})
			if err != nil {
				return err
			}
			commits, commands := s.Ledger.CommitStats()
			lethe.perCommit = float64(commands-commands0) / float64(max(commits-commits0, 1))
			if c, err := s.Proj.Counts(); err == nil {
				lethe.backlog = c.PendingExpunge
			}
			b.ingestRows(k, raw, lethe)
			b.add(b.flushRows(ingestSection(k), rawFlushes, letheFlushes, raw.events, roundTrips(lethe), lethe.events)...)
		}
	}
	stopped = true
	return s.Stop()
}

// ingestSection names the rows of an ingest run.
func ingestSection(kiosks int) string {
	sec := fmt.Sprintf("ingest, %d kiosk", kiosks)
	if kiosks > 1 {
		sec += "s"
	}
	return sec
}

// roundTrips is how many round trips a Lethe run made: returns answered, refused or not.
func roundTrips(r loadResult) int64 { return int64(len(r.byCmd[schemas.CmdReturn])) }

func (b *bencher) ingestRows(kiosks int, raw, lethe loadResult) {
	sec := ingestSection(kiosks)
	rate := newRow(sec, "throughput", "events/s", ptr(raw.rate()), lethe.rate()).
		note(fmt.Sprintf("raw: %d-byte request-publishes; Lethe: checkout+return round trips (%d events, expunged records included; %.1f commands per commit; %d closes awaiting the expunger at the end)",
			b.eventSize, lethe.events, lethe.perCommit, lethe.backlog))
	rate = rate.target("≥ 0.8× raw", lethe.rate() >= 0.8*raw.rate())
	b.add(rate)
	if kiosks >= 64 {
		b.add(newRow(sec, "group commit (moonshot)", "events/s", ptr(raw.rate()), lethe.rate()).
			target("≥ 3× raw", lethe.rate() >= 3*raw.rate()))
	}
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50 latency", 50}, {"p99 latency", 99}, {"p99.9 latency", 99.9}} {
		b.add(newRow(sec, p.name, "ms", ptr(ms(raw.all.percentile(p.q))), ms(lethe.all.percentile(p.q))))
	}
	for code, n := range lethe.refused {
		b.warn("%s: %d kiosk requests refused (%s)", sec, n, code)
	}
}

// fixedAndExpunge runs kiosks at a fixed event rate on a fresh service with a short
// erasure sweep interval, for latency under a steady load and for the expunge and erasure
// lags; and raw publishes at the same rate.
func (b *bencher) fixedAndExpunge(ctx context.Context) error {
	if b.eventSize == 0 {
		b.eventSize = 500 // --only without ingest: a typical kiosk event
	}
	b.prog.set("fixed rate: seeding")
	s, err := b.startLethe(ctx, b.tempDir("fixed"), b.plan.sweepEvery, nil)
	if err != nil {
		return err
	}
	defer s.Stop()
	lib, err := demo.Seed(ctx, demo.NewLocal(s), 200, 16, io.Discard)
	if err != nil {
		return err
	}
	kc := node.NewKioskClients(s)
	defer kc.Close()
	rawNode, err := b.startRaw(ctx)
	if err != nil {
		return err
	}
	defer rawNode.Close()
	rc := rawNode.NC

	rate := b.plan.fixedRate
	b.prog.set("fixed rate: raw JetStream, %d messages/s", rate)
	var raw loadResult
	rawFlushes, err := b.flushes.during(func() (err error) {
		raw, err = b.rawFixed(ctx, rc, rate, b.plan.fixedFor)
		return err
	})
	if err != nil {
		return err
	}
	b.prog.set("fixed rate: Lethe, %d events/s", rate)
	var lethe loadResult
	letheFlushes, err := b.flushes.during(func() (err error) {
		lethe, err = b.letheFixed(ctx, s, kc, lib, float64(rate)/eventsPerRoundTrip, b.plan.fixedFor)
		return err
	})
	if err != nil {
		return err
	}
	if b.runs("fixed") {
		sec := fmt.Sprintf("fixed %d events/s", rate)
		b.add(newRow(sec, "achieved rate", "events/s", ptr(raw.rate()), lethe.rate()))
		co := lethe.byCmd[schemas.CmdCheckOut]
		for _, p := range []struct {
			name string
			q    float64
		}{{"p50 latency", 50}, {"p99 latency", 99}, {"p99.9 latency", 99.9}} {
			b.add(newRow(sec, p.name, "ms", ptr(ms(raw.all.percentile(p.q))), ms(lethe.all.percentile(p.q))).
				note("every kiosk request, checkouts and returns"))
		}
		p99 := ms(co.percentile(99))
		b.add(newRow(sec, "checkout p99 latency", "ms", ptr(ms(raw.all.percentile(99))), p99).target("< 5 ms", p99 < 5))
		b.add(newRow(sec, "return p99 latency", "ms", ptr(ms(raw.all.percentile(99))), ms(lethe.byCmd[schemas.CmdReturn].percentile(99))).
			note("a return appends returned+closed as one message (a CloudEvents batch)"))
		b.add(b.flushRows(sec, rawFlushes, letheFlushes, raw.events, roundTrips(lethe), lethe.events)...)
		for code, n := range lethe.refused {
			b.warn("%s: %d kiosk requests refused (%s)", sec, n, code)
		}
	}
	if !b.runs("expunge") {
		return nil
	}
	// As the demo does: expunge what is left, then sweep, so every close is erased.
	b.prog.set("expunge: final sweep")
	if _, err := s.Expunger.ExpungeNow(ctx); err != nil {
		return err
	}
	if err := s.Expunger.Sweep(ctx); err != nil {
		return err
	}
	st := s.Expunger.Stats()
	sec := fmt.Sprintf("expunge at %d events/s", rate)
	note := fmt.Sprintf("%d transactions closed and expunged", st.Expunged)
	b.add(newRow(sec, "expunge lag p50", "ms", nil, ms(st.ExpungeLagP50)).note(note))
	b.add(newRow(sec, "expunge lag p99", "ms", nil, ms(st.ExpungeLagP99)).target("< 100 ms", st.ExpungeLagP99 < 100*time.Millisecond))
	bound := b.plan.sweepEvery + time.Second
	b.add(newRow(sec, "erasure lag p50", "ms", nil, ms(st.ErasureLagP50)).note(fmt.Sprintf("sweep every %s", b.plan.sweepEvery)))
	b.add(newRow(sec, "erasure lag p99", "ms", nil, ms(st.ErasureLagP99)).
		target(fmt.Sprintf("≤ sweep interval (%s) + 1 s", b.plan.sweepEvery), st.ErasureLagP99 <= bound))
	return nil
}

// rawFixed publishes rate messages per second for d, each from its own goroutine at its
// scheduled time (an open loop: a slow reply delays no other message).
func (b *bencher) rawFixed(ctx context.Context, nc *nats.Conn, rate int, d time.Duration) (loadResult, error) {
	payload := rawPayload(b.eventSize)
	var res loadResult
	var mu sync.Mutex
	err := openLoop(ctx, float64(rate), d, func(i int) error {
		t := time.Now()
		if err := rawPublish(ctx, nc, "circ.item.fixed"+strconv.Itoa(i%64), payload); err != nil {
			return err
		}
		res.merge(&mu, "publish", latencies{time.Since(t)})
		b.prog.count.Add(1)
		return nil
	}, &res)
	res.events = int64(len(res.all))
	return res, err
}

// letheFixed starts rate round trips per second for d, each on an item no other round
// trip holds, cards taken in turn.
func (b *bencher) letheFixed(ctx context.Context, s *node.Service, nc *node.KioskClients, lib *demo.Library, rate float64, d time.Duration) (loadResult, error) {
	before, err := s.StreamLast(ctx)
	if err != nil {
		return loadResult{}, err
	}
	free := make(chan string, len(lib.Barcodes))
	for _, bc := range lib.Barcodes {
		free <- bc
	}
	var res loadResult
	var mu sync.Mutex
	var ref refusals
	err = openLoop(ctx, rate, d, func(i int) error {
		var bc string
		select {
		case bc = <-free:
		default:
			ref.add("no free item")
			return nil
		}
		defer func() { free <- bc }()
		var out, in latencies
		card := lib.Cards[i%len(lib.Cards)]
		if err := roundTrip(ctx, nc, "fixed"+strconv.Itoa(i%16), card, bc, &out, &in, ref.add); err != nil {
			return err
		}
		res.merge(&mu, schemas.CmdCheckOut, out)
		res.merge(&mu, schemas.CmdReturn, in)
		b.prog.count.Add(2)
		return nil
	}, &res)
	if err != nil {
		return res, err
	}
	err = res.finish(ctx, s, before, &ref)
	return res, err
}

// openLoop calls f(i) in a new goroutine at start + i/rate for d, waits for all of them,
// and sets res.elapsed from the start to the last return.
func openLoop(ctx context.Context, rate float64, d time.Duration, f func(int) error, res *loadResult) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d || ctx.Err() != nil {
			break
		}
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(i); err != nil {
				once.Do(func() { first = err })
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return first
}
