package lethetest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/staff"
)

// Harness is a running Lethe on a temporary data directory: embedded JetStream with fsync
// before every acknowledgement, real Pebble on disk, the test's clock, logs captured at
// debug level.
type Harness struct {
	T       testing.TB
	Cfg     node.ServiceConfig // what Start is given; options change it before the first start
	S       *node.Service      // the running service; nil while stopped
	Clock   *testkit.Clock     // the ledger's and expunger's clock
	Logs    *testkit.SyncBuffer
	Replies *testkit.SyncBuffer // every kiosk and HTTP reply body, for privacy scans
	Kiosks  *node.KioskClients  // kiosk identities and their connections, per start

	mu     sync.Mutex
	tokens map[string]string // staff account -> session token
}

// Admin is the harness's administrator, created offline as on a fresh install, and
// Password the password of every account the harness creates.
const (
	Admin    = "admin"
	Password = "correct horse battery staple"
)

// Option changes the service's configuration before the harness starts it.
type Option func(*node.ServiceConfig)

// WithRules sets the circulation rules.
func WithRules(r ledger.Rules) Option { return func(c *node.ServiceConfig) { c.Rules = r } }

// WithNATSListen gives the harness a real NATS listener on loopback, for clients that
// connect as kiosks and auditors do.
func WithNATSListen() Option {
	return func(c *node.ServiceConfig) { c.NATSListen = "127.0.0.1:0" }
}

// New starts a Lethe for the test, with the administrator Admin, and stops it when the
// test ends. The clock starts at the current second; kiosks have no rate limit (tests of
// the rate limit set one).
func New(t testing.TB, opts ...Option) *Harness {
	t.Helper()
	h := &Harness{T: t, Clock: testkit.NewClock(time.Now().UTC().Truncate(time.Second)),
		Logs: &testkit.SyncBuffer{}, Replies: &testkit.SyncBuffer{}}
	h.Cfg = node.ServiceConfig{
		Config: node.Config{
			Data: t.TempDir(), NATSListen: "off", Sync: "always", Replicas: 1,
			Location: time.UTC,
			Logger:   slog.New(slog.NewTextHandler(h.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
		HTTP: "127.0.0.1:0", SweepInterval: time.Hour, RulesInterval: time.Hour, Now: h.Clock.Now,
		// Tests send commands from one kiosk as fast as they are answered; the tests of the
		// rate limit set it themselves.
		Kiosks: kiosk.Config{Rate: -1},
		// Checkpoints only when a test asks (h.S.Checkpoint): one appended in the
		// background would move the stream under tests that check it did not move.
		CheckpointInterval: 1000 * time.Hour, CheckpointEvents: 1 << 40,
	}
	for _, o := range opts {
		o(&h.Cfg)
	}
	st, err := staff.Open(filepath.Join(h.Cfg.Data, "staff"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(Admin, policy.Administrator, Password); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	h.Start()
	t.Cleanup(func() {
		if h.S != nil {
			h.Kiosks.Close()
			if err := h.S.Stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	})
	return h
}

// Start starts the service on the harness's data directory. Sessions live in memory: a
// start logs everyone out.
func (h *Harness) Start() {
	h.T.Helper()
	s, err := node.Start(context.Background(), h.Cfg)
	if err != nil {
		h.T.Fatalf("startService: %v", err)
	}
	h.S = s
	h.Kiosks = node.NewKioskClients(s)
	h.mu.Lock()
	h.tokens = map[string]string{}
	h.mu.Unlock()
}

// Stop stops the service: the kiosks hang up first.
func (h *Harness) Stop() error {
	h.Kiosks.Close()
	err := h.S.Stop()
	h.S = nil
	return err
}

// Offline runs f with the service stopped, then starts it again.
func (h *Harness) Offline(f func()) {
	h.T.Helper()
	if err := h.Stop(); err != nil {
		h.T.Fatalf("stop: %v", err)
	}
	f()
	h.Start()
}

// Restart stops and starts the service on the same data directory.
func (h *Harness) Restart() {
	h.T.Helper()
	if err := h.Stop(); err != nil {
		h.T.Fatalf("stop: %v", err)
	}
	h.Start()
}

// Session returns a session token of a staff account, logging in if needed.
func (h *Harness) Session(name string) string {
	h.T.Helper()
	h.mu.Lock()
	tok, ok := h.tokens[name]
	h.mu.Unlock()
	if ok {
		return tok
	}
	raw, _ := json.Marshal(map[string]string{"name": name, "password": Password})
	status, body := h.RequestAs("", http.MethodPost, "/api/login", raw)
	if status != http.StatusOK {
		h.T.Fatalf("login %s = %d %s", name, status, body)
	}
	var r struct {
		Result staff.SessionInfo `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Result.Token == "" {
		h.T.Fatalf("login %s: no token in %s", name, body)
	}
	h.mu.Lock()
	h.tokens[name] = r.Result.Token
	h.mu.Unlock()
	return r.Result.Token
}

// Forget forgets the session token of a staff account (the server ended the session, or
// the test wants a new one): its next request logs in again.
func (h *Harness) Forget(name string) {
	h.mu.Lock()
	delete(h.tokens, name)
	h.mu.Unlock()
}

// Account creates a staff account with a role, as the administrator does over the API.
func (h *Harness) Account(name string, role policy.Role) {
	h.T.Helper()
	raw, _ := json.Marshal(map[string]string{"name": name, "role": string(role), "password": Password})
	if status, body := h.Post("/api/staff", raw); status != http.StatusOK {
		h.T.Fatalf("add staff %s = %d %s", name, status, body)
	}
}

// RequestAs makes a request as a staff account ("" for none) and returns status and body.
// Tests move the clock by days, past any session's end: a 401 logs in again, once.
func (h *Harness) RequestAs(name, method, path string, raw []byte) (int, []byte) {
	h.T.Helper()
	status, body := h.requestOnce(name, method, path, raw)
	if status == http.StatusUnauthorized && name != "" {
		h.Forget(name)
		status, body = h.requestOnce(name, method, path, raw)
	}
	return status, body
}

func (h *Harness) requestOnce(name, method, path string, raw []byte) (int, []byte) {
	h.T.Helper()
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequestWithContext(testkit.Context(h.T), method, h.S.HTTPURL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(staff.ClientHeader, "cli")
	if name != "" {
		req.Header.Set("Authorization", "Bearer "+h.Session(name))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	h.Replies.Write(body)
	return resp.StatusCode, body
}

// Post posts a body to the staff API as the administrator.
func (h *Harness) Post(path string, raw []byte) (int, []byte) {
	h.T.Helper()
	return h.RequestAs(Admin, http.MethodPost, path, raw)
}

// Get reads a path of the staff API as the administrator and, on 200, decodes the body
// into v (nil: not decoded). It returns the status.
func (h *Harness) Get(path string, v any) int {
	h.T.Helper()
	status, body := h.RequestAs(Admin, http.MethodGet, path, nil)
	if v != nil && status == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			h.T.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return status
}

// Scrape reads /metrics.
func (h *Harness) Scrape() string {
	h.T.Helper()
	_, body := h.RequestAs("", http.MethodGet, "/metrics", nil)
	return string(body)
}
