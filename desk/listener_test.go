package desk

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/testkit"
)

// testClock moves only when told.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// limitEnv is a LimitListener on loopback whose accepted connections the test holds.
type limitEnv struct {
	t        *testing.T
	ln       *limitListener
	accepted chan net.Conn
	wg       sync.WaitGroup // the accept loop and each client's reader
	mu       sync.Mutex
	clients  []net.Conn
}

func newLimitEnv(t *testing.T, c HTTPConfig) *limitEnv {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &limitEnv{t: t, ln: LimitListener(inner, c).(*limitListener), accepted: make(chan net.Conn, 64)}
	e.wg.Go(func() {
		defer close(e.accepted)
		for {
			c, err := e.ln.Accept()
			if err != nil {
				return
			}
			e.accepted <- c
		}
	})
	t.Cleanup(func() {
		e.ln.Close()
		e.mu.Lock()
		for _, c := range e.clients {
			c.Close()
		}
		e.mu.Unlock()
		for c := range e.accepted {
			c.Close()
		}
		e.wg.Wait()
	})
	return e
}

// dial connects from the loopback address from and reports whether the listener admitted
// the connection: the server's end arrives on accepted, or the client's end is reset.
// The admitted connection's server end is returned.
func (e *limitEnv) dial(from string) (net.Conn, bool) {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", e.ln.Addr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		return nil, false // reset so soon that connect itself saw it
	}
	if err != nil {
		e.t.Fatalf("dial from %s: %v", from, err)
	}
	e.mu.Lock()
	e.clients = append(e.clients, c)
	e.mu.Unlock()
	readErr := make(chan error, 1)
	e.wg.Go(func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	})
	select {
	case sc := <-e.accepted:
		if sc.RemoteAddr().String() != c.LocalAddr().String() {
			e.t.Fatalf("accepted %s, want %s", sc.RemoteAddr(), c.LocalAddr())
		}
		return sc, true
	case err := <-readErr:
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			e.t.Fatalf("dial from %s: read %v, want a reset", from, err)
		}
		return nil, false
	case <-time.After(10 * time.Second):
		e.t.Fatalf("dial from %s: neither accepted nor closed after 10s", from)
		return nil, false
	}
}

// TestLimitListenerPerAddress: one address gets MaxConnsPerIP connections and the rest are
// closed at once; other addresses are not affected; a closed connection frees its place.
func TestLimitListenerPerAddress(t *testing.T) {
	t.Parallel()
	e := newLimitEnv(t, HTTPConfig{MaxConns: 8, MaxConnsPerIP: 3})
	var held []net.Conn
	for i := range 5 {
		sc, ok := e.dial("127.0.0.2")
		if ok != (i < 3) {
			t.Fatalf("connection %d from 127.0.0.2 admitted = %v, want %v", i+1, ok, i < 3)
		}
		if ok {
			held = append(held, sc)
		}
	}
	if _, ok := e.dial("127.0.0.3"); !ok {
		t.Errorf("a connection from 127.0.0.3 was refused; only 127.0.0.2 is full")
	}
	if open, from := e.ln.counts("127.0.0.2"); open != 4 || from != 3 {
		t.Errorf("counts = %d open, %d from 127.0.0.2; want 4, 3", open, from)
	}
	held[0].Close()
	held[0].Close() // a second Close gives nothing back twice
	if open, from := e.ln.counts("127.0.0.2"); open != 3 || from != 2 {
		t.Errorf("counts after a close = %d open, %d from 127.0.0.2; want 3, 2", open, from)
	}
	if _, ok := e.dial("127.0.0.2"); !ok {
		t.Errorf("a connection from 127.0.0.2 after one closed was refused")
	}
}

// TestLimitListenerTotal: past MaxConns every address is refused, until one closes.
func TestLimitListenerTotal(t *testing.T) {
	t.Parallel()
	clock := &testClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	logs := &testkit.SyncBuffer{}
	e := newLimitEnv(t, HTTPConfig{MaxConns: 4, MaxConnsPerIP: 2, Now: clock.Now,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	var held []net.Conn
	for _, from := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"} {
		sc, ok := e.dial(from)
		if !ok {
			t.Fatalf("connection from %s refused under the limits", from)
		}
		held = append(held, sc)
	}
	for _, from := range []string{"127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		if _, ok := e.dial(from); ok {
			t.Fatalf("connection from %s admitted past MaxConns", from)
		}
	}
	held[3].Close()
	if _, ok := e.dial("127.0.0.4"); !ok {
		t.Errorf("connection from 127.0.0.4 refused after one closed")
	}
	// Three refusals, one line: the first. A minute later the next says how many since.
	if n := strings.Count(logs.String(), "connections refused"); n != 1 {
		t.Errorf("log lines after 3 refusals = %d, want 1:\n%s", n, logs)
	}
	clock.Advance(time.Minute)
	if _, ok := e.dial("127.0.0.5"); ok {
		t.Fatalf("connection from 127.0.0.5 admitted past MaxConns")
	}
	if !strings.Contains(logs.String(), "refused=3 open=4 limit=total addr=127.0.0.5") {
		t.Errorf("log lacks the minute's line:\n%s", logs)
	}
}

// TestLimitListenerIPv6Block: IPv6 addresses count per /64.
func TestLimitListenerIPv6Block(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"[2001:db8:1:2::1]:80":        "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9]:80":   "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:80":       "192.0.2.7",
		"192.0.2.7:443":               "192.0.2.7",
		"[2001:db8:1:3::1%eth0]:8080": "2001:db8:1:3::/64",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := addrBlock(a); got != want {
			t.Errorf("addrBlock(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := addrBlock(&net.UnixAddr{Name: "/tmp/s", Net: "unix"}); got != "" {
		t.Errorf("addrBlock(unix) = %q, want \"\"", got)
	}
}

// TestNewHTTPServerDefaults: the zero config gives the documented defaults; set values
// are kept; negative ones are refused.
func TestNewHTTPServerDefaults(t *testing.T) {
	t.Parallel()
	s := NewHTTPServer(http.NotFoundHandler(), HTTPConfig{})
	if s.ReadHeaderTimeout != 10*time.Second || s.ReadTimeout != 30*time.Second || s.WriteTimeout != time.Minute ||
		s.IdleTimeout != time.Minute || s.MaxHeaderBytes != 16<<10 {
		t.Errorf("NewHTTPServer(zero config) = header %v, read %v, write %v, idle %v, %d header bytes; want 10s, 30s, 1m, 1m, 16384",
			s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.MaxHeaderBytes)
	}
	s = NewHTTPServer(http.NotFoundHandler(), HTTPConfig{ReadTimeout: time.Second, IdleTimeout: 2 * time.Second, MaxHeaderBytes: 1024})
	if s.ReadTimeout != time.Second || s.IdleTimeout != 2*time.Second || s.MaxHeaderBytes != 1024 || s.ReadHeaderTimeout != 10*time.Second {
		t.Errorf("NewHTTPServer kept read %v, idle %v, %d header bytes, header %v; want 1s, 2s, 1024, 10s",
			s.ReadTimeout, s.IdleTimeout, s.MaxHeaderBytes, s.ReadHeaderTimeout)
	}
	if c := (HTTPConfig{}).withDefaults(); c.MaxConns != 512 || c.MaxConnsPerIP != 64 {
		t.Errorf("default connection limits = %d, %d per address; want 512, 64", c.MaxConns, c.MaxConnsPerIP)
	}
	if c := (HTTPConfig{MaxConns: 10, MaxConnsPerIP: 100}).withDefaults(); c.MaxConnsPerIP != 10 {
		t.Errorf("MaxConnsPerIP over MaxConns = %d, want MaxConns (10)", c.MaxConnsPerIP)
	}
	if err := (HTTPConfig{}).Validate(); err != nil {
		t.Errorf("Validate(zero config) = %v", err)
	}
	for _, c := range []HTTPConfig{{IdleTimeout: -1}, {MaxConns: -1}, {MaxConnsPerIP: -1}, {MaxHeaderBytes: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
}
