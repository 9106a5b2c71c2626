package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// clock is a test clock: the ledger and expunger read it, tests move it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a running Lethe on a temporary data directory: embedded JetStream with fsync
// before ack, real Pebble on disk, the test's clock, logs captured at debug level.
type harness struct {
	t       testing.TB
	cfg     node.ServiceConfig
	s       *node.Service
	clock   *clock
	logs    *syncBuffer
	replies *syncBuffer // every kiosk and HTTP reply body, for privacy scans

	mu     sync.Mutex
	tokens map[string]string  // staff account -> session token
	kiosks *node.KioskClients // kiosk identities and their connections, per start
}

// The harness's administrator, created offline as on a fresh install, and the password
// of every account the harness creates.
const (
	adminName     = "admin"
	staffPassword = "correct horse battery staple"
)

type harnessOption func(*node.ServiceConfig)

func withRules(r ledger.Rules) harnessOption { return func(c *node.ServiceConfig) { c.Rules = r } }

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, clock: newClock(), logs: &syncBuffer{}, replies: &syncBuffer{}}
	h.cfg = node.ServiceConfig{
		Config: node.Config{
			Data: t.TempDir(), NATSListen: "off", Sync: "always", Replicas: 1,
			Location: time.UTC,
			Logger:   slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
		HTTP: "127.0.0.1:0", SweepInterval: time.Hour, RulesInterval: time.Hour, Now: h.clock.Now,
		// Tests send commands from one kiosk as fast as they are answered; the tests of the
		// rate limit set it themselves.
		Kiosks: kiosk.Config{Rate: -1},
	}
	for _, o := range opts {
		o(&h.cfg)
	}
	st, err := staff.Open(filepath.Join(h.cfg.Data, "staff"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(adminName, policy.Administrator, staffPassword); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(func() {
		if h.s != nil {
			h.kiosks.Close()
			if err := h.s.Stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	})
	return h
}

func (h *harness) start() {
	h.t.Helper()
	s, err := node.Start(context.Background(), h.cfg)
	if err != nil {
		h.t.Fatalf("startService: %v", err)
	}
	h.s = s
	h.kiosks = node.NewKioskClients(s)
	h.mu.Lock()
	h.tokens = map[string]string{} // sessions live in memory: a restart logs everyone out
	h.mu.Unlock()
}

// stop stops the service: the kiosks hang up first.
func (h *harness) stop() error {
	h.kiosks.Close()
	err := h.s.Stop()
	h.s = nil
	return err
}

// session returns a session token of a staff account, logging in if needed.
func (h *harness) session(name string) string {
	h.t.Helper()
	h.mu.Lock()
	tok, ok := h.tokens[name]
	h.mu.Unlock()
	if ok {
		return tok
	}
	raw, _ := json.Marshal(map[string]string{"name": name, "password": staffPassword})
	status, body := h.requestAs("", http.MethodPost, "/api/login", raw)
	if status != http.StatusOK {
		h.t.Fatalf("login %s = %d %s", name, status, body)
	}
	var r struct {
		Result staff.SessionInfo `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Result.Token == "" {
		h.t.Fatalf("login %s: no token in %s", name, body)
	}
	h.mu.Lock()
	h.tokens[name] = r.Result.Token
	h.mu.Unlock()
	return r.Result.Token
}

// account creates a staff account with a role, as the administrator does over the API.
func (h *harness) account(name string, role policy.Role) {
	h.t.Helper()
	raw, _ := json.Marshal(map[string]string{"name": name, "role": string(role), "password": staffPassword})
	if status, body := h.post("/api/staff", raw); status != http.StatusOK {
		h.t.Fatalf("add staff %s = %d %s", name, status, body)
	}
}

// requestAs makes a request as a staff account ("" for none) and returns status and body.
// Tests move the clock by days, past any session's end: a 401 logs in again, once.
func (h *harness) requestAs(name, method, path string, raw []byte) (int, []byte) {
	h.t.Helper()
	status, body := h.requestOnce(name, method, path, raw)
	if status == http.StatusUnauthorized && name != "" {
		h.mu.Lock()
		delete(h.tokens, name)
		h.mu.Unlock()
		status, body = h.requestOnce(name, method, path, raw)
	}
	return status, body
}

func (h *harness) requestOnce(name, method, path string, raw []byte) (int, []byte) {
	h.t.Helper()
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequestWithContext(ctxT(h.t), method, h.s.HTTPURL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(staff.ClientHeader, "cli")
	if name != "" {
		req.Header.Set("Authorization", "Bearer "+h.session(name))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	h.replies.Write(body)
	return resp.StatusCode, body
}

// offline runs f with the service stopped, then starts it again.
func (h *harness) offline(f func()) {
	h.t.Helper()
	if err := h.stop(); err != nil {
		h.t.Fatalf("stop: %v", err)
	}
	f()
	h.start()
}

// restart stops and starts the service on the same data directory.
func (h *harness) restart() {
	h.t.Helper()
	if err := h.stop(); err != nil {
		h.t.Fatalf("stop: %v", err)
	}
	h.start()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// kiosk sends a kiosk command over NATS request/reply, as a self-check machine does.
func (h *harness) kiosk(kiosk, cmd string, v any) schemas.Reply {
	h.t.Helper()
	raw, ok := v.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			h.t.Fatal(err)
		}
	}
	m, err := h.kiosks.Request(ctxT(h.t), "main", kiosk, cmd, raw)
	if err != nil {
		h.t.Fatalf("kiosk %s: %v", cmd, err)
	}
	h.replies.Write(m.Data)
	var r schemas.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		h.t.Fatalf("kiosk %s reply %q: %v", cmd, m.Data, err)
	}
	return r
}

// mustKiosk sends a kiosk command that must succeed and decodes its result.
func mustKiosk[R any](h *harness, cmd string, v any) R {
	h.t.Helper()
	r := h.kiosk("k1", cmd, v)
	if !r.OK {
		h.t.Fatalf("kiosk %s = %+v, want ok", cmd, r.Error)
	}
	var out R
	if err := json.Unmarshal(r.Result, &out); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// wantCode checks a refused reply's code.
func wantCode(t testing.TB, r schemas.Reply, code schemas.Code) {
	t.Helper()
	if r.OK || r.Error == nil || r.Error.Code != code {
		t.Fatalf("reply = %+v (error %+v), want error code %q", r, r.Error, code)
	}
}

// desk posts a staff command to the HTTP API as the administrator and returns the status
// and body.
func (h *harness) desk(name string, v any) (int, []byte) {
	h.t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		h.t.Fatal(err)
	}
	path := desk.CommandPath(name)
	if path == "" {
		path = "/api/desk/" + name
	}
	return h.post(path, raw)
}

func (h *harness) post(path string, raw []byte) (int, []byte) {
	h.t.Helper()
	return h.requestAs(adminName, http.MethodPost, path, raw)
}

func (h *harness) get(path string, v any) int {
	h.t.Helper()
	status, body := h.requestAs(adminName, http.MethodGet, path, nil)
	if v != nil && status == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			h.t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return status
}

// mustDesk runs a staff command that must succeed.
func mustDesk[R any](h *harness, name string, v any) R {
	h.t.Helper()
	status, body := h.desk(name, v)
	if status != http.StatusOK {
		h.t.Fatalf("desk %s = %d %s, want 200", name, status, body)
	}
	var out R
	if err := json.Unmarshal(body, &out); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func cmdID() string { return uuid.NewString() }

func (h *harness) catalog(barcode string, priceCents int64) {
	h.t.Helper()
	mustDesk[schemas.Accepted](h, schemas.CmdCatalogItem, schemas.CatalogItem{CommandID: cmdID(), ItemCataloged: schemas.ItemCataloged{
		Barcode: barcode, Title: "Title " + barcode, Collection: "fiction", Branch: "main", ReplacementCents: priceCents,
	}})
}

// register registers an adult patron with a card and returns the patron id.
func (h *harness) register(card, name, birth string) string {
	h.t.Helper()
	r := mustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
		CommandID: cmdID(), HomeBranch: "main", Card: card,
		Profile: schemas.Profile{Name: name, Email: strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.org", BirthDate: birth},
	})
	return r.PatronID
}

func (h *harness) checkout(card, barcode string) schemas.Reply {
	h.t.Helper()
	return h.kiosk("k1", schemas.CmdCheckOut, schemas.CheckOut{CommandID: cmdID(), Card: card, Barcode: barcode})
}

// mustCheckout checks an item out at a kiosk and fails the test if it is refused.
func (h *harness) mustCheckout(card, barcode string) {
	h.t.Helper()
	if r := h.checkout(card, barcode); !r.OK {
		h.t.Fatalf("checkout of %s = %+v", barcode, r.Error)
	}
}

func (h *harness) checkin(barcode string) schemas.ReturnResult {
	h.t.Helper()
	return mustKiosk[schemas.ReturnResult](h, schemas.CmdReturn, schemas.Return{CommandID: cmdID(), Barcode: barcode})
}

func (h *harness) record(card string) schemas.PatronRecord {
	h.t.Helper()
	return mustKiosk[schemas.PatronRecord](h, schemas.CmdPatronInfo, schemas.PatronInfo{Card: card})
}

// streamLast is the stream's last sequence.
func (h *harness) streamLast() uint64 {
	h.t.Helper()
	last, err := h.s.StreamLast(ctxT(h.t))
	if err != nil {
		h.t.Fatal(err)
	}
	return last
}

// expungeAll runs the expunger until nothing closed is waiting, then sweeps.
func (h *harness) expungeAll() {
	h.t.Helper()
	ctx := ctxT(h.t)
	waitFor(h.t, "pending expunges drained", func() bool {
		if _, err := h.s.Expunger.ExpungeNow(ctx); err != nil {
			h.t.Fatal(err)
		}
		p, err := h.s.Proj.PendingExpunges()
		if err != nil {
			h.t.Fatal(err)
		}
		return len(p) == 0
	})
	if err := h.s.Expunger.Sweep(ctx); err != nil {
		h.t.Fatalf("sweep: %v", err)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// events reads every event on the stream with a plain JetStream consumer.
func (h *harness) events() []schemas.Event {
	h.t.Helper()
	var out []schemas.Event
	err := ledger.Read(ctxT(h.t), h.s.JS, ledger.ReadOptions{}, func(m ledger.Msg) error {
		var ev schemas.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			return fmt.Errorf("seq %d: %w", m.Seq, err)
		}
		out = append(out, ev)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func countType(evs []schemas.Event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}
