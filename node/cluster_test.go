package node_test

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
)

// freePorts reserves n loopback ports and frees them for the servers to take.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	return ports
}

// TestNodesFormACluster: three nodes' embedded servers, each with Lethe's own client
// authentication, form one JetStream cluster over routes on loopback, and the CIRC stream
// is kept in three copies, current on every node.
func TestNodesFormACluster(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	nodes := make([]*node.Node, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	// Together, as machines of a cluster start: a clustered server is ready only once it
	// sees a quorum.
	for i := range 3 {
		wg.Go(func() {
			nodes[i], errs[i] = node.Open(t.Context(), node.Config{
				Data: filepath.Join(t.TempDir(), "data"), NATSListen: "off", Sync: "always", Location: time.UTC,
				Logger: slog.New(slog.DiscardHandler),
				Cluster: node.ClusterConfig{Name: "library", Node: fmt.Sprintf("n%d", i+1),
					Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes},
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		t.Cleanup(func() { nodes[i].Close() })
	}
	testkit.WaitForWithin(t, "CIRC current on three nodes", 90*time.Second, func() bool {
		info, err := nodes[2].Stream.Info(testkit.Context(t))
		if err != nil || info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		return true
	})
	info, err := nodes[0].Stream.Info(testkit.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Name != ledger.StreamName {
		t.Errorf("stream %q", info.Config.Name)
	}
}

// TestClusterRoutesNeedTLSOffLoopback: a route listener on a network address without TLS
// is refused before anything starts.
func TestClusterRoutesNeedTLSOffLoopback(t *testing.T) {
	t.Parallel()
	_, err := node.Open(testkit.Context(t), node.Config{
		Data: filepath.Join(t.TempDir(), "data"), NATSListen: "off", Location: time.UTC, Logger: slog.New(slog.DiscardHandler),
		Cluster: node.ClusterConfig{Name: "library", Node: "n1", Listen: "0.0.0.0:6222", Routes: []string{"nats://10.0.0.2:6222"}},
	})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("open = %v, want a refusal of routes in the clear", err)
	}
}
