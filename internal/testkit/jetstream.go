package testkit

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream is an embedded NATS server with JetStream and a client connection to it, in
// the test's process.
type JetStream struct {
	Server *server.Server
	NC     *nats.Conn
	JS     jetstream.JetStream
}

// StartJetStream starts an embedded NATS server with JetStream, as nats-server's own tests
// do: its store in a temporary directory, fsync before every acknowledgement, no
// listener (the connection is in-process), no signal handlers, no log. Each opt changes
// the options before the server starts (a store directory of its own, a storage limit).
// The connection and the server are closed when the test ends, or earlier by Close.
func StartJetStream(t testing.TB, opts ...func(*server.Options)) *JetStream {
	t.Helper()
	o := &server.Options{JetStream: true, StoreDir: filepath.Join(t.TempDir(), "nats"), Port: -1,
		DontListen: true, NoSigs: true, NoLog: true, SyncAlways: true}
	for _, opt := range opts {
		opt(o)
	}
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	j := &JetStream{Server: ns}
	t.Cleanup(j.Close)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS server not ready")
	}
	if j.NC, err = nats.Connect("", nats.InProcessServer(ns)); err != nil {
		t.Fatal(err)
	}
	if j.JS, err = jetstream.New(j.NC); err != nil {
		t.Fatal(err)
	}
	return j
}

// Close closes the connection and shuts the server down, waiting until it is down, so
// that another server may open its store directory. Closing twice is harmless.
func (j *JetStream) Close() {
	if j.NC != nil {
		j.NC.Close()
	}
	j.Server.Shutdown()
	j.Server.WaitForShutdown()
}
