package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/imagineif/lethe/demo"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

const simulateUsage = `usage: lethe simulate --server URL[,URL...] --user NAME --password-file FILE
                      --nats-url URL[,URL...] --nats-creds FILE[,FILE...] [flags]

The simulated library of lethe demo, against a running server or cluster: it catalogs
--items and registers --patrons through the staff HTTP API (as --user, an
administrator), then runs --kiosks simulated kiosks over NATS with kiosk credentials
(from 'lethe kiosks add'; kiosks share them in turn when there are fewer files than
kiosks). A summary line every --every: checked out, returned, refused (Lethe's coded
refusals, expected), errors (no answer after every retry).

Against a cluster, give every node: the kiosks' connections move to another NATS server
when theirs dies or is cut off, and the desk to the next --server. A command that got no
answer is sent again, same command id and same body, as a real kiosk does; Lethe applies
it once. --acks FILE appends every acknowledged command as a JSON line
{"command","command_id"}, to check against the stream.
`

// cmdSimulate runs the simulated library (package demo) against a server over the network.
func cmdSimulate(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("simulate", getenv, stderr)
	f.Usage = func() { fmt.Fprint(stderr, simulateUsage); f.PrintDefaults() }
	servers := f.str("server", localURL(getenv, "LETHE_HTTP", "http", "LETHE_TLS_CERT", "https", "http://127.0.0.1:8080"),
		"the staff HTTP API's address, or several, comma-separated: the desk moves to the next when one stops answering")
	user := f.str("user", "", "staff account to act as (an administrator: it catalogs items)")
	pwFile := f.str("password-file", "", "file holding the account's password; else LETHE_PASSWORD, else a prompt on a terminal")
	ca := f.str("ca-cert", "", "PEM certificate to trust for https servers with a private certificate")
	natsURLs := f.str("nats-url", localURL(getenv, "LETHE_NATS_LISTEN", "nats", "LETHE_NATS_TLS_CERT", "tls", "nats://127.0.0.1:4222"),
		"the NATS servers kiosks reach, comma-separated")
	natsCA := f.str("nats-ca", "", "PEM file of the CA that signed the NATS servers' certificates, for tls:// URLs")
	creds := f.str("nats-creds", "", "kiosk credentials files (from 'lethe kiosks add'), comma-separated")
	kiosks := f.Int("kiosks", 6, "simulated kiosks")
	items := f.Int("items", 500, "items to catalog (barcodes 30000001 on: a second run finds them cataloged)")
	patrons := f.Int("patrons", 100, "patrons to register")
	duration := f.Duration("duration", 0, "how long the kiosks run; 0 runs until stopped")
	every := f.Duration("every", 5*time.Second, "how often a summary line is printed (on a terminal: a line redrawn every second)")
	acksFile := f.String("acks", "", "append every acknowledged command, {\"command\",\"command_id\"} a line, to this file")
	wait := f.Duration("wait", 2*time.Minute, "how long to wait at the start for a server to answer")
	dashboard := f.String("dashboard", "", "the staff desk's address as people reach it, printed once the library is seeded")
	if err := f.parse(args); err != nil {
		return err
	}
	switch {
	case len(f.Args()) > 0:
		return &exitError{2, fmt.Errorf("unexpected argument %q", f.Arg(0))}
	case *user == "":
		return &exitError{2, errors.New("--user is required: the staff account that catalogs and registers")}
	case *creds == "":
		return &exitError{2, errors.New("--nats-creds is required: kiosks connect with their own credentials")}
	case *kiosks < 1 || *items < 1 || *patrons < 1:
		return &exitError{2, errors.New("--kiosks, --items and --patrons must each be at least 1")}
	case *every <= 0 || *wait < 0:
		return &exitError{2, errors.New("--every must be positive and --wait not negative")}
	}
	bases := splitList(*servers)
	if len(bases) == 0 {
		return &exitError{2, errors.New("--server is required")}
	}
	password, err := clientPassword(*pwFile, getenv("LETHE_PASSWORD"), stdin, stderr)
	if err != nil {
		return err
	}
	hc, err := httpClient(*ca)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lethe simulate: a simulated library against %s; kiosks over %s\n", strings.Join(bases, ", "), *natsURLs)
	desk := &staffServers{bases: bases, hc: hc, user: *user, password: password}
	natsTLS, err := natsTLSConfig(*natsCA)
	if err != nil {
		return err
	}
	remote := &demo.Remote{Staff: desk}
	for _, path := range splitList(*creds) {
		kc, rk, err := connectKiosk(path, *natsURLs, natsTLS, stderr)
		if err != nil {
			return err
		}
		defer kc.Close()
		remote.Kiosks = append(remote.Kiosks, rk)
	}
	var acks func(name, id string)
	if *acksFile != "" {
		af, err := os.OpenFile(*acksFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--acks: %w", err)
		}
		defer af.Close()
		var mu sync.Mutex
		acks = func(name, id string) {
			line, _ := json.Marshal(struct {
				Command   string `json:"command"`
				CommandID string `json:"command_id"`
			}{name, id})
			mu.Lock()
			defer mu.Unlock()
			if _, err := af.Write(append(line, '\n')); err != nil {
				fmt.Fprintf(stderr, "lethe simulate: --acks: %v\n", err)
			}
		}
	}

	if err := desk.waitReady(ctx, *wait, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cataloging %s items and registering %s patrons...\n", count(*items), count(*patrons))
	seeded := time.Now()
	lib, err := demo.Seed(ctx, remote, *items, *patrons, stderr)
	if err != nil {
		return err
	}
	names := make([]string, len(remote.Kiosks))
	for i, k := range remote.Kiosks {
		names[i] = k.Branch + "/" + k.ID
	}
	fmt.Fprintf(stdout, "seeded in %s; %d simulated kiosks start now, as %s\n", time.Since(seeded).Round(time.Millisecond), *kiosks, strings.Join(names, ", "))
	if *dashboard != "" {
		fmt.Fprintf(stdout, "dashboard: %s (sign in as %s)\n", *dashboard, *user)
	}
	runCtx := ctx
	if *duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	t, err := lib.Run(runCtx, remote, demo.RunConfig{Kiosks: *kiosks, Summary: stdout, Every: *every, Acknowledged: acks})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "totals: checked out %d, returned %d, renewed %d, fines %d, payments %d, refused %d, errors %d\n",
		t.Checkouts.Load(), t.Returns.Load(), t.Renewals.Load(), t.Fines.Load(), t.Payments.Load(), t.Refused.Load(), t.Errors.Load())
	return nil
}

// httpClient trusts ca (a PEM file) when given, and bounds how long a server that is gone
// can hold a request: a killed node's address may not even refuse the connection.
func httpClient(ca string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 15 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 15 * time.Second
	if ca != "" {
		pool, err := readPool(ca, "--ca-cert")
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func natsTLSConfig(ca string) (*tls.Config, error) {
	if ca == "" {
		return nil, nil
	}
	pool, err := readPool(ca, "--nats-ca")
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func readPool(path, flag string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", flag)
	}
	return pool, nil
}

// kioskConn is a kiosk's connection to every NATS URL in turn: it keeps trying for as
// long as it lives, pings every two seconds so that a server cut off from the network is
// noticed within seconds, and moves to another server when its own is gone. nats.go gives
// a connection up for good when a server refuses its credentials twice (a node that has
// not yet heard of the kiosk); the next request then connects again. It says what
// happens on w.
type kioskConn struct {
	label, urls string
	opts        []nats.Option
	w           io.Writer

	mu     sync.Mutex
	nc     *nats.Conn
	dialed time.Time
}

// connectKiosk connects as the kiosk a credentials file names.
func connectKiosk(path, urls string, tlsConfig *tls.Config, w io.Writer) (*kioskConn, demo.RemoteKiosk, error) {
	contents, err := os.ReadFile(path)
	if err != nil {
		return nil, demo.RemoteKiosk{}, fmt.Errorf("credentials: %w", err)
	}
	branch, id, ok := identity.KioskOf(contents)
	if !ok || !ledger.ValidToken(branch) || !ledger.ValidToken(id) {
		return nil, demo.RemoteKiosk{}, fmt.Errorf("credentials %s name no kiosk: make them with 'lethe kiosks add BRANCH KIOSK'", path)
	}
	creds, err := node.CredentialsOption(path)
	if err != nil {
		return nil, demo.RemoteKiosk{}, err
	}
	label := branch + "/" + id
	k := &kioskConn{label: label, urls: urls, w: w}
	k.opts = []nats.Option{
		nats.Name("lethe simulate kiosk " + label), creds,
		nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond), nats.RetryOnFailedConnect(true),
		nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(2),
		// A server's advertised peers are addresses its certificate may not name; the
		// URLs given are the ones to use.
		nats.IgnoreDiscoveredServers(),
		nats.ConnectHandler(func(nc *nats.Conn) {
			fmt.Fprintf(w, "kiosk %s: connected to %s\n", label, nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			fmt.Fprintf(w, "kiosk %s: reconnected, to %s\n", label, nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				fmt.Fprintf(w, "kiosk %s: disconnected: %v\n", label, err)
			}
		}),
	}
	if tlsConfig != nil {
		k.opts = append(k.opts, nats.Secure(tlsConfig.Clone()))
	}
	if _, err := k.conn(); err != nil {
		return nil, demo.RemoteKiosk{}, err
	}
	return k, demo.RemoteKiosk{Branch: branch, ID: id, Conn: k}, nil
}

// conn returns the live connection, or makes a new one (at most one a second) when
// nats.go gave the last one up.
func (k *kioskConn) conn() (*nats.Conn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.nc != nil && !k.nc.IsClosed() {
		return k.nc, nil
	}
	if k.nc != nil {
		if time.Since(k.dialed) < time.Second {
			return nil, fmt.Errorf("kiosk %s: connection given up (%v)", k.label, k.nc.LastError())
		}
		fmt.Fprintf(k.w, "kiosk %s: connection given up (%v); connecting again\n", k.label, k.nc.LastError())
	}
	k.dialed = time.Now()
	nc, err := nats.Connect(k.urls, k.opts...)
	if err != nil {
		return nil, fmt.Errorf("connect kiosk %s to %s: %w", k.label, k.urls, err)
	}
	k.nc = nc
	return nc, nil
}

// RequestWithContext sends a request on the live connection.
func (k *kioskConn) RequestWithContext(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	nc, err := k.conn()
	if err != nil {
		return nil, err
	}
	return nc.RequestWithContext(ctx, subject, data)
}

// Close closes the connection.
func (k *kioskConn) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.nc != nil {
		k.nc.Close()
	}
}

// staffServers is a staff session with one of several servers of a cluster: when the one
// in use gives no answer, the request goes to the next, after a login there. Commands
// carry their command ids, so one sent again is applied once.
type staffServers struct {
	bases          []string
	hc             *http.Client
	user, password string

	mu  sync.Mutex
	cur int     // the server in use
	c   *client // its session; nil until logged in
	// A server that refused the login (a node that has not yet heard of the account, or
	// one that locked it) is not asked again before notBefore, and the wait doubles each
	// time: four refusals take seven minutes, so retries never make the fifth failed login
	// in fifteen minutes that locks the account.
	notBefore map[int]time.Time
	wait      map[int]time.Duration
}

// session returns the session with the server in use, logging in if there is none.
func (s *staffServers) session(ctx context.Context) (*client, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		if t := s.notBefore[s.cur]; time.Now().Before(t) {
			return nil, s.cur, fmt.Errorf("%s refused the login; not asking it again before %s", s.bases[s.cur], t.Format(time.TimeOnly))
		}
		c, err := login(ctx, s.hc, strings.TrimRight(s.bases[s.cur], "/"), s.user, s.password)
		var e *schemas.Error
		if errors.As(err, &e) && (e.Code == schemas.CodeUnauthenticated || e.Code == schemas.CodeRateLimited) {
			if s.notBefore == nil {
				s.notBefore, s.wait = map[int]time.Time{}, map[int]time.Duration{}
			}
			s.wait[s.cur] = max(time.Minute, 2*s.wait[s.cur])
			s.notBefore[s.cur] = time.Now().Add(s.wait[s.cur])
		}
		if err != nil {
			return nil, s.cur, err
		}
		delete(s.wait, s.cur)
		s.c = c
	}
	return s.c, s.cur, nil
}

// drop forgets server i's session; next also moves on to the next server.
func (s *staffServers) drop(i int, next bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != i {
		return // another request moved on already
	}
	s.c = nil
	if next {
		s.cur = (s.cur + 1) % len(s.bases)
	}
}

// Do sends the request to the server in use, and to each of the others in turn while
// none answers. A session the server no longer knows (it restarted) is made again.
func (s *staffServers) Do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var last error
	for range len(s.bases) + 1 {
		c, i, err := s.session(ctx)
		if err == nil {
			var out []byte
			out, err = c.send(ctx, method, path, body)
			var e *schemas.Error
			switch {
			case err == nil:
				return out, nil
			case errors.As(err, &e) && e.Code == schemas.CodeUnauthenticated:
				s.drop(i, false) // log in again, here
				last = err
				continue
			case errors.As(err, &e):
				return nil, err // Lethe's answer
			}
		}
		// No answer, or no login here (this server may not know the account yet): the next.
		last = err
		s.drop(i, true)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// waitReady logs in to a server, waiting up to wait for one to answer (a cluster that is
// starting elects its leaders first), and says what it waits for on w, once per reason.
func (s *staffServers) waitReady(ctx context.Context, wait time.Duration, w io.Writer) error {
	deadline := time.Now().Add(wait)
	said := map[string]bool{}
	for {
		_, i, err := s.session(ctx)
		if err == nil {
			return nil
		}
		s.drop(i, true)
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no server answered within %s: %w", wait, err)
		}
		if why := err.Error(); !said[why] {
			fmt.Fprintf(w, "waiting for a server to answer (%v)...\n", err)
			said[why] = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
