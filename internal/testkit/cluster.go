package testkit

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartJetStreamCluster starts n embedded NATS servers with JetStream that form one
// cluster over routes on loopback, each with its store in its own temporary directory and
// fsync before every acknowledgement, and a client connection to each. It returns once
// the cluster has a JetStream meta leader. Everything is closed when the test ends.
func StartJetStreamCluster(t testing.TB, n int) []*JetStream {
	t.Helper()
	// Route ports chosen first, so every server can name all the others, as a cluster's
	// configuration does.
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var nodes []*JetStream
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), JetStream: true,
			StoreDir: filepath.Join(t.TempDir(), "nats"), Host: "127.0.0.1", Port: -1,
			NoSigs: true, NoLog: true, SyncAlways: true,
			Cluster: server.ClusterOpts{Name: "lethe-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		}
		ns, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		j := &JetStream{Server: ns}
		t.Cleanup(j.Close)
		nodes = append(nodes, j)
	}
	for _, j := range nodes {
		if !j.Server.ReadyForConnections(30 * time.Second) {
			t.Fatal("embedded NATS server not ready")
		}
		var err error
		if j.NC, err = nats.Connect("", nats.InProcessServer(j.Server)); err != nil {
			t.Fatal(err)
		}
		if j.JS, err = jetstream.New(j.NC); err != nil {
			t.Fatal(err)
		}
	}
	WaitForWithin(t, "a JetStream meta leader", 30*time.Second, func() bool {
		for _, j := range nodes {
			if j.Server.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	return nodes
}

// StoreDir is the server's JetStream store directory.
func (j *JetStream) StoreDir() string { return j.Server.StoreDir() }
