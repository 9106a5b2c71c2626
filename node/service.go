package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/backup"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/expunger"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/kek"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/replica"
	"github.com/imagineif/lethe/sip2"
	"github.com/imagineif/lethe/staff"
	"github.com/imagineif/lethe/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServiceConfig is a node plus the running parts.
type ServiceConfig struct {
	Config
	HTTP          string        // staff API listen address; "off": none
	SweepInterval time.Duration // erasure sweep period
	RulesInterval time.Duration // how often overdue rules run
	Rules         ledger.Rules
	Now           func() time.Time

	TLSCert, TLSKey string // serve HTTPS with this certificate and key
	Sessions        staff.SessionConfig
	Collections     desk.Thresholds // defaults of the collections export
	Kiosks          kiosk.Config    // bounds of the kiosk API
	HTTPServer      desk.HTTPConfig // timeouts and connection limits of the staff API
	// Forgetting holds the expunger's thresholds of forgetting before ingest (MaxWaiting,
	// MaxWaitAge, AdmitWait) and its Drag; the window, clock, logger and metrics come from
	// the fields above.
	Forgetting expunger.Config

	SIP2 SIP2Config // the SIP2 gateway for self-check machines; off by default

	// CheckpointInterval and CheckpointEvents say when a signed checkpoint of the stream
	// is appended: after this long, or after this many events, whichever comes first
	// (defaults DefaultCheckpointInterval and DefaultCheckpointEvents).
	CheckpointInterval time.Duration
	CheckpointEvents   int

	// KEKRotation is how often a cluster ends its key-encryption epoch (--kek-rotation;
	// default DefaultKEKRotation); a single node has none.
	KEKRotation time.Duration

	// NoExpungeLoop leaves closed transactions waiting (tests stop the process between
	// close and expunge with it). It is not a setting: there is no flag for it.
	NoExpungeLoop bool
	// KeyPool is how many transaction keys the ledger keeps ready (ledger.Config.KeyPool:
	// 0 the default, negative none). It is not a setting either: a restore, which serves
	// no one, runs without, and benchmarks measure sizes with it.
	KeyPool int
}

// service is a running Lethe: node, projector, ledger, expunger, kiosk API and HTTP.
type Service struct {
	*Node
	Ledger   *ledger.Ledger
	Expunger *expunger.Expunger
	HTTPURL  string

	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error
	srv    *http.Server
	web    *web.Client // the staff web client, served by srv
	staff  *staff.Store
	Desk   *desk.Server
	Kiosks *kiosk.Server
	SIP2   *sip2.Server // nil unless a SIP2 listener is configured

	sweepInterval time.Duration
	now           func() time.Time
	cfg           ServiceConfig
	cp            *checkpointer
	// checkpointEvery and checkpointEvents are when a checkpoint is due.
	checkpointEvery  time.Duration
	checkpointEvents int
	backupMu         sync.Mutex      // one backup at a time
	backups          *backup.Keyring // nil, with backupsErr saying why, when there is none
	backupsErr       error
	scrubbed         chan struct{} // closed when the start's scrub has read the stream through
	rotMu            sync.Mutex
	lastRotation     *kek.Rotation    // the last key-encryption rotation this node led
	rep              *replica.Replica // a cluster's identities and staff accounts; nil on a single node
}

func Start(ctx context.Context, cfg ServiceConfig) (s *Service, err error) {
	if cfg.Rules.Day > 0 && cfg.Rules.Day != 24*time.Hour && cfg.StatsDay == 0 {
		// Compressed days (the demo): statistics count them as days, from this start.
		now := time.Now
		if cfg.Now != nil {
			now = cfg.Now
		}
		cfg.StatsDay, cfg.StatsEpoch = cfg.Rules.Day, now()
	}
	n, err := Open(ctx, cfg.Config)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	// Apply everything already in the stream before deciding anything. An event the
	// projections cannot apply does not stop the start: the projector waits at it, says so
	// on /healthz, and writes are refused until an administrator resolves it.
	if err := n.Proj.CatchUp(ctx, n.JS); err != nil && !projections.IsStop(err) {
		return nil, fmt.Errorf("catch up projections: %w", err)
	}
	accessLog, err := access.Open(ctx, n.JS, n.cfg.Replicas, n.Keys, n.Proj, cfg.Logger)
	if err != nil {
		return nil, err
	}
	// Forgetting comes before ingest: a new checkout asks the expunger first. The expunger
	// is made after the ledger it records through, before any command can arrive.
	var exp *expunger.Expunger
	ledCfg := ledger.Config{Rules: cfg.Rules, Now: cfg.Now, Location: cfg.Location, Logger: cfg.Logger, Recorder: accessLog,
		Admit: func(ctx context.Context) error { return exp.Admit(ctx) }, KeyPool: cfg.KeyPool}
	if n.Clustered() {
		// Keys made ahead of need would be every node's to reconcile, and one node cannot
		// tell another's pool from orphans: a cluster's node makes each key as it needs it.
		ledCfg.KeyPool = -1
	}
	if cfg.MinFreeDisk > 0 {
		ledCfg.FreeDisk, ledCfg.MinFreeDisk = freeDisk(cfg.Data), cfg.MinFreeDisk
	}
	led, err := ledger.New(n.NC, n.Stream, n.Proj, n.Keys, n.V, ledCfg)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	fc := cfg.Forgetting
	fc.SweepInterval, fc.Now, fc.Logger, fc.Registerer = cfg.SweepInterval, cfg.Now, cfg.Logger, reg
	fc.StateFile = filepath.Join(cfg.Data, "erasure.json")
	if n.Clustered() {
		fc.OrphanGrace = clusterOrphanGrace
	}
	exp, err = expunger.New(n.Keys, n.Proj, led, fc)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s = &Service{Node: n, Ledger: led, Expunger: exp, runCtx: runCtx, cancel: cancel, sweepInterval: cfg.SweepInterval, now: cfg.Now, cfg: cfg,
		scrubbed:        make(chan struct{}),
		checkpointEvery: cmp.Or(cfg.CheckpointInterval, DefaultCheckpointInterval), checkpointEvents: cmp.Or(cfg.CheckpointEvents, DefaultCheckpointEvents)}
	if s.cp, err = newCheckpointer(ctx, s); err != nil {
		s.Stop()
		return nil, err
	}
	if n.Check.Damaged() {
		s.cp.stop(fmt.Errorf("the stream is damaged: %s", n.Check.Problem()))
	}
	if err := s.startBackups(); err != nil {
		s.Stop()
		return nil, err
	}
	// The projector must follow the stream before Reconcile appends expunged records and
	// waits for them.
	s.goRun("projector", func() error { return n.Proj.Follow(runCtx, n.JS) })
	if !cfg.NoExpungeLoop {
		// Reconcile destroys keys no open transaction uses: only safe against projections
		// that hold the whole stream. A projector stopped at an event has not seen the
		// loans after it, whose keys must live.
		if n.Proj.Stopped() == nil {
			if err := resumeErasure(ctx, n, exp); err != nil {
				s.Stop()
				return nil, fmt.Errorf("resume erasure: %w", err)
			}
			if err := exp.Reconcile(ctx); err != nil {
				s.Stop()
				return nil, fmt.Errorf("finish interrupted expunges: %w", err)
			}
		} else {
			cfg.Logger.Error("projections stopped at an event: interrupted expunges wait until it is resolved")
		}
		s.goRun("expunger", func() error { exp.Run(runCtx); return nil })
	}
	// Transaction keys made ahead of need, after the reconciliation above (which destroys
	// the unused keys of a pool a crash ended, and must not see this one's as orphans).
	// Stopped with the loops, once intake has drained; it destroys the keys left unused.
	s.goRun("key pool", func() error { return led.RunKeyPool(runCtx) })
	// The rules and the checkpoints are singletons of a cluster: each runs on the node
	// that holds its lease.
	s.goRun("rules", func() error {
		n.singleton(runCtx, "rules", func(ctx context.Context) { led.RunRules(ctx, cfg.RulesInterval) })
		return nil
	})
	if !n.Check.Damaged() {
		s.goRun("checkpoints", func() error { n.singleton(runCtx, "checkpoints", s.cp.run); return nil })
	}
	if n.Clustered() {
		s.goRun("cluster", func() error {
			n.runCluster(runCtx, cmp.Or(cfg.KEKRotation, DefaultKEKRotation), s.noteRotation)
			return nil
		})
	}
	if !n.Check.Damaged() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(s.scrubbed)
			s.scrub(runCtx)
		}()
	} else {
		close(s.scrubbed)
	}
	kc := cfg.Kiosks
	kc.Now, kc.Logger = cfg.Now, cfg.Logger
	if s.Kiosks, err = kiosk.Serve(led, n.KioskNC, kc); err != nil {
		s.Stop()
		return nil, fmt.Errorf("serve kiosks: %w", err)
	}
	if err := s.startSIP2(cfg); err != nil {
		s.Stop()
		return nil, err
	}
	if n.auth != nil {
		// The embedded server knows its kiosks: one subscription each, so that one
		// kiosk's flood waits behind itself. A kiosk revoked loses its SIP2 sessions too.
		if err := n.auth.serveKiosks(func(kiosks []string) error {
			if s.SIP2 != nil {
				s.SIP2.Only(kiosks)
			}
			return s.Kiosks.ServeOnly(kiosks)
		}); err != nil {
			s.Stop()
			return nil, fmt.Errorf("serve kiosks: %w", err)
		}
	}
	registerGauges(reg, s)
	if cfg.HTTP != "off" {
		if cfg.TLSCert == "" && !Loopback(cfg.HTTP) {
			s.Stop()
			return nil, fmt.Errorf("--http %s is not a loopback address: staff passwords and sessions would cross the network in the clear; give --tls-cert and --tls-key", cfg.HTTP)
		}
		ln, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("http listen: %w", err)
		}
		if s.staff, err = staff.Open(filepath.Join(cfg.Data, "staff"), cfg.Logger); err != nil {
			ln.Close()
			s.Stop()
			return nil, err
		}
		sessions := cfg.Sessions
		if sessions.Now == nil {
			sessions.Now = cfg.Now
		}
		api := &desk.Server{
			Reads: &desk.Reads{
				Store: n.Proj, Expunger: exp, Logger: cfg.Logger,
				Metrics:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
				StreamLast: n.StreamLast, Now: cfg.Now,
			},
			Ledger: led, Access: accessLog, Collections: cfg.Collections, Location: cfg.Location, Logger: cfg.Logger,
			Auth: &staff.Auth{Store: s.staff, Sessions: staff.NewSessions(sessions),
				Limiter: staff.NewLimiter(staff.LimitConfig{Now: cfg.Now}), Secure: cfg.TLSCert != "", Logger: cfg.Logger},
		}
		api.Backup = s.Backup
		api.Cluster = clusterAPI{s}
		s.Desk = api
		// The staff web client at /: pages that are clients of the API, in process.
		s.web = &web.Client{API: api.Handler(), Auth: api.Auth, Store: n.Proj, Expunger: exp,
			Location: cfg.Location, Logger: cfg.Logger, Now: cfg.Now,
			Checkpoints: func() web.Checkpoints {
				st := s.CheckpointStatus()
				return web.Checkpoints{Seq: st.Seq, At: st.At, TreeSize: st.TreeSize, Hashed: st.Hashed,
					Broken: st.Broken, VerifierKey: s.VerifierKey()}
			}}
		if err := s.web.Check(); err != nil {
			ln.Close()
			s.Stop()
			return nil, fmt.Errorf("staff web client: %w", err)
		}
		httpCfg := cfg.HTTPServer
		httpCfg.Logger = cfg.Logger
		s.srv = desk.NewHTTPServer(s.web.Handler(), httpCfg)
		ln = desk.LimitListener(ln, httpCfg) // under TLS: a connection counts from accept
		scheme := "http"
		if cfg.TLSCert != "" {
			scheme = "https"
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				ln.Close()
				s.Stop()
				return nil, fmt.Errorf("TLS certificate: %w", err)
			}
			s.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
			ln = tls.NewListener(ln, s.srv.TLSConfig)
		}
		if err := s.startReplica(ctx); err != nil {
			ln.Close()
			s.Stop()
			return nil, err
		}
		s.HTTPURL = scheme + "://" + ln.Addr().String()
		s.goRun("http", func() error {
			if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if err := s.startReplica(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// startReplica keeps a cluster node's kiosk and auditor identities and staff accounts in
// step with the other nodes' (package replica), before the node serves them: the first
// sync is done when it returns. A single node has nothing to keep in step.
func (s *Service) startReplica(ctx context.Context) error {
	if !s.Clustered() || s.rep != nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := replica.Start(rctx, replica.Config{JS: s.JS, Replicas: s.Node.cfg.Replicas,
		Registry: identity.Open(s.cfg.Data), Staff: s.staff, Logger: s.cfg.Logger})
	if err != nil {
		return fmt.Errorf("cluster: identities and staff accounts: %w", err)
	}
	s.rep = rep
	if s.auth != nil {
		return s.ReloadIdentities() // the other nodes' kiosks, admitted now
	}
	return nil
}

func registerGauges(reg *prometheus.Registry, s *Service) {
	proj := s.Proj
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lethe_projection_applied_sequence", Help: "Last stream sequence applied to the projections.",
	}, func() float64 { return float64(proj.Applied()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lethe_projector_stopped", Help: "1 while the projector waits at an event it cannot apply or write; writes are refused meanwhile.",
	}, func() float64 {
		if proj.Health().Stop != nil {
			return 1
		}
		return 0
	}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lethe_projector_stops_total", Help: "How often the projector stopped at an event since the start.",
	}, func() float64 { return float64(proj.Health().Stops) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lethe_stream_damaged", Help: "1 when the start found acknowledged events lost from the stream.",
	}, func() float64 {
		if proj.Health().Damage != "" {
			return 1
		}
		return 0
	}))
	led := s.Ledger
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lethe_key_pool_ready", Help: "Transaction keys made ahead of need and ready for the next checkouts: on disk, linked to nothing yet.",
	}, func() float64 { return float64(led.KeyPool().Ready) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lethe_key_pool_missed_total", Help: "Commands that found the key pool empty and created their transaction key themselves, at a keystore sync each.",
	}, func() float64 { return float64(led.KeyPool().Missed) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lethe_kiosk_refused_total", Help: "Kiosk requests refused at intake: the queue was full, a kiosk's rate was exceeded, or the reply subject was not an inbox.",
	}, func() float64 { return float64(s.Kiosks.Refused()) }))
	if s.SIP2 != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lethe_sip2_sessions", Help: "SIP2 sessions open.",
		}, func() float64 { return float64(s.SIP2.Sessions()) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lethe_sip2_refused_total", Help: "SIP2 connections closed as soon as they were accepted: too many sessions, in all or from one address.",
		}, func() float64 { return float64(s.SIP2.Refused()) }))
	}
	reg.MustRegister(countsCollector{proj})
}

var (
	descOpenTxns = prometheus.NewDesc("lethe_open_transactions", "Open transactions: the only patron-item links that exist.", nil, nil)
	descOnLoan   = prometheus.NewDesc("lethe_items_on_loan", "Items on loan.", nil, nil)
	descPending  = prometheus.NewDesc("lethe_pending_expunges", "Closed transactions whose expunged record is not yet applied.", nil, nil)
)

// countsCollector reports the projections' row counts, counting once per scrape.
type countsCollector struct{ proj *projections.Store }

func (countsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOpenTxns
	ch <- descOnLoan
	ch <- descPending
}

func (c countsCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.proj.Counts()
	if err != nil {
		for _, d := range []*prometheus.Desc{descOpenTxns, descOnLoan, descPending} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	ch <- prometheus.MustNewConstMetric(descOpenTxns, prometheus.GaugeValue, float64(counts.OpenTxns))
	ch <- prometheus.MustNewConstMetric(descOnLoan, prometheus.GaugeValue, float64(counts.OnLoan))
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(counts.PendingExpunge))
}

// scrub reads the whole stream once after the start, in the background, and reports
// events a damaged file lost (ledger.Scrub) on /healthz, in the log and in a metric, and
// ends checkpointing: no checkpoint is appended over a hole.
func (s *Service) scrub(ctx context.Context) {
	check, err := ledger.Scrub(ctx, s.JS)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		s.cfg.Logger.Error("read the stream through", "err", err)
	case check.Damaged():
		s.cfg.Logger.Error("the stream is damaged; serving what the projections applied", "problem", check.Problem())
		s.Proj.ReportDamage(check.Problem())
		s.cp.stop(fmt.Errorf("the stream is damaged: %s", check.Problem()))
	default:
		s.cfg.Logger.Debug("stream read through: no event missing", "last", check.Last)
	}
}

// Scrubbed is closed once the start's scrub has read the stream through (or stopped with
// the service), at once when the start found the stream damaged and runs none.
func (s *Service) Scrubbed() <-chan struct{} { return s.scrubbed }

// goRun runs a part; the first part to fail stops the service.
func (s *Service) goRun(name string, f func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(); err != nil {
			s.setErr(fmt.Errorf("%s: %w", name, err))
			s.cancel()
		}
	}()
}

// stop shuts every part down in reverse order of dependency and closes the node: first
// intake (HTTP, then the kiosk subscription, draining what it took), then the loops
// (projector, expunger, rules) once nothing waits on them, then the stores. It returns
// the first part's failure.
func (s *Service) Stop() error {
	if s.web != nil {
		s.web.Close() // event streams end and imports stop; Shutdown waits for no stream
	}
	if s.srv != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.srv.Shutdown(shutdownCtx)
		cancel()
	}
	if s.SIP2 != nil {
		if err := s.SIP2.Close(); err != nil {
			s.setErr(fmt.Errorf("close SIP2 gateway: %w", err))
		}
	}
	if s.Kiosks != nil {
		if err := s.Kiosks.Close(); err != nil {
			s.setErr(fmt.Errorf("close kiosk API: %w", err))
		}
	}
	// A last checkpoint, once nothing else appends: a stopped library's history is signed
	// to its end. (A cluster's node is not the last to append: the lease holder checkpoints.)
	if s.cp != nil && !s.Check.Damaged() && s.Proj.Stopped() == nil && !s.Clustered() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := s.cp.checkpoint(ctx, true); err != nil {
			s.cfg.Logger.Warn("final checkpoint", "err", err)
		}
		cancel()
	}
	s.cancel()
	s.wg.Wait()
	if s.rep != nil {
		s.rep.Close() // before the staff store it writes to, and NATS
	}
	if s.staff != nil {
		if err := s.staff.Close(); err != nil {
			s.setErr(fmt.Errorf("close staff store: %w", err))
		}
	}
	s.Node.Close()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// loopback reports whether a listen address is on loopback only.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// setErr keeps the first error of the service.
func (s *Service) setErr(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// failed is closed when a part fails (or the service is stopping).
func (s *Service) Failed() <-chan struct{} { return s.runCtx.Done() }

// Handler is the staff HTTP server's handler (the web client in front of the API), for
// measuring pages without a network; nil with --http off.
func (s *Service) Handler() http.Handler {
	if s.srv == nil {
		return nil
	}
	return s.srv.Handler
}
