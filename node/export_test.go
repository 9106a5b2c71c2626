package node

import (
	"context"

	"github.com/imagineif/lethe/kek"
)

// RotateKEK ends the cluster's key-encryption epoch now, led by this node, for tests that
// must know when it happens (they run with a rotation interval longer than themselves, so
// that no other rotation runs beside this one).
func (s *Service) RotateKEK(ctx context.Context) (kek.Rotation, error) {
	c := s.cluster
	peers, err := c.members.List(ctx)
	if err != nil {
		return kek.Rotation{}, err
	}
	return kek.Rotate(ctx, s.NC, c.id, c.ring, c.keys, peers)
}

// HasStaffAccount reports whether the node's staff store holds the account, for tests
// that wait for one to arrive from the cluster without signing in.
func (s *Service) HasStaffAccount(name string) bool {
	if s.staff == nil {
		return false
	}
	_, err := s.staff.Get(name)
	return err == nil
}
