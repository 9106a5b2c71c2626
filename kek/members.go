package kek

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/imagineif/lethe/lease"
)

// Members are the cluster's nodes, each with its public keys, in a replicated KV bucket:
// the rotation sends the next KEK to every member, and a member accepts rotation messages
// only from members. Public keys only: the bucket is safe to keep forever.
const MembersBucket = "LETHE_NODES"

// epochKey is the bucket's key holding the current epoch, written after each commit, so
// that a node that was away knows it is behind. An epoch number is no secret.
const epochKey = "epoch"

// member is a member's entry in the bucket.
type member struct {
	Sign []byte `json:"sign"` // Ed25519 public key
	Box  []byte `json:"box"`  // X25519 public key
}

// LoadIdentity opens the node's identity at path, sealed under master, or makes and
// saves one named id if there is none.
func LoadIdentity(path, id string, master [Size]byte) (Identity, error) {
	aead, _ := chacha20poly1305.NewX(master[:])
	ad := []byte("lethe kek identity\x00" + id)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		ident, err := NewIdentity(id)
		if err != nil {
			return Identity{}, err
		}
		plain := append(ident.Sign.Seed(), ident.Box.Bytes()...)
		defer clear(plain)
		nonce := make([]byte, chacha20poly1305.NonceSizeX)
		rand.Read(nonce)
		if err := writeSynced(path, aead.Seal(nonce, nonce, plain, ad)); err != nil {
			return Identity{}, err
		}
		return ident, nil
	}
	if err != nil {
		return Identity{}, fmt.Errorf("kek: read the node identity: %w", err)
	}
	if len(raw) < chacha20poly1305.NonceSizeX {
		return Identity{}, ErrBadFile
	}
	plain, err := aead.Open(nil, raw[:chacha20poly1305.NonceSizeX], raw[chacha20poly1305.NonceSizeX:], ad)
	if err != nil || len(plain) != ed25519.SeedSize+32 {
		return Identity{}, ErrBadFile
	}
	defer clear(plain)
	box, err := ecdh.X25519().NewPrivateKey(plain[ed25519.SeedSize:])
	if err != nil {
		return Identity{}, ErrBadFile
	}
	return Identity{ID: id, Sign: ed25519.NewKeyFromSeed(plain[:ed25519.SeedSize]), Box: box}, nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("kek: write the node identity: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("kek: write the node identity: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("kek: write the node identity: %w", err)
	}
	return f.Close()
}

// Members is the member list of a cluster.
type Members struct {
	kv jetstream.KeyValue
}

// OpenMembers opens (or creates) the member bucket.
func OpenMembers(ctx context.Context, js jetstream.JetStream, replicas int) (*Members, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: MembersBucket, History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("kek: open the member bucket: %w", err)
	}
	return &Members{kv: kv}, nil
}

// Join adds (or updates) a node. Adding a node is an operator's act: its key is then
// trusted with every KEK.
func (m *Members) Join(ctx context.Context, p Peer) error {
	raw, _ := json.Marshal(member{Sign: p.Sign, Box: p.Box.Bytes()})
	if _, err := m.kv.Put(ctx, "node."+p.ID, raw); err != nil {
		return fmt.Errorf("kek: add node %s: %w", p.ID, err)
	}
	return nil
}

// Remove takes a node out: the next rotation leaves it out, after which its disk unwraps
// nothing new.
func (m *Members) Remove(ctx context.Context, id string) error {
	if err := m.kv.Purge(ctx, "node."+id); err != nil {
		return fmt.Errorf("kek: remove node %s: %w", id, err)
	}
	return nil
}

// List returns the members, by id.
func (m *Members) List(ctx context.Context) ([]Peer, error) {
	lister, err := m.kv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, fmt.Errorf("kek: list nodes: %w", err)
	}
	var out []Peer
	if lister != nil {
		for k := range lister.Keys() {
			if len(k) < 6 || k[:5] != "node." {
				continue
			}
			e, err := m.kv.Get(ctx, k)
			if err != nil {
				continue // removed meanwhile
			}
			var mb member
			if json.Unmarshal(e.Value(), &mb) != nil || len(mb.Sign) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("kek: node %s has a damaged entry", k[5:])
			}
			box, err := ecdh.X25519().NewPublicKey(mb.Box)
			if err != nil {
				return nil, fmt.Errorf("kek: node %s has a damaged entry", k[5:])
			}
			out = append(out, Peer{ID: k[5:], Sign: ed25519.PublicKey(mb.Sign), Box: box})
		}
	}
	slices.SortFunc(out, func(a, b Peer) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

// Epoch is the cluster's current epoch, as the last committed rotation wrote it.
func (m *Members) Epoch(ctx context.Context) (uint64, error) {
	e, err := m.kv.Get(ctx, epochKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(e.Value()), 10, 64)
}

// Bootstrap records epoch 1 as the cluster's first, unless an epoch is recorded already:
// it reports whether this call recorded it. The first node of a new cluster calls it after
// Keyring.Start; a node that loses the race adopts the winner's KEK (CatchUp).
func (m *Members) Bootstrap(ctx context.Context) (bool, error) {
	_, err := m.kv.Create(ctx, epochKey, []byte("1"))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("kek: record the first epoch: %w", err)
	}
	return true, nil
}

// EpochAt is Epoch and when it was recorded (zero before the first).
func (m *Members) EpochAt(ctx context.Context) (uint64, time.Time, error) {
	e, err := m.kv.Get(ctx, epochKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, time.Time{}, nil
	} else if err != nil {
		return 0, time.Time{}, err
	}
	epoch, err := strconv.ParseUint(string(e.Value()), 10, 64)
	return epoch, e.Created(), err
}

func (m *Members) setEpoch(ctx context.Context, epoch uint64) error {
	_, err := m.kv.Put(ctx, epochKey, []byte(strconv.FormatUint(epoch, 10)))
	return err
}

// RotationLease is the name of the rotation's lease: whoever holds it leads the
// rotations. EpochLock is held for each rotation by its leader, and by a node while it
// joins the cluster and learns the KEK, so that no rotation leaves out a node that joined
// after it read the member list.
const (
	RotationLease = "kek-rotation"
	EpochLock     = "kek-epoch"
)

// RotationConfig is the rotation loop of one node.
type RotationConfig struct {
	Every  time.Duration // how often the epoch ends: the cluster's erasure window
	Lease  jetstream.KeyValue
	TTL    time.Duration // the lease's time to live (the lease bucket's)
	Logger *slog.Logger
	// Rotated is told of each rotation this node led (for metrics and tests); nil: none.
	Rotated func(Rotation)
}

// RunRotations runs on every node until ctx ends: the node holding the "kek-rotation"
// lease ends the epoch every cfg.Every with the members of the moment; every node, leader
// or not, checks every cfg.Every that it is not behind the cluster's epoch and catches up
// from a member if it is.
func RunRotations(ctx context.Context, nc *nats.Conn, self Identity, ring *Keyring, store *Store, members *Members, cfg RotationConfig) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		lease.Run(ctx, cfg.Lease, lease.Config{Name: RotationLease, Holder: self.ID, TTL: cfg.TTL, Logger: logger},
			func(lctx context.Context) {
				tick := time.NewTicker(cfg.Every)
				defer tick.Stop()
				for {
					select {
					case <-lctx.Done():
						return
					case <-tick.C:
					}
					// The member list is read, and the epoch ended, under the epoch lock,
					// which a joining node holds while it joins (Join): no rotation leaves
					// out a node that joined after its list was read.
					err := lease.Once(lctx, cfg.Lease, lease.Config{Name: EpochLock, Holder: self.ID, TTL: cfg.TTL, Logger: logger},
						func(ctx context.Context) error {
							peers, err := members.List(ctx)
							if err != nil {
								return err
							}
							rot, err := Rotate(ctx, nc, self, ring, store, peers)
							if err != nil {
								return err
							}
							if cfg.Rotated != nil {
								cfg.Rotated(rot)
							}
							return members.setEpoch(ctx, rot.Epoch)
						})
					if err != nil && lctx.Err() == nil {
						// The old epoch stays; the erasure report says when a deadline passes.
						logger.Error("kek rotation failed", "err", err)
					}
				}
			})
	}()
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-tick.C:
		}
		cluster, err := members.Epoch(ctx)
		if err != nil || cluster <= ring.Current() {
			continue
		}
		peers, err := members.List(ctx)
		if err != nil {
			continue
		}
		for _, p := range peers {
			if p.ID == self.ID {
				continue
			}
			if e, err := CatchUp(ctx, nc, self, ring, p); err == nil {
				logger.Info("kek: caught up", "epoch", e, "from", p.ID)
				break
			}
		}
	}
}
