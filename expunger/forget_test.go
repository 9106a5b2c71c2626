package expunger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
)

// runExpunger runs the expunger until the test ends.
func (r *rig) runExpunger() {
	r.t.Helper()
	if err := r.exp.Reconcile(ctxT(r.t)); err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.exp.Run(ctx)
	}()
	r.t.Cleanup(func() { cancel(); <-done })
}

// TestForgettingBeforeIngest saturates ingest with checkouts and returns while the
// expunger and the sweep are made slow (Drag, an injected delay before every destroying
// pass and every sweep). Checkouts are held and then refused with the cause; returns are
// never held; and no close stays unerased past its deadline.
func TestForgettingBeforeIngest(t *testing.T) {
	t.Parallel()
	const window = 6 * time.Second
	r := newRig(t, Config{SweepInterval: window, MaxWaiting: 8, MaxWaitAge: 150 * time.Millisecond,
		AdmitWait: 200 * time.Millisecond, Drag: 300 * time.Millisecond})
	r.runExpunger()
	const kiosks = 8
	for k := range kiosks {
		r.register(fmt.Sprintf("2100000090%04d", k))
		for i := range 4 {
			bc := fmt.Sprintf("F%d-%d", k, i)
			r.do(schemas.CmdCatalogItem, schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
				Barcode: bc, Title: "Book " + bc, Collection: "adult", Branch: "main", ReplacementCents: 1000}})
		}
	}
	var (
		held, returnsRefused, loans atomic.Int64
		wg                          sync.WaitGroup
		stop                        = time.Now().Add(2 * window)
	)
	exec := func(name string, cmd any) error {
		raw, _ := json.Marshal(cmd)
		_, err := r.led.Execute(context.Background(), r.desk, name, raw)
		return err
	}
	for k := range kiosks {
		card := fmt.Sprintf("2100000090%04d", k)
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				bc := fmt.Sprintf("F%d-%d", k, i%4)
				err := exec(schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: card, Barcode: bc})
				var e *schemas.Error
				switch {
				case errors.As(err, &e) && e.Code == schemas.CodeUnavailable && strings.Contains(e.Message, "forgetting comes first"):
					held.Add(1)
					continue
				case err != nil:
					t.Errorf("checkout: %v", err)
					return
				}
				loans.Add(1)
				if err := exec(schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: bc}); err != nil {
					returnsRefused.Add(1)
					t.Errorf("return: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	f := r.exp.Forgetting()
	t.Logf("%d loans; %d checkouts refused; checkouts held %s in all", loans.Load(), held.Load(), f.Throttled)
	if f.Throttled == 0 {
		t.Error("no checkout was held, though forgetting was slowed down")
	}
	if loans.Load() == 0 {
		t.Error("no loan at all: the throttle let nothing through")
	}
	// Everything closed is expunged and erased, and none after its deadline.
	waitFor(t, "every close expunged and erased", func() bool {
		p, err := r.proj.PendingExpunges()
		return err == nil && len(p) == 0 && r.exp.Forgetting().AwaitErasure == 0
	})
	if rep := r.exp.Erasure(); rep.Total != 0 || len(rep.Overdue) != 0 {
		t.Errorf("erasure report = %d missed (%+v), %d overdue, want none: the window of %s did not hold", rep.Total, rep.Missed, len(rep.Overdue), window)
	}
	if st := r.exp.Stats(); st.Erased != int(loans.Load()) {
		t.Errorf("Stats().Erased = %d, want %d (every loan closed)", st.Erased, loans.Load())
	}
}

// TestFailedSweepIsRetriedAndHoldsCheckouts: a sweep that cannot make deletions physical
// (a snapshot pins them) fails; it is retried at once and again every second, checkouts
// are held meanwhile and the failure is reported; when the cause goes, the next retry
// succeeds and checkouts flow again.
func TestFailedSweepIsRetriedAndHoldsCheckouts(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{SweepInterval: time.Minute, AdmitWait: 100 * time.Millisecond})
	r.runExpunger()
	r.register("21000000950001")
	r.loans("21000000950001", 2)
	waitFor(t, "the closes expunged", func() bool { return r.exp.Forgetting().AwaitErasure == 2 })
	snap := r.proj.DB().NewSnapshot()
	released := false
	defer func() {
		if !released {
			snap.Close()
		}
	}()
	if err := r.exp.Sweep(ctxT(t)); err == nil {
		t.Fatal("a sweep under an open snapshot succeeded: the test proves nothing")
	}
	waitFor(t, "the failed sweep retried", func() bool { return r.exp.Forgetting().SweepFailures >= 2 })
	f := r.exp.Forgetting()
	if !f.SweepFailing || f.SweepError == "" || f.Behind == "" {
		t.Fatalf("Forgetting() = %+v, want the sweep failing, its error, and checkouts held", f)
	}
	err := r.exp.Admit(ctxT(t))
	var e *schemas.Error
	if !errors.As(err, &e) || e.Code != schemas.CodeUnavailable || !strings.Contains(e.Message, "sweep failed") {
		t.Fatalf("Admit while the sweep fails = %v, want unavailable naming the sweep", err)
	}
	snap.Close()
	released = true
	waitFor(t, "a retry succeeds", func() bool {
		f := r.exp.Forgetting()
		return !f.SweepFailing && f.AwaitErasure == 0
	})
	if err := r.exp.Admit(ctxT(t)); err != nil {
		t.Errorf("Admit once the sweep succeeded = %v, want nil", err)
	}
	if st := r.exp.Stats(); st.Erased != 2 {
		t.Errorf("Stats().Erased = %d, want 2", st.Erased)
	}
}
