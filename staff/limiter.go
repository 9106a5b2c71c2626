package staff

import (
	"errors"
	"net/netip"
	"sync"
	"time"
)

// Login rate limiting keeps two kinds of key: the account name tried, and the client
// address. Failures count against both. After Failures failures within Window, a key is
// locked for Lockout: logins for that name, or from that address, are refused without
// checking the password. A successful login clears the name's count, not the address's:
// one good account must not buy an address more guesses at others.
//
// Locking by name lets anyone lock a member of staff out for a while by guessing wrong on
// purpose; that is the price of stopping online guessing of one account from many
// addresses. IPv6 addresses count per /64, the block one client usually holds.

// LimitConfig configures a Limiter. The zero value means the defaults.
type LimitConfig struct {
	Failures int              // failures that lock a key; default 5
	Window   time.Duration    // within this long; default 15 minutes
	Lockout  time.Duration    // a locked key stays locked this long; default 15 minutes
	Now      func() time.Time // the clock; default time.Now
}

// Validate reports a configuration that NewLimiter would not honour.
func (c LimitConfig) Validate() error {
	if c.Failures < 0 || c.Window < 0 || c.Lockout < 0 {
		return errors.New("login limits must not be negative")
	}
	return nil
}

func (c LimitConfig) withDefaults() LimitConfig {
	if c.Failures <= 0 {
		c.Failures = 5
	}
	if c.Window <= 0 {
		c.Window = 15 * time.Minute
	}
	if c.Lockout <= 0 {
		c.Lockout = 15 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Limiter counts failed logins. It is safe for concurrent use. Memory is bounded by the
// failures of the last Window+Lockout: older entries are pruned whenever the table has
// doubled since the last prune.
type Limiter struct {
	cfg       LimitConfig
	mu        sync.Mutex
	keys      map[string]*limitEntry
	nextPrune int
}

type limitEntry struct {
	failures    []time.Time // within Window, oldest first; fewer than Failures
	lockedUntil time.Time
}

// NewLimiter returns a Limiter with no failures recorded. Limits that are zero or
// negative take their defaults.
func NewLimiter(cfg LimitConfig) *Limiter {
	return &Limiter{cfg: cfg.withDefaults(), keys: map[string]*limitEntry{}, nextPrune: minPrune}
}

const minPrune = 1024

func nameKey(name string) string { return "n/" + name }

// addrKey is the key of a client address: the address itself, or its /64 for IPv6.
func addrKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "a/" + addr
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "a/" + p.String()
	}
	return "a/" + a.String()
}

// keys returns the keys of a login attempt; an empty name or address has none.
func attemptKeys(name, addr string) []string {
	var ks []string
	if name != "" {
		ks = append(ks, nameKey(name))
	}
	if addr != "" {
		ks = append(ks, addrKey(addr))
	}
	return ks
}

// Check reports whether a login for name from addr may be tried now. If not, wait is how
// long until it may.
func (l *Limiter) Check(name, addr string) (wait time.Duration, ok bool) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range attemptKeys(name, addr) {
		if e := l.keys[k]; e != nil && now.Before(e.lockedUntil) {
			wait = max(wait, e.lockedUntil.Sub(now))
		}
	}
	return wait, wait == 0
}

// Fail records a failed login for name from addr.
func (l *Limiter) Fail(name, addr string) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range attemptKeys(name, addr) {
		e := l.keys[k]
		if e == nil {
			e = &limitEntry{}
			l.keys[k] = e
		}
		if now.Before(e.lockedUntil) {
			continue
		}
		e.failures = append(dropBefore(e.failures, now.Add(-l.cfg.Window)), now)
		if len(e.failures) >= l.cfg.Failures {
			e.lockedUntil = now.Add(l.cfg.Lockout)
			e.failures = nil
		}
	}
	if len(l.keys) >= l.nextPrune {
		l.prune(now)
		l.nextPrune = max(2*len(l.keys), minPrune)
	}
}

// Succeed records a successful login for name: its failures are forgotten.
func (l *Limiter) Succeed(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, nameKey(name))
}

// prune drops the entries that are neither locked nor hold a failure within Window.
func (l *Limiter) prune(now time.Time) {
	for k, e := range l.keys {
		e.failures = dropBefore(e.failures, now.Add(-l.cfg.Window))
		if len(e.failures) == 0 && !now.Before(e.lockedUntil) {
			delete(l.keys, k)
		}
	}
}

// Len is the number of keys held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// dropBefore removes the times not after t from the front of ts (oldest first).
func dropBefore(ts []time.Time, t time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(t) {
		i++
	}
	return ts[i:]
}
