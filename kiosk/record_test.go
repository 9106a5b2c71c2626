package kiosk_test

import (
	"strings"
	"testing"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/policy"
)

// TestKioskPatronInfoIsRecorded: the kiosk's patron_info goes through the policy (card
// presented) and is on the access record as a kiosk's disclosure.
func TestKioskPatronInfoIsRecorded(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("K1", 1000)
	id := h.Register("21000000000811", "Kai Kiosk", "1990-01-01")
	h.MustCheckout("21000000000811", "K1")
	before := h.AccessEntries()
	rec := h.Record("21000000000811")
	if len(rec.Loans) != 1 {
		t.Fatalf("kiosk record = %+v, want the loan", rec)
	}
	if n := h.AccessEntries() - before; n != 1 {
		t.Fatalf("kiosk patron_info wrote %d access entries, want 1", n)
	}
	var entries []access.Listed
	if status := h.Get("/api/access-log?patron="+id, &entries); status != 200 || len(entries) != 1 {
		t.Fatalf("access log for the patron = %d %+v, want the kiosk's entry", status, entries)
	}
	e := entries[0]
	if e.Role != policy.Kiosk || e.Basis != policy.Card || e.Scope != policy.CurrentRecord || e.Action != "patron_info" || !strings.HasPrefix(e.Staff, "kiosk main/") {
		t.Errorf("kiosk entry = %+v", e)
	}
}
