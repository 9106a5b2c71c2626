package node_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/expunger"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// TestHealthzShowsForgetting walks /healthz through the states of forgetting on a running
// server, with the window (an hour) measured on the test's clock and every sweep made
// slow (Drag, an injected delay), so each state lasts long enough to be read:
//
//   - a close three quarters into its window: forgetting_first (200), new checkouts are
//     refused with unavailable and the cause, returns flow;
//   - a close past its deadline and not yet erased: erasure_overdue (503); once erased it
//     is counted as a missed window and listed on GET /api/erasure;
//   - a sweep that fails: erasure_failing (503), until a retry succeeds.
func TestHealthzShowsForgetting(t *testing.T) {
	t.Parallel()
	const drag = 1500 * time.Millisecond
	h := lethetest.New(t, func(c *node.ServiceConfig) {
		c.Forgetting = expunger.Config{Drag: drag, AdmitWait: 100 * time.Millisecond}
	})
	health := func() (int, desk.Health) {
		t.Helper()
		status, body := h.RequestAs("", http.MethodGet, "/healthz", nil)
		var hb desk.Health
		if err := json.Unmarshal(body, &hb); err != nil || hb.Forgetting == nil {
			t.Fatalf("healthz body %s: %v (want the forgetting section)", body, err)
		}
		return status, hb
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testkit.WaitForWithin(t, what, time.Minute, cond) // sweeps and their retries run on the server's schedule
	}
	h.Catalog("F1", 100)
	h.Catalog("F2", 100)
	card := "21000000970001"
	h.Register(card, "Ada Forget", "1980-01-01")
	loan := func(barcode string) (txn string) {
		t.Helper()
		h.MustCheckout(card, barcode)
		txn = h.TxnOf(barcode)
		h.Checkin(barcode)
		waitFor("the close's key destroyed", func() bool { return h.S.Expunger.Forgetting().AwaitErasure == 1 })
		return txn
	}
	if status, hb := health(); status != http.StatusOK || hb.Status != "ok" {
		t.Fatalf("healthz at rest = %d %+v, want 200 ok", status, hb)
	}

	// Three quarters into the window: checkouts are held, the server is still healthy.
	loan("F1")
	h.Clock.Advance(46 * time.Minute)
	status, hb := health()
	if status != http.StatusOK || hb.Status != "forgetting_first" || hb.Forgetting.Behind == "" {
		t.Fatalf("healthz 46 minutes into an hour's window = %d %+v, want 200 forgetting_first with the cause", status, hb)
	}
	r := h.Checkout(card, "F2")
	if r.OK || r.Error.Code != schemas.CodeUnavailable || !strings.Contains(r.Error.Message, "erasure window") {
		t.Fatalf("a checkout while forgetting is behind = %+v, want unavailable naming the window", r)
	}
	waitFor("the sweep to erase the close", func() bool { return h.S.Expunger.Stats().Erased == 1 })
	if status, hb := health(); status != http.StatusOK || hb.Status != "ok" || hb.Forgetting.MissedTotal != 0 {
		t.Fatalf("healthz once erased inside the window = %d %+v, want 200 ok and nothing missed", status, hb)
	}

	// Past the deadline: unhealthy while the close awaits its sweep, counted once erased.
	txn := loan("F2")
	h.Clock.Advance(61 * time.Minute)
	status, hb = health()
	if status != http.StatusServiceUnavailable || hb.Status != "erasure_overdue" || hb.Forgetting.Overdue != 1 {
		t.Fatalf("healthz past the deadline = %d %+v, want 503 erasure_overdue with one overdue", status, hb)
	}
	waitFor("the overdue close erased", func() bool { return h.S.Expunger.Stats().Erased == 2 })
	if status, hb := health(); status != http.StatusOK || hb.Forgetting.MissedTotal != 1 {
		t.Fatalf("healthz after the late erasure = %d %+v, want 200 and one missed window", status, hb)
	}
	var rep expunger.ErasureReport
	if status := h.Get("/api/erasure", &rep); status != http.StatusOK || rep.Total != 1 || len(rep.Missed) != 1 || rep.Missed[0].TxnID != txn {
		t.Fatalf("GET /api/erasure = %d %+v, want the missed transaction %s", status, rep, txn)
	}

	// A failing sweep (a snapshot pins the deleted bytes) is unhealthy until a retry succeeds.
	snap := h.S.Proj.DB().NewSnapshot()
	loan("F1")
	h.Clock.Advance(31 * time.Minute) // half the window: a sweep is due
	waitFor("the sweep to fail", func() bool { return h.S.Expunger.Forgetting().SweepFailing })
	status, hb = health()
	if status != http.StatusServiceUnavailable || hb.Status != "erasure_failing" || hb.Forgetting.SweepError == "" {
		t.Fatalf("healthz while the sweep fails = %d %+v, want 503 erasure_failing with the error", status, hb)
	}
	snap.Close()
	waitFor("a retry to erase the close", func() bool { return h.S.Expunger.Stats().Erased == 3 })
	if status, hb := health(); status != http.StatusOK || hb.Status != "ok" {
		t.Fatalf("healthz after the retry = %d %+v, want 200 ok", status, hb)
	}
}

// TestErasureAcrossARestart: a key destroyed just before a stop, its sweep not yet run,
// is handed back at the start and erased by its first sweep; erased within its window, it
// is no miss, and erased after a downtime longer than the window, it is counted and
// listed, as any other miss.
func TestErasureAcrossARestart(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t) // the window is the harness's hour
	ctx := testkit.Context(t)
	h.Register("21000000000781", "Rhea Restart", "1977-07-07")
	h.Catalog("E1", 100)
	h.Catalog("E2", 100)
	if err := h.S.Expunger.Sweep(ctx); err != nil { // a watermark to start from
		t.Fatal(err)
	}
	destroyedNotSwept := func(barcode string) string {
		t.Helper()
		h.MustCheckout("21000000000781", barcode)
		txn := h.TxnOf(barcode)
		h.Checkin(barcode)
		testkit.WaitFor(t, "the close expunged", func() bool {
			if _, err := h.S.Expunger.ExpungeNow(ctx); err != nil {
				t.Fatal(err)
			}
			p, _ := h.S.Proj.PendingExpunges()
			return len(p) == 0
		})
		return txn
	}
	// Within the window: erased by the start's sweep, no miss.
	first := destroyedNotSwept("E1")
	h.Restart()
	// The start sweeps; a sweep that fails (a busy machine) is retried within a second.
	testkit.WaitFor(t, "the key destroyed before the stop erased", func() bool { return h.S.Expunger.Stats().Erased >= 1 })
	if r := h.S.Expunger.Erasure(); r.Total != 0 || len(r.Overdue) != 0 {
		t.Fatalf("after a short stop: %+v, want nothing missed or overdue (transaction %s)", r, first)
	}
	// Across a downtime longer than the window: counted and listed.
	second := destroyedNotSwept("E2")
	h.Offline(func() { h.Clock.Advance(2 * time.Hour) })
	testkit.WaitFor(t, "the start's sweep", func() bool { return h.S.Expunger.Stats().Erased >= 1 })
	r := h.S.Expunger.Erasure()
	if r.Total != 1 || len(r.Missed) != 1 || r.Missed[0].TxnID != second {
		t.Fatalf("after a stop longer than the window: %+v, want %s missed", r, second)
	}
}
