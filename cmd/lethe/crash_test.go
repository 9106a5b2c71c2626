package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// TestCrashBetweenAppendAndProjection appends a checkout while no projector runs (the
// process dies after the stream acknowledged the event and before the projections applied
// it). The next start applies it exactly once, a retry of the command is answered, not
// applied again, and a rebuild equals the live projections.
func TestCrashBetweenAppendAndProjection(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("X1", 1000)
	h.Register("21000000000500", "Wyn Crash", "1980-01-01")
	co := schemas.CheckOut{CommandID: lethetest.CmdID(), Card: "21000000000500", Barcode: "X1"}
	raw, _ := json.Marshal(co)
	h.Offline(func() {
		n, err := node.Open(context.Background(), h.Cfg.Config)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		if err := n.Proj.CatchUp(context.Background(), n.JS); err != nil {
			t.Fatal(err)
		}
		led, err := ledger.New(n.NC, n.Stream, n.Proj, n.Keys, n.V, ledger.Config{Now: h.Clock.Now, Logger: h.Cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if _, err := led.Execute(ctx, ledger.Station{Kind: "kiosk", Branch: "main", ID: "k1"}, schemas.CmdCheckOut, raw); err == nil {
			t.Fatal("checkout answered without a projector: the reply must wait for the projections")
		}
		if it, _ := n.Proj.Item("X1"); it.Status != model.ItemAvailable {
			t.Fatalf("projection applied without a projector: %+v", it)
		}
	})
	// Restarted: the event was durable, so the checkout happened; applied once.
	if it, _ := h.S.Proj.Item("X1"); it.Status != model.ItemOnLoan {
		t.Fatalf("after restart item = %+v, want on loan", it)
	}
	r := lethetest.MustKiosk[schemas.CheckOutResult](h, schemas.CmdCheckOut, co) // the kiosk's retry
	if r.Barcode != "X1" {
		t.Fatalf("retry answer = %+v", r)
	}
	if n := lethetest.CountType(h.Events(), schemas.TypeItemCheckedOut); n != 1 {
		t.Fatalf("checked_out events = %d, want 1", n)
	}
	if rec := h.Record("21000000000500"); len(rec.Loans) != 1 {
		t.Fatalf("record = %+v, want one loan", rec)
	}
	assertRebuildEqual(h)
}

// TestKeysRotate rotates the master key with the server stopped: everything still opens
// with the new key, and the old key file is gone.
func TestKeysRotate(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("K1", 1000)
	h.Register("21000000000600", "Xia Rotate", "1980-01-01")
	h.MustCheckout("21000000000600", "K1")
	keyFile := filepath.Join(h.Cfg.Data, "master.key")
	old, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	h.Offline(func() {
		var out, errOut testkit.SyncBuffer
		if err := run(context.Background(), []string{"keys", "rotate", "--data", h.Cfg.Data}, func(string) string { return "" }, nil, &out, &errOut); err != nil {
			t.Fatalf("keys rotate: %v\n%s", err, errOut.String())
		}
		now, err := os.ReadFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(old, now) {
			t.Fatal("master key file unchanged after rotation")
		}
		if _, err := os.Stat(keyFile + ".next"); !os.IsNotExist(err) {
			t.Fatalf("rotation left %s.next behind: %v", keyFile, err)
		}
	})
	// The open loan's key, the profile key and the card hash key all survived re-wrapping.
	if rec := h.Record("21000000000600"); len(rec.Loans) != 1 {
		t.Fatalf("record after rotation = %+v", rec)
	}
	h.Checkin("K1")
	h.ExpungeAll()
}
