package sip2_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/node"
	"github.com/nats-io/nats.go"
)

// The SIP2 round trip next to the NATS kiosk API's, in one run:
//
//	go test -run '^$' -bench 'CheckoutCheckin' -benchtime 200x ./sip2
//
// Each iteration checks one item out and in again, over TCP on loopback: as a self-check
// speaking SIP2 with checksums (plain and over TLS), and as a kiosk with its own NKey
// speaking NATS request/reply.

func benchServer(b *testing.B, opts ...lethetest.Option) *lethetest.Harness {
	h := lethetest.New(b, opts...)
	h.Register("21000000009997", "Bench Reader", "1980-01-01")
	h.Catalog("BENCH", 1000)
	return h
}

func benchSIP2(b *testing.B, c *client) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	i := 0
	b.ResetTimer()
	for b.Loop() {
		// A new transaction date each time: the message, and so its command id, is new.
		at := date(t0.Add(time.Duration(i) * time.Second))
		i++
		if r := c.send("11NN" + at + strings.Repeat(" ", 18) + "AOlethe|AA21000000009997|ABBENCH|"); !strings.HasPrefix(r, "121") {
			b.Fatalf("checkout = %q", r)
		}
		if r := c.send("09N" + at + strings.Repeat(" ", 18) + "AOlethe|ABBENCH|"); !strings.HasPrefix(r, "101") {
			b.Fatalf("checkin = %q", r)
		}
	}
}

func BenchmarkSIP2CheckoutCheckin(b *testing.B) {
	h := benchServer(b, lethetest.WithSIP2(false))
	user, pw := h.SIP2Kiosk("main", "bench")
	c := dial(b, h.SIP2Addr(), true)
	if r := c.send(fmt.Sprintf("9300CN%s|CO%s|", user, pw)); r != "941" {
		b.Fatalf("login = %q", r)
	}
	benchSIP2(b, c)
}

func BenchmarkSIP2CheckoutCheckinTLS(b *testing.B) {
	certFile, keyFile, pool := testkit.SelfSignedCert(b)
	h := benchServer(b, lethetest.WithSIP2(false), lethetest.WithSIP2Config(func(c *node.SIP2Config) { c.TLSCert, c.TLSKey = certFile, keyFile }))
	user, pw := h.SIP2Kiosk("main", "bench")
	conn, err := tls.Dial("tcp", h.SIP2Addr(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := &client{t: b, c: conn, r: bufio.NewReader(conn), checksum: true}
	if r := c.send(fmt.Sprintf("9300CN%s|CO%s|", user, pw)); r != "941" {
		b.Fatalf("login = %q", r)
	}
	benchSIP2(b, c)
}

func BenchmarkNATSKioskCheckoutCheckin(b *testing.B) {
	h := benchServer(b, lethetest.WithNATSListen())
	creds := h.IdentityFile(identity.Kiosk, "main", "bench")
	o, err := nats.NkeyOptionFromSeed(creds)
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(h.S.NATSURL(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	lethetest.KioskRoundTrips(b, nc, "main", "bench", "21000000009997", "BENCH")
}
