package lethetest

import (
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/node"
)

// WithSIP2 gives the harness a SIP2 listener on loopback (plain TCP), with fee payments
// allowed or not.
func WithSIP2(allowPayments bool) Option {
	return func(c *node.ServiceConfig) {
		c.SIP2.Listen = "127.0.0.1:0"
		c.SIP2.AllowPayments = allowPayments
	}
}

// SIP2Addr is the running server's SIP2 address.
func (h *Harness) SIP2Addr() string {
	h.T.Helper()
	if h.S == nil || h.S.SIP2 == nil {
		h.T.Fatal("no SIP2 listener: start the harness WithSIP2")
	}
	return h.S.SIP2.Addr().String()
}

// SIP2Kiosk adds a kiosk identity with a SIP2 password, as `lethe kiosks add` does, and
// returns its SIP2 user id and password. The running server learns of it at once.
func (h *Harness) SIP2Kiosk(branch, kiosk string) (user, password string) {
	h.T.Helper()
	reg := identity.Open(h.Cfg.Data)
	if _, _, err := reg.Add(identity.Kiosk, branch, kiosk, time.Now()); err != nil {
		h.T.Fatal(err)
	}
	password, err := reg.SetSIP2Password(branch, kiosk)
	if err != nil {
		h.T.Fatal(err)
	}
	if err := h.S.ReloadIdentities(); err != nil {
		h.T.Fatal(err)
	}
	return identity.SIP2User(branch, kiosk), password
}

// RevokeKiosk revokes a kiosk identity, as `lethe kiosks revoke` does, and makes the
// running server reload the registry at once.
func (h *Harness) RevokeKiosk(branch, kiosk string) {
	h.T.Helper()
	if _, err := identity.Open(h.Cfg.Data).Revoke(identity.Kiosk, branch, kiosk, time.Now()); err != nil {
		h.T.Fatal(err)
	}
	if err := h.S.ReloadIdentities(); err != nil {
		h.T.Fatal(err)
	}
}

// WithSIP2Config changes the SIP2 gateway's configuration (after WithSIP2).
func WithSIP2Config(f func(*node.SIP2Config)) Option {
	return func(c *node.ServiceConfig) { f(&c.SIP2) }
}
