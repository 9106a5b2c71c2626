package sip2

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagineif/lethe/ledger"
)

// Config bounds the gateway and says how it speaks. The zero value of each field means
// the default in its comment.
type Config struct {
	Institution string   // AO and AM when a request names none; default "lethe"
	Delimiter   byte     // the field delimiter; default '|'. Printable ASCII, not a letter or digit
	Encoding    Encoding // of replies; default UTF8. Requests are read as either
	Currency    string   // BH; default "USD"

	MaxConns      int           // sessions open at once; default 256
	MaxConnsPerIP int           // of those, from one address (IPv6: one /64); default 32
	IdleTimeout   time.Duration // a session with no message for this long is closed; default 10m
	ReadTimeout   time.Duration // a message must arrive whole within this once begun; default 30s
	MaxMessage    int           // bytes of one message; longer closes the session; default 4096
	// Logins failing LoginFailures times from one address within LoginWindow make every
	// login from it refused, unchecked, until the window has passed; defaults 5 and 15m.
	LoginFailures int
	LoginWindow   time.Duration

	// AllowPayments lets terminals pay fines (37 fee paid); otherwise payments are
	// refused with a screen message sending the patron to the desk.
	AllowPayments bool
	// RequirePIN refuses every patron transaction whose patron password (AD) is missing,
	// or whose patron has no PIN; a wrong PIN is refused whether or not it is required.
	RequirePIN bool

	Now      func() time.Time // default time.Now
	Location *time.Location   // the zone of dates sent without one; default time.Local
	Logger   *slog.Logger     // default: discard
}

func (c Config) withDefaults() Config {
	if c.Institution == "" {
		c.Institution = "lethe"
	}
	if c.Delimiter == 0 {
		c.Delimiter = '|'
	}
	if c.Encoding == "" {
		c.Encoding = UTF8
	}
	if c.Currency == "" {
		c.Currency = "USD"
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 256
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = 32
	}
	c.MaxConnsPerIP = min(c.MaxConnsPerIP, c.MaxConns)
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = 4096
	}
	if c.LoginFailures <= 0 {
		c.LoginFailures = 5
	}
	if c.LoginWindow <= 0 {
		c.LoginWindow = 15 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Location == nil {
		c.Location = time.Local
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks what a person configures.
func (c Config) Validate() error {
	c = c.withDefaults()
	d := c.Delimiter
	if d <= ' ' || d > '~' || '0' <= d && d <= '9' || 'A' <= d && d <= 'Z' || 'a' <= d && d <= 'z' {
		return errors.New("the SIP2 field delimiter must be one printable ASCII character, not a letter or digit")
	}
	if c.Encoding != UTF8 && c.Encoding != Latin1 {
		return fmt.Errorf("the SIP2 encoding must be %s or %s", UTF8, Latin1)
	}
	if len(c.Currency) != 3 {
		return errors.New("the SIP2 currency is three letters (ISO 4217)")
	}
	return nil
}

// Terminal is a logged-in self-check: a kiosk identity.
type Terminal struct {
	Branch, Kiosk string
}

func (t Terminal) name() string { return t.Branch + "/" + t.Kiosk }

// Logins checks a terminal's login (CN, CO) against the kiosk identities.
type Logins interface {
	Login(user, password string) (Terminal, bool)
}

// Misses are the kiosk API's limits, by "branch/kiosk", shared so that SIP2 and NATS
// count together: its rate per kiosk, and its limit on cards that open no account.
type Misses interface {
	Allow(kiosk string) bool
	CardsBlocked(kiosk string) bool
	CardMissed(kiosk string)
}

// Server is the SIP2 gateway: one goroutine accepting, one per session, all owned and
// waited for by Close.
type Server struct {
	cfg    Config
	l      *ledger.Ledger
	logins Logins
	misses Misses
	ln     net.Listener
	wg     sync.WaitGroup
	checks chan struct{} // password checks at once: argon2id takes 19 MiB each

	mu       sync.Mutex
	closed   bool
	sessions map[*session]struct{}
	perIP    map[string]int
	fails    map[string][]time.Time // failed logins by address, this window

	refused atomic.Int64 // connections closed at accept: too many
}

// Sessions is how many sessions are open.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Refused is how many connections were closed as soon as they were accepted, because
// there were too many sessions in all or from their address.
func (s *Server) Refused() int64 { return s.refused.Load() }

// maxPasswordChecks bounds the logins checked at once.
const maxPasswordChecks = 4

// Serve answers SIP2 sessions on ln until Close. ln is the caller's: TLS, if any, is
// already wrapped around it.
func Serve(ln net.Listener, l *ledger.Ledger, logins Logins, misses Misses, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg.withDefaults(), l: l, logins: logins, misses: misses, ln: ln,
		checks: make(chan struct{}, maxPasswordChecks), sessions: map[*session]struct{}{},
		perIP: map[string]int{}, fails: map[string][]time.Time{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.accept()
	}()
	return s, nil
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) accept() {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary failure (out of file descriptors): back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.cfg.Logger.Warn("sip2 accept", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		ss, ok := s.admit(c)
		if !ok {
			_ = c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			s.serve(ss)
		}()
	}
}

// admit registers a session, or refuses it (too many, or closing). A session admitted
// is counted in wg before accept returns to Accept, so Close waits for it.
func (s *Server) admit(c net.Conn) (*session, bool) {
	ip := addrKey(c.RemoteAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.sessions) >= s.cfg.MaxConns || s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		// Counted, and logged at debug only: a flood must not fill the log.
		s.refused.Add(1)
		s.cfg.Logger.Debug("sip2 connection refused: too many sessions", "remote", ip)
		return nil, false
	}
	ss := &session{c: c, ip: ip}
	s.sessions[ss] = struct{}{}
	s.perIP[ip]++
	s.wg.Add(1)
	return ss, true
}

func (s *Server) leave(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss)
	if s.perIP[ss.ip]--; s.perIP[ss.ip] <= 0 {
		delete(s.perIP, ss.ip)
	}
}

// addrKey is the address sessions are counted by: the IP, or an IPv6 address's /64.
func addrKey(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// Close stops accepting, lets every session finish the message it is answering, closes
// them all and waits for every goroutine.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ss := range s.sessions {
		// Wakes a session waiting for its next message; one answering finishes its answer
		// and then finds the server closed.
		_ = ss.c.SetReadDeadline(time.Unix(1, 0))
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Only cuts the sessions of terminals that are not in kiosks ("branch/kiosk"): called
// with the active kiosk identities whenever they change, so that revoking a kiosk ends
// its open SIP2 sessions too.
func (s *Server) Only(kiosks []string) {
	active := make(map[string]bool, len(kiosks))
	for _, k := range kiosks {
		active[k] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		if t, ok := ss.terminal(); ok && !active[t.name()] {
			ss.revoke()
			s.cfg.Logger.Info("sip2 session closed: kiosk identity no longer active", "kiosk", t.name())
		}
	}
}

// session is one connection.
type session struct {
	c  net.Conn
	ip string

	mu      sync.Mutex
	term    *Terminal // after a successful login
	revoked bool

	// Touched only by the session's own goroutine.
	last       []byte // the last response, for 97
	bad        int    // messages in a row that could not be read
	unauth     int    // commands before login
	loginFails int
}

func (ss *session) terminal() (Terminal, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.term == nil || ss.revoked {
		return Terminal{}, false
	}
	return *ss.term, true
}

func (ss *session) revoke() {
	ss.mu.Lock()
	ss.revoked = true
	ss.mu.Unlock()
	_ = ss.c.Close()
}

// Limits of a session's mistakes before it is closed.
const (
	maxBadMessages   = 5 // in a row that cannot be read (each answered 96)
	maxUnauthorised  = 3 // commands before a login
	maxSessionLogins = 3 // failed logins on one connection
)

var errTooLong = errors.New("sip2 message longer than the limit")

// loginWait is how long a session that has not logged in waits for its next message.
const loginWait = time.Minute

// serve reads messages and answers each until the session ends.
func (s *Server) serve(ss *session) {
	defer s.leave(ss)
	defer ss.c.Close()
	if tc, ok := ss.c.(*tls.Conn); ok {
		// The handshake gets the time of one message, not the idle time.
		_ = tc.SetDeadline(time.Now().Add(s.cfg.ReadTimeout))
		if err := tc.Handshake(); err != nil {
			s.cfg.Logger.Debug("sip2 TLS handshake", "remote", ss.ip, "err", err)
			return
		}
		_ = tc.SetWriteDeadline(time.Time{})
	}
	r := bufio.NewReaderSize(ss.c, 4096)
	for {
		raw, err := s.read(ss, r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errServerClosed) {
				s.cfg.Logger.Debug("sip2 session ended", "remote", ss.ip, "err", err)
			}
			return
		}
		if len(raw) == 0 {
			continue // a blank line: some machines send a bare line feed as a keep-alive
		}
		reply, end := s.handle(ss, raw)
		if reply != nil {
			_ = ss.c.SetWriteDeadline(time.Now().Add(s.cfg.ReadTimeout))
			if _, err := ss.c.Write(append(reply, '\r')); err != nil {
				return
			}
		}
		if end {
			return
		}
	}
}

var errServerClosed = errors.New("sip2 server closed")

// read reads one message: up to IdleTimeout for it to begin, ReadTimeout for the rest.
// The terminator is '\r'; a '\n' that follows it (or stands alone) is dropped.
func (s *Server) read(ss *session, r *bufio.Reader) ([]byte, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errServerClosed
	}
	idle := s.cfg.IdleTimeout
	if _, ok := ss.terminal(); !ok {
		idle = min(idle, loginWait) // a place is held only by a machine that logs in
	}
	_ = ss.c.SetReadDeadline(time.Now().Add(idle))
	s.mu.Unlock()
	if _, err := r.Peek(1); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if !s.closed {
		_ = ss.c.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	}
	s.mu.Unlock()
	var msg []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch b {
		case '\r':
			return msg, nil
		case '\n': // after a '\r' it makes a blank line, skipped; alone it ends a message
			return msg, nil
		}
		if len(msg) >= s.cfg.MaxMessage {
			return nil, errTooLong
		}
		msg = append(msg, b)
	}
}

// commandTimeout bounds one message's work in the ledger, as for the kiosk API.
const commandTimeout = 30 * time.Second

// handle answers one message. It returns the reply's bytes (nil for none) and whether
// the session ends after it.
func (s *Server) handle(ss *session, raw []byte) ([]byte, bool) {
	m, err := Parse(raw, s.cfg.Delimiter)
	if err != nil {
		// A message that cannot be read (a bad checksum, a damaged or unknown message)
		// is answered as the spec says: "96", please send it again. A machine that keeps
		// sending what cannot be read is cut off.
		ss.bad++
		s.cfg.Logger.Debug("sip2 message not understood", "remote", ss.ip, "id", safeID(m.ID), "err", err)
		return s.encode(Message{ID: IDRequestResend, Seq: -1, Checksum: m.Checksum || errors.Is(err, ErrBadChecksum)}), ss.bad >= maxBadMessages
	}
	ss.bad = 0
	switch m.ID {
	case IDRequestACSRsnd, IDRequestResend:
		if ss.last == nil {
			return s.encode(Message{ID: IDRequestResend, Seq: -1, Checksum: m.Checksum}), false
		}
		return ss.last, false // verbatim, with its own sequence number and checksum
	case IDLogin:
		reply, end := s.login(ss, m)
		out, _ := s.remember(ss, reply)
		return out, end
	}
	term, ok := ss.terminal()
	if !ok {
		ss.unauth++
		s.cfg.Logger.Debug("sip2 command before login refused", "remote", ss.ip, "id", m.ID)
		reply := s.refusal(m, "log in first (93)")
		if m.ID == IDSCStatus {
			reply = s.status(m, false)
		}
		out, _ := s.remember(ss, reply)
		return out, ss.unauth >= maxUnauthorised
	}
	// The kiosk's rate, shared with its NATS requests, for what reaches the ledger.
	if m.ID != IDSCStatus && m.ID != IDEndSession && s.misses != nil && !s.misses.Allow(term.name()) {
		out, _ := s.remember(ss, s.refusal(m, "too many requests from this kiosk; slow down"))
		return out, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	c := &call{s: s, m: m, term: term, at: ledger.Station{Kind: "kiosk", Branch: term.Branch, ID: term.Kiosk}}
	start := time.Now()
	reply := c.answer(ctx)
	s.cfg.Logger.Debug("sip2 message", "kiosk", term.name(), "id", m.ID, "reply", reply.ID, "elapsed", time.Since(start))
	return s.remember(ss, reply)
}

// safeID is a message id fit for a log: two digits, or "?".
func safeID(id string) string {
	if len(id) == 2 && '0' <= id[0] && id[0] <= '9' && '0' <= id[1] && id[1] <= '9' {
		return id
	}
	return "?"
}

// remember encodes a reply and keeps it for a 97.
func (s *Server) remember(ss *session, m Message) ([]byte, bool) {
	b := s.encode(m)
	ss.last = b
	return b, false
}

func (s *Server) encode(m Message) []byte {
	b, err := Encode(m, s.cfg.Delimiter, s.cfg.Encoding)
	if err != nil {
		// A reply Lethe builds wrong is a programming error: say so in the log and ask
		// the machine to send again rather than send something malformed.
		s.cfg.Logger.Error("sip2 encode reply", "err", err)
		b, _ = Encode(Message{ID: IDRequestResend, Seq: -1}, s.cfg.Delimiter, s.cfg.Encoding)
	}
	return b
}

// login checks a 93 and answers 94. Failures are logged with the address only: what was
// typed as the user id may be a password.
// It also says whether the session ends: after too many failures.
func (s *Server) login(ss *session, m Message) (Message, bool) {
	reply := Message{ID: IDLoginR, Fixed: "0", Seq: m.Seq, Checksum: m.Checksum}
	if !s.loginAttempt(ss.ip) {
		// Debug: the failures that led here were logged, and a flood must not fill the log.
		s.cfg.Logger.Debug("sip2 login refused: too many failed logins from this address", "remote", ss.ip)
		return reply, true
	}
	s.checks <- struct{}{}
	t, ok := s.logins.Login(m.Value("CN"), m.Value("CO"))
	<-s.checks
	if !ok {
		ss.loginFails++
		s.cfg.Logger.Warn("sip2 login failed", "remote", ss.ip)
		return reply, ss.loginFails >= maxSessionLogins
	}
	s.loginSucceeded(ss.ip)
	ss.mu.Lock()
	ss.term = &t
	ss.mu.Unlock()
	s.cfg.Logger.Info("sip2 login", "kiosk", t.name(), "remote", ss.ip)
	reply.Fixed = "1"
	return reply, false
}

// loginAttempt counts an attempt from an address as a failure until it succeeds, so
// parallel guesses get no more checks than sequential ones; it reports whether the
// attempt may be checked at all.
func (s *Server) loginAttempt(ip string) bool {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.fails[ip][:0]
	for _, t := range s.fails[ip] {
		if now.Sub(t) < s.cfg.LoginWindow && !t.After(now) {
			kept = append(kept, t)
		}
	}
	if len(kept) >= s.cfg.LoginFailures {
		s.fails[ip] = kept
		return false
	}
	if len(s.fails) >= 10000 {
		clear(s.fails) // bounded: forgetting only ever lets a check through
	}
	s.fails[ip] = append(kept, now)
	return true
}

func (s *Server) loginSucceeded(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.fails[ip]; len(f) > 0 {
		s.fails[ip] = f[:len(f)-1]
	}
}
