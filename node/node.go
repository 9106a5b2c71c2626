package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Config is what a Lethe process needs to open its data.
type Config struct {
	Data          string // data directory
	NATSURL       string // external NATS; empty: embedded server
	NATSCreds     string // credentials file of the ledger's connection to an external NATS
	NATSListen    string // embedded server's client listener, host:port; "off": in-process only
	NATSTLSCert   string // serve the NATS listener over TLS with this certificate and key
	NATSTLSKey    string
	Sync          string // "always" (fsync before every ack) or a sync interval
	Replicas      int    // stream replicas (external cluster)
	MasterKeyFile string // master key file; default <data>/master.key, generated
	MasterKey     string // master key from the environment (LETHE_MASTER_KEY)
	Location      *time.Location
	Logger        *slog.Logger
	// Existing says the data directory must already hold a Lethe (every command but
	// serve and demo): a typo then fails instead of starting an empty library.
	Existing bool
	// MinFreeDisk is the free space, in bytes, below which a start is refused and the
	// ledger refuses new work (--min-free-disk); 0: no check.
	MinFreeDisk uint64
	// BackupKeyring is the backup keyring's file; default: beside the master key file
	// (backup.KeyringPath). BackupRetention is how long a backup can be restored.
	BackupKeyring   string
	BackupRetention time.Duration
	// Cluster forms a JetStream cluster of the nodes' embedded servers (docs/design.md
	// §11); the zero value is a single node. Not yet offered by lethe serve: the keys are
	// not yet replicated (package kek is the mechanism).
	Cluster ClusterConfig
	// StatsDay is the length of a library day in daily statistics when it is not 24
	// hours (lethe demo's compressed days; see projections.Config.Day); StatsEpoch the
	// moment the first such day begins.
	StatsDay   time.Duration
	StatsEpoch time.Time
}

// ClusterConfig is a node's place in a cluster of embedded NATS servers.
type ClusterConfig struct {
	Name   string   // the cluster's name, the same on every node; "" for a single node
	Node   string   // this node's name, unique in the cluster
	Listen string   // host:port of the route listener
	Routes []string // nats://host:port of every node's route listener (this one's may be included)
	// TLS on routes: required off loopback. Each node presents its certificate and
	// verifies its peers' against CA, both ways.
	TLSCert, TLSKey, TLSCA string
}

// A route is declared dead after routeMaxPingsOut pings unanswered, one every routePing.
const (
	routePing        = 2 * time.Second
	routeMaxPingsOut = 3
)

// options sets the embedded server's cluster options.
func (c ClusterConfig) options(opts *server.Options) error {
	if c.Name == "" {
		return nil
	}
	if c.Node == "" || c.Listen == "" || len(c.Routes) == 0 {
		return errors.New("a cluster needs the node's name, a route listener and the routes")
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("cluster listener: %w", err)
	}
	if c.TLSCert == "" && !Loopback(c.Listen) {
		return fmt.Errorf("cluster listener %s is not a loopback address: the routes carry every event, card numbers in kiosk requests included; give the cluster TLS certificate, key and CA", c.Listen)
	}
	opts.ServerName = c.Node
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host}
	if opts.Cluster.Port, err = strconv.Atoi(port); err != nil {
		return fmt.Errorf("cluster listener port: %w", err)
	}
	opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	// A node cut off from the network (no FIN, no RST) must be noticed in seconds, not
	// after nats-server's two minutes of unanswered pings: until then requests are routed
	// to its copies of the buckets and the stream and wait for nothing, and the others'
	// projectors and kiosks stall with them.
	opts.Cluster.PingInterval, opts.Cluster.MaxPingsOut = routePing, routeMaxPingsOut
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("cluster TLS certificate: %w", err)
		}
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return fmt.Errorf("cluster TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("cluster TLS CA: no certificate in the file")
		}
		opts.Cluster.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
			RootCAs: pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
		opts.Cluster.TLSTimeout = 2
	}
	return nil
}

// node is an open Lethe data directory: NATS, stream, keystore and projections.
type Node struct {
	cfg     Config
	NS      *server.Server // nil with an external NATS
	auth    *natsAuth      // nil with an external NATS
	NC      *nats.Conn     // the ledger's connection: appends, the projector, the API
	KioskNC *nats.Conn     // the kiosk API's own connection, as privileged as nc
	JS      jetstream.JetStream
	Stream  jetstream.Stream
	Keys    *keystore.Store
	Proj    *projections.Store
	V       *schemas.Validator
	Check   ledger.StreamCheck // what the start found about the stream
	cluster *clusterNode       // nil on a single node

	master     keystore.MasterKey // seals the backup keyring
	masterFile string             // its file; "" from LETHE_MASTER_KEY

	cancel    context.CancelFunc // stops the node's own loops (the registry watch)
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NATS limits of the embedded server: what one client may cost it. Kiosk commands are at
// most 16 KiB and events 64 KiB; the largest message the ledger publishes is an event.
const (
	natsMaxConnections = 1024
	natsMaxPayload     = 128 << 10
	natsMaxPending     = 16 << 20 // bytes buffered for one slow client before it is cut off
	natsMaxSubs        = 1000     // subscriptions per connection
)

// openNode opens the data directory: keystore and projections first, then NATS, then the
// stream, checked against what the projections applied. On failure everything opened so
// far is closed again and the error names the cause.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if err := prepareDataDir(cfg.Data, cfg.Existing, cfg.Logger); err != nil {
		return nil, err
	}
	if err := checkFreeDisk(cfg.Data, cfg.MinFreeDisk); err != nil {
		return nil, err
	}
	if cfg.Cluster.Name != "" && cfg.Replicas < 3 {
		cfg.Replicas = 3 // a cluster keeps three copies of everything
	}
	n := &Node{cfg: cfg}
	if err := n.open(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) open(ctx context.Context) error {
	cfg := n.cfg
	var err error
	if cfg.Cluster.Name != "" {
		// The keys are on the cluster: NATS first.
		if err := n.openClusterKeys(ctx); err != nil {
			return err
		}
	} else if n.Keys, n.master, n.masterFile, err = openKeys(ctx, cfg); err != nil {
		return err
	}
	if n.V, err = schemas.NewValidator(); err != nil {
		return err
	}
	n.Proj, err = projections.Open(filepath.Join(cfg.Data, "projections"), n.Keys, n.V,
		projections.Config{Location: cfg.Location, Logger: cfg.Logger, Day: cfg.StatsDay, DayEpoch: cfg.StatsEpoch})
	if err != nil {
		return inUse(cfg.Data, err)
	}
	switch {
	case cfg.Cluster.Name != "": // started above
	case cfg.NATSURL == "":
		if err := n.startNATS(); err != nil {
			return err
		}
	default:
		opts := []nats.Option{nats.Name("lethe"), nats.MaxReconnects(-1)}
		if cfg.NATSCreds != "" {
			o, err := CredentialsOption(cfg.NATSCreds)
			if err != nil {
				return err
			}
			opts = append(opts, o)
		}
		if n.NC, err = nats.Connect(cfg.NATSURL, opts...); err != nil {
			return fmt.Errorf("connect to NATS: %w", err)
		}
		if n.KioskNC, err = nats.Connect(cfg.NATSURL, append(opts, nats.Name("lethe-kiosks"))...); err != nil {
			return fmt.Errorf("connect to NATS: %w", err)
		}
	}
	if n.JS == nil {
		if n.JS, err = jetstream.New(n.NC); err != nil {
			return err
		}
	}
	if n.Stream, n.Check, err = ledger.EnsureStream(ctx, n.JS, cfg.Replicas, n.Proj.Applied()); err != nil {
		return err
	}
	if n.Check.Damaged() {
		cfg.Logger.Error("the stream is damaged; serving what the projections applied", "problem", n.Check.Problem())
		n.Proj.ReportDamage(n.Check.Problem())
	}
	return nil
}

// prepareDataDir makes the data directory (or, for commands that read an existing one,
// checks it is one), and takes group and other access away from it: keystore and
// projection files are nobody else's business.
func prepareDataDir(dir string, existing bool, logger *slog.Logger) error {
	if dir == "" {
		return errors.New("no data directory given (--data)")
	}
	if existing {
		if _, err := os.Stat(filepath.Join(dir, "keystore")); err != nil {
			return fmt.Errorf("%s is not a Lethe data directory (no keystore/ in it): check --data", dir)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, st.Mode().Perm()&0o700); err != nil {
			return fmt.Errorf("data directory %s is readable by other users (mode %04o) and cannot be changed: %w", dir, st.Mode().Perm(), err)
		}
		if logger != nil {
			logger.Warn("took group and other access away from the data directory", "dir", dir, "was", fmt.Sprintf("%04o", st.Mode().Perm()))
		}
	}
	return nil
}

// inUse explains Pebble's lock error: another process has the data directory open. Only
// the lock's own errors count: fcntl refusing (EAGAIN or EACCES, unwrapped by Pebble), or
// this process holding it already. Matching "lock" in the text took a damaged table
// ("block checksum mismatch") for a second server.
func inUse(dir string, err error) error {
	var pe *fs.PathError
	held := !errors.As(err, &pe) && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES))
	if held || strings.Contains(err.Error(), "lock held by current process") {
		return fmt.Errorf("data directory %s is in use by another lethe process (stop it first): %w", dir, err)
	}
	return err
}

// credentialsOption reads a NATS credentials file: a user JWT with its seed (.creds) or an
// NKey seed file such as `lethe kiosks add` writes.
func CredentialsOption(path string) (nats.Option, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("NATS credentials: %w", err)
	}
	if strings.Contains(string(data), "BEGIN NATS USER JWT") {
		return nats.UserCredentials(path), nil
	}
	if _, err := identity.ReadCredentials(data); err != nil {
		return nil, fmt.Errorf("NATS credentials %s: %w", path, err)
	}
	o, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("NATS credentials %s: %w", path, err)
	}
	return o, nil
}

// loadMaster reads the master key from the environment or a file; with neither configured
// it generates one in the data directory and warns that it sits on the same disk. A file
// named by --master-key-file must exist: Lethe never generates a key there, since a
// fresh key cannot open anything the old one wrapped.
func loadMaster(cfg Config) (keystore.MasterKey, error) {
	path := cfg.MasterKeyFile
	if cfg.MasterKey == "" && path == "" {
		path = filepath.Join(cfg.Data, "master.key")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(filepath.Join(cfg.Data, "keystore")); err == nil {
				return keystore.MasterKey{}, fmt.Errorf("master key: %s is missing but the keystore exists: give the key with --master-key-file or LETHE_MASTER_KEY (a new key would open nothing)", path)
			}
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

// startNATS starts the embedded server with NKey authentication, the node's limits and,
// off loopback, TLS; and connects the ledger in-process.
func (n *Node) startNATS() error {
	cfg := n.cfg
	kp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	ledgerOpt, ledgerKey, err := ledgerConnOptions(kp)
	if err != nil {
		return err
	}
	n.auth = &natsAuth{ledgerKey: ledgerKey, reg: identity.Open(cfg.Data), logger: cfg.Logger,
		accounts: map[string]*server.Account{}}
	opts := &server.Options{
		ServerName:                 "lethe",
		JetStream:                  true,
		StoreDir:                   filepath.Join(cfg.Data, "nats"),
		NoSigs:                     true,
		NoLog:                      true,
		MaxConn:                    natsMaxConnections,
		MaxPayload:                 natsMaxPayload,
		MaxPending:                 natsMaxPending,
		MaxSubs:                    natsMaxSubs,
		AlwaysEnableNonce:          true,
		CustomClientAuthentication: n.auth,
	}
	if err := cfg.Cluster.options(opts); err != nil {
		return err
	}
	if cfg.MinFreeDisk > 0 {
		// Left unset, JetStream's storage limit is 75% of the disk space free when it
		// started, and it refuses appends there ("insufficient resources") even after
		// space was freed, until a restart. The disk guard knows the space now.
		opts.JetStreamMaxStore = math.MaxInt64
	}
	switch cfg.Sync {
	case "", "always":
		opts.SyncAlways = true
	default:
		d, err := time.ParseDuration(cfg.Sync)
		if err != nil || d <= 0 {
			return fmt.Errorf("--sync must be 'always' or a positive duration such as 2m")
		}
		opts.SyncInterval = d
	}
	switch {
	case cfg.NATSListen == "off" && cfg.Cluster.Name != "":
		// nats-server starts its routes only once its client listener is up: a node of a
		// cluster listens for clients on a free loopback port, which no one outside this
		// machine can reach, with the same authentication as any listener.
		opts.Host, opts.Port = "127.0.0.1", -1
	case cfg.NATSListen == "off":
		opts.DontListen = true
	default:
		host, port, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return fmt.Errorf("--nats-listen: %w", err)
		}
		if cfg.NATSTLSCert == "" && !Loopback(cfg.NATSListen) {
			return fmt.Errorf("--nats-listen %s is not a loopback address: kiosk credentials and card numbers would cross the network in the clear; give --nats-tls-cert and --nats-tls-key", cfg.NATSListen)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("--nats-listen port: %w", err)
		}
		if opts.Port == 0 {
			opts.Port = -1 // a free port
		}
		if cfg.NATSTLSCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.NATSTLSCert, cfg.NATSTLSKey)
			if err != nil {
				return fmt.Errorf("NATS TLS certificate: %w", err)
			}
			opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
			opts.TLS = true
			opts.TLSTimeout = 2
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return errors.New("embedded NATS did not start within 30s (is --nats-listen's port taken?)")
	}
	n.NS = ns
	n.auth.ns = ns
	if err := exportLedgerServices(ns); err != nil {
		return err
	}
	if _, err := n.auth.reload(); err != nil {
		return err
	}
	watchCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.auth.watch(watchCtx, time.Second)
	}()
	if n.NC, err = nats.Connect("", nats.InProcessServer(ns), nats.Name("lethe"), ledgerOpt); err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	if n.KioskNC, err = nats.Connect("", nats.InProcessServer(ns), nats.Name("lethe-kiosks"), ledgerOpt); err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	return nil
}

// natsURL is where kiosks and auditors reach the embedded server, or "".
func (n *Node) NATSURL() string {
	if n.NS == nil {
		return n.cfg.NATSURL
	}
	if n.cfg.NATSListen == "off" {
		return ""
	}
	return n.NS.ClientURL() // tls:// when the listener serves TLS
}

func (n *Node) StreamLast(ctx context.Context) (uint64, error) {
	info, err := n.Stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// close closes what open opened, in reverse order: NATS (the ledger's connection, the
// registry watch, the server), then the projections and the keystore, which nothing
// reads once NATS is gone. The service stops its own parts before calling it. It may be
// called more than once.
func (n *Node) Close() { n.closeOnce.Do(n.closeAll) }

func (n *Node) closeAll() {
	if n.cluster != nil && n.cluster.member != nil {
		if err := n.cluster.member.Close(); err != nil {
			n.cfg.Logger.Error("stop answering rotations", "err", err)
		}
	}
	if n.KioskNC != nil {
		n.KioskNC.Close()
	}
	if n.NC != nil {
		n.NC.Close()
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	if n.NS != nil {
		n.NS.Shutdown()
		n.NS.WaitForShutdown()
	}
	if n.Proj != nil {
		if err := n.Proj.Close(); err != nil {
			n.cfg.Logger.Error("close projections", "err", err)
		}
	}
	if n.Keys != nil {
		if err := n.Keys.Close(); err != nil {
			n.cfg.Logger.Error("close keystore", "err", err)
		}
	}
}

// OpenNATS starts only the embedded NATS server of cfg (fsync as cfg.Sync says, the same
// limits and authentication) and connects as the ledger would, without stores or stream:
// the raw engine Lethe is measured against. Close stops it.
func OpenNATS(cfg Config) (*Node, error) {
	n := &Node{cfg: cfg}
	if err := n.startNATS(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Config is the configuration the node was opened with.
func (n *Node) Config() Config { return n.cfg }

// waitForMeta waits until the cluster's JetStream answers: until its nodes have elected a
// meta leader, a JetStream request gets no answer at all, not an error.
func waitForMeta(ctx context.Context, js jetstream.JetStream) error {
	deadline := time.Now().Add(time.Minute)
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the cluster's JetStream did not answer within a minute (are a majority of the nodes up?): %w", err)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
