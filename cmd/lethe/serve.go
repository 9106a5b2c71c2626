package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// serviceFlags declares the flags shared by serve and demo, with the defaults that differ
// between them.
func serviceFlags(f flags, dataDefault, sweepDefault, natsListenDefault string) func() (node.ServiceConfig, error) {
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
	keyring, retention := backupFlags(f)
	cpEvery := f.str("checkpoint-interval", node.DefaultCheckpointInterval.String(), "append a signed checkpoint of the stream at least this often (when anything came)")
	cpEvents := f.str("checkpoint-events", strconv.Itoa(node.DefaultCheckpointEvents), "or after this many events, whichever comes first")
	sip2Cfg := sip2Flags(f)
	clusterCfg := clusterFlags(f)
	return func() (node.ServiceConfig, error) {
		var cfg node.ServiceConfig
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
		if cfg.CheckpointInterval, err = time.ParseDuration(*cpEvery); err != nil || cfg.CheckpointInterval <= 0 {
			return cfg, errors.New("--checkpoint-interval must be a positive duration")
		}
		if cfg.CheckpointEvents, err = strconv.Atoi(*cpEvents); err != nil || cfg.CheckpointEvents < 1 {
			return cfg, errors.New("--checkpoint-events must be a positive number")
		}
		cfg.BackupKeyring = *keyring
		if cfg.BackupRetention, err = time.ParseDuration(*retention); err != nil || cfg.BackupRetention <= 0 {
			return cfg, errors.New("--backup-retention must be a positive duration such as 168h")
		}
		if err := sip2Cfg(&cfg); err != nil {
			return cfg, err
		}
		if err := clusterCfg(&cfg); err != nil {
			return cfg, err
		}
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
	if err := schemas.DecodeStrict(data, &r); err != nil {
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
	s, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	mode := "single node: keys in " + filepath.Join(cfg.Data, "keystore")
	if s.Clustered() {
		mode = fmt.Sprintf("node %s of cluster %s: keys in the cluster's bucket LETHE_KEYS", cfg.Cluster.Node, cfg.Cluster.Name)
	}
	cfg.Logger.Info("lethe ready", "mode", mode, "http", s.HTTPURL, "nats", s.NATSURL(), "data", cfg.Data, "checkpoint_key", s.VerifierKey())
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
	case <-s.Failed():
	}
	return s.Stop()
}
