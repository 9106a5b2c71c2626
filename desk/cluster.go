package desk

import (
	"context"
	"net/http"

	"github.com/imagineif/lethe/schemas"
)

// Cluster is a cluster's membership as the API sees it (node.Service).
type Cluster interface {
	// ClusterStatus reports the nodes, the streams' copies, the key-encryption epoch and
	// the erasure window; a single node reports its streams.
	ClusterStatus(ctx context.Context) (any, error)
	// RemoveNode takes a node off the member list.
	RemoveNode(ctx context.Context, name string) error
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	if s.Cluster == nil {
		s.fail(w, r, schemas.Errorf(schemas.CodeUnavailable, "no cluster status on this server"))
		return
	}
	st, err := s.Cluster.ClusterStatus(r.Context())
	if err != nil {
		s.logger().Error("cluster status", "err", err)
		s.fail(w, r, schemas.Errorf(schemas.CodeUnavailable, "the cluster's status cannot be read now: %v", err))
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) {
	if s.Cluster == nil {
		s.fail(w, r, schemas.Errorf(schemas.CodeUnavailable, "this server is not a cluster's node"))
		return
	}
	name := r.PathValue("name")
	if err := s.Cluster.RemoveNode(r.Context(), name); err != nil {
		s.fail(w, r, err) // coded: conflict on a single node, not_found, invalid; else internal
		return
	}
	s.logger().Info("cluster: node removed from the member list", "node", name, "by", requester(r).Name)
	WriteJSON(w, http.StatusOK, map[string]string{"removed": name})
}
