package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/ledger"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// natsAuth is the embedded NATS server's authentication: every client proves an NKey by
// signing the server's nonce (NATS's own challenge), and the key decides its account and
// permissions. The ledger's in-process connection has a key made at each start and kept
// only in memory; kiosks and auditors have the keys of the identity registry, each in an
// account of its own that imports only the ledger's services it needs. Nothing connects
// without a key: not on loopback, not in the demo.
type natsAuth struct {
	ledgerKey string // public key of the ledger's own connection
	reg       *identity.Registry
	logger    *slog.Logger

	reloadMu sync.Mutex // one reload at a time: the watch, and callers that cannot wait for it
	// onKiosks is told the active kiosks ("branch/kiosk") after every change; reloadMu.
	onKiosks func([]string) error

	mu       sync.RWMutex
	ns       *server.Server
	users    map[string]*server.User      // by public key: the active identities
	accounts map[string]*server.Account   // by account name: every identity account made
	active   map[string]identity.Identity // by public key
	version  string                       // of the registry file loaded
}

// maxConnsPerIdentity bounds one identity's connections, so a stolen kiosk key cannot
// take every connection the server allows.
const maxConnsPerIdentity = 16

var _ server.Authentication = (*natsAuth)(nil)

// Check implements server.Authentication.
func (a *natsAuth) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	if o == nil || o.Nkey == "" || !verifyNonce(o.Nkey, o.Sig, c.GetNonce()) {
		return false
	}
	if o.Nkey == a.ledgerKey {
		c.RegisterUser(&server.User{Username: "lethe-ledger"}) // the global account, no limits
		return true
	}
	a.mu.RLock()
	u := a.users[o.Nkey]
	a.mu.RUnlock()
	if u == nil {
		return false
	}
	if u.Account.NumLocalConnections() >= maxConnsPerIdentity {
		return false
	}
	c.RegisterUser(u)
	return true
}

// verifyNonce checks an NKey's signature of the nonce, as nats-server does for its own
// NKey users.
func verifyNonce(pub, sig string, nonce []byte) bool {
	if sig == "" || len(nonce) == 0 || !nkeys.IsValidPublicUserKey(pub) {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		if raw, err = base64.StdEncoding.DecodeString(sig); err != nil {
			return false
		}
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return false
	}
	return kp.Verify(nonce, raw) == nil
}

// exports makes the ledger's services importable: the kiosk commands, and the two
// read-only JetStream requests auditors use. Only accounts natsAuth makes import them.
func exportLedgerServices(ns *server.Server) error {
	g := ns.GlobalAccount()
	if err := g.AddServiceExportWithResponse(ledger.KioskPrefix+".>", server.Singleton, nil); err != nil {
		return fmt.Errorf("export kiosk service: %w", err)
	}
	if err := g.AddServiceExportWithResponse(ledger.StreamInfoAPI, server.Singleton, nil); err != nil {
		return fmt.Errorf("export stream info: %w", err)
	}
	if err := g.AddServiceExportWithResponse(ledger.DirectGetAPI, server.Streamed, nil); err != nil {
		return fmt.Errorf("export direct get: %w", err)
	}
	return nil
}

// reload reads the registry if it changed, makes accounts for new identities, and closes
// every connection of an identity that is no longer active. It reports whether the
// registry changed.
func (a *natsAuth) reload() (bool, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	version, err := a.reg.Version()
	if err != nil {
		return false, err
	}
	a.mu.RLock()
	same := version == a.version && a.users != nil
	a.mu.RUnlock()
	if same {
		return false, nil
	}
	active, err := a.reg.Active()
	if err != nil {
		return false, err
	}
	users := make(map[string]*server.User, len(active))
	for pub, id := range active {
		acc, err := a.account(id)
		if err != nil {
			return false, err
		}
		p := id.Permissions()
		users[pub] = &server.User{
			Username: id.Label(), Account: acc,
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: p.Publish},
				Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
			},
		}
	}
	// Serve first, then admit: a kiosk that may connect finds its subjects answered (the
	// other order answered a new kiosk's first request with "no responders").
	if a.onKiosks != nil {
		if err := a.onKiosks(kioskNames(active)); err != nil {
			return false, err
		}
	}
	a.mu.Lock()
	old := a.active
	a.users, a.active, a.version = users, active, version
	a.mu.Unlock()
	for pub, id := range old {
		if _, ok := active[pub]; !ok {
			n := a.disconnect(id.Account())
			a.logger.Info("identity no longer active: connections closed", "identity", id.Label(), "connections", n)
		}
	}
	return true, nil
}

// kioskNames are the active kiosks as "branch/kiosk".
func kioskNames(active map[string]identity.Identity) []string {
	var out []string
	for _, id := range active {
		if id.Kind == identity.Kiosk {
			out = append(out, id.Branch+"/"+id.Name)
		}
	}
	return out
}

// serveKiosks tells f the active kiosks now, and after every change of the registry.
func (a *natsAuth) serveKiosks(f func([]string) error) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.onKiosks = f
	a.mu.RLock()
	active := a.active
	a.mu.RUnlock()
	return f(kioskNames(active))
}

// account returns the identity's account, making it and its imports the first time.
// reloadMu is held.
func (a *natsAuth) account(id identity.Identity) (*server.Account, error) {
	name := id.Account()
	if acc, ok := a.accounts[name]; ok {
		return acc, nil
	}
	acc, err := a.ns.RegisterAccount(name)
	if errors.Is(err, server.ErrAccountExists) {
		acc, err = a.ns.LookupAccount(name)
	}
	if err != nil {
		return nil, fmt.Errorf("account for %s: %w", id.Label(), err)
	}
	for _, im := range id.Imports() {
		if err := acc.AddServiceImport(a.ns.GlobalAccount(), im.Subject, ""); err != nil {
			return nil, fmt.Errorf("import %s for %s: %w", im.Subject, id.Label(), err)
		}
	}
	a.accounts[name] = acc
	return acc, nil
}

// disconnect closes every client connection of an account and returns how many.
func (a *natsAuth) disconnect(account string) int {
	conns, err := a.ns.Connz(&server.ConnzOptions{Account: account, Limit: 1 << 16})
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range conns.Conns {
		if a.ns.DisconnectClientByID(c.Cid) == nil {
			n++
		}
	}
	return n
}

// watch reloads the registry every interval until ctx ends, so that `lethe kiosks add`
// and `revoke` take effect on a running server within seconds.
func (a *natsAuth) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := a.reload(); err != nil {
				a.logger.Error("reload identity registry", "err", err)
			}
		}
	}
}

// ledgerConnOptions are the options of the ledger's own in-process connection: its
// in-memory key signs the nonce.
func ledgerConnOptions(kp nkeys.KeyPair) (nats.Option, string, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, "", err
	}
	return nats.Nkey(pub, kp.Sign), pub, nil
}

// ReloadIdentities reads the identity registry now, rather than at the watch's next tick:
// for callers that just changed it and need the change in effect (the simulated kiosks,
// tests). It does nothing with an external NATS.
func (n *Node) ReloadIdentities() error {
	if n.auth == nil {
		return nil
	}
	_, err := n.auth.reload()
	return err
}
