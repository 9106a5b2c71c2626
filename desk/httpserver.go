package desk

import (
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// HTTPConfig bounds the staff HTTP server: how long a client may take, how large its
// headers may be, and how many connections it may hold open. The zero value means the
// defaults, chosen for one library's staff on a small server: a few dozen browsers, each
// with up to six connections, and a dashboard that polls every two seconds.
type HTTPConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers, and a new connection's wait
	// for its first request; default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included; default 30s. Bodies are
	// at most MaxBodyBytes, or MaxBulkBodyBytes on the bulk catalog route.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end of its answer;
	// default 60s, room for the collections export and a sweep.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no request; default 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers; default 16 KiB (a session cookie and a
	// bearer token need well under 1 KiB).
	MaxHeaderBytes int
	// MaxConns is the most connections open at once; default 512. More are closed as soon
	// as they are accepted, so that file descriptors stay bounded: Pebble and NATS need
	// them too.
	MaxConns int
	// MaxConnsPerIP is the most connections open at once from one IPv4 address or IPv6
	// /64; default 64, at most MaxConns. A flood from one address cannot take the places
	// of staff at others. Behind a reverse proxy every client has the proxy's address:
	// raise it to MaxConns there.
	MaxConnsPerIP int
	// Logger receives a line, at most once a minute, while connections are refused, and
	// the server's own errors at debug level; nil writes nowhere.
	Logger *slog.Logger
	// Now is the clock of that line; default time.Now.
	Now func() time.Time
}

// The defaults of HTTPConfig.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultMaxConns          = 512
	DefaultMaxConnsPerIP     = 64
)

// Validate reports a configuration that NewHTTPServer and LimitListener would not honour.
func (c HTTPConfig) Validate() error {
	if c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 {
		return errors.New("http timeouts must not be negative")
	}
	if c.MaxHeaderBytes < 0 || c.MaxConns < 0 || c.MaxConnsPerIP < 0 {
		return errors.New("http limits must not be negative")
	}
	return nil
}

func (c HTTPConfig) withDefaults() HTTPConfig {
	orDefault := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	orDefault(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	orDefault(&c.ReadTimeout, DefaultReadTimeout)
	orDefault(&c.WriteTimeout, DefaultWriteTimeout)
	orDefault(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	c.MaxConnsPerIP = min(c.MaxConnsPerIP, c.MaxConns)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// NewHTTPServer returns the staff API's server for handler, with c's timeouts and header
// limit. Serve it on a LimitListener: the server itself does not bound connections.
func NewHTTPServer(handler http.Handler, c HTTPConfig) *http.Server {
	c = c.withDefaults()
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		// The server's own complaints (a TLS handshake that failed, an accept error) come
		// per connection: under a flood, at the default level, they would be a flood of
		// log lines. They are debug lines.
		ErrorLog: slog.NewLogLogger(c.Logger.Handler(), slog.LevelDebug),
	}
}
