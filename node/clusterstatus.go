package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imagineif/lethe/kek"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterStatus is what `lethe cluster status` shows: the nodes, the streams' and
// buckets' copies, the key-encryption epoch and the erasure window of the cluster.
type ClusterStatus struct {
	Mode       string          `json:"mode"` // "single" or "cluster"
	Cluster    string          `json:"cluster,omitempty"`
	Node       string          `json:"node"`                  // the node that answered
	MetaLeader string          `json:"meta_leader,omitempty"` // the JetStream meta leader
	Nodes      []ClusterMember `json:"nodes,omitempty"`
	Streams    []StreamCopies  `json:"streams"`
	// Epoch is the cluster's key-encryption epoch as last recorded, EpochSince when;
	// NodeEpoch the one this node holds.
	Epoch      uint64    `json:"epoch,omitempty"`
	EpochSince time.Time `json:"epoch_since,omitzero"`
	NodeEpoch  uint64    `json:"node_epoch,omitempty"`
	// KEKRotation is how often the epoch ends; a key destroyed is beyond every KEK that
	// exists within ErasureWindow (two rotations), and its node's projections erase their
	// link within SweepInterval. RotationOverdue says the epoch has not ended for longer
	// than the window: a member does not answer (remove it, or bring it back).
	KEKRotation     string            `json:"kek_rotation,omitempty"`
	ErasureWindow   string            `json:"erasure_window,omitempty"`
	SweepInterval   string            `json:"sweep_interval"`
	RotationOverdue bool              `json:"rotation_overdue,omitempty"`
	Leases          map[string]string `json:"leases,omitempty"` // singleton: the node running it
	LastRotation    *kek.Rotation     `json:"last_rotation,omitempty"`
}

// ClusterMember is one node of the cluster as the member list and the JetStream meta
// group see it.
type ClusterMember struct {
	Name    string `json:"name"`
	Member  bool   `json:"member"` // on the member list: it receives every new KEK
	Leader  bool   `json:"meta_leader,omitempty"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	Seen    string `json:"last_seen,omitempty"`
}

// StreamCopies is one stream or bucket and its copies.
type StreamCopies struct {
	Name     string       `json:"name"`
	Replicas int          `json:"replicas"`
	Sync     string       `json:"sync"`
	Leader   string       `json:"leader,omitempty"`
	Copies   []StreamCopy `json:"copies,omitempty"`
	Messages uint64       `json:"messages"`
}

// StreamCopy is one replica of a stream: behind by Lag operations.
type StreamCopy struct {
	Node    string `json:"node"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	Lag     uint64 `json:"lag,omitempty"`
}

// leaseNames are the cluster's singletons.
var leaseNames = []string{kek.RotationLease, "rules", "checkpoints"}

// ClusterStatus reports the cluster as this node sees it (a single node reports its own
// streams).
func (s *Service) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	n := s.Node
	st := ClusterStatus{Mode: "single", Node: "lethe", SweepInterval: s.sweepInterval.String()}
	lister := n.JS.ListStreams(ctx)
	for info := range lister.Info() {
		sc := StreamCopies{Name: info.Config.Name, Replicas: info.Config.Replicas, Messages: info.State.Msgs, Sync: s.syncMode()}
		if c := info.Cluster; c != nil {
			sc.Leader = c.Leader
			if c.Leader != "" {
				sc.Copies = append(sc.Copies, StreamCopy{Node: c.Leader, Current: true})
			}
			for _, r := range c.Replicas {
				sc.Copies = append(sc.Copies, StreamCopy{Node: r.Name, Current: r.Current, Offline: r.Offline, Lag: r.Lag})
			}
			slices.SortFunc(sc.Copies, func(a, b StreamCopy) int { return strings.Compare(a.Node, b.Node) })
		}
		st.Streams = append(st.Streams, sc)
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return st, fmt.Errorf("list streams: %w", err)
	}
	slices.SortFunc(st.Streams, func(a, b StreamCopies) int { return strings.Compare(a.Name, b.Name) })
	c := n.cluster
	if c == nil {
		return st, nil
	}
	every := cmp.Or(s.cfg.KEKRotation, DefaultKEKRotation)
	st.Mode, st.Cluster, st.Node = "cluster", n.cfg.Cluster.Name, c.id.ID
	st.KEKRotation, st.ErasureWindow = every.String(), (2 * every).String()
	st.NodeEpoch = c.ring.Current()
	var err error
	if st.Epoch, st.EpochSince, err = c.members.EpochAt(ctx); err != nil {
		return st, err
	}
	st.RotationOverdue = !st.EpochSince.IsZero() && s.clock().Sub(st.EpochSince) > 2*every
	members, err := c.members.List(ctx)
	if err != nil {
		return st, err
	}
	byName := map[string]*ClusterMember{}
	for _, m := range members {
		byName[m.ID] = &ClusterMember{Name: m.ID, Member: true}
	}
	if n.NS != nil {
		if jsz, err := n.NS.Jsz(&server.JSzOptions{}); err == nil && jsz.Meta != nil {
			st.MetaLeader = jsz.Meta.Leader
			if st.MetaLeader != "" {
				m := cmp.Or(byName[st.MetaLeader], &ClusterMember{Name: st.MetaLeader})
				m.Leader, m.Current = true, true
				byName[st.MetaLeader] = m
			}
			for _, r := range jsz.Meta.Replicas {
				m := cmp.Or(byName[r.Name], &ClusterMember{Name: r.Name})
				m.Current, m.Offline, m.Seen = r.Current, r.Offline, r.Active.Round(time.Millisecond).String()
				byName[r.Name] = m
			}
		}
	}
	for _, m := range byName {
		st.Nodes = append(st.Nodes, *m)
	}
	slices.SortFunc(st.Nodes, func(a, b ClusterMember) int { return strings.Compare(a.Name, b.Name) })
	st.Leases = map[string]string{}
	for _, name := range leaseNames {
		if e, err := c.leases.Get(ctx, name); err == nil {
			st.Leases[name] = string(e.Value())
		}
	}
	s.rotMu.Lock()
	if s.lastRotation != nil {
		r := *s.lastRotation
		st.LastRotation = &r
	}
	s.rotMu.Unlock()
	return st, nil
}

func (s *Service) syncMode() string { return cmp.Or(s.cfg.Sync, "always") }

func (s *Service) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// noteRotation keeps the last rotation this node led, for the status.
func (s *Service) noteRotation(r kek.Rotation) {
	s.rotMu.Lock()
	s.lastRotation = &r
	s.rotMu.Unlock()
	s.cfg.Logger.Info("cluster: key-encryption epoch ended", "epoch", r.Epoch, "rewrapped", r.Rewraps, "took", r.Duration.Round(time.Millisecond))
}

// RemoveNode takes a node off the cluster's member list: the next epoch leaves it out,
// after which its disk unwraps nothing new, and rotations held by a member that no longer
// answers resume. The node itself is stopped (or lost) first.
func (s *Service) RemoveNode(ctx context.Context, name string) error {
	c := s.Node.cluster
	if c == nil {
		return schemas.Errorf(schemas.CodeConflict, "this lethe is a single node, not a cluster's")
	}
	if name == c.id.ID {
		return schemas.Errorf(schemas.CodeInvalid, "a node cannot remove itself: ask another node")
	}
	members, err := c.members.List(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(members, func(p kek.Peer) bool { return p.ID == name }) {
		return schemas.Errorf(schemas.CodeNotFound, "no such node on the member list")
	}
	return c.members.Remove(ctx, name)
}

// clusterAPI is the service as the staff API's desk.Cluster.
type clusterAPI struct{ s *Service }

func (c clusterAPI) ClusterStatus(ctx context.Context) (any, error) { return c.s.ClusterStatus(ctx) }

func (c clusterAPI) RemoveNode(ctx context.Context, name string) error {
	return c.s.RemoveNode(ctx, name)
}
