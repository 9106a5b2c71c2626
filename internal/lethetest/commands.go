package lethetest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// CmdID returns a new command id.
func CmdID() string { return uuid.NewString() }

// Kiosk sends a kiosk command over NATS request/reply from kiosk main/<kiosk>, as a
// self-check machine does, and returns the reply. v is the command, or its JSON as []byte.
func (h *Harness) Kiosk(kiosk, cmd string, v any) schemas.Reply {
	h.T.Helper()
	raw, ok := v.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			h.T.Fatal(err)
		}
	}
	m, err := h.Kiosks.Request(testkit.Context(h.T), "main", kiosk, cmd, raw)
	if err != nil {
		h.T.Fatalf("kiosk %s: %v", cmd, err)
	}
	h.Replies.Write(m.Data)
	var r schemas.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		h.T.Fatalf("kiosk %s reply %q: %v", cmd, m.Data, err)
	}
	return r
}

// MustKiosk sends a kiosk command from kiosk main/k1 that must succeed and decodes its
// result.
func MustKiosk[R any](h *Harness, cmd string, v any) R {
	h.T.Helper()
	r := h.Kiosk("k1", cmd, v)
	if !r.OK {
		h.T.Fatalf("kiosk %s = %+v, want ok", cmd, r.Error)
	}
	var out R
	if err := json.Unmarshal(r.Result, &out); err != nil {
		h.T.Fatal(err)
	}
	return out
}

// WantCode checks a refused reply's code.
func WantCode(t testing.TB, r schemas.Reply, code schemas.Code) {
	t.Helper()
	if r.OK || r.Error == nil || r.Error.Code != code {
		t.Fatalf("reply = %+v (error %+v), want error code %q", r, r.Error, code)
	}
}

// Desk posts a staff command to the HTTP API as the administrator and returns the status
// and body.
func (h *Harness) Desk(name string, v any) (int, []byte) {
	h.T.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		h.T.Fatal(err)
	}
	path := desk.CommandPath(name)
	if path == "" {
		path = "/api/desk/" + name
	}
	return h.Post(path, raw)
}

// MustDesk runs a staff command that must succeed and decodes its reply.
func MustDesk[R any](h *Harness, name string, v any) R {
	h.T.Helper()
	status, body := h.Desk(name, v)
	if status != http.StatusOK {
		h.T.Fatalf("desk %s = %d %s, want 200", name, status, body)
	}
	var out R
	if err := json.Unmarshal(body, &out); err != nil {
		h.T.Fatal(err)
	}
	return out
}

// Catalog catalogs an item of branch main, titled "Title <barcode>", at the desk.
func (h *Harness) Catalog(barcode string, priceCents int64) {
	h.T.Helper()
	MustDesk[schemas.Accepted](h, schemas.CmdCatalogItem, schemas.CatalogItem{CommandID: CmdID(), ItemCataloged: schemas.ItemCataloged{
		Barcode: barcode, Title: "Title " + barcode, Collection: "fiction", Branch: "main", ReplacementCents: priceCents,
	}})
}

// Register registers an adult patron with a card and returns the patron id.
func (h *Harness) Register(card, name, birth string) string {
	h.T.Helper()
	r := MustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
		CommandID: CmdID(), HomeBranch: "main", Card: card,
		Profile: schemas.Profile{Name: name, Email: strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.org", BirthDate: birth},
	})
	return r.PatronID
}

// RegisterMinor registers a cardholder born on birth, with a caregiver, and returns the
// patron id.
func (h *Harness) RegisterMinor(card, name, birth, caregiver string) string {
	h.T.Helper()
	r := MustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
		CommandID: CmdID(), HomeBranch: "main", Card: card,
		Profile: schemas.Profile{Name: name, Phone: "406-555-0199", BirthDate: birth,
			Caregiver: &schemas.Caregiver{Name: caregiver, Contact: "406-555-0142"}},
	})
	return r.PatronID
}

// Checkout checks an item out at kiosk main/k1 and returns the reply.
func (h *Harness) Checkout(card, barcode string) schemas.Reply {
	h.T.Helper()
	return h.Kiosk("k1", schemas.CmdCheckOut, schemas.CheckOut{CommandID: CmdID(), Card: card, Barcode: barcode})
}

// MustCheckout checks an item out at a kiosk and fails the test if it is refused.
func (h *Harness) MustCheckout(card, barcode string) {
	h.T.Helper()
	if r := h.Checkout(card, barcode); !r.OK {
		h.T.Fatalf("checkout of %s = %+v", barcode, r.Error)
	}
}

// Checkin returns an item at kiosk main/k1; the return must succeed.
func (h *Harness) Checkin(barcode string) schemas.ReturnResult {
	h.T.Helper()
	return MustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, schemas.Return{CommandID: CmdID(), Barcode: barcode})
}

// Record is a cardholder's own record, as kiosk main/k1 shows it.
func (h *Harness) Record(card string) schemas.PatronRecord {
	h.T.Helper()
	return MustKiosk[schemas.PatronRecord](h, schemas.CmdPatronInfo, schemas.PatronInfo{Card: card})
}

// LookupReply is the reply to a staff lookup: what was disclosed, or the refusal.
type LookupReply struct {
	ledger.Disclosed
	Error *schemas.Error `json:"error"`
}

// Lookup asks for a patron's record as a staff account and decodes the reply.
func (h *Harness) Lookup(as string, req map[string]any) (int, LookupReply) {
	h.T.Helper()
	raw, _ := json.Marshal(req)
	status, body := h.RequestAs(as, http.MethodPost, "/api/patrons/lookup", raw)
	var d LookupReply
	if err := json.Unmarshal(body, &d); err != nil {
		h.T.Fatalf("lookup reply %s: %v", body, err)
	}
	return status, d
}
