package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// nodeConfig is what a Lethe process needs to open its data.
type nodeConfig struct {
	Data          string // data directory
	NATSURL       string // external NATS; empty: embedded server
	NATSListen    string // embedded server's client listener, host:port; "off": in-process only
	Sync          string // "always" (fsync before every ack) or a sync interval
	Replicas      int    // stream replicas (external cluster)
	MasterKeyFile string // master key file; default <data>/master.key, generated
	MasterKey     string // master key from the environment (LETHE_MASTER_KEY)
	Location      *time.Location
	Logger        *slog.Logger
}

// node is an open Lethe data directory: NATS, stream, keystore and projections.
type node struct {
	cfg    nodeConfig
	ns     *server.Server // nil with an external NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	keys   *keystore.Store
	proj   *projections.Store
	v      *schemas.Validator

	closeOnce sync.Once
}

func openNode(ctx context.Context, cfg nodeConfig) (n *node, err error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	n = &node{cfg: cfg}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	master, err := loadMaster(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.NATSURL == "" {
		if n.ns, err = startNATS(cfg); err != nil {
			return nil, err
		}
		n.nc, err = nats.Connect("", nats.InProcessServer(n.ns), nats.Name("lethe"))
	} else {
		n.nc, err = nats.Connect(cfg.NATSURL, nats.Name("lethe"), nats.MaxReconnects(-1))
	}
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	if n.js, err = jetstream.New(n.nc); err != nil {
		return nil, err
	}
	if n.stream, err = ledger.EnsureStream(ctx, n.js, cfg.Replicas); err != nil {
		return nil, err
	}
	if n.keys, err = keystore.Open(filepath.Join(cfg.Data, "keystore"), master, cfg.Logger); err != nil {
		return nil, err
	}
	if n.v, err = schemas.NewValidator(); err != nil {
		return nil, err
	}
	n.proj, err = projections.Open(filepath.Join(cfg.Data, "projections"), n.keys, n.v,
		projections.Config{Location: cfg.Location, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// loadMaster reads the master key from the environment or a file; with neither configured
// it generates one in the data directory and warns that it sits on the same disk.
func loadMaster(cfg nodeConfig) (keystore.MasterKey, error) {
	path := cfg.MasterKeyFile
	if cfg.MasterKey == "" && path == "" {
		path = filepath.Join(cfg.Data, "master.key")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if _, err := keystore.GenerateMasterFile(path); err != nil {
				return keystore.MasterKey{}, err
			}
			cfg.Logger.Warn("generated a master key inside the data directory; for production keep it on another disk (--master-key-file or LETHE_MASTER_KEY)", "path", path)
		}
	}
	m, err := keystore.LoadMaster(path, cfg.MasterKey)
	if err != nil {
		return keystore.MasterKey{}, fmt.Errorf("master key: %w", err)
	}
	return m, nil
}

func startNATS(cfg nodeConfig) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "lethe",
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.Data, "nats"),
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 1 << 20,
	}
	switch cfg.Sync {
	case "", "always":
		opts.SyncAlways = true
	default:
		d, err := time.ParseDuration(cfg.Sync)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--sync must be 'always' or a positive duration such as 2m")
		}
		opts.SyncInterval = d
	}
	if cfg.NATSListen == "off" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return nil, fmt.Errorf("--nats-listen: %w", err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("--nats-listen port: %w", err)
		}
		if opts.Port == 0 {
			opts.Port = -1 // a free port
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS did not start within 30s")
	}
	return ns, nil
}

// natsURL is where kiosks and auditors reach the embedded server, or "".
func (n *node) natsURL() string {
	if n.ns == nil {
		return n.cfg.NATSURL
	}
	if n.cfg.NATSListen == "off" {
		return ""
	}
	return n.ns.ClientURL()
}

func (n *node) streamLast(ctx context.Context) (uint64, error) {
	info, err := n.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// close stops the node. It may be called more than once: a start that fails half-way
// stops the service and then unwinds the node.
func (n *node) close() {
	n.closeOnce.Do(n.closeAll)
}

func (n *node) closeAll() {
	if n.proj != nil {
		n.proj.Close()
	}
	if n.keys != nil {
		n.keys.Close()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
}
