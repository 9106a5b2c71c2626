package ledger

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testCluster starts three embedded JetStream servers in one cluster, fsync before every
// acknowledgement, creates the CIRC stream with three replicas, and returns an appender
// connected to the first server. Only a replicated stream has messages that are proposed
// but not yet stored.
func testCluster(t *testing.T) (*appender, jetstream.Stream) {
	t.Helper()
	// JetStream in a cluster needs its routes configured before it starts, so each server
	// needs the others' route ports up front: free ones, found by listening.
	var routes []string
	var ports []int
	var listeners []net.Listener
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l) // held until all three are chosen: three ports
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		routes = append(routes, fmt.Sprintf("nats://%s", l.Addr()))
	}
	for _, l := range listeners {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var servers []*server.Server
	for i := range 3 {
		opts := &server.Options{ServerName: fmt.Sprintf("n%d", i), JetStream: true,
			StoreDir: filepath.Join(t.TempDir(), "nats"), Host: "127.0.0.1", Port: -1,
			NoSigs: true, NoLog: true, SyncAlways: true,
			Cluster: server.ClusterOpts{Name: "lethe", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, ns)
	}
	for _, ns := range servers {
		ns.Start()
		t.Cleanup(ns.Shutdown)
	}
	for _, ns := range servers {
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
	}
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The stream can be created once the cluster has elected its meta leader.
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, _, err := EnsureStream(ctx, js, 3, 0)
		if err == nil {
			// And appended to once the stream's own group has a leader: before that an
			// append finds no responders.
			var info *jetstream.StreamInfo
			if info, err = st.Info(ctx); err == nil && (info.Cluster == nil || info.Cluster.Leader == "") {
				err = errors.New("the stream has no leader yet")
			}
		}
		cancel()
		if err == nil {
			return &appender{nc: nc, timeout: 10 * time.Second}, st
		}
		select {
		case <-deadline:
			t.Fatalf("create replicated stream: %v", err)
		case <-tick.C:
		}
	}
}

// TestRetryInFlightIsUnavailable: a retry of a command of several events that reaches a
// replicated stream while the first attempt's message is proposed but not yet stored
// is refused by JetStream with "duplicate message id is in process" (10158). The ledger
// used to pass that on as an internal error; it is "unavailable, retry with the same
// command id". The two attempts are sent back to back on one connection, so the retry is
// checked while the first is in flight.
func TestRetryInFlightIsUnavailable(t *testing.T) {
	t.Parallel()
	a, st := testCluster(t)
	inFlight := 0
	for round := range 5 {
		id := uuid.NewString()
		subject := fmt.Sprintf("circ.item.retry%d", round)
		first := mustReq(t, id, Expect{Subject: subject}, testEvents(subject, 2))
		retry := mustReq(t, id, Expect{Subject: subject}, testEvents(subject, 2))
		a.commit([]unit{{first}, {retry}})
		checkLanded(t, st, first, <-first.done)
		switch r := <-retry.done; {
		case errors.Is(r.err, errInProcess):
			inFlight++
			if code := schemas.CodeOf(r.err); code != schemas.CodeUnavailable {
				t.Errorf("round %d: retry in flight has code %s, want unavailable", round, code)
			}
		case errors.Is(r.err, errDuplicate):
			// The first attempt was stored before the retry was checked: answered from the
			// stream.
		default:
			t.Errorf("round %d: retry = %v (code %s), want errInProcess or errDuplicate", round, r.err, schemas.CodeOf(r.err))
		}
	}
	if inFlight == 0 {
		t.Fatal("no retry reached the stream while its first attempt was in flight: the test did not test anything")
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 5 {
		t.Errorf("stream holds %d messages, want 5 (each first attempt's, its two events in one)", info.State.Msgs)
	}
}
