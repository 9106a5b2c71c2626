package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/imagineif/lethe/sip2"
)

const sip2Usage = `usage: lethe sip2 [flags] COMMAND
  send MESSAGE...         log in, then send each message as written (AY and AZ are added)
  status                  99 SC status
  checkout CARD BARCODE   11 checkout
  checkin BARCODE         09 checkin
  info CARD               63 patron information, with the items charged
  item BARCODE            17 item information

A test self-check: it logs in as a kiosk's SIP2 login (--user BRANCH/KIOSK, the password
from --password-file or LETHE_SIP2_PASSWORD), sends the messages with sequence numbers and
checksums, checks each reply's checksum and prints every exchange (the password masked).
It exits 1 when the login or a checkout, checkin or payment is refused. Each run is a new
session whose sequence numbers start at 1: the same command run twice within a second is
the same SIP2 message, which Lethe treats as a resend and applies once.
`

// cmdSIP2 is lethe sip2: a small SIP2 client for operators testing a terminal login and
// a checkout from the command line.
func cmdSIP2(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("sip2", getenv, stderr)
	f.Usage = func() { fmt.Fprint(stderr, sip2Usage); f.PrintDefaults() }
	server := f.str("server", "", "the SIP2 listener, host:port; default the address in LETHE_SIP2_LISTEN")
	user := f.str("user", "", "the SIP2 user id: BRANCH/KIOSK")
	pwFile := f.str("password-file", "", "file holding the SIP2 password; else LETHE_SIP2_PASSWORD")
	useTLS := f.Bool("tls", false, "speak TLS (the listener has --sip2-tls-cert)")
	caFile := f.str("ca-cert", "", "PEM certificate(s) to trust for TLS, for a private certificate")
	checksums := f.Bool("checksums", true, "send sequence numbers and checksums (AY, AZ); --checksums=false to leave them out")
	inst := f.str("institution", "lethe", "the institution id (AO) sent")
	pos, err := parseInterleaved(f, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, sip2Usage)
		return &exitError{2, errors.New("no sip2 command given")}
	}
	addr := *server
	if addr == "" {
		addr = getenv("LETHE_SIP2_LISTEN")
	}
	if addr == "" || addr == "off" {
		return &exitError{2, errors.New("no SIP2 server: give --server HOST:PORT")}
	}
	password := getenv("LETHE_SIP2_PASSWORD")
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return fmt.Errorf("--password-file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if *user == "" || password == "" {
		return &exitError{2, errors.New("a SIP2 login needs --user BRANCH/KIOSK and a password (--password-file or LETHE_SIP2_PASSWORD)")}
	}
	tlsOn, check := *useTLS, *checksums
	now := sip2.FormatDate(time.Now())
	ao := "AO" + *inst + "|"
	var msgs []string
	switch cmd, rest := pos[0], pos[1:]; {
	case cmd == "send" && len(rest) > 0:
		msgs = rest
	case cmd == "status" && len(rest) == 0:
		msgs = []string{"9900302.00"}
	case cmd == "checkout" && len(rest) == 2:
		msgs = []string{"11NN" + now + strings.Repeat(" ", 18) + ao + "AA" + rest[0] + "|AB" + rest[1] + "|AC|"}
	case cmd == "checkin" && len(rest) == 1:
		msgs = []string{"09N" + now + strings.Repeat(" ", 18) + ao + "AB" + rest[0] + "|AC|"}
	case cmd == "info" && len(rest) == 1:
		msgs = []string{"63000" + now + "  Y       " + ao + "AA" + rest[0] + "|BP1|BQ50|"}
	case cmd == "item" && len(rest) == 1:
		msgs = []string{"17" + now + ao + "AB" + rest[0] + "|"}
	default:
		fmt.Fprint(stderr, sip2Usage)
		return &exitError{2, fmt.Errorf("lethe sip2: unknown command or wrong arguments")}
	}

	dialer := &net.Dialer{Timeout: 10 * time.Second}
	var conn net.Conn
	if tlsOn {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fmt.Errorf("--ca-cert: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return errors.New("--ca-cert holds no PEM certificate")
			}
		}
		conn, err = tls.DialWithDialer(dialer, "tcp", addr, cfg)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("connect to SIP2 %s: %w", addr, err)
	}
	defer conn.Close()
	s := &sip2Session{conn: conn, r: bufio.NewReader(conn), checksums: check, out: stdout}
	login := "9300CN" + *user + "|CO" + password + "|CP" + strings.SplitN(*user, "/", 2)[0] + "|"
	reply, err := s.exchange(login, "9300CN"+*user+"|CO********|")
	if err != nil {
		return err
	}
	if reply != "941" {
		return errors.New("the SIP2 login was refused (94 with ok 0)")
	}
	for _, m := range msgs {
		reply, err := s.exchange(m, m)
		if err != nil {
			return err
		}
		// Refusals of what changes something exit 1: ok is the first fixed character.
		switch {
		case strings.HasPrefix(reply, "120"), strings.HasPrefix(reply, "100"), strings.HasPrefix(reply, "38N"):
			return errors.New("refused: see the screen message (AF) above")
		}
	}
	return nil
}

// sip2Session is the client's side of one connection.
type sip2Session struct {
	conn      net.Conn
	r         *bufio.Reader
	seq       int
	checksums bool
	out       io.Writer
}

// exchange sends msg (shown as shown) and returns the reply without its AY and AZ, after
// checking them.
func (s *sip2Session) exchange(msg, shown string) (string, error) {
	s.seq = (s.seq + 1) % 10
	frame := func(m string) string {
		if !s.checksums {
			return m
		}
		m += "AY" + strconv.Itoa(s.seq) + "AZ"
		return m + sip2.Checksum([]byte(m))
	}
	fmt.Fprintf(s.out, "> %s\n", frame(shown))
	_ = s.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.conn.Write([]byte(frame(msg) + "\r")); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	line, err := s.r.ReadString('\r')
	if err != nil {
		return "", fmt.Errorf("no reply: %w", err)
	}
	reply := strings.TrimSuffix(line, "\r")
	fmt.Fprintf(s.out, "< %s\n", reply)
	if n := len(reply); s.checksums && n >= 8 && reply[n-6:n-4] == "AZ" {
		if sip2.Checksum([]byte(reply[:n-4])) != reply[n-4:] {
			return "", errors.New("the reply's checksum is wrong")
		}
		reply = reply[:n-6]
		if n := len(reply); n >= 5 && reply[n-3:n-1] == "AY" {
			reply = reply[:n-3]
		}
	}
	return reply, nil
}
