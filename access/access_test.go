package access_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// fixture is the access record on real parts: an embedded JetStream server syncing every
// write, a keystore and projections in Pebble on disk, the projector following CIRC, and
// a ledger that records through the access log.
type fixture struct {
	t    *testing.T
	js   jetstream.JetStream
	keys *keystore.Store
	proj *projections.Store
	led  *ledger.Ledger
	log  *access.Log
	logs *testkit.SyncBuffer
	now  time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	srv := testkit.StartJetStream(t)
	nc, js := srv.NC, srv.JS
	ctx := context.Background()
	stream, _, err := ledger.EnsureStream(ctx, js, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	master, err := keystore.GenerateMasterFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.Open(filepath.Join(dir, "keystore"), master, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	proj, err := projections.Open(filepath.Join(dir, "projections"), keys, v, projections.Config{Location: time.UTC, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proj.Close() })
	log, err := access.Open(ctx, js, 1, keys, proj, logger)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, js: js, keys: keys, proj: proj, log: log, logs: logs,
		now: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)}
	f.led, err = ledger.New(nc, stream, proj, keys, v, ledger.Config{Now: func() time.Time { return f.now },
		Location: time.UTC, Logger: logger, Recorder: log})
	if err != nil {
		t.Fatal(err)
	}
	followCtx, stop := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() { followed <- proj.Follow(followCtx, js) }()
	t.Cleanup(func() {
		stop()
		if err := <-followed; err != nil {
			t.Errorf("projector: %v", err)
		}
	})
	return f
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// execute runs a desk command through the ledger; it returns once the projections have
// applied it.
func (f *fixture) execute(name string, cmd any) any {
	f.t.Helper()
	raw, err := json.Marshal(cmd)
	if err != nil {
		f.t.Fatal(err)
	}
	res, err := f.led.Execute(ctxT(f.t), ledger.Station{Kind: "desk", Branch: "main", ID: "desk"}, name, raw)
	if err != nil {
		f.t.Fatalf("Execute(%s) = %v", name, err)
	}
	return res
}

// register opens an account and returns its id.
func (f *fixture) register(name string) string {
	f.t.Helper()
	raw, err := json.Marshal(f.execute(schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: uuid.NewString(),
		HomeBranch: "main", Profile: schemas.Profile{Name: name, BirthDate: "1980-05-17"}}))
	if err != nil {
		f.t.Fatal(err)
	}
	var r schemas.Registered
	if err := json.Unmarshal(raw, &r); err != nil || r.PatronID == "" {
		f.t.Fatalf("register_patron result %s: %v", raw, err)
	}
	return r.PatronID
}

func (f *fixture) closePatron(id string) {
	f.t.Helper()
	f.execute(schemas.CmdClosePatron, schemas.ClosePatron{CommandID: uuid.NewString(), PatronID: id})
}

func (f *fixture) record(d ledger.Disclosure) {
	f.t.Helper()
	if d.At.IsZero() {
		d.At = f.now
	}
	if err := f.log.Record(ctxT(f.t), d); err != nil {
		f.t.Fatalf("Record(%+v) = %v", d, err)
	}
}

func (f *fixture) list(filter access.Filter) []access.Listed {
	f.t.Helper()
	got, err := f.log.List(ctxT(f.t), filter)
	if err != nil {
		f.t.Fatalf("List(%+v) = %v", filter, err)
	}
	return got
}

// publish puts a message on the access stream as anyone with write access to it could.
func (f *fixture) publish(data []byte) {
	f.t.Helper()
	if _, err := f.js.Publish(ctxT(f.t), access.Subject, data); err != nil {
		f.t.Fatal(err)
	}
}

// stored returns the messages of the access stream, in order: the entries as stored.
func (f *fixture) stored() [][]byte {
	f.t.Helper()
	ctx := ctxT(f.t)
	s, err := f.js.Stream(ctx, access.StreamName)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, m.Data)
	}
	return out
}

func clerk() ledger.Requester { return ledger.Requester{Name: "clerk", Role: policy.Circulation} }
func admin() ledger.Requester { return ledger.Requester{Name: "admin", Role: policy.Administrator} }

// courtOrder is an administrator's disclosure under a court order.
func courtOrder(ref string, patrons ...string) ledger.Disclosure {
	return ledger.Disclosure{By: admin(), Action: "lookup", Basis: policy.CourtOrder, Scope: policy.CurrentRecord,
		Clause: policy.ClauseCourtOrder, OrderRef: ref, Patrons: patrons}
}

// strip leaves out of listed entries what differs between two records of one request:
// the sequence, the id and the time.
func strip(ls []access.Listed) []access.Listed {
	out := make([]access.Listed, len(ls))
	for i, l := range ls {
		l.Seq, l.ID, l.Time = 0, "", time.Time{}
		out[i] = l
	}
	return out
}

// TestEditedEntryIsUnreadable: a copy of a genuine entry with any one field changed, put
// on the stream, is listed as unreadable, never as genuine; the genuine entries list as
// they were.
func TestEditedEntryIsUnreadable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ada, bob := f.register("Ada Reader"), f.register("Bob Reader")
	f.record(courtOrder("DV-26-118", ada))
	f.record(ledger.Disclosure{By: clerk(), Action: "checkout", Basis: policy.Card, Scope: policy.CurrentRecord,
		Clause: policy.ClauseCard, Patrons: []string{bob}})
	f.record(courtOrder("DV-26-119")) // no patron identified: the reference is under the system key
	want := f.list(access.Filter{})
	if len(want) != 3 || want[0].OrderRef != "DV-26-118" || !slices.Equal(want[0].Patrons, []string{ada}) ||
		want[2].OrderRef != "DV-26-119" || len(want[2].Patrons) != 0 {
		t.Fatalf("List(genuine) = %+v, want the three entries opened", want)
	}
	raw := f.stored()
	var entries [3]map[string]any
	for i := range entries {
		if err := json.Unmarshal(raw[i], &entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	order := entries[0] // names Ada, with a sealed order reference
	sealedOf := func(i int, field string) any {
		if field == "patrons" {
			return entries[i]["patrons"].([]any)[0]
		}
		return entries[i][field]
	}
	flip := func(b64 string) string {
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 1
		return base64.StdEncoding.EncodeToString(b)
	}
	edits := map[string]func(e map[string]any){
		"staff":                        func(e map[string]any) { e["staff"] = "clerk" },
		"role":                         func(e map[string]any) { e["role"] = string(policy.Circulation) },
		"action":                       func(e map[string]any) { e["action"] = "patron_info" },
		"basis":                        func(e map[string]any) { e["basis"] = string(policy.Card) },
		"scope":                        func(e map[string]any) { e["scope"] = string(policy.Limited) },
		"outcome":                      func(e map[string]any) { e["outcome"] = access.Refused },
		"clause":                       func(e map[string]any) { e["clause"] = policy.ClauseCard },
		"requests":                     func(e map[string]any) { e["requests"] = 7 },
		"time":                         func(e map[string]any) { e["time"] = f.now.Add(-time.Hour).Format(time.RFC3339Nano) },
		"id":                           func(e map[string]any) { e["id"] = uuid.Must(uuid.NewV7()).String() },
		"mac":                          func(e map[string]any) { e["mac"] = flip(e["mac"].(string)) },
		"order ref removed":            func(e map[string]any) { delete(e, "order_sealed") },
		"order ref from another entry": func(e map[string]any) { e["order_sealed"] = sealedOf(2, "order_sealed") },
		"order ref ciphertext": func(e map[string]any) {
			s := e["order_sealed"].(map[string]any)
			e["order_sealed"] = map[string]any{"kid": s["kid"], "nonce": s["nonce"], "ct": flip(s["ct"].(string))}
		},
		"order ref under the system key": func(e map[string]any) {
			s := e["order_sealed"].(map[string]any)
			e["order_sealed"] = map[string]any{"kid": access.SystemKID, "nonce": s["nonce"], "ct": s["ct"]}
		},
		"patrons removed":            func(e map[string]any) { delete(e, "patrons") },
		"patrons from another entry": func(e map[string]any) { e["patrons"] = []any{sealedOf(1, "patrons")} },
		"patrons doubled":            func(e map[string]any) { e["patrons"] = []any{sealedOf(0, "patrons"), sealedOf(0, "patrons")} },
		"patron kid": func(e map[string]any) {
			p := sealedOf(0, "patrons").(map[string]any)
			e["patrons"] = []any{map[string]any{"kid": "kid-of-someone-else", "nonce": p["nonce"], "ct": p["ct"]}}
		},
		"property added": func(e map[string]any) { e["note"] = "genuine" },
	}
	var names []string
	for name, edit := range edits {
		e := map[string]any{}
		for k, v := range order {
			e[k] = v
		}
		edit(e)
		body, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(body, raw[0]) {
			t.Fatalf("edit %q changed nothing", name)
		}
		f.publish(body)
		names = append(names, name)
	}
	got := f.list(access.Filter{})
	if len(got) != 3+len(edits) {
		t.Fatalf("List(...) = %d entries, want %d", len(got), 3+len(edits))
	}
	if diff := cmp.Diff(want, got[:3]); diff != "" {
		t.Errorf("List(...) genuine entries changed (-want +got):\n%s", diff)
	}
	for i, l := range got[3:] {
		wantL := access.Listed{Seq: uint64(4 + i), Outcome: access.Unreadable, Patrons: []string{}}
		switch names[i] {
		case "property added":
			wantL.Reason = access.ReasonUndecodable
		default:
			wantL.Reason = access.ReasonUnverified
		}
		if diff := cmp.Diff(wantL, l); diff != "" {
			t.Errorf("List(...) of the copy with %s edited (-want +got):\n%s", names[i], diff)
		}
	}
	// A filter asks for entries of a staff account or a patron; an unreadable entry
	// cannot be shown to be either, and is listed only without one.
	if got := f.list(access.Filter{Staff: "admin"}); len(got) != 2 {
		t.Errorf("List(staff admin) = %+v, want the two genuine court orders", got)
	}
	if got := f.list(access.Filter{PatronID: ada}); len(got) != 1 || got[0].ID != want[0].ID {
		t.Errorf("List(patron ada) = %+v, want %+v", got, want[:1])
	}
}

// TestGarbageEntryIsUnreadable: messages that are not entries at all leave the listing
// working: each is listed as unreadable in its place, without its bytes, and the others
// as they were.
func TestGarbageEntryIsUnreadable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ada := f.register("Ada Reader")
	lookup := ledger.Disclosure{By: clerk(), Action: "lookup", Basis: policy.Card, Scope: policy.CurrentRecord,
		Clause: policy.ClauseCard, Patrons: []string{ada}}
	f.record(lookup)
	want := f.list(access.Filter{})
	const marker = "GARBAGEQX7391"
	garbage := [][]byte{
		[]byte("\x00\xff not json " + marker),
		[]byte(`{"id":"` + marker + `"}`),
		[]byte(`[1,2,3]`),
		[]byte(`{"staff":"` + marker + `","staff":"admin"}`),
		{},
	}
	for _, g := range garbage {
		f.publish(g)
	}
	f.record(lookup)
	got := f.list(access.Filter{})
	if len(got) != 2+len(garbage) {
		t.Fatalf("List(...) = %+v, want %d entries", got, 2+len(garbage))
	}
	for i := range garbage {
		wantL := access.Listed{Seq: uint64(2 + i), Outcome: access.Unreadable, Reason: access.ReasonUndecodable, Patrons: []string{}}
		if diff := cmp.Diff(wantL, got[1+i]); diff != "" {
			t.Errorf("List(...) of garbage %d (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff(want, got[:1]); diff != "" {
		t.Errorf("List(...) first entry (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(strip(want), strip(got[len(got)-1:])); diff != "" {
		t.Errorf("List(...) entry after the garbage (-want +got):\n%s", diff)
	}
	out, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(marker)) || bytes.Contains([]byte(f.logs.String()), []byte(marker)) {
		t.Errorf("the listing or the log repeats what an unreadable message holds:\n%s\n%s", out, f.logs.String())
	}
	if got := f.list(access.Filter{Limit: 2}); len(got) != 2 || got[0].Outcome != access.Unreadable || got[1].Staff != "clerk" {
		t.Errorf("List(limit 2) = %+v, want the last garbage and the last entry", got)
	}
}

// leaves flattens a JSON value into path -> scalar, as text.
func leaves(prefix string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			leaves(prefix+"/"+k, x, out)
		}
	case []any:
		for i, x := range v {
			leaves(fmt.Sprintf("%s/%d", prefix, i), x, out)
		}
	default:
		out[prefix] = fmt.Sprint(v)
	}
}

// TestEntriesOfOnePatronShareNothing: two entries about one patron, made by different
// requests, have no field in common but the time: no pseudonym, nonce, ciphertext or
// anything else derived from the patron links them.
func TestEntriesOfOnePatronShareNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ada := f.register("Ada Reader")
	f.record(ledger.Disclosure{By: clerk(), Action: "patron_info", Basis: policy.Card, Scope: policy.CurrentRecord,
		Clause: policy.ClauseCard, OrderRef: "DV-26-200", Patrons: []string{ada}})
	f.record(ledger.Disclosure{By: admin(), Action: "lookup", Basis: policy.CourtOrder, Scope: policy.Refused,
		Clause: policy.ClauseConfidentiality, OrderRef: "DV-26-201", Patrons: []string{ada}})
	raw := f.stored()
	if len(raw) != 2 {
		t.Fatalf("stored %d entries, want 2", len(raw))
	}
	var a, b map[string]any
	if err := json.Unmarshal(raw[0], &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw[1], &b); err != nil {
		t.Fatal(err)
	}
	la, lb := map[string]string{}, map[string]string{}
	leaves("", a, la)
	leaves("", b, lb)
	for _, want := range []string{"/patrons/0/kid", "/patrons/0/nonce", "/patrons/0/ct", "/order_sealed/kid", "/mac", "/id"} {
		if la[want] == "" || lb[want] == "" {
			t.Fatalf("stored entries lack %s: the comparison would prove nothing\n%s\n%s", want, raw[0], raw[1])
		}
	}
	if len(la) != len(lb) {
		t.Errorf("the entries have %d and %d fields, want the same", len(la), len(lb))
	}
	for path, va := range la {
		if path == "/time" {
			continue
		}
		if vb, ok := lb[path]; ok && va == vb {
			t.Errorf("both entries hold %s = %q", path, va)
		}
		if len(va) >= 8 && bytes.Contains(raw[1], []byte(va)) {
			t.Errorf("the second entry holds the first's %s (%q)", path, va)
		}
	}
	for _, r := range raw {
		if bytes.Contains(r, []byte(ada)) {
			t.Errorf("a stored entry holds the patron id: %s", r)
		}
	}
	// Both still open to the same account while it is open.
	got := f.list(access.Filter{PatronID: ada})
	if len(got) != 2 || !slices.Equal(got[0].Patrons, []string{ada}) || !slices.Equal(got[1].Patrons, []string{ada}) ||
		got[0].OrderRef != "DV-26-200" || got[1].OrderRef != "DV-26-201" {
		t.Errorf("List(patron) = %+v, want both entries naming the patron", got)
	}
}

// TestClosedAccountIsErased: after close_patron, the account's entries list the patron and
// its court order's reference as erased, its index rows are gone, filtering by it finds
// nothing, and other accounts' entries are untouched.
func TestClosedAccountIsErased(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ada, bob := f.register("Ada Reader"), f.register("Bob Reader")
	f.record(courtOrder("DV-26-300", ada))
	f.record(ledger.Disclosure{By: admin(), Action: "collections_export", Basis: policy.Collections,
		Scope: policy.CollectionsFields, Clause: policy.ClauseCollections, Patrons: []string{ada, bob}})
	f.record(courtOrder("DV-26-301", bob))
	if got := f.list(access.Filter{PatronID: ada}); len(got) != 2 {
		t.Fatalf("List(patron ada) = %+v, want 2 entries", got)
	}
	kids, err := f.proj.AccessKIDs(ada)
	if err != nil || len(kids) != 2 {
		t.Fatalf("AccessKIDs(ada) = %v, %v, want 2 pseudonyms", kids, err)
	}

	f.closePatron(ada)
	got := f.list(access.Filter{})
	wantPatrons := [][]string{{access.Erased}, {access.Erased, bob}, {bob}}
	wantOrders := []string{access.Erased, "", "DV-26-301"}
	if len(got) != 3 {
		t.Fatalf("List(...) after close = %+v, want 3 entries", got)
	}
	for i, l := range got {
		if !slices.Equal(l.Patrons, wantPatrons[i]) || l.OrderRef != wantOrders[i] {
			t.Errorf("List(...)[%d] after close = %+v, want patrons %v and order %q", i, l, wantPatrons[i], wantOrders[i])
		}
	}
	if got := f.list(access.Filter{PatronID: ada}); len(got) != 0 {
		t.Errorf("List(patron ada) after close = %+v, want none", got)
	}
	if kids, err := f.proj.AccessKIDs(ada); err != nil || len(kids) != 0 {
		t.Errorf("AccessKIDs(ada) after close = %v, %v, want none", kids, err)
	}
	for _, kid := range kids {
		if id, err := f.proj.PatronByAccessKID(kid); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("PatronByAccessKID(%s) after close = %q, %v, want ErrNotFound", kid, id, err)
		}
	}
	// A request about the closed account recorded after the close (closing is itself
	// recorded after it runs) names it, erased from the start: nothing indexes it.
	f.record(courtOrder("DV-26-302", ada))
	last := f.list(access.Filter{})[3]
	if !slices.Equal(last.Patrons, []string{access.Erased}) || last.OrderRef != access.Erased {
		t.Errorf("List(...) entry after close = %+v, want the patron and the order erased", last)
	}
	if kids, _ := f.proj.AccessKIDs(ada); len(kids) != 0 {
		t.Errorf("recording after the close indexed %v, want nothing", kids)
	}
	for _, secret := range []string{ada, bob, "DV-26-30"} {
		if bytes.Contains([]byte(f.logs.String()), []byte(secret)) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// TestCourtOrderWithoutPatronIsSealed: a court order that identified no patron stores its
// reference only sealed under the system key; administrators still read it.
func TestCourtOrderWithoutPatronIsSealed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const ref = "State v. Nobody Found, DC-26-ORDERQX"
	d := courtOrder(ref)
	d.Scope = policy.Refused
	f.record(d)
	raw := f.stored()
	if len(raw) != 1 {
		t.Fatalf("stored %d entries, want 1", len(raw))
	}
	for _, s := range []string{ref, "DC-26-ORDERQX", base64.StdEncoding.EncodeToString([]byte(ref))} {
		if bytes.Contains(raw[0], []byte(s)) {
			t.Errorf("the stored entry holds the order reference in the clear: %s", raw[0])
		}
	}
	var e access.Entry
	if err := json.Unmarshal(raw[0], &e); err != nil {
		t.Fatal(err)
	}
	if e.OrderSealed == nil || e.OrderSealed.KID != access.SystemKID || len(e.Patrons) != 0 {
		t.Errorf("stored entry = %s, want the reference sealed under the system key", raw[0])
	}
	got := f.list(access.Filter{})
	if len(got) != 1 || got[0].OrderRef != ref || got[0].Outcome != access.Refused {
		t.Errorf("List(...) = %+v, want the refused court order with its reference", got)
	}
}
