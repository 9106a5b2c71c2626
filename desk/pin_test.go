package desk_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// TestPatronPIN: a PIN given at registration or set at the desk checks at a self-check
// (ledger.CheckPIN); a new one replaces the old; five misses lock the card for the window,
// right PIN or not; a closed account's card opens nothing, PIN or not; a retried set_pin
// with another PIN is refused. The PINs are nowhere in the log, the replies, the stream
// or the data directory's files.
func TestPatronPIN(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	ctx := testkit.Context(t)
	const card, other, first, second = "21000000000751", "21000000000752", "90417263", "55310862"
	reg := lethetest.MustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
		CommandID: lethetest.CmdID(), HomeBranch: "main", Card: card, PIN: first,
		Profile: schemas.Profile{Name: "Pia Pinholder", BirthDate: "1975-05-05"},
	})
	h.Register(other, "Nell Nopin", "1976-06-06")
	check := func(card, pin string) (ledger.PINCheck, error) { return h.S.Ledger.CheckPIN(ctx, card, pin) }
	if got, err := check(card, first); got != ledger.PINMatch || err != nil {
		t.Fatalf("the PIN given at registration: %v, %v; want a match", got, err)
	}
	if got, err := check(other, first); got != ledger.PINNone || err != nil {
		t.Errorf("a patron without a PIN: %v, %v; want none", got, err)
	}
	if _, err := check("21000000000759", first); schemas.CodeOf(err) != schemas.CodeNotFound {
		t.Errorf("an unknown card: %v, want not_found", err)
	}

	// Set at the desk by a clerk, on the access record.
	h.Account("clerk", policy.Circulation)
	cmdID := lethetest.CmdID()
	body, _ := json.Marshal(schemas.SetPIN{CommandID: cmdID, PatronID: reg.PatronID, PIN: second})
	before := h.AccessEntries()
	if status, out := h.RequestAs("clerk", http.MethodPost, "/api/desk/set-pin", body); status != http.StatusOK {
		t.Fatalf("set-pin: %d %s", status, out)
	}
	if e := h.LastAccessEntry(); h.AccessEntries() != before+1 || e.Action != string(policy.SetPIN) || e.Staff != "clerk" {
		t.Errorf("the access record after set-pin: %+v", e)
	}
	if got, _ := check(card, second); got != ledger.PINMatch {
		t.Errorf("the new PIN: %v, want a match", got)
	}
	// The same command id with another PIN is not the same command.
	body, _ = json.Marshal(schemas.SetPIN{CommandID: cmdID, PatronID: reg.PatronID, PIN: first})
	if status, _ := h.RequestAs("clerk", http.MethodPost, "/api/desk/set-pin", body); status != http.StatusConflict {
		t.Errorf("set-pin retried with another PIN: %d, want 409", status)
	}

	// Five misses lock the card, right PIN or not, until the window has passed.
	for i := range 5 {
		if got, err := check(card, first); got != ledger.PINMismatch || err != nil {
			t.Fatalf("miss %d with the old PIN: %v, %v", i+1, got, err)
		}
	}
	if _, err := check(card, second); schemas.CodeOf(err) != schemas.CodeRateLimited {
		t.Errorf("the right PIN after five misses: %v, want rate_limited", err)
	}
	if got, err := check(other, "0000"); got != ledger.PINNone || err != nil {
		t.Errorf("another card is not locked: %v, %v", got, err)
	}
	h.Clock.Advance(16 * time.Minute)
	if got, err := check(card, second); got != ledger.PINMatch || err != nil {
		t.Errorf("the right PIN after the window: %v, %v", got, err)
	}

	// A closed account's card opens nothing, and its PIN went with the profile key.
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: reg.PatronID})
	h.ExpungeAll()
	if _, err := check(card, second); schemas.CodeOf(err) != schemas.CodeForbidden {
		t.Errorf("a closed account's card: %v, want forbidden", err)
	}

	for _, pin := range []string{first, second} {
		if found := lethetest.ScanBytes([]byte(h.Logs.String()+h.Replies.String()), pin); len(found) > 0 {
			t.Errorf("PIN %s in the log or a reply", pin)
		}
		for _, ev := range h.Events() {
			if found := lethetest.ScanBytes(ev.Data, pin); len(found) > 0 {
				t.Errorf("PIN %s in a %s event", pin, ev.Type)
			}
		}
	}
	if found := lethetest.Scan(t, h.Cfg.Data, map[string][]byte{"first": []byte(first), "second": []byte(second)}); len(found) > 0 {
		t.Errorf("PINs in the data directory's files: %v", found)
	}
}
