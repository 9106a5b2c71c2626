package expunger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// rig is a ledger on an embedded JetStream server, with keystore and projections in
// Pebble on disk, and an expunger over them.
type rig struct {
	t    *testing.T
	js   jetstream.JetStream
	keys *keystore.Store
	proj *projections.Store
	led  *ledger.Ledger
	exp  *Expunger
	reg  *prometheus.Registry
	desk ledger.Station

	stopFollow func() // stops the projector and waits for it
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	dir := t.TempDir()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: filepath.Join(dir, "nats"),
		DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, _, err := ledger.EnsureStream(ctxT(t), js, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	master, err := keystore.GenerateMasterFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	keys, err := keystore.Open(filepath.Join(dir, "keystore"), master, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projections.Open(filepath.Join(dir, "projections"), keys, v, projections.Config{Location: time.UTC, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proj.Close() })
	r := &rig{t: t, js: js, keys: keys, proj: proj, reg: prometheus.NewRegistry(),
		desk: ledger.Station{Kind: "desk", Branch: "main", ID: "test"}}
	// As lethe serve wires it: a new checkout asks the expunger first.
	led, err := ledger.New(nc, stream, proj, keys, v, ledger.Config{Location: time.UTC, Logger: quiet,
		Admit: func(ctx context.Context) error { return r.exp.Admit(ctx) }})
	if err != nil {
		t.Fatal(err)
	}
	r.led = led
	cfg.Logger, cfg.Registerer = quiet, r.reg
	if r.exp, err = New(keys, proj, led, cfg); err != nil {
		t.Fatal(err)
	}
	r.follow()
	t.Cleanup(func() { r.stopFollow() })
	return r
}

// follow runs the projector until stopFollow.
func (r *rig) follow() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.proj.Follow(ctx, r.js); err != nil {
			r.t.Errorf("projector: %v", err)
		}
	}()
	r.stopFollow = func() {
		cancel()
		<-done
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// do runs a desk command and returns its result.
func (r *rig) do(name string, cmd any) any {
	r.t.Helper()
	raw, err := json.Marshal(cmd)
	if err != nil {
		r.t.Fatal(err)
	}
	res, err := r.led.Execute(ctxT(r.t), r.desk, name, raw)
	if err != nil {
		r.t.Fatalf("%s: %v", name, err)
	}
	return res
}

// register registers a patron with a card and returns the patron's id.
func (r *rig) register(card string) string {
	r.t.Helper()
	res := r.do(schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: uuid.NewString(), HomeBranch: "main", Card: card,
		Profile: schemas.Profile{Name: "Test Patron " + card, BirthDate: "1970-01-01"}})
	return res.(schemas.Registered).PatronID
}

// loans catalogs n items, lends them on card and returns them: n closed transactions for
// the expunger. It returns their ids.
func (r *rig) loans(card string, n int) []string {
	r.t.Helper()
	var txns []string
	for i := range n {
		bc := fmt.Sprintf("E%s%02d", card[len(card)-4:], i)
		r.do(schemas.CmdCatalogItem, schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
			Barcode: bc, Title: "Book " + bc, Collection: "adult", Branch: "main", ReplacementCents: 1000}})
		r.do(schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: card, Barcode: bc})
		it, err := r.proj.Item(bc)
		if err != nil {
			r.t.Fatal(err)
		}
		txns = append(txns, it.TxnID)
		r.do(schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: bc})
	}
	return txns
}

// waiting checks that n closed transactions wait for the expunger.
func (r *rig) waiting(n int) {
	r.t.Helper()
	pending, err := r.proj.PendingExpunges()
	if err != nil || len(pending) != n {
		r.t.Fatalf("PendingExpunges() = %d transactions, %v, want %d", len(pending), err, n)
	}
}

// poison appends a message the projector cannot apply and waits until it stops there.
// The ledger then refuses every write, the expunger's records included, as unavailable.
func (r *rig) poison() uint64 {
	r.t.Helper()
	ack, err := r.js.Publish(ctxT(r.t), "circ.item.POISON", []byte(`{"not":"an event"}`))
	if err != nil {
		r.t.Fatal(err)
	}
	waitFor(r.t, "the projector stops at the poison", func() bool { return r.proj.Stopped() != nil })
	return ack.Sequence
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		<-time.After(delay)
	}
}

// expungeLagCount is how many lags the expunge-lag histogram observed.
func (r *rig) expungeLagCount() uint64 {
	r.t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "lethe_expunge_lag_seconds" {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	r.t.Fatal("lethe_expunge_lag_seconds is not registered")
	return 0
}

func destroyed(t *testing.T, keys *keystore.Store, kind keystore.Kind, id string) bool {
	t.Helper()
	_, err := keys.Get(kind, id)
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		t.Fatal(err)
	}
	return errors.Is(err, keystore.ErrNotFound)
}

// TestExpungeLagObservedOncePerTransaction: records that fail (the projector stopped at a
// poison event, so the ledger refuses writes) leave their transactions waiting, with
// their keys destroyed; once the records go through, each transaction's expunge lag has
// been observed exactly once, from its first destruction.
func TestExpungeLagObservedOncePerTransaction(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	r.register("21000000000001")
	txns := r.loans("21000000000001", 3)
	r.waiting(3)
	seq := r.poison()
	ctx := ctxT(t)
	n, err := r.exp.ExpungeNow(ctx)
	if n != 0 || schemas.CodeOf(err) != schemas.CodeUnavailable {
		t.Fatalf("ExpungeNow with the projector stopped = %d, %v, want 0 and unavailable", n, err)
	}
	for _, id := range txns {
		if !destroyed(t, r.keys, keystore.Transaction, id) {
			t.Errorf("a transaction key survived ExpungeNow although only its record failed")
		}
	}
	if got := r.expungeLagCount(); got != 0 {
		t.Errorf("expunge lags observed before any record landed = %d, want 0", got)
	}

	if _, err := r.led.Skip(ctx, seq, "poison written by a test", "admin"); err != nil {
		t.Fatal(err)
	}
	r.proj.Resume()
	waitFor(t, "the projector passes the poison", func() bool { return r.proj.Stopped() == nil })
	if n, err := r.exp.ExpungeNow(ctx); n != len(txns) || err != nil {
		t.Fatalf("ExpungeNow after the skip = %d, %v, want %d, nil", n, err, len(txns))
	}
	if got := r.expungeLagCount(); got != uint64(len(txns)) {
		t.Errorf("expunge lags observed = %d, want %d, one per transaction", got, len(txns))
	}
	if st := r.exp.Stats(); st.Expunged != len(txns) || st.AwaitingErasure != len(txns) {
		t.Errorf("Stats() expunged, awaiting erasure = %d, %d, want %d, %d", st.Expunged, st.AwaitingErasure, len(txns), len(txns))
	}
	// Nothing is left to record, and nothing is counted again.
	if n, err := r.exp.ExpungeNow(ctx); n != 0 || err != nil {
		t.Errorf("ExpungeNow with nothing waiting = %d, %v, want 0, nil", n, err)
	}
	if got := r.expungeLagCount(); got != uint64(len(txns)) {
		t.Errorf("expunge lags observed after another pass = %d, want %d", got, len(txns))
	}
}

// TestProfileKeyDestroyedWhileRecordsFail: a closed account's profile key is destroyed
// even when recording the closed transactions fails: destroying a key waits for no append.
func TestProfileKeyDestroyedWhileRecordsFail(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	patron := r.register("21000000000002")
	txns := r.loans("21000000000002", 1)
	r.waiting(1)
	r.do(schemas.CmdClosePatron, schemas.ClosePatron{CommandID: uuid.NewString(), PatronID: patron})
	waitFor(t, "the close is applied", func() bool {
		closed, err := r.proj.ClosedPatrons()
		return err == nil && len(closed) == 1
	})
	r.poison()
	if _, err := r.exp.ExpungeNow(ctxT(t)); schemas.CodeOf(err) != schemas.CodeUnavailable {
		t.Fatalf("ExpungeNow with the projector stopped = %v, want unavailable", err)
	}
	if !destroyed(t, r.keys, keystore.Transaction, txns[0]) {
		t.Error("the transaction key survived")
	}
	if !destroyed(t, r.keys, keystore.Profile, patron) {
		t.Error("the closed account's profile key survived a failed record")
	}
	if st := r.exp.Stats(); st.ProfilesErased != 1 {
		t.Errorf("Stats().ProfilesErased = %d, want 1", st.ProfilesErased)
	}
}

// TestStatsAndSweepAnswerWhileARecordIsBlocked: a record whose append is on the stream
// but not yet applied (the projector is stopped for the test, as a slow one would be)
// blocks ExpungeNow; Stats and a sweep must answer meanwhile.
func TestStatsAndSweepAnswerWhileARecordIsBlocked(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	r.register("21000000000003")
	txns := r.loans("21000000000003", 1)
	r.waiting(1)
	stream, err := r.js.Stream(ctxT(t), ledger.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	last := func() uint64 {
		info, err := stream.Info(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	before := last()
	r.stopFollow()

	expCtx, stopExpunge := context.WithCancel(ctxT(t))
	defer stopExpunge()
	type result struct {
		n   int
		err error
	}
	expunged := make(chan result, 1)
	go func() {
		n, err := r.exp.ExpungeNow(expCtx)
		expunged <- result{n, err}
	}()
	defer func() {
		stopExpunge()
		<-expunged // whatever it answered, it is done
	}()
	waitFor(t, "the record is appended, and waits for the projector", func() bool { return last() > before })

	// Stats and a sweep, each on its own goroutine, must return in time. A goroutine that
	// does not ends when ExpungeNow does, which the test then stops.
	calls := map[string]func() error{
		"Stats": func() error {
			if st := r.exp.Stats(); st.Expunged != 0 {
				return fmt.Errorf("Stats().Expunged = %d, want 0", st.Expunged)
			}
			return nil
		},
		"Sweep": func() error { return r.exp.Sweep(ctxT(t)) },
	}
	type answer struct {
		what string
		err  error
	}
	answers := make(chan answer, len(calls))
	for what, f := range calls {
		go func() { answers <- answer{what, f()} }()
	}
	timeout := time.After(10 * time.Second)
	for left := len(calls); left > 0; {
		select {
		case a := <-answers:
			left--
			delete(calls, a.what)
			if a.err != nil {
				t.Errorf("%s while a record is blocked: %v", a.what, a.err)
			}
		case <-timeout:
			for what := range calls {
				t.Errorf("%s did not return within 10s while a record was blocked", what)
			}
			stopExpunge()
			for ; left > 0; left-- {
				<-answers
			}
		}
	}
	if !destroyed(t, r.keys, keystore.Transaction, txns[0]) {
		t.Error("the transaction key is not destroyed while its record waits")
	}

	r.follow()
	select {
	case res := <-expunged:
		if res.n != 1 || res.err != nil {
			t.Errorf("ExpungeNow once the projector follows = %d, %v, want 1, nil", res.n, res.err)
		}
		expunged <- res // for the deferred receive
	case <-time.After(30 * time.Second):
		t.Fatal("ExpungeNow did not finish once the projector followed again")
	}
	if st := r.exp.Stats(); st.Expunged != 1 {
		t.Errorf("Stats().Expunged = %d, want 1", st.Expunged)
	}
}

// TestRunExpungesSweepsAndStops: Run destroys the key of a transaction that closes while
// it runs, records it, sweeps it from every file, and returns once ctx ends.
func TestRunExpungesSweepsAndStops(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{SweepInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.exp.Run(ctx)
	}()
	r.register("21000000000004")
	txns := r.loans("21000000000004", 2)
	waitFor(t, "both transactions are expunged and erased", func() bool {
		st := r.exp.Stats()
		return st.Expunged == len(txns) && st.Erased == len(txns)
	})
	for _, id := range txns {
		if !destroyed(t, r.keys, keystore.Transaction, id) {
			t.Error("a transaction key survived Run")
		}
	}
	if got := r.expungeLagCount(); got != uint64(len(txns)) {
		t.Errorf("expunge lags observed = %d, want %d", got, len(txns))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
