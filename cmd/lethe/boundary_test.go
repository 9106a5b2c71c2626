package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAuditorReadsCIRCOnly: an auditor replays CIRC with its own credentials and
// nothing else: no ACCESS, no JetStream administration, no consumers, no kiosk subjects.
func TestAuditorReadsCIRCOnly(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithNATSListen())
	h.Register("21000000000502", "Al Auditee", "1980-01-01")
	h.Catalog("A1", 100)
	h.MustCheckout("21000000000502", "A1")
	h.Checkin("A1")
	creds := h.IdentityFile(identity.Auditor, "", "ann")
	var out, errOut testkit.SyncBuffer
	err := run(context.Background(), []string{"audit", "replay", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--format", "json"},
		func(string) string { return "" }, nil, &out, &errOut)
	if err != nil {
		t.Fatalf("audit replay as an auditor: %v\n%s", err, errOut.String())
	}
	if got, want := strings.Count(out.String(), "\n"), len(h.Events()); got != want {
		t.Errorf("audit replay printed %d events, want %d", got, want)
	}
	before := h.Snapshot()
	a := h.MustConnect(creds)
	js, err := jetstream.New(a.NC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(testkit.Context(t), access.StreamName); err == nil {
		t.Error("an auditor read the ACCESS stream's information")
	}
	ctx, cancel := context.WithTimeout(testkit.Context(t), 3*time.Second)
	defer cancel()
	if _, err := js.OrderedConsumer(ctx, ledger.StreamName, jetstream.OrderedConsumerConfig{}); err == nil {
		t.Error("an auditor created a consumer")
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"mine.>"}}); err == nil {
		t.Error("an auditor created a stream")
	}
	if m, err := a.NC.Request(ledger.KioskSubject("main", "k1", schemas.CmdPatronInfo), []byte(`{"card":"21000000000502"}`), time.Second); err == nil {
		t.Errorf("an auditor was answered on a kiosk subject: %s", m.Data)
	}
	a.NC.Publish("circ.item.A1", []byte("not json"))
	if a.Violations() == 0 {
		t.Error("no permission violation reported to the auditor")
	}
	h.MustBeUnchanged("an auditor", before)
}

// TestRevokedKioskIsCut: `lethe kiosks revoke` on a running server closes the kiosk's
// open connection within seconds and refuses its next connection; the server runs on.
func TestRevokedKioskIsCut(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithNATSListen())
	dir := t.TempDir()
	out := filepath.Join(dir, "k9.nk")
	var stdout, stderr testkit.SyncBuffer
	env := func(string) string { return "" }
	if err := run(context.Background(), []string{"kiosks", "add", "main", "k9", "--out", out, "--data", h.Cfg.Data}, env, nil, &stdout, &stderr); err != nil {
		t.Fatalf("kiosks add: %v\n%s", err, stderr.String())
	}
	// The server picks the new kiosk up by itself (the registry watch), within seconds.
	var k *lethetest.Client
	testkit.WaitFor(t, "the new kiosk can connect", func() bool {
		var err error
		k, err = h.Connect(out)
		return err == nil
	})
	closed := make(chan struct{})
	k.NC.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if _, err := k.NC.Request(ledger.KioskSubject("main", "k9", schemas.CmdPatronInfo), []byte(`{"card":"21000000000999"}`), 5*time.Second); err != nil {
		t.Fatalf("the new kiosk's request: %v", err)
	}
	if err := run(context.Background(), []string{"kiosks", "revoke", "main", "k9", "--data", h.Cfg.Data}, env, nil, &stdout, &stderr); err != nil {
		t.Fatalf("kiosks revoke: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked kiosk's connection is still open after 10s")
	}
	if _, err := h.Connect(out); err == nil {
		t.Fatal("the revoked kiosk connected again")
	}
	if err := run(context.Background(), []string{"kiosks", "list", "--data", h.Cfg.Data}, env, nil, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	// A user seed is "SU" and base32 as a word of its own; a public key may hold "SU"
	// inside it.
	if !strings.Contains(stdout.String(), "main/k9") || regexp.MustCompile(`\bSU[A-Z2-7]{50,}`).MatchString(stdout.String()) {
		t.Errorf("kiosks list = %s, want main/k9 listed and no seed", stdout.String())
	}
	h.Catalog("R1", 100)
	if r := h.Kiosk("k1", schemas.CmdReturn, schemas.Return{CommandID: lethetest.CmdID(), Barcode: "R1"}); r.Error == nil || r.Error.Code != schemas.CodeConflict {
		t.Fatalf("the server stopped serving: %+v", r)
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
	h := lethetest.New(t)
	h.Register("21000000000503", "Pat Poison", "1980-01-01")
	h.Catalog("P1", 100)
	ack, err := h.S.JS.Publish(testkit.Context(t), "circ.item.P1", []byte(`{"not":"an event"}`))
	if err != nil {
		t.Fatal(err)
	}
	var health desk.Health
	testkit.WaitFor(t, "healthz reports the stop", func() bool {
		status, body := h.RequestAs("", http.MethodGet, "/healthz", nil)
		json.Unmarshal(body, &health)
		return status == http.StatusServiceUnavailable && health.Status == "stopped"
	})
	if health.Stopped == nil || health.Stopped.Seq != ack.Sequence || !health.Stopped.Poison {
		t.Fatalf("healthz = %+v, want stopped at %d", health, ack.Sequence)
	}
	r := h.Checkout("21000000000503", "P1")
	lethetest.WantCode(t, r, schemas.CodeUnavailable)
	if !strings.Contains(r.Error.Message, "sequence") {
		t.Errorf("refusal %q does not say where the projections stopped", r.Error.Message)
	}
	var item map[string]any
	if status := h.Get("/api/items/P1", &item); status != http.StatusOK {
		t.Fatalf("reads while stopped: GET /api/items/P1 = %d", status)
	}
	if !strings.Contains(h.Scrape(), "lethe_projector_stopped 1") {
		t.Error("metric lethe_projector_stopped is not 1")
	}
	// A restart does not exit at catch-up: it starts, stopped at the same event.
	h.Restart()
	status, body := h.RequestAs("", http.MethodGet, "/healthz", nil)
	if status != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"stopped"`)) {
		t.Fatalf("healthz after restart = %d %s", status, body)
	}
	// Skipping another sequence is refused; the right one resolves it.
	if status, body := h.Post("/api/projections/skip", []byte(`{"seq":1,"reason":"wrong one"}`)); status != http.StatusConflict {
		t.Errorf("skip of a sequence not stopped at = %d %s, want 409", status, body)
	}
	var stdout, stderr testkit.SyncBuffer
	env := map[string]string{"LETHE_SERVER": h.S.HTTPURL, "LETHE_USER": lethetest.Admin, "LETHE_PASSWORD": lethetest.Password}
	err = run(context.Background(), []string{"projections", "skip", jsonNumber(ack.Sequence), "--reason", "garbage written by a test"},
		func(k string) string { return env[k] }, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("projections skip: %v\n%s", err, stderr.String())
	}
	testkit.WaitFor(t, "healthz ok after the skip", func() bool {
		status, _ := h.RequestAs("", http.MethodGet, "/healthz", nil)
		return status == http.StatusOK
	})
	h.MustCheckout("21000000000503", "P1")
	evs := h.Events()
	if lethetest.CountType(evs, schemas.TypeProjectionSkipped) != 1 {
		t.Errorf("%d skip records on the stream, want 1", lethetest.CountType(evs, schemas.TypeProjectionSkipped))
	}
	h.Offline(func() {
		var out, errOut testkit.SyncBuffer
		if err := run(context.Background(), []string{"projections", "rebuild", "--data", h.Cfg.Data}, func(string) string { return "" }, nil, &out, &errOut); err != nil {
			t.Fatalf("rebuild after a skip: %v\n%s%s", err, out.String(), errOut.String())
		}
	})
	if strings.Contains(h.Logs.String(), "Pat Poison") || strings.Contains(h.Logs.String(), "21000000000503") {
		t.Error("the log holds patron data")
	}
}

func jsonNumber(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// TestKioskOverTLS: the NATS listener serves TLS with --nats-tls-cert; `lethe kiosk`
// with a kiosk's credentials and the CA checks an item out and back in over it; a plain
// connection is refused; and a listener off loopback without TLS is refused at start.
func TestKioskOverTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := testkit.SelfSignedCert(t)
	h := lethetest.New(t, lethetest.WithNATSListen(), func(c *node.ServiceConfig) { c.NATSTLSCert, c.NATSTLSKey = certFile, keyFile })
	h.Register("21000000000801", "Tess Tls", "1980-01-01")
	h.Catalog("T1", 100)
	url := h.S.NATSURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("natsURL = %q, want tls://", url)
	}
	creds := filepath.Join(t.TempDir(), "t1.nk")
	env := func(string) string { return "" }
	var out, errOut testkit.SyncBuffer
	if err := run(context.Background(), []string{"kiosks", "add", "main", "t1", "--data", h.Cfg.Data, "--out", creds, "--url", url}, env, nil, &out, &errOut); err != nil {
		t.Fatalf("kiosks add: %v", err)
	}
	kiosk := func(args ...string) (string, error) {
		var out, errOut testkit.SyncBuffer
		err := run(context.Background(), append([]string{"kiosk", "--nats-url", url, "--nats-creds", creds, "--nats-ca", certFile}, args...), env, nil, &out, &errOut)
		return out.String(), err
	}
	testkit.WaitFor(t, "the kiosk can connect", func() bool { _, err := kiosk("info", "21000000000801"); return err == nil })
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
