package lethetest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

// IdentityFile adds an identity to the harness's data directory and returns its
// credentials file, as `lethe kiosks add` or `lethe auditors add` would write it. The
// running server learns of it at once.
func (h *Harness) IdentityFile(kind identity.Kind, branch, name string) string {
	h.T.Helper()
	id, seed, err := identity.Open(h.Cfg.Data).Add(kind, branch, name, time.Now())
	if err != nil {
		h.T.Fatal(err)
	}
	path := filepath.Join(h.T.TempDir(), name+".nk")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		h.T.Fatal(err)
	}
	if err := identity.WriteCredentials(f, id, seed, h.S.NATSURL()); err != nil {
		h.T.Fatal(err)
	}
	f.Close()
	if err := h.S.ReloadIdentities(); err != nil {
		h.T.Fatal(err)
	}
	return path
}

// Client is a NATS client on the harness's listener (WithNATSListen), and what the
// server told it.
type Client struct {
	NC   *nats.Conn
	mu   sync.Mutex
	errs []error // asynchronous errors: permission violations arrive here
}

// Connect connects over TCP with a credentials file ("" for none). The connection closes
// when the test ends.
func (h *Harness) Connect(creds string) (*Client, error) {
	c := &Client{}
	opts := []nats.Option{nats.MaxReconnects(0), nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		})}
	if creds != "" {
		o, err := nats.NkeyOptionFromSeed(creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(h.S.NATSURL(), opts...)
	if err != nil {
		return nil, err
	}
	c.NC = nc
	h.T.Cleanup(nc.Close)
	return c, nil
}

// MustConnect is Connect that fails the test if the connection is refused.
func (h *Harness) MustConnect(creds string) *Client {
	h.T.Helper()
	c, err := h.Connect(creds)
	if err != nil {
		h.T.Fatalf("connect with %s: %v", creds, err)
	}
	return c
}

// Violations is how many permission violations the server reported to c so far.
func (c *Client) Violations() int {
	c.NC.Flush()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.errs {
		if errors.Is(e, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(e.Error()), "permissions violation") {
			n++
		}
	}
	return n
}

// KioskRoundTrips is a benchmark's loop: each iteration checks barcode out to card and
// in again, as kiosk branch/kiosk over nc, each request waiting for its reply.
func KioskRoundTrips(b *testing.B, nc *nats.Conn, branch, kiosk, card, barcode string) {
	b.Helper()
	send := func(cmd string, v any) {
		raw, _ := json.Marshal(v)
		m, err := nc.Request(ledger.KioskSubject(branch, kiosk, cmd), raw, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		var r schemas.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			b.Fatalf("%s = %s", cmd, m.Data)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		send(schemas.CmdCheckOut, schemas.CheckOut{CommandID: CmdID(), Card: card, Barcode: barcode})
		send(schemas.CmdReturn, schemas.Return{CommandID: CmdID(), Barcode: barcode})
	}
}
