package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/ledger"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// KioskClients connects simulated kiosks (the demo, the benchmark, the tests) the way real
// ones connect: each is an identity in the data directory, with its own key, its own
// account and its own connection, in-process.
type KioskClients struct {
	s *Service

	mu    sync.Mutex
	conns map[string]*nats.Conn // by "branch/kiosk"
}

func NewKioskClients(s *Service) *KioskClients {
	return &KioskClients{s: s, conns: map[string]*nats.Conn{}}
}

// conn returns the kiosk's connection, making its identity the first time.
func (k *KioskClients) Conn(branch, kiosk string) (*nats.Conn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if nc, ok := k.conns[branch+"/"+kiosk]; ok {
		return nc, nil
	}
	if k.s.NS == nil || k.s.auth == nil {
		return nil, errors.New("simulated kiosks need the embedded NATS server")
	}
	reg := identity.Open(k.s.cfg.Data)
	_, seed, err := reg.Add(identity.Kiosk, branch, kiosk, time.Now())
	if errors.Is(err, identity.ErrExists) {
		// Made by an earlier run: its key was only ever in that run's memory.
		if _, err = reg.Revoke(identity.Kiosk, branch, kiosk, time.Now()); err == nil {
			_, seed, err = reg.Add(identity.Kiosk, branch, kiosk, time.Now())
		}
	}
	if err != nil {
		return nil, err
	}
	if _, err := k.s.auth.reload(); err != nil { // rather than wait for the watch
		return nil, err
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect("", nats.InProcessServer(k.s.NS), nats.Name("kiosk "+branch+"/"+kiosk), nats.Nkey(pub, kp.Sign))
	if err != nil {
		return nil, fmt.Errorf("connect kiosk %s/%s: %w", branch, kiosk, err)
	}
	k.conns[branch+"/"+kiosk] = nc
	return nc, nil
}

// request sends one kiosk command as the kiosk.
func (k *KioskClients) Request(ctx context.Context, branch, kiosk, cmd string, raw []byte) (*nats.Msg, error) {
	nc, err := k.Conn(branch, kiosk)
	if err != nil {
		return nil, err
	}
	return nc.RequestWithContext(ctx, ledger.KioskSubject(branch, kiosk, cmd), raw)
}

// close closes every kiosk's connection.
func (k *KioskClients) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, nc := range k.conns {
		nc.Close()
	}
	clear(k.conns)
}
