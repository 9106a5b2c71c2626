package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// A client command typed right after 'lethe serve &' (the README's tour does that) must
// not race the server's start: the staff commands, the test kiosk and audit replay wait
// for a server that is starting, and find a server started in the same environment.

// startWait is how long a client command waits for a server that is starting: one that
// refuses connections, or whose kiosk service has no responder yet.
const startWait = 10 * time.Second

// identityWait is how long a NATS client whose credentials are refused tries again: a
// running server reads the identities that 'lethe kiosks add' and 'auditors add' write
// every second.
const identityWait = 3 * time.Second

// untilStarted calls try until it succeeds, fails in a way starting does not excuse after
// that long, or ctx ends, and returns try's last error. While it waits it says why on w,
// once for each reason, so that a command waiting for a server that is not there does not
// hang silently.
func untilStarted(ctx context.Context, w io.Writer, where string, try func() error, starting func(err error, since time.Duration) string) error {
	begin := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	said := ""
	for {
		err := try()
		if err == nil {
			return nil
		}
		why := starting(err, time.Since(begin))
		if why == "" {
			return err
		}
		if why != said {
			fmt.Fprintf(w, "waiting for %s at %s...\n", why, where)
			said = why
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}

// httpStarting excuses a refused connection for startWait.
func httpStarting(err error, since time.Duration) string {
	if since < startWait && errors.Is(err, syscall.ECONNREFUSED) {
		return "the server to start"
	}
	return ""
}

// natsStarting excuses a refused connection (nats.go reports it as no servers) and a
// service with no responder for startWait, and refused credentials for identityWait.
func natsStarting(err error, since time.Duration) string {
	switch {
	case since < startWait && errors.Is(err, nats.ErrNoServers):
		return "the server to start"
	case since < startWait && errors.Is(err, nats.ErrNoResponders):
		return "the kiosk service to start"
	case since < identityWait && errors.Is(err, nats.ErrAuthorization):
		return "the server to accept these credentials (it reads new identities every second)"
	}
	return ""
}

// localURL is where a client finds a server started with the same environment: the
// address in listenEnv (LETHE_HTTP, LETHE_NATS_LISTEN), with scheme, or tlsScheme when
// tlsEnv names a certificate; def when listenEnv is unset or off. A wildcard host is
// reached on loopback.
func localURL(getenv func(string) string, listenEnv, scheme, tlsEnv, tlsScheme, def string) string {
	host, port, err := net.SplitHostPort(getenv(listenEnv))
	if err != nil || port == "" {
		return def
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if getenv(tlsEnv) != "" {
		scheme = tlsScheme
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
