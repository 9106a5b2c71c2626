package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// TestRetryBeforeAppliedIsUnavailable: a late return (item.returned and an overdue fine,
// one atomic batch) is on the stream, but the projections have not applied it when the
// caller stops waiting; here no projector runs at all. The first attempt and a retry are
// both told "unavailable, retry with the same command id" (they used to get "internal").
// Once the projections catch up, the retry is answered from the stream, and the return was
// applied once.
func TestRetryBeforeAppliedIsUnavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.catalog("U1", 1000)
	h.register("21000000000700", "Ulla Staged", "1980-01-01")
	h.mustCheckout("21000000000700", "U1")
	h.clock.Advance(30 * day)
	ret := schemas.Return{CommandID: cmdID(), Barcode: "U1"}
	raw, _ := json.Marshal(ret)
	h.offline(func() {
		n, err := openNode(context.Background(), h.cfg.nodeConfig)
		if err != nil {
			t.Fatal(err)
		}
		defer n.close()
		if err := n.proj.CatchUp(context.Background(), n.js); err != nil {
			t.Fatal(err)
		}
		led, err := ledger.New(n.nc, n.stream, n.proj, n.keys, n.v, ledger.Config{Now: h.clock.Now, Logger: h.cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		for _, attempt := range []string{"first attempt", "retry"} {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := led.Execute(ctx, ledger.Station{Kind: "kiosk", Branch: "main", ID: "k1"}, schemas.CmdReturn, raw)
			cancel()
			if code := schemas.CodeOf(err); code != schemas.CodeUnavailable {
				t.Fatalf("%s while unapplied = %v (code %s), want unavailable", attempt, err, code)
			}
		}
	})
	r := mustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, ret)
	if r.Barcode != "U1" || r.FineCents == 0 {
		t.Fatalf("retry answer = %+v, want the return of U1 with its fine", r)
	}
	evs := h.events()
	for typ, want := range map[string]int{schemas.TypeItemReturned: 1, schemas.TypeFineAssessed: 1} {
		if n := countType(evs, typ); n != want {
			t.Errorf("%s events = %d, want %d", typ, n, want)
		}
	}
}
