package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// withNATSListen gives the harness a real NATS listener on loopback, for clients that
// connect as kiosks and auditors do.
func withNATSListen() harnessOption {
	return func(c *node.ServiceConfig) { c.NATSListen = "127.0.0.1:0" }
}

// identityFile adds an identity to the harness's data directory and returns its
// credentials file, as `lethe kiosks add` or `lethe auditors add` would write it.
func (h *harness) identityFile(kind identity.Kind, branch, name string) string {
	h.t.Helper()
	id, seed, err := identity.Open(h.cfg.Data).Add(kind, branch, name, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	path := filepath.Join(h.t.TempDir(), name+".nk")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := identity.WriteCredentials(f, id, seed, h.s.NATSURL()); err != nil {
		h.t.Fatal(err)
	}
	f.Close()
	if err := h.s.ReloadIdentities(); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// bystander is a NATS client on the harness's listener, and what the server told it.
type bystander struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []error // asynchronous errors: permission violations arrive here
}

// connect connects over TCP with a credentials file ("" for none).
func (h *harness) connect(creds string) (*bystander, error) {
	b := &bystander{}
	opts := []nats.Option{nats.MaxReconnects(0), nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.mu.Lock()
			b.errs = append(b.errs, err)
			b.mu.Unlock()
		})}
	if creds != "" {
		o, err := nats.NkeyOptionFromSeed(creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(h.s.NATSURL(), opts...)
	if err != nil {
		return nil, err
	}
	b.nc = nc
	h.t.Cleanup(nc.Close)
	return b, nil
}

func (h *harness) mustConnect(creds string) *bystander {
	h.t.Helper()
	b, err := h.connect(creds)
	if err != nil {
		h.t.Fatalf("connect with %s: %v", creds, err)
	}
	return b
}

// violations is how many permission violations the server reported to b so far.
func (b *bystander) violations() int {
	b.nc.Flush()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, e := range b.errs {
		if errors.Is(e, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(e.Error()), "permissions violation") {
			n++
		}
	}
	return n
}

// unchanged is the state an attack must not change: the stream, the projections, the
// access record.
type unchanged struct {
	streamLast, applied, access uint64
}

func (h *harness) snapshot() unchanged {
	h.t.Helper()
	info, err := h.s.JS.Stream(ctxT(h.t), access.StreamName)
	if err != nil {
		h.t.Fatal(err)
	}
	ai, err := info.Info(ctxT(h.t))
	if err != nil {
		h.t.Fatal(err)
	}
	return unchanged{streamLast: h.streamLast(), applied: h.s.Proj.Applied(), access: ai.State.LastSeq}
}

func (h *harness) mustBeUnchanged(what string, before unchanged) {
	h.t.Helper()
	if after := h.snapshot(); after != before {
		h.t.Errorf("%s changed the ledger: before %+v, after %+v", what, before, after)
	}
	if err := h.s.Proj.Stopped(); err != nil {
		h.t.Errorf("%s stopped the projections: %v", what, err)
	}
}

// TestBystanderCannotConnect: without a key, or with a key Lethe does not know, nothing
// connects; the server keeps serving.
func TestBystanderCannotConnect(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withNATSListen())
	if _, err := h.connect(""); err == nil {
		t.Fatal("a client without credentials connected")
	}
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	stranger := filepath.Join(t.TempDir(), "stranger.nk")
	if err := os.WriteFile(stranger, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.connect(stranger); err == nil {
		t.Fatal("a client with an unknown NKey connected")
	}
	// A revoked identity cannot connect either.
	creds := h.identityFile(identity.Kiosk, "main", "gone")
	h.mustConnect(creds).nc.Close()
	if _, err := identity.Open(h.cfg.Data).Revoke(identity.Kiosk, "main", "gone", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := h.s.ReloadIdentities(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.connect(creds); err == nil {
		t.Fatal("a revoked kiosk connected")
	}
	h.catalog("B1", 100)
	if r := h.kiosk("k1", schemas.CmdReturn, schemas.Return{CommandID: cmdID(), Barcode: "B1"}); r.Error == nil || r.Error.Code != schemas.CodeConflict {
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
	h := newHarness(t, withNATSListen())
	patron := h.register("21000000000501", "Bo Bystander", "1980-01-01")
	h.catalog("K1", 100)
	h.catalog("K2", 100)
	h.mustCheckout("21000000000501", "K2")
	txn := h.txnOf("K2")
	evil := h.mustConnect(h.identityFile(identity.Kiosk, "main", "evil"))
	victim := h.mustConnect(h.identityFile(identity.Kiosk, "main", "victim"))
	other := h.mustConnect(h.identityFile(identity.Kiosk, "east", "victim"))
	before := h.snapshot()

	// Writes to the stream's and the access record's subjects: garbage, and well-formed
	// events that would end a loan, destroy a profile key, or put a patron in collections.
	forged := []struct {
		subject string
		body    []byte
	}{
		{"circ.item.K2", forge(t, schemas.TypeTransactionClosed, "circ.item.K2", schemas.TransactionClosed{TxnID: txn})},
		{"circ.patron." + patron, forge(t, schemas.TypePatronClosed, "circ.patron."+patron, schemas.PatronClosed{PatronID: patron})},
		{"circ.item.K2", forge(t, schemas.TypeFineAssessed, "circ.item.K2", schemas.FineAssessed{TxnID: txn, FineID: cmdID(), Reason: schemas.ReasonLost, AmountCents: 100_000_000, Barcode: "K2"})},
		{"circ.sys.skipped", forge(t, schemas.TypeProjectionSkipped, "circ.sys.skipped", schemas.ProjectionSkipped{Seq: 1, Reason: "forged", Staff: "evil"})},
		{"circ.sys.expunged", []byte("not json")},
		{"circ.item.K1", []byte("not json")},
		{access.Subject, []byte(`{"id":"x","staff":"clerk"}`)},
	}
	for _, f := range forged {
		evil.nc.Publish(f.subject, f.body)
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
		if m, err := evil.nc.Request(subj, body, 300*time.Millisecond); err == nil {
			t.Errorf("kiosk request %s answered: %s", subj, m.Data)
		}
	}
	// Subscriptions: everything, the ledger's queue group, another kiosk's requests.
	var heard sync.Map
	for _, subj := range []string{">", "lethe.kiosk.>", "lethe.kiosk.main.victim.>", "_INBOX.>", "circ.>"} {
		evil.nc.Subscribe(subj, func(m *nats.Msg) { heard.Store(m.Subject, string(m.Data)) })
	}
	evil.nc.QueueSubscribe(ledger.KioskWildcard, "lethe-ledger", func(m *nats.Msg) {
		heard.Store("queue "+m.Subject, string(m.Data))
		m.Respond([]byte(`{"ok":true,"result":{"barcode":"K1","title":"fake","due":"2030-01-01T00:00:00Z"}}`))
	})
	evil.nc.Flush()
	if v := evil.violations(); v < 10 {
		t.Errorf("kiosk attacks reported %d permission violations, want every one refused", v)
	}
	// The victim's requests are answered by the ledger, every one, and heard by no one else.
	for i := range 20 {
		raw, _ := json.Marshal(schemas.PatronInfo{Card: "21000000000501"})
		m, err := victim.nc.Request(ledger.KioskSubject("main", "victim", schemas.CmdPatronInfo), raw, 5*time.Second)
		if err != nil {
			t.Fatalf("victim request %d: %v", i, err)
		}
		var r schemas.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK || bytes.Contains(m.Data, []byte("fake")) {
			t.Fatalf("victim request %d answered %s, want the ledger's record", i, m.Data)
		}
	}
	// A kiosk of another branch with the same name is another identity.
	if _, err := other.nc.Request(ledger.KioskSubject("main", "victim", schemas.CmdPatronInfo), []byte(`{"card":"21000000000501"}`), 300*time.Millisecond); err == nil {
		t.Error("kiosk east/victim was answered on main/victim's subject")
	}
	// Sending under another kiosk's or branch's subject.
	for _, subj := range []string{ledger.KioskSubject("main", "victim", "checkout"), ledger.KioskSubject("east", "evil", "checkout")} {
		raw, _ := json.Marshal(schemas.CheckOut{CommandID: cmdID(), Card: "21000000000501", Barcode: "K1"})
		if m, err := evil.nc.Request(subj, raw, 300*time.Millisecond); err == nil {
			t.Errorf("kiosk main/evil sending on %s was answered: %s", subj, m.Data)
		}
	}
	heard.Range(func(k, v any) bool {
		t.Errorf("kiosk main/evil heard %v: %v", k, v)
		return true
	})
	// The server's own view: the stream, the projections and the access record moved only
	// by the victim's 20 lookups.
	after := h.snapshot()
	if after.streamLast != before.streamLast || after.applied != before.applied {
		t.Errorf("stream or projections moved: before %+v, after %+v", before, after)
	}
	if after.access != before.access+20 {
		t.Errorf("access record grew by %d, want 20 (the victim's lookups)", after.access-before.access)
	}
	if _, err := h.s.JS.Stream(ctxT(t), "CAPTURE"); err == nil {
		t.Error("a kiosk created a stream")
	}
	for _, name := range []string{ledger.StreamName, access.StreamName} {
		s, err := h.s.JS.Stream(ctxT(t), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if diff := ledger.ConfigDiff(s.CachedInfo().Config, s.CachedInfo().Config); len(diff) > 0 || s.CachedInfo().Config.Sealed {
			t.Errorf("stream %s was changed", name)
		}
	}
	if err := h.s.Proj.Stopped(); err != nil {
		t.Errorf("projections stopped: %v", err)
	}
	// The loan is still open and the account still has its key.
	if h.txnOf("K2") != txn {
		t.Error("the forged close ended the loan")
	}
	if _, err := h.s.Keys.Get(keystore.Profile, patron); err != nil {
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
	ev := schemas.Event{SpecVersion: schemas.SpecVersion, ID: cmdID(), Type: typ, Source: "lethe/ledger/node-1",
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
	h := newHarness(t)
	h.catalog("G1", 100)
	if err := h.s.JS.DeleteStream(ctxT(t), ledger.StreamName); err != nil {
		t.Fatal(err)
	}
	status, body := h.requestAs("", http.MethodGet, "/healthz", nil)
	if status != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("stream_unavailable")) {
		t.Errorf("healthz with the stream gone = %d %s, want 503 stream_unavailable", status, body)
	}
	if err := ledger.ReadDirect(ctxT(t), h.s.NC, ledger.ReadOptions{}, func(ledger.Msg) error { return nil }); err == nil {
		t.Error("a replay of a deleted stream succeeded")
	}
}

// TestAuditorReadsCIRCOnly: an auditor replays CIRC with its own credentials and
// nothing else: no ACCESS, no JetStream administration, no consumers, no kiosk subjects.
func TestAuditorReadsCIRCOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withNATSListen())
	h.register("21000000000502", "Al Auditee", "1980-01-01")
	h.catalog("A1", 100)
	h.mustCheckout("21000000000502", "A1")
	h.checkin("A1")
	creds := h.identityFile(identity.Auditor, "", "ann")
	var out, errOut syncBuffer
	err := run(context.Background(), []string{"audit", "replay", "--nats-url", h.s.NATSURL(), "--nats-creds", creds, "--format", "json"},
		func(string) string { return "" }, nil, &out, &errOut)
	if err != nil {
		t.Fatalf("audit replay as an auditor: %v\n%s", err, errOut.String())
	}
	if got := strings.Count(out.String(), "\n"); uint64(got) != h.streamLast() {
		t.Errorf("audit replay printed %d events, want %d", got, h.streamLast())
	}
	before := h.snapshot()
	a := h.mustConnect(creds)
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctxT(t), access.StreamName); err == nil {
		t.Error("an auditor read the ACCESS stream's information")
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 3*time.Second)
	defer cancel()
	if _, err := js.OrderedConsumer(ctx, ledger.StreamName, jetstream.OrderedConsumerConfig{}); err == nil {
		t.Error("an auditor created a consumer")
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"mine.>"}}); err == nil {
		t.Error("an auditor created a stream")
	}
	if m, err := a.nc.Request(ledger.KioskSubject("main", "k1", schemas.CmdPatronInfo), []byte(`{"card":"21000000000502"}`), time.Second); err == nil {
		t.Errorf("an auditor was answered on a kiosk subject: %s", m.Data)
	}
	a.nc.Publish("circ.item.A1", []byte("not json"))
	if a.violations() == 0 {
		t.Error("no permission violation reported to the auditor")
	}
	h.mustBeUnchanged("an auditor", before)
}

// TestRevokedKioskIsCut: `lethe kiosks revoke` on a running server closes the kiosk's
// open connection within seconds and refuses its next connection; the server runs on.
func TestRevokedKioskIsCut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withNATSListen())
	dir := t.TempDir()
	out := filepath.Join(dir, "k9.nk")
	var stdout, stderr syncBuffer
	env := func(string) string { return "" }
	if err := run(context.Background(), []string{"kiosks", "add", "main", "k9", "--out", out, "--data", h.cfg.Data}, env, nil, &stdout, &stderr); err != nil {
		t.Fatalf("kiosks add: %v\n%s", err, stderr.String())
	}
	// The server picks the new kiosk up by itself (the registry watch), within seconds.
	var k *bystander
	waitFor(t, "the new kiosk can connect", func() bool {
		var err error
		k, err = h.connect(out)
		return err == nil
	})
	closed := make(chan struct{})
	k.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if _, err := k.nc.Request(ledger.KioskSubject("main", "k9", schemas.CmdPatronInfo), []byte(`{"card":"21000000000999"}`), 5*time.Second); err != nil {
		t.Fatalf("the new kiosk's request: %v", err)
	}
	if err := run(context.Background(), []string{"kiosks", "revoke", "main", "k9", "--data", h.cfg.Data}, env, nil, &stdout, &stderr); err != nil {
		t.Fatalf("kiosks revoke: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked kiosk's connection is still open after 10s")
	}
	if _, err := h.connect(out); err == nil {
		t.Fatal("the revoked kiosk connected again")
	}
	if err := run(context.Background(), []string{"kiosks", "list", "--data", h.cfg.Data}, env, nil, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "main/k9") || strings.Contains(stdout.String(), "SU") {
		t.Errorf("kiosks list = %s, want main/k9 listed and no seed", stdout.String())
	}
	h.catalog("R1", 100)
	if r := h.kiosk("k1", schemas.CmdReturn, schemas.Return{CommandID: cmdID(), Barcode: "R1"}); r.Error == nil || r.Error.Code != schemas.CodeConflict {
		t.Fatalf("the server stopped serving: %+v", r)
	}
}

// TestRegistryHoldsNoSecret: the registry and the data directory hold public keys only;
// the seed is in the credentials file and nowhere under the data directory.
func TestRegistryHoldsNoSecret(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	creds := h.identityFile(identity.Kiosk, "main", "s1")
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
	reg, err := os.ReadFile(filepath.Join(h.cfg.Data, identity.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(reg, []byte(pub)) {
		t.Fatal("the registry does not hold the public key: the scan below proves nothing")
	}
	if hits := scan(t, h.cfg.Data, map[string][]byte{"seed": seed}); len(hits) > 0 {
		t.Errorf("the seed is in %v", hits)
	}
}

// TestPoisonEventStopsProjectorNotProcess: an event the projections cannot apply (written
// through the ledger's own connection, as a damaged stream would deliver it) leaves the
// server running and serving reads, unhealthy on /healthz naming the sequence, refusing
// writes with unavailable; `lethe projections skip` resolves it, recorded on the stream,
// and a rebuild follows the same decision. A restart while stopped starts and stays
// stopped.
func TestPoisonEventStopsProjectorNotProcess(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.register("21000000000503", "Pat Poison", "1980-01-01")
	h.catalog("P1", 100)
	ack, err := h.s.JS.Publish(ctxT(t), "circ.item.P1", []byte(`{"not":"an event"}`))
	if err != nil {
		t.Fatal(err)
	}
	var health desk.Health
	waitFor(t, "healthz reports the stop", func() bool {
		status, body := h.requestAs("", http.MethodGet, "/healthz", nil)
		json.Unmarshal(body, &health)
		return status == http.StatusServiceUnavailable && health.Status == "stopped"
	})
	if health.Stopped == nil || health.Stopped.Seq != ack.Sequence || !health.Stopped.Poison {
		t.Fatalf("healthz = %+v, want stopped at %d", health, ack.Sequence)
	}
	r := h.checkout("21000000000503", "P1")
	wantCode(t, r, schemas.CodeUnavailable)
	if !strings.Contains(r.Error.Message, "sequence") {
		t.Errorf("refusal %q does not say where the projections stopped", r.Error.Message)
	}
	var item map[string]any
	if status := h.get("/api/items/P1", &item); status != http.StatusOK {
		t.Fatalf("reads while stopped: GET /api/items/P1 = %d", status)
	}
	if !strings.Contains(h.scrape(), "lethe_projector_stopped 1") {
		t.Error("metric lethe_projector_stopped is not 1")
	}
	// A restart does not exit at catch-up: it starts, stopped at the same event.
	h.restart()
	status, body := h.requestAs("", http.MethodGet, "/healthz", nil)
	if status != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"stopped"`)) {
		t.Fatalf("healthz after restart = %d %s", status, body)
	}
	// Skipping another sequence is refused; the right one resolves it.
	if status, body := h.post("/api/projections/skip", []byte(`{"seq":1,"reason":"wrong one"}`)); status != http.StatusConflict {
		t.Errorf("skip of a sequence not stopped at = %d %s, want 409", status, body)
	}
	var stdout, stderr syncBuffer
	env := map[string]string{"LETHE_SERVER": h.s.HTTPURL, "LETHE_USER": adminName, "LETHE_PASSWORD": staffPassword}
	err = run(context.Background(), []string{"projections", "skip", jsonNumber(ack.Sequence), "--reason", "garbage written by a test"},
		func(k string) string { return env[k] }, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("projections skip: %v\n%s", err, stderr.String())
	}
	waitFor(t, "healthz ok after the skip", func() bool {
		status, _ := h.requestAs("", http.MethodGet, "/healthz", nil)
		return status == http.StatusOK
	})
	h.mustCheckout("21000000000503", "P1")
	evs := h.events()
	if countType(evs, schemas.TypeProjectionSkipped) != 1 {
		t.Errorf("%d skip records on the stream, want 1", countType(evs, schemas.TypeProjectionSkipped))
	}
	h.offline(func() {
		var out, errOut syncBuffer
		if err := run(context.Background(), []string{"projections", "rebuild", "--data", h.cfg.Data}, func(string) string { return "" }, nil, &out, &errOut); err != nil {
			t.Fatalf("rebuild after a skip: %v\n%s%s", err, out.String(), errOut.String())
		}
	})
	if strings.Contains(h.logs.String(), "Pat Poison") || strings.Contains(h.logs.String(), "21000000000503") {
		t.Error("the log holds patron data")
	}
}

func jsonNumber(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// scrape reads /metrics.
func (h *harness) scrape() string {
	h.t.Helper()
	_, body := h.requestAs("", http.MethodGet, "/metrics", nil)
	return string(body)
}

// TestReplyOnlyToInboxes: the ledger answers a kiosk request only on an inbox. With an
// external NATS whose permissions are the operator's, a request whose reply subject names
// the stream or the access record would otherwise make the ledger write there.
func TestReplyOnlyToInboxes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.catalog("RP1", 100)
	if _, err := h.kiosks.Conn("main", "k1"); err != nil { // the ledger serves registered kiosks
		t.Fatal(err)
	}
	before := h.snapshot()
	refused := h.s.Kiosks.Refused()
	for _, reply := range []string{"circ.item.RP1", access.Subject, "circ.sys.skipped", "$JS.API.STREAM.DELETE.CIRC", "lethe.kiosk.main.k1.return"} {
		raw, _ := json.Marshal(schemas.Return{CommandID: cmdID(), Barcode: "RP1"})
		if err := h.s.NC.PublishRequest(ledger.KioskSubject("main", "k1", schemas.CmdReturn), reply, raw); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "five requests refused at intake", func() bool { return h.s.Kiosks.Refused() == refused+5 })
	h.mustBeUnchanged("requests with reply subjects outside the inboxes", before)
}

// TestKioskOverTLS: the NATS listener serves TLS with --nats-tls-cert; `lethe kiosk`
// with a kiosk's credentials and the CA checks an item out and back in over it; a plain
// connection is refused; and a listener off loopback without TLS is refused at start.
func TestKioskOverTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := selfSignedCert(t)
	h := newHarness(t, withNATSListen(), func(c *node.ServiceConfig) { c.NATSTLSCert, c.NATSTLSKey = certFile, keyFile })
	h.register("21000000000801", "Tess Tls", "1980-01-01")
	h.catalog("T1", 100)
	url := h.s.NATSURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("natsURL = %q, want tls://", url)
	}
	creds := filepath.Join(t.TempDir(), "t1.nk")
	env := func(string) string { return "" }
	var out, errOut syncBuffer
	if err := run(context.Background(), []string{"kiosks", "add", "main", "t1", "--data", h.cfg.Data, "--out", creds, "--url", url}, env, nil, &out, &errOut); err != nil {
		t.Fatalf("kiosks add: %v", err)
	}
	kiosk := func(args ...string) (string, error) {
		var out, errOut syncBuffer
		err := run(context.Background(), append([]string{"kiosk", "--nats-url", url, "--nats-creds", creds, "--nats-ca", certFile}, args...), env, nil, &out, &errOut)
		return out.String(), err
	}
	waitFor(t, "the kiosk can connect", func() bool { _, err := kiosk("info", "21000000000801"); return err == nil })
	if got, err := kiosk("checkout", "21000000000801", "T1"); err != nil || !strings.Contains(got, `"barcode": "T1"`) {
		t.Fatalf("lethe kiosk checkout = %q, %v", got, err)
	}
	if got, err := kiosk("return", "T1"); err != nil || !strings.Contains(got, `"fine_cents": 0`) {
		t.Fatalf("lethe kiosk return = %q, %v", got, err)
	}
	if _, err := kiosk("return", "T1"); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("second return = %v, want a conflict", err)
	}
	if nc, err := nats.Connect(strings.Replace(url, "tls://", "nats://", 1), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a plain connection to the TLS listener succeeded")
	}
	err := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--http", "off", "--nats-listen", "0.0.0.0:0"}, env, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--nats-tls-cert") {
		t.Fatalf("serve NATS on 0.0.0.0 without TLS: %v, want a refusal naming --nats-tls-cert", err)
	}
}
