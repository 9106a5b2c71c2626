package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

func TestLocalURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "http://127.0.0.1:8080"},
		{map[string]string{"LETHE_HTTP": "off"}, "http://127.0.0.1:8080"},
		{map[string]string{"LETHE_HTTP": "127.0.0.1:9090"}, "http://127.0.0.1:9090"},
		{map[string]string{"LETHE_HTTP": ":9090"}, "http://127.0.0.1:9090"},
		{map[string]string{"LETHE_HTTP": "0.0.0.0:9090", "LETHE_TLS_CERT": "c.pem"}, "https://127.0.0.1:9090"},
		{map[string]string{"LETHE_HTTP": "[::]:9090"}, "http://127.0.0.1:9090"},
		{map[string]string{"LETHE_HTTP": "[::1]:9090"}, "http://[::1]:9090"},
		{map[string]string{"LETHE_HTTP": "desk.example.org:443", "LETHE_TLS_CERT": "c.pem"}, "https://desk.example.org:443"},
	} {
		got := localURL(func(k string) string { return c.env[k] }, "LETHE_HTTP", "http", "LETHE_TLS_CERT", "https", "http://127.0.0.1:8080")
		if got != c.want {
			t.Errorf("localURL(%v) = %q, want %q", c.env, got, c.want)
		}
	}
}

// freeAddr returns a loopback address nothing listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestClientsWaitForAStartingServer: a staff command and a test kiosk started before the
// server (as after 'lethe serve &') say that they wait, and then do their work; they find
// the server from LETHE_HTTP and LETHE_NATS_LISTEN, as lethe serve does.
func TestClientsWaitForAStartingServer(t *testing.T) {
	t.Parallel()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	data := t.TempDir()
	// The kiosk's identity exists before the server starts, as after `lethe kiosks add`
	// on a stopped server.
	id, seed, err := identity.Open(data).Add(identity.Kiosk, "main", "k1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "main-k1.nk")
	f, err := os.OpenFile(creds, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteCredentials(f, id, seed, ""); err != nil {
		t.Fatal(err)
	}
	f.Close()
	env := map[string]string{"LETHE_HTTP": httpAddr, "LETHE_NATS_LISTEN": natsAddr,
		"LETHE_USER": lethetest.Admin, "LETHE_PASSWORD": lethetest.Password}
	getenv := func(k string) string { return env[k] }
	type result struct {
		out string
		err error
	}
	var logErr, kioskErr testkit.SyncBuffer
	logDone, kioskDone := make(chan result, 1), make(chan result, 1)
	go func() {
		var out testkit.SyncBuffer
		err := run(context.Background(), []string{"access-log"}, getenv, nil, &out, &logErr)
		logDone <- result{out.String(), err}
	}()
	go func() {
		var out testkit.SyncBuffer
		err := run(context.Background(), []string{"kiosk", "--nats-creds", creds, "return", "NOSUCHITEM"}, getenv, nil, &out, &kioskErr)
		kioskDone <- result{out.String(), err}
	}()
	testkit.WaitFor(t, "both clients to say they wait", func() bool {
		return strings.Contains(logErr.String(), "waiting for the server to start at http://"+httpAddr) &&
			strings.Contains(kioskErr.String(), "waiting for the server to start at nats://"+natsAddr)
	})
	lethetest.New(t, func(c *node.ServiceConfig) { c.Data, c.HTTP, c.NATSListen = data, httpAddr, natsAddr })

	r := <-logDone
	if r.err != nil || !strings.Contains(r.out, "STAFF") {
		t.Errorf("access-log before the server started = %v, %q\n%s", r.err, r.out, logErr.String())
	}
	// The kiosk reached Lethe: the refusal is Lethe's, about the item.
	r = <-kioskDone
	var e *schemas.Error
	if !errors.As(r.err, &e) || e.Code != schemas.CodeNotFound {
		t.Errorf("kiosk return before the server started = %v, want Lethe's not_found\n%s", r.err, kioskErr.String())
	}
}

// TestKioskWaitsForNewCredentials: a kiosk added while the server runs is known to it
// within a second; the test kiosk used at once waits for that instead of failing.
func TestKioskWaitsForNewCredentials(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithNATSListen())
	h.Register("21000000000901", "Nell Newkiosk", "1980-01-01")
	creds := filepath.Join(t.TempDir(), "main-k9.nk")
	env := func(string) string { return "" }
	var out, errOut testkit.SyncBuffer
	if err := run(context.Background(), []string{"kiosks", "add", "main", "k9", "--data", h.Cfg.Data, "--out", creds}, env, nil, &out, &errOut); err != nil {
		t.Fatalf("kiosks add: %v\n%s", err, errOut.String())
	}
	var info testkit.SyncBuffer
	err := run(context.Background(), []string{"kiosk", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "info", "21000000000901"}, env, nil, &info, &errOut)
	if err != nil || !strings.Contains(info.String(), "{") {
		t.Fatalf("kiosk info right after kiosks add = %v, %q\n%s", err, info.String(), errOut.String())
	}
	// Credentials the server never learns of are refused after the wait, not forever.
	other := filepath.Join(t.TempDir(), "main-k8.nk")
	if err := run(context.Background(), []string{"kiosks", "add", "main", "k8", "--data", t.TempDir(), "--out", other}, env, nil, &out, &errOut); err != nil {
		t.Fatalf("kiosks add elsewhere: %v", err)
	}
	begin := time.Now()
	err = run(context.Background(), []string{"kiosk", "--nats-url", h.S.NATSURL(), "--nats-creds", other, "info", "21000000000901"}, env, nil, &out, &errOut)
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("kiosk with unknown credentials = %v, want an authorization error", err)
	}
	if took := time.Since(begin); took < identityWait || took > startWait {
		t.Errorf("unknown credentials refused after %s, want after about %s", took, identityWait)
	}
}
