package staff

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Login rate limiting keeps two kinds of key: the account name tried, and the client
// address. Failures count against both. After Failures failures within Window, a key is
// locked for Lockout: logins for that name, or from that address, are refused without
// checking the password. A successful login clears the name's count, not the address's:
// one good account must not buy an address more guesses at others.
//
// An attempt counts from the moment it starts, not when its password check ends: Reserve
// admits it only while the key's failures plus the attempts still being checked are
// fewer than Failures. Otherwise a burst of parallel guesses would all pass the check
// before the first of them failed, and each would cost an argon2 run.
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
// failures of the last Window+Lockout and the attempts in flight: older entries are
// pruned whenever the table has doubled since the last prune.
type Limiter struct {
	cfg       LimitConfig
	mu        sync.Mutex
	keys      map[string]*limitEntry
	nextPrune int
}

type limitEntry struct {
	failures    []time.Time // start times within Window, oldest first; fewer than Failures
	pending     int         // attempts admitted whose password check has not ended
	lockedUntil time.Time
}

// busyWait is the wait Reserve reports when a key is full of attempts still being checked:
// they end within about a second, and then either lock the key or free their places.
const busyWait = time.Second

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

// attemptKeys returns the keys of a login attempt; an empty name or address has none.
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

// Check reports whether a login for name from addr would be admitted now. If not, wait is
// how long until it may be tried again.
func (l *Limiter) Check(name, addr string) (wait time.Duration, ok bool) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	wait = l.wait(attemptKeys(name, addr), now)
	return wait, wait == 0
}

// wait is how long the keys refuse attempts; 0 if they admit one. Callers hold mu.
func (l *Limiter) wait(keys []string, now time.Time) time.Duration {
	var wait time.Duration
	for _, k := range keys {
		e := l.keys[k]
		switch {
		case e == nil:
		case now.Before(e.lockedUntil):
			wait = max(wait, e.lockedUntil.Sub(now))
		case len(dropBefore(e.failures, now.Add(-l.cfg.Window)))+e.pending >= l.cfg.Failures:
			wait = max(wait, busyWait)
		}
	}
	return wait
}

// Attempt is a login attempt that Reserve admitted. Exactly one of Fail, Succeed or
// Release ends it; later calls do nothing.
type Attempt struct {
	l     *Limiter
	name  string
	keys  []string
	start time.Time
	done  bool // guarded by l.mu
}

// Reserve admits a login attempt for name from addr before its password is checked, and
// counts it against both keys until it ends. If it is refused, wait is how long until
// another may be tried.
func (l *Limiter) Reserve(name, addr string) (a *Attempt, wait time.Duration, ok bool) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := attemptKeys(name, addr)
	if wait := l.wait(keys, now); wait > 0 {
		return nil, wait, false
	}
	for _, k := range keys {
		e := l.keys[k]
		if e == nil {
			e = &limitEntry{}
			l.keys[k] = e
		}
		e.pending++
	}
	if len(l.keys) >= l.nextPrune {
		l.prune(now)
		l.nextPrune = max(2*len(l.keys), minPrune)
	}
	return &Attempt{l: l, name: name, keys: keys, start: now}, 0, true
}

// Fail ends the attempt as a failed login, counted from when it started. It reports
// whether this failure locked a key.
func (a *Attempt) Fail() (locked bool) {
	l := a.l
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !a.end() {
		return false
	}
	for _, k := range a.keys {
		e := l.keys[k]
		if now.Before(e.lockedUntil) {
			continue // a parallel attempt locked it already
		}
		i, _ := slices.BinarySearchFunc(e.failures, a.start, time.Time.Compare)
		e.failures = dropBefore(slices.Insert(e.failures, i, a.start), now.Add(-l.cfg.Window))
		if len(e.failures) >= l.cfg.Failures {
			e.lockedUntil = now.Add(l.cfg.Lockout)
			e.failures = nil
			locked = true
		}
	}
	return locked
}

// Succeed ends the attempt as a successful login: the name's failures and lock are
// forgotten, the address's are not.
func (a *Attempt) Succeed() {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !a.end() || a.name == "" {
		return
	}
	e := l.keys[nameKey(a.name)]
	e.failures, e.lockedUntil = nil, time.Time{}
}

// Release ends the attempt as neither a failure nor a success: the password could not be
// checked (the store failed), so it counts as nothing.
func (a *Attempt) Release() {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	a.end()
}

// end frees the attempt's places, once; it reports whether this call did. Callers hold
// l.mu. The entries exist: prune keeps entries with attempts pending.
func (a *Attempt) end() bool {
	if a.done {
		return false
	}
	a.done = true
	for _, k := range a.keys {
		a.l.keys[k].pending--
	}
	return true
}

// prune drops the entries that are neither locked, nor hold a failure within Window, nor
// have an attempt pending.
func (l *Limiter) prune(now time.Time) {
	for k, e := range l.keys {
		e.failures = dropBefore(e.failures, now.Add(-l.cfg.Window))
		if len(e.failures) == 0 && e.pending == 0 && !now.Before(e.lockedUntil) {
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
