package desk

import (
	"net"
	"sync"
	"time"
)

// LimitListener returns ln with at most c.MaxConns connections open at once, and at most
// c.MaxConnsPerIP from one IPv4 address or IPv6 /64. A connection over either limit is
// closed as soon as it is accepted, with a reset: it holds no file descriptor and no
// goroutine, and its client learns at once instead of waiting in a queue. (x/net's
// netutil.LimitListener makes the excess wait, holding its place in the kernel's queue,
// and has no per-address limit.)
//
// Wrap the TCP listener, under any TLS listener, so that a connection counts from accept
// to close whatever its handshake does.
func LimitListener(ln net.Listener, c HTTPConfig) net.Listener {
	return &limitListener{Listener: ln, cfg: c.withDefaults(), byIP: map[string]int{}}
}

type limitListener struct {
	net.Listener
	cfg HTTPConfig

	mu      sync.Mutex
	open    int
	byIP    map[string]int // open connections by address block; no zero counts
	refused int            // connections refused since the last log line
	logged  time.Time      // when that line was written
}

// Accept returns the next connection within the limits, closing the ones over them.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		block := addrBlock(c.RemoteAddr())
		if l.admit(block) {
			return &limitedConn{Conn: c, l: l, block: block}, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset: no FIN_WAIT or TIME_WAIT left behind either
		}
		_ = c.Close()
	}
}

// admit takes a place for a connection from block, if there is one.
func (l *limitListener) admit(block string) bool {
	l.mu.Lock()
	perIP := block != "" && l.byIP[block] >= l.cfg.MaxConnsPerIP
	if l.open < l.cfg.MaxConns && !perIP {
		l.open++
		if block != "" {
			l.byIP[block]++
		}
		l.mu.Unlock()
		return true
	}
	l.refused++
	now := l.cfg.Now()
	if !l.logged.IsZero() && now.Sub(l.logged) < time.Minute {
		l.mu.Unlock()
		return false
	}
	refused, open := l.refused, l.open
	l.refused, l.logged = 0, now
	l.mu.Unlock()
	// One line a minute at most: the refusals themselves may come by the thousand.
	limit := "total"
	if perIP {
		limit = "per address"
	}
	l.cfg.Logger.Warn("staff http connections refused: limit reached", "refused", refused, "open", open,
		"limit", limit, "addr", block)
	return false
}

// release gives back the place of a closed connection from block.
func (l *limitListener) release(block string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if block == "" {
		return
	}
	if l.byIP[block]--; l.byIP[block] == 0 {
		delete(l.byIP, block)
	}
}

// counts reports the connections open, in all and from block.
func (l *limitListener) counts(block string) (open, fromBlock int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.byIP[block]
}

// addrBlock is what one client usually holds: an IPv4 address, or an IPv6 /64. It is ""
// for an address that is not IP; such connections count in the total only.
func addrBlock(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return ""
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}

// limitedConn gives its place back when it is closed, once however often Close is called.
type limitedConn struct {
	net.Conn
	l     *limitListener
	block string
	once  sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.block) })
	return err
}

// CloseWrite half-closes the connection. net/http does it before closing a connection
// whose request body it refused, so that the client reads the answer instead of a reset;
// embedding net.Conn alone would hide it.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
