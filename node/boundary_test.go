// The trust boundary of the NATS side, through the real server: who may connect, and
// what a connected kiosk can and cannot do to the ledger.

package node_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// TestBystanderCannotConnect: without a key, or with a key Lethe does not know, nothing
// connects; the server keeps serving.
func TestBystanderCannotConnect(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithNATSListen())
	if _, err := h.Connect(""); err == nil {
		t.Fatal("a client without credentials connected")
	}
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	stranger := filepath.Join(t.TempDir(), "stranger.nk")
	if err := os.WriteFile(stranger, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Connect(stranger); err == nil {
		t.Fatal("a client with an unknown NKey connected")
	}
	// A revoked identity cannot connect either.
	creds := h.IdentityFile(identity.Kiosk, "main", "gone")
	h.MustConnect(creds).NC.Close()
	if _, err := identity.Open(h.Cfg.Data).Revoke(identity.Kiosk, "main", "gone", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := h.S.ReloadIdentities(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Connect(creds); err == nil {
		t.Fatal("a revoked kiosk connected")
	}
	h.Catalog("B1", 100)
	if r := h.Kiosk("k1", schemas.CmdReturn, schemas.Return{CommandID: lethetest.CmdID(), Barcode: "B1"}); r.Error == nil || r.Error.Code != schemas.CodeConflict {
		t.Fatalf("the server stopped serving: %+v", r)
	}
}

// TestKioskCannotWriteTheLedger drives every attack a kiosk's credentials could try on
// the ledger and checks each is refused and changes nothing: writing circ.> and access.>,
// the JetStream API (delete, purge, trim, seal, a stream of its own capturing replies),
// reading everything, joining the ledger's queue group, answering another kiosk's
// requests, and sending under another kiosk's or branch's subjects.
func TestKioskCannotWriteTheLedger(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithNATSListen())
	patron := h.Register("21000000000501", "Bo Bystander", "1980-01-01")
	h.Catalog("K1", 100)
	h.Catalog("K2", 100)
	h.MustCheckout("21000000000501", "K2")
	txn := h.TxnOf("K2")
	evil := h.MustConnect(h.IdentityFile(identity.Kiosk, "main", "evil"))
	victim := h.MustConnect(h.IdentityFile(identity.Kiosk, "main", "victim"))
	other := h.MustConnect(h.IdentityFile(identity.Kiosk, "east", "victim"))
	before := h.Snapshot()

	// Writes to the stream's and the access record's subjects: garbage, and well-formed
	// events that would end a loan, destroy a profile key, or put a patron in collections.
	forged := []struct {
		subject string
		body    []byte
	}{
		{"circ.item.K2", forge(t, schemas.TypeTransactionClosed, "circ.item.K2", schemas.TransactionClosed{TxnID: txn})},
		{"circ.patron." + patron, forge(t, schemas.TypePatronClosed, "circ.patron."+patron, schemas.PatronClosed{PatronID: patron})},
		{"circ.item.K2", forge(t, schemas.TypeFineAssessed, "circ.item.K2", schemas.FineAssessed{TxnID: txn, FineID: lethetest.CmdID(), Reason: schemas.ReasonLost, AmountCents: 100_000_000, Barcode: "K2"})},
		{"circ.sys.skipped", forge(t, schemas.TypeProjectionSkipped, "circ.sys.skipped", schemas.ProjectionSkipped{Seq: 1, Reason: "forged", Staff: "evil"})},
		{"circ.sys.expunged", []byte("not json")},
		{"circ.item.K1", []byte("not json")},
		{access.Subject, []byte(`{"id":"x","staff":"clerk"}`)},
	}
	for _, f := range forged {
		evil.NC.Publish(f.subject, f.body)
	}
	// The JetStream API, by request.
	for _, subj := range []string{
		"$JS.API.STREAM.DELETE.CIRC", "$JS.API.STREAM.DELETE.ACCESS", "$JS.API.STREAM.PURGE.CIRC",
		"$JS.API.STREAM.UPDATE.CIRC", "$JS.API.STREAM.CREATE.CAPTURE", "$JS.API.STREAM.INFO.ACCESS",
		"$JS.API.CONSUMER.CREATE.CIRC", "$JS.API.INFO",
	} {
		body := []byte(`{"name":"CIRC","subjects":["circ.>"],"max_msgs":5,"discard":"old","sealed":true}`)
		if subj == "$JS.API.STREAM.CREATE.CAPTURE" {
			body = []byte(`{"name":"CAPTURE","subjects":["_INBOX.>"],"storage":"file"}`)
		}
		// Refused requests get no answer: a short wait is enough, an answer comes in
		// microseconds on loopback.
		if m, err := evil.NC.Request(subj, body, 300*time.Millisecond); err == nil {
			t.Errorf("kiosk request %s answered: %s", subj, m.Data)
		}
	}
	// Subscriptions: everything, the ledger's queue group, another kiosk's requests.
	var heard sync.Map
	for _, subj := range []string{">", "lethe.kiosk.>", "lethe.kiosk.main.victim.>", "_INBOX.>", "circ.>"} {
		evil.NC.Subscribe(subj, func(m *nats.Msg) { heard.Store(m.Subject, string(m.Data)) })
	}
	evil.NC.QueueSubscribe(ledger.KioskWildcard, "lethe-ledger", func(m *nats.Msg) {
		heard.Store("queue "+m.Subject, string(m.Data))
		m.Respond([]byte(`{"ok":true,"result":{"barcode":"K1","title":"fake","due":"2030-01-01T00:00:00Z"}}`))
	})
	evil.NC.Flush()
	if v := evil.Violations(); v < 10 {
		t.Errorf("kiosk attacks reported %d permission violations, want every one refused", v)
	}
	// The victim's requests are answered by the ledger, every one, and heard by no one else.
	for i := range 20 {
		raw, _ := json.Marshal(schemas.PatronInfo{Card: "21000000000501"})
		m, err := victim.NC.Request(ledger.KioskSubject("main", "victim", schemas.CmdPatronInfo), raw, 5*time.Second)
		if err != nil {
			t.Fatalf("victim request %d: %v", i, err)
		}
		var r schemas.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK || bytes.Contains(m.Data, []byte("fake")) {
			t.Fatalf("victim request %d answered %s, want the ledger's record", i, m.Data)
		}
	}
	// A kiosk of another branch with the same name is another identity.
	if _, err := other.NC.Request(ledger.KioskSubject("main", "victim", schemas.CmdPatronInfo), []byte(`{"card":"21000000000501"}`), 300*time.Millisecond); err == nil {
		t.Error("kiosk east/victim was answered on main/victim's subject")
	}
	// Sending under another kiosk's or branch's subject.
	for _, subj := range []string{ledger.KioskSubject("main", "victim", "checkout"), ledger.KioskSubject("east", "evil", "checkout")} {
		raw, _ := json.Marshal(schemas.CheckOut{CommandID: lethetest.CmdID(), Card: "21000000000501", Barcode: "K1"})
		if m, err := evil.NC.Request(subj, raw, 300*time.Millisecond); err == nil {
			t.Errorf("kiosk main/evil sending on %s was answered: %s", subj, m.Data)
		}
	}
	heard.Range(func(k, v any) bool {
		t.Errorf("kiosk main/evil heard %v: %v", k, v)
		return true
	})
	// The server's own view: the stream, the projections and the access record moved only
	// by the victim's 20 lookups.
	after := h.Snapshot()
	if after.StreamLast != before.StreamLast || after.Applied != before.Applied {
		t.Errorf("stream or projections moved: before %+v, after %+v", before, after)
	}
	if after.Access != before.Access+20 {
		t.Errorf("access record grew by %d, want 20 (the victim's lookups)", after.Access-before.Access)
	}
	if _, err := h.S.JS.Stream(testkit.Context(t), "CAPTURE"); err == nil {
		t.Error("a kiosk created a stream")
	}
	for _, name := range []string{ledger.StreamName, access.StreamName} {
		s, err := h.S.JS.Stream(testkit.Context(t), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if diff := ledger.ConfigDiff(s.CachedInfo().Config, s.CachedInfo().Config); len(diff) > 0 || s.CachedInfo().Config.Sealed {
			t.Errorf("stream %s was changed", name)
		}
	}
	if err := h.S.Proj.Stopped(); err != nil {
		t.Errorf("projections stopped: %v", err)
	}
	// The loan is still open and the account still has its key.
	if h.TxnOf("K2") != txn {
		t.Error("the forged close ended the loan")
	}
	if _, err := h.S.Keys.Get(keystore.Profile, patron); err != nil {
		t.Errorf("the forged patron.closed destroyed the profile key: %v", err)
	}
}

// forge builds a well-formed event, as someone who read the schemas would.
func forge(t *testing.T, typ, subject string, data any) []byte {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	ev := schemas.Event{SpecVersion: schemas.SpecVersion, ID: lethetest.CmdID(), Type: typ, Source: "lethe/ledger/node-1",
		Subject: subject, Time: time.Now().UTC(), DataContentType: "application/json", DataSchema: schemas.DataSchema(typ), Data: raw}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Event(body); err != nil {
		t.Fatalf("the forged %s is not well-formed: %v", typ, err)
	}
	return body
}

// TestHealthzNoticesTheStreamGone: a stream deleted under a running server (through a
// privileged path: with an external NATS, an operator's mistake) turns /healthz
// unhealthy, and an auditor's replay fails instead of printing an empty history.
func TestHealthzNoticesTheStreamGone(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("G1", 100)
	if err := h.S.JS.DeleteStream(testkit.Context(t), ledger.StreamName); err != nil {
		t.Fatal(err)
	}
	status, body := h.RequestAs("", http.MethodGet, "/healthz", nil)
	if status != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("stream_unavailable")) {
		t.Errorf("healthz with the stream gone = %d %s, want 503 stream_unavailable", status, body)
	}
	if err := ledger.ReadDirect(testkit.Context(t), h.S.NC, ledger.ReadOptions{}, func(ledger.Msg) error { return nil }); err == nil {
		t.Error("a replay of a deleted stream succeeded")
	}
}

// TestRegistryHoldsNoSecret: the registry and the data directory hold public keys only;
// the seed is in the credentials file and nowhere under the data directory.
func TestRegistryHoldsNoSecret(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	creds := h.IdentityFile(identity.Kiosk, "main", "s1")
	data, err := os.ReadFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := identity.ReadCredentials(data)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	reg, err := os.ReadFile(filepath.Join(h.Cfg.Data, identity.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(reg, []byte(pub)) {
		t.Fatal("the registry does not hold the public key: the scan below proves nothing")
	}
	if hits := lethetest.Scan(t, h.Cfg.Data, map[string][]byte{"seed": seed}); len(hits) > 0 {
		t.Errorf("the seed is in %v", hits)
	}
}

// TestReplyOnlyToInboxes: the ledger answers a kiosk request only on an inbox. With an
// external NATS whose permissions are the operator's, a request whose reply subject names
// the stream or the access record would otherwise make the ledger write there.
func TestReplyOnlyToInboxes(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("RP1", 100)
	if _, err := h.Kiosks.Conn("main", "k1"); err != nil { // the ledger serves registered kiosks
		t.Fatal(err)
	}
	before := h.Snapshot()
	refused := h.S.Kiosks.Refused()
	for _, reply := range []string{"circ.item.RP1", access.Subject, "circ.sys.skipped", "$JS.API.STREAM.DELETE.CIRC", "lethe.kiosk.main.k1.return"} {
		raw, _ := json.Marshal(schemas.Return{CommandID: lethetest.CmdID(), Barcode: "RP1"})
		if err := h.S.NC.PublishRequest(ledger.KioskSubject("main", "k1", schemas.CmdReturn), reply, raw); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "five requests refused at intake", func() bool { return h.S.Kiosks.Refused() == refused+5 })
	h.MustBeUnchanged("requests with reply subjects outside the inboxes", before)
}
