package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/imagineif/lethe/kek"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/lease"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultKEKRotation is how often a cluster ends its key-encryption epoch: with the
// rotation's commit, keys destroyed before it are unwrappable on every node, so a
// cluster's erasure window is at most two of these (docs/design.md §11).
const DefaultKEKRotation = time.Minute

// leaseTTL is the time to live of the cluster's leases: a singleton whose node died
// resumes on another within it.
const leaseTTL = 10 * time.Second

// Files of a cluster's node, beside the keystore.
const (
	kekFile      = "kek"           // the node's KEKs, sealed under its master key, rewritten in place
	identityFile = "node-identity" // the node's Ed25519 and X25519 keys, sealed under its master key
)

// clusterNode is a node's part in a cluster: its identity, its KEKs, the bucket of keys
// every node shares, the member list, its answers to rotations, and the leases.
type clusterNode struct {
	id      kek.Identity
	ring    *kek.Keyring
	keys    *kek.Store
	members *kek.Members
	member  *kek.Member
	leases  jetstream.KeyValue
}

// probeKind and probeID name a key made by the node that starts a cluster: a node that
// cannot unwrap it holds a KEK that is not the cluster's (it started an epoch of its own
// and lost the race to record it) and learns the cluster's from a member.
const probeKind, probeID = "check", "epoch"

// joinCluster opens the node's KEKs and identity, puts it on the member list, answers
// rotations, and makes sure it holds the cluster's current KEK before anything is
// wrapped or unwrapped: the first node of a new cluster starts the first epoch; any other
// learns it from a member.
func (n *Node) joinCluster(ctx context.Context, master keystore.MasterKey) error {
	mk, err := master.Derive("cluster node")
	if err != nil {
		return err
	}
	defer clear(mk[:])
	c := &clusterNode{}
	if c.ring, err = kek.OpenKeyring(filepath.Join(n.cfg.Data, kekFile), mk); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.id, err = kek.LoadIdentity(filepath.Join(n.cfg.Data, identityFile), n.cfg.Cluster.Node, mk); err != nil {
		return fmt.Errorf("cluster: %w (a node's identity is made with its name: give the same --cluster-node)", err)
	}
	// The buckets are made by whichever node comes first; until the cluster has placed
	// a new bucket's copies, its creation can time out.
	var peers []kek.Peer
	err = untilPlaced(ctx, func(ctx context.Context) (err error) {
		if c.members == nil {
			if c.members, err = kek.OpenMembers(ctx, n.JS, n.cfg.Replicas); err != nil {
				return err
			}
		}
		if c.keys == nil {
			if c.keys, err = kek.OpenStore(ctx, n.JS, c.ring, n.cfg.Replicas); err != nil {
				return err
			}
		}
		if c.leases == nil {
			if c.leases, err = lease.Open(ctx, n.JS, leaseTTL, n.cfg.Replicas); err != nil {
				return err
			}
		}
		peers, err = c.members.List(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if c.member, err = kek.Serve(n.NC, c.id, c.ring, peers); err != nil {
		return fmt.Errorf("cluster: answer rotations: %w", err)
	}
	c.member.Follow(c.members)
	n.cluster = c
	// Joining holds the epoch lock: a rotation reads the member list when it begins, so
	// one running while this node joins and learns the KEK would end that KEK without it,
	// and what this node wraps meanwhile would be lost. Under the lock no rotation runs;
	// the next one includes this node.
	return lease.Once(ctx, c.leases, lease.Config{Name: kek.EpochLock, Holder: c.id.ID, TTL: leaseTTL, Logger: n.cfg.Logger},
		func(ctx context.Context) error {
			if err := c.members.Join(ctx, c.id.Peer()); err != nil {
				return err
			}
			return c.ensureEpoch(ctx, n.NC, n.cfg.Logger)
		})
}

// untilPlaced retries f, each try with its own time limit, for up to a minute while it
// times out: a cluster's JetStream answers before it can place new streams' copies.
func untilPlaced(ctx context.Context, f func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(tctx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) ||
			!(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
				strings.Contains(err.Error(), "insufficient resources") || strings.Contains(err.Error(), "no suitable peers")) {
			return err
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ensureEpoch returns once the node holds the cluster's current KEK: the one that opens
// the probe key. A new cluster's nodes each start an epoch of their own; the first to
// create the probe key (a KV create, which only one can win) has the cluster's, records
// the first epoch, and the others learn it from a member. A node behind, or holding a KEK
// that lost that race, learns the current one from a member.
func (c *clusterNode) ensureEpoch(ctx context.Context, nc *nats.Conn, logger *slog.Logger) error {
	deadline := time.Now().Add(time.Minute)
	var last error
	for {
		if done, err := c.holdsEpoch(ctx, logger); done || err != nil {
			return err
		}
		if err := c.catchUp(ctx, nc, logger); err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: this node could not learn the cluster's key-encryption key from a member within a minute (are the other nodes up, and is this node on their member list?): %v", last)
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// catchUp learns the KEKs of the first member that gives them.
func (c *clusterNode) catchUp(ctx context.Context, nc *nats.Conn, logger *slog.Logger) error {
	peers, err := c.members.List(ctx)
	if err != nil {
		return err
	}
	last := errors.New("no other member")
	for _, p := range peers {
		if p.ID == c.id.ID {
			continue
		}
		e, err := kek.CatchUp(ctx, nc, c.id, c.ring, p)
		if err == nil {
			logger.Info("cluster: learned the key-encryption key", "epoch", e, "from", p.ID)
			return nil
		}
		last = err
	}
	return last
}

// holdsEpoch reports whether the node's KEK is the cluster's current one, starting a new
// cluster's first epoch if no node has; false: learn it from a member.
func (c *clusterNode) holdsEpoch(ctx context.Context, logger *slog.Logger) (bool, error) {
	epoch, err := c.members.Epoch(ctx)
	if err != nil {
		return false, nil
	}
	if c.ring.Current() == 0 {
		if epoch != 0 {
			return false, nil // a new node of a running cluster
		}
		if _, err := c.ring.Start(); err != nil {
			return false, fmt.Errorf("cluster: %w", err)
		}
	}
	key, err := c.keys.Get(ctx, probeKind, probeID)
	clear(key)
	switch {
	case errors.Is(err, kek.ErrNotFound):
		if _, err := c.keys.Create(ctx, probeKind, probeID); errors.Is(err, kek.ErrExists) {
			return false, nil // another node's KEK won: look again
		} else if err != nil {
			return false, err
		}
		logger.Info("cluster: started the first key-encryption epoch", "node", c.id.ID)
	case err != nil:
		return false, nil // not the cluster's KEK, or behind it
	}
	// This node's KEK opens the probe: it is the cluster's.
	if epoch == 0 {
		if _, err := c.members.Bootstrap(ctx); err != nil {
			return false, err
		}
		return true, nil
	}
	return c.ring.Current() >= epoch, nil
}

// remoteKeys is the bucket of keys as keystore.OpenRemote uses it. A key wrapped under an
// epoch this node does not hold yet (it was away, or its projector reads a key re-wrapped
// by a rotation it has not heard of) makes it learn the KEK from a member, once, and read
// again.
type remoteKeys struct {
	s       *kek.Store
	catchUp func(context.Context) error
}

// remoteErr says what a failure of the bucket means to the keystore: no such key, a key
// that exists, a value that does not open (damage: kept as it is), or else a failure to
// reach the bucket or the current KEK, which is retried (keystore.ErrUnavailable).
func remoteErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kek.ErrNotFound):
		return keystore.ErrNotFound
	case errors.Is(err, kek.ErrExists):
		return keystore.ErrExists
	case errors.Is(err, kek.ErrWrapped):
		return err
	}
	return fmt.Errorf("%w: %w", keystore.ErrUnavailable, err)
}

func (r remoteKeys) Create(ctx context.Context, kind, name string) ([]byte, error) {
	k, err := r.s.Create(ctx, kind, name)
	return k, remoteErr(err)
}

func (r remoteKeys) Get(ctx context.Context, kind, name string) ([]byte, error) {
	k, err := r.s.Get(ctx, kind, name)
	if errors.Is(err, kek.ErrNoEpoch) && r.catchUp != nil {
		if cerr := r.catchUp(ctx); cerr != nil {
			return nil, fmt.Errorf("%w (and learning the current one failed: %v)", err, cerr)
		}
		k, err = r.s.Get(ctx, kind, name)
	}
	return k, remoteErr(err)
}

func (r remoteKeys) Destroy(ctx context.Context, kind, name string) error {
	return remoteErr(r.s.Destroy(ctx, kind, name))
}

func (r remoteKeys) List(ctx context.Context, kind string) ([]keystore.RemoteEntry, error) {
	listed, err := r.s.List(ctx, kind)
	if err != nil {
		return nil, err
	}
	out := make([]keystore.RemoteEntry, len(listed))
	for i, l := range listed {
		out[i] = keystore.RemoteEntry{Name: l.ID, Created: l.Created}
	}
	return out, nil
}

// openClusterKeys opens a cluster's node: the master key, then NATS and JetStream (the
// keys are on the cluster), the node's KEKs, and the keystore on the cluster's bucket.
func (n *Node) openClusterKeys(ctx context.Context) error {
	cfg := n.cfg
	if cfg.MasterKey == "" && keystore.RotationPending(masterFile(cfg)) {
		return fmt.Errorf("master key: %w", keystore.ErrClusterNode)
	}
	master, err := loadMaster(cfg)
	if err != nil {
		return err
	}
	n.master, n.masterFile = master, masterFile(cfg)
	if err := n.startNATS(); err != nil {
		return err
	}
	if n.JS, err = jetstream.New(n.NC); err != nil {
		return err
	}
	if err := waitForMeta(ctx, n.JS); err != nil {
		return err
	}
	if err := n.joinCluster(ctx, master); err != nil {
		return err
	}
	n.Keys, err = keystore.OpenRemote(filepath.Join(cfg.Data, "keystore"), master,
		remoteKeys{s: n.cluster.keys, catchUp: func(ctx context.Context) error { return n.cluster.catchUp(ctx, n.NC, cfg.Logger) }}, cfg.Logger)
	if err != nil {
		return inUse(cfg.Data, err)
	}
	return nil
}

// runCluster runs a cluster node's own loops until ctx ends: the epoch rotations (on the
// holder of their lease) and the catch-up of a node left behind, and the member list its
// rotation answers accept. It returns when they have stopped.
func (n *Node) runCluster(ctx context.Context, every time.Duration, rotated func(kek.Rotation)) {
	c := n.cluster
	var wg sync.WaitGroup
	wg.Go(func() {
		kek.RunRotations(ctx, n.NC, c.id, c.ring, c.keys, c.members, kek.RotationConfig{
			Every: every, Lease: c.leases, TTL: leaseTTL, Logger: n.cfg.Logger, Rotated: rotated})
	})
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if peers, err := c.members.List(ctx); err == nil {
				c.member.SetPeers(peers)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	wg.Wait()
}

// singleton runs work on one node of the cluster at a time, under the lease name; on a
// single node it simply runs it. It returns when ctx ends and work has returned.
func (n *Node) singleton(ctx context.Context, name string, work func(context.Context)) {
	if n.cluster == nil {
		work(ctx)
		return
	}
	lease.Run(ctx, n.cluster.leases, lease.Config{Name: name, Holder: n.cluster.id.ID, TTL: leaseTTL, Logger: n.cfg.Logger}, work)
}

// Clustered reports whether the node is one of a cluster's.
func (n *Node) Clustered() bool { return n.cluster != nil }

// clusterOrphanGrace is how old a key in the cluster's bucket must be before a node's
// start-up reconciliation may take it for an orphan: a key younger may belong to a
// command another node is still appending (a command's retries end well within it).
const clusterOrphanGrace = 5 * time.Minute
