package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

const kioskUsage = `usage: lethe kiosk [flags] checkout CARD BARCODE
       lethe kiosk [flags] return BARCODE
       lethe kiosk [flags] renew CARD BARCODE
       lethe kiosk [flags] info CARD

A test kiosk: sends one kiosk command over NATS with a kiosk's credentials file (from
'lethe kiosks add'), as a self-check machine would, and prints the reply's result. It
makes the command id itself. Exit status 1 when Lethe refuses the command.
`

// cmdKiosk is a small kiosk client for the tour and for checking a kiosk's credentials.
func cmdKiosk(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("kiosk", getenv, stderr)
	url := f.str("nats-url", localURL(getenv, "LETHE_NATS_LISTEN", "nats", "LETHE_NATS_TLS_CERT", "tls", "nats://127.0.0.1:4222"),
		"the NATS server kiosks reach; by default the one LETHE_NATS_LISTEN gives lethe serve")
	creds := f.str("nats-creds", "", "the kiosk's credentials file (from 'lethe kiosks add')")
	ca := f.str("nats-ca", "", "PEM file of the CA that signed the server's certificate, for tls:// URLs with a private CA")
	as := f.String("as", "", "BRANCH/KIOSK, when the credentials file does not say")
	pos, err := parseInterleaved(f, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, kioskUsage)
		return &exitError{2, errors.New("no kiosk command given")}
	}
	if *creds == "" {
		return &exitError{2, errors.New("--nats-creds is required: kiosks connect with their own credentials")}
	}
	contents, err := os.ReadFile(*creds)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	branch, kiosk, ok := identity.KioskOf(contents)
	if *as != "" {
		branch, kiosk, ok = strings.Cut(*as, "/")
	}
	if !ok || !ledger.ValidToken(branch) || !ledger.ValidToken(kiosk) {
		return &exitError{2, errors.New("the credentials file names no kiosk: give --as BRANCH/KIOSK")}
	}
	cmd, body, err := kioskCommand(pos)
	if err != nil {
		fmt.Fprint(stderr, kioskUsage)
		return &exitError{2, err}
	}
	opts := []nats.Option{nats.Name("lethe kiosk " + branch + "/" + kiosk), nats.MaxReconnects(0)}
	o, err := node.CredentialsOption(*creds)
	if err != nil {
		return err
	}
	opts = append(opts, o)
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return fmt.Errorf("--nats-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("--nats-ca holds no PEM certificate")
		}
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	var nc *nats.Conn
	err = untilStarted(ctx, stderr, *url, func() (err error) {
		nc, err = nats.Connect(*url, opts...)
		return err
	}, natsStarting)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *url, err)
	}
	defer nc.Close()
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A server that is starting listens before its kiosk service answers. Sending the
	// same command (and command id) again is safe: Lethe applies it once.
	var m *nats.Msg
	err = untilStarted(rctx, stderr, *url, func() (err error) {
		m, err = nc.RequestWithContext(rctx, ledger.KioskSubject(branch, kiosk, cmd), raw)
		return err
	}, natsStarting)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	var r schemas.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("%s: a reply that is not Lethe's: %w", cmd, err)
	}
	if !r.OK {
		if r.Error == nil {
			return errors.New("refused without a reason")
		}
		return r.Error
	}
	var out bytes.Buffer
	if err := json.Indent(&out, r.Result, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = stdout.Write(out.Bytes())
	return err
}

// kioskCommand turns the command line into a kiosk command and its body, with a fresh
// command id where the command takes one.
func kioskCommand(pos []string) (string, any, error) {
	id := uuid.NewString()
	switch {
	case pos[0] == "checkout" && len(pos) == 3:
		return schemas.CmdCheckOut, schemas.CheckOut{CommandID: id, Card: pos[1], Barcode: pos[2]}, nil
	case pos[0] == "return" && len(pos) == 2:
		return schemas.CmdReturn, schemas.Return{CommandID: id, Barcode: pos[1]}, nil
	case pos[0] == "renew" && len(pos) == 3:
		return schemas.CmdRenew, schemas.Renew{CommandID: id, Card: pos[1], Barcode: pos[2]}, nil
	case pos[0] == "info" && len(pos) == 2:
		return schemas.CmdPatronInfo, schemas.PatronInfo{Card: pos[1]}, nil
	}
	return "", nil, fmt.Errorf("%q with %d arguments is not a kiosk command", pos[0], len(pos)-1)
}
