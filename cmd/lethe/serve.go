package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/expunger"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/staff"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serviceConfig is a node plus the running parts.
type serviceConfig struct {
	nodeConfig
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

	// noExpungeLoop leaves closed transactions waiting (tests stop the process between
	// close and expunge with it). It is not a setting: there is no flag for it.
	noExpungeLoop bool
}

// service is a running Lethe: node, projector, ledger, expunger, kiosk API and HTTP.
type service struct {
	*node
	led     *ledger.Ledger
	exp     *expunger.Expunger
	httpURL string

	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error
	srv    *http.Server
	staff  *staff.Store
	desk   *desk.Server
	kiosks *kiosk.Server
}

func startService(ctx context.Context, cfg serviceConfig) (s *service, err error) {
	n, err := openNode(ctx, cfg.nodeConfig)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	// Apply everything already in the stream before deciding anything. An event the
	// projections cannot apply does not stop the start: the projector waits at it, says so
	// on /healthz, and writes are refused until an administrator resolves it.
	if err := n.proj.CatchUp(ctx, n.js); err != nil && !projections.IsStop(err) {
		return nil, fmt.Errorf("catch up projections: %w", err)
	}
	accessLog, err := access.Open(ctx, n.js, cfg.Replicas, n.keys, n.proj, cfg.Logger)
	if err != nil {
		return nil, err
	}
	ledCfg := ledger.Config{Rules: cfg.Rules, Now: cfg.Now, Location: cfg.Location, Logger: cfg.Logger, Recorder: accessLog}
	if cfg.MinFreeDisk > 0 {
		ledCfg.FreeDisk, ledCfg.MinFreeDisk = freeDisk(cfg.Data), cfg.MinFreeDisk
	}
	led, err := ledger.New(n.nc, n.stream, n.proj, n.keys, n.v, ledCfg)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	exp, err := expunger.New(n.keys, n.proj, led, expunger.Config{
		SweepInterval: cfg.SweepInterval, Now: cfg.Now, Logger: cfg.Logger, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s = &service{node: n, led: led, exp: exp, runCtx: runCtx, cancel: cancel}
	// The projector must follow the stream before Reconcile appends expunged records and
	// waits for them.
	s.goRun("projector", func() error { return n.proj.Follow(runCtx, n.js) })
	if !cfg.noExpungeLoop {
		// Reconcile destroys keys no open transaction uses: only safe against projections
		// that hold the whole stream. A projector stopped at an event has not seen the
		// loans after it, whose keys must live.
		if n.proj.Stopped() == nil {
			if err := exp.Reconcile(ctx); err != nil {
				s.stop()
				return nil, fmt.Errorf("finish interrupted expunges: %w", err)
			}
		} else {
			cfg.Logger.Error("projections stopped at an event: interrupted expunges wait until it is resolved")
		}
		s.goRun("expunger", func() error { exp.Run(runCtx); return nil })
	}
	s.goRun("rules", func() error { led.RunRules(runCtx, cfg.RulesInterval); return nil })
	if !n.check.Damaged() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.scrub(runCtx)
		}()
	}
	kc := cfg.Kiosks
	kc.Now, kc.Logger = cfg.Now, cfg.Logger
	if s.kiosks, err = kiosk.Serve(led, n.kioskNC, kc); err != nil {
		s.stop()
		return nil, fmt.Errorf("serve kiosks: %w", err)
	}
	if n.auth != nil {
		// The embedded server knows its kiosks: one subscription each, so that one
		// kiosk's flood waits behind itself.
		if err := n.auth.serveKiosks(s.kiosks.ServeOnly); err != nil {
			s.stop()
			return nil, fmt.Errorf("serve kiosks: %w", err)
		}
	}
	registerGauges(reg, s)
	if cfg.HTTP != "off" {
		if cfg.TLSCert == "" && !loopback(cfg.HTTP) {
			s.stop()
			return nil, fmt.Errorf("--http %s is not a loopback address: staff passwords and sessions would cross the network in the clear; give --tls-cert and --tls-key", cfg.HTTP)
		}
		ln, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("http listen: %w", err)
		}
		if s.staff, err = staff.Open(filepath.Join(cfg.Data, "staff"), cfg.Logger); err != nil {
			ln.Close()
			s.stop()
			return nil, err
		}
		sessions := cfg.Sessions
		if sessions.Now == nil {
			sessions.Now = cfg.Now
		}
		api := &desk.Server{
			Reads: &desk.Reads{
				Store: n.proj, Expunger: exp, Logger: cfg.Logger,
				Metrics:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
				StreamLast: n.streamLast, Now: cfg.Now,
			},
			Ledger: led, Access: accessLog, Collections: cfg.Collections, Location: cfg.Location, Logger: cfg.Logger,
			Auth: &staff.Auth{Store: s.staff, Sessions: staff.NewSessions(sessions),
				Limiter: staff.NewLimiter(staff.LimitConfig{Now: cfg.Now}), Secure: cfg.TLSCert != "", Logger: cfg.Logger},
		}
		s.desk = api
		httpCfg := cfg.HTTPServer
		httpCfg.Logger = cfg.Logger
		s.srv = desk.NewHTTPServer(api.Handler(), httpCfg)
		ln = desk.LimitListener(ln, httpCfg) // under TLS: a connection counts from accept
		scheme := "http"
		if cfg.TLSCert != "" {
			scheme = "https"
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				ln.Close()
				s.stop()
				return nil, fmt.Errorf("TLS certificate: %w", err)
			}
			s.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
			ln = tls.NewListener(ln, s.srv.TLSConfig)
		}
		s.httpURL = scheme + "://" + ln.Addr().String()
		s.goRun("http", func() error {
			if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	return s, nil
}

func registerGauges(reg *prometheus.Registry, s *service) {
	proj := s.proj
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
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lethe_kiosk_refused_total", Help: "Kiosk requests refused at intake: the queue was full, a kiosk's rate was exceeded, or the reply subject was not an inbox.",
	}, func() float64 { return float64(s.kiosks.Refused()) }))
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
// events a damaged file lost (ledger.Scrub) on /healthz, in the log and in a metric.
func (s *service) scrub(ctx context.Context) {
	check, err := ledger.Scrub(ctx, s.js)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		s.cfg.Logger.Error("read the stream through", "err", err)
	case check.Damaged():
		s.cfg.Logger.Error("the stream is damaged; serving what the projections applied", "problem", check.Problem())
		s.proj.ReportDamage(check.Problem())
	default:
		s.cfg.Logger.Debug("stream read through: no event missing", "last", check.Last)
	}
}

// goRun runs a part; the first part to fail stops the service.
func (s *service) goRun(name string, f func() error) {
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
func (s *service) stop() error {
	if s.srv != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.srv.Shutdown(shutdownCtx)
		cancel()
	}
	if s.kiosks != nil {
		if err := s.kiosks.Close(); err != nil {
			s.setErr(fmt.Errorf("close kiosk API: %w", err))
		}
	}
	s.cancel()
	s.wg.Wait()
	if s.staff != nil {
		if err := s.staff.Close(); err != nil {
			s.setErr(fmt.Errorf("close staff store: %w", err))
		}
	}
	s.close()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// loopback reports whether a listen address is on loopback only.
func loopback(addr string) bool {
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
func (s *service) setErr(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// failed is closed when a part fails (or the service is stopping).
func (s *service) failed() <-chan struct{} { return s.runCtx.Done() }

// serviceFlags declares the flags shared by serve and demo, with the defaults that differ
// between them.
func serviceFlags(f flags, dataDefault, sweepDefault, natsListenDefault string) func() (serviceConfig, error) {
	data := f.str("data", dataDefault, "data directory")
	natsURL := f.str("nats-url", "", "external NATS server or cluster; empty runs an embedded server")
	listen := f.str("nats-listen", natsListenDefault, "embedded NATS client listener for kiosks and auditors, or 'off'")
	httpAddr := f.str("http", "127.0.0.1:8080", "staff HTTP API address, or 'off'")
	sync := f.str("sync", "always", "'always' to fsync before every acknowledgement, or a sync interval such as 2m (loses acknowledged events on power loss)")
	replicas := f.str("replicas", "1", "stream replicas when creating the stream in an external cluster (3 for a cluster)")
	masterFile := f.str("master-key-file", "", "master key file, ideally on another disk; default <data>/master.key, generated")
	sweep := f.str("sweep-interval", sweepDefault, "erasure sweep interval: how long deleted bytes may stay in files")
	rules := f.str("rules-interval", "1m", "how often overdue rules run")
	rulesFile := f.str("rules", "", "JSON file of loan rules (loan_days, max_renewals, ...); default rules otherwise")
	tz := f.str("timezone", "Local", "the library's time zone, for ages and daily statistics")
	level := f.str("log-level", "info", "debug, info, warn or error")
	natsCreds := f.str("nats-creds", "", "credentials file (NKey seed or JWT .creds) of the ledger's own connection to --nats-url")
	natsTLSCert := f.str("nats-tls-cert", "", "PEM certificate file: serve the NATS listener over TLS (needed off loopback)")
	natsTLSKey := f.str("nats-tls-key", "", "PEM private key file for --nats-tls-cert")
	kioskRate := f.str("kiosk-rate", "20", "requests per second each kiosk may send on average (bursts of twice that)")
	tlsCert := f.str("tls-cert", "", "PEM certificate file: serve the staff API over HTTPS (needed off loopback)")
	tlsKey := f.str("tls-key", "", "PEM private key file for --tls-cert")
	idle := f.str("session-idle", "15m", "a staff session ends after this long without a request")
	absolute := f.str("session-max", "8h", "a staff session ends this long after login, whatever the activity")
	minOwed := f.str("collections-min-owed-cents", "1000", "the collections export lists accounts owing at least this many cents")
	minDays := f.str("collections-min-days-overdue", "30", "or with an item at least this many days overdue")
	maxConns := f.str("http-max-conns", strconv.Itoa(desk.DefaultMaxConns), "most staff HTTP connections open at once; more are closed at once")
	minFree := f.str("min-free-disk", "256MiB", "refuse new work while the data directory's disk has less free, and refuse to start below it (0: no check)")
	maxConnsIP := f.str("http-max-conns-per-ip", strconv.Itoa(desk.DefaultMaxConnsPerIP), "most staff HTTP connections open at once from one address (IPv6: one /64); behind a reverse proxy, raise it to --http-max-conns")
	return func() (serviceConfig, error) {
		var cfg serviceConfig
		var err error
		if cfg.Logger, err = newLogger(f.Output(), *level); err != nil {
			return cfg, err
		}
		if cfg.Location, err = time.LoadLocation(*tz); err != nil {
			return cfg, fmt.Errorf("--timezone: %w", err)
		}
		if cfg.Replicas, err = strconv.Atoi(*replicas); err != nil || cfg.Replicas < 1 {
			return cfg, errors.New("--replicas must be a positive number")
		}
		if cfg.SweepInterval, err = time.ParseDuration(*sweep); err != nil || cfg.SweepInterval <= 0 {
			return cfg, errors.New("--sweep-interval must be a positive duration")
		}
		if cfg.RulesInterval, err = time.ParseDuration(*rules); err != nil || cfg.RulesInterval <= 0 {
			return cfg, errors.New("--rules-interval must be a positive duration")
		}
		if *rulesFile != "" {
			if cfg.Rules, err = readRules(*rulesFile); err != nil {
				return cfg, err
			}
		}
		if (*tlsCert == "") != (*tlsKey == "") {
			return cfg, errors.New("--tls-cert and --tls-key go together")
		}
		cfg.TLSCert, cfg.TLSKey = *tlsCert, *tlsKey
		if (*natsTLSCert == "") != (*natsTLSKey == "") {
			return cfg, errors.New("--nats-tls-cert and --nats-tls-key go together")
		}
		cfg.NATSTLSCert, cfg.NATSTLSKey, cfg.NATSCreds = *natsTLSCert, *natsTLSKey, *natsCreds
		rate, err := strconv.ParseFloat(*kioskRate, 64)
		if err != nil || rate <= 0 || rate > 1e6 {
			return cfg, errors.New("--kiosk-rate must be a positive number of requests per second")
		}
		cfg.Kiosks.Rate, cfg.Kiosks.Burst = rate, max(1, int(2*rate))
		if cfg.Sessions.Idle, err = time.ParseDuration(*idle); err != nil || cfg.Sessions.Idle <= 0 {
			return cfg, errors.New("--session-idle must be a positive duration")
		}
		if cfg.Sessions.Absolute, err = time.ParseDuration(*absolute); err != nil || cfg.Sessions.Absolute < cfg.Sessions.Idle {
			return cfg, errors.New("--session-max must be a duration no shorter than --session-idle")
		}
		if cfg.Collections.MinOwedCents, err = strconv.ParseInt(*minOwed, 10, 64); err != nil || cfg.Collections.MinOwedCents < 0 {
			return cfg, errors.New("--collections-min-owed-cents must be a whole number, 0 or more")
		}
		if cfg.Collections.MinDaysOverdue, err = strconv.Atoi(*minDays); err != nil || cfg.Collections.MinDaysOverdue < 0 {
			return cfg, errors.New("--collections-min-days-overdue must be a whole number, 0 or more")
		}
		if cfg.HTTPServer.MaxConns, err = strconv.Atoi(*maxConns); err != nil || cfg.HTTPServer.MaxConns < 1 {
			return cfg, errors.New("--http-max-conns must be a positive number")
		}
		if cfg.HTTPServer.MaxConnsPerIP, err = strconv.Atoi(*maxConnsIP); err != nil || cfg.HTTPServer.MaxConnsPerIP < 1 ||
			cfg.HTTPServer.MaxConnsPerIP > cfg.HTTPServer.MaxConns {
			return cfg, errors.New("--http-max-conns-per-ip must be a positive number, at most --http-max-conns")
		}
		if cfg.MinFreeDisk, err = parseSize(*minFree); err != nil {
			return cfg, fmt.Errorf("--min-free-disk: %w", err)
		}
		cfg.Data, cfg.NATSURL, cfg.NATSListen, cfg.HTTP, cfg.Sync = *data, *natsURL, *listen, *httpAddr, *sync
		cfg.MasterKeyFile, cfg.MasterKey = *masterFile, f.getenv("LETHE_MASTER_KEY")
		return cfg, nil
	}
}

func readRules(path string) (ledger.Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ledger.Rules{}, fmt.Errorf("rules: %w", err)
	}
	var r struct {
		LoanDays          int   `json:"loan_days"`
		MaxRenewals       int   `json:"max_renewals"`
		MaxLoans          int   `json:"max_loans"`
		DailyFineCents    int64 `json:"daily_fine_cents"`
		MaxFineCents      int64 `json:"max_fine_cents"`
		BlockCents        int64 `json:"block_cents"`
		LostAfterDays     int   `json:"lost_after_days"`
		DamageFeeCents    int64 `json:"damage_fee_cents"`
		DefaultPriceCents int64 `json:"default_price_cents"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return ledger.Rules{}, fmt.Errorf("rules %s: %w", path, err)
	}
	rules := ledger.Rules{LoanDays: r.LoanDays, MaxRenewals: r.MaxRenewals, MaxLoans: r.MaxLoans,
		DailyFineCents: r.DailyFineCents, MaxFineCents: r.MaxFineCents, BlockCents: r.BlockCents,
		LostAfterDays: r.LostAfterDays, DamageFeeCents: r.DamageFeeCents, DefaultPriceCents: r.DefaultPriceCents}
	return rules, rules.Validate()
}

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("serve", getenv, stderr)
	build := serviceFlags(f, "./lethe-data", "60s", "127.0.0.1:4222")
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := build()
	if err != nil {
		return &exitError{2, err}
	}
	s, err := startService(ctx, cfg)
	if err != nil {
		return err
	}
	cfg.Logger.Info("lethe ready", "http", s.httpURL, "nats", s.natsURL(), "data", cfg.Data)
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
	case <-s.failed():
	}
	return s.stop()
}
