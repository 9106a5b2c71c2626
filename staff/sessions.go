package staff

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/imagineif/lethe/policy"
)

// Sessions live in memory only: a restart of the server logs every member of staff out.
// That is deliberate: nothing about who was logged in survives the process, and the
// offline `lethe staff` commands, which need the server stopped, take effect at once.
//
// A token is 32 random bytes in unpadded base64url. The map is keyed by SHA-256 of the
// token, so a heap dump does not yield usable tokens.

// SessionConfig configures Sessions. The zero value means the defaults.
type SessionConfig struct {
	Idle     time.Duration    // a session ends after this long without a request; default 15 minutes
	Absolute time.Duration    // and this long after login, whatever the activity; default 8 hours
	Now      func() time.Time // the clock; default time.Now
}

// Validate reports a configuration that NewSessions would not honour.
func (c SessionConfig) Validate() error {
	if c.Idle < 0 || c.Absolute < 0 {
		return errors.New("session timeouts must not be negative")
	}
	return nil
}

func (c SessionConfig) withDefaults() SessionConfig {
	if c.Idle <= 0 {
		c.Idle = 15 * time.Minute
	}
	if c.Absolute <= 0 {
		c.Absolute = 8 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// maxSessionsPerAccount bounds the sessions one account can hold; logging in beyond it
// ends the least recently used one.
const maxSessionsPerAccount = 32

// Session is a logged-in member of staff.
type Session struct {
	Account  string      // the account name
	Role     policy.Role // the account's role
	Created  time.Time   // login
	LastSeen time.Time   // the last request; the session ends Idle after it
	Expires  time.Time   // Created + Absolute: the session ends then at the latest
}

// Sessions is the in-memory set of sessions. It is safe for concurrent use.
type Sessions struct {
	cfg SessionConfig
	mu  sync.Mutex
	m   map[[sha256.Size]byte]*Session
}

// NewSessions returns an empty set of sessions. Timeouts that are zero or negative take
// their defaults.
func NewSessions(cfg SessionConfig) *Sessions {
	return &Sessions{cfg: cfg.withDefaults(), m: map[[sha256.Size]byte]*Session{}}
}

// IdleTimeout is how long a session lasts without requests.
func (s *Sessions) IdleTimeout() time.Duration { return s.cfg.Idle }

// Create starts a session for account and returns its token. The token is shown to no
// one but the client; Sessions keeps only its digest.
func (s *Sessions) Create(account Account) (string, Session) {
	raw := make([]byte, 32)
	rand.Read(raw) // crypto/rand.Read never fails (Go 1.24 and later)
	token := base64.RawURLEncoding.EncodeToString(raw)
	now := s.cfg.Now()
	sess := Session{Account: account.Name, Role: account.Role, Created: now, LastSeen: now, Expires: now.Add(s.cfg.Absolute)}

	s.mu.Lock()
	defer s.mu.Unlock()
	// Staff sessions are few: a full sweep per login keeps memory bounded simply.
	var mine [][sha256.Size]byte
	for k, v := range s.m {
		if s.expired(v, now) {
			delete(s.m, k)
		} else if v.Account == account.Name {
			mine = append(mine, k)
		}
	}
	for len(mine) >= maxSessionsPerAccount {
		oldest := 0
		for i, k := range mine {
			if s.m[k].LastSeen.Before(s.m[mine[oldest]].LastSeen) {
				oldest = i
			}
		}
		delete(s.m, mine[oldest])
		mine = append(mine[:oldest], mine[oldest+1:]...)
	}
	s.m[sha256.Sum256([]byte(token))] = &sess
	return token, sess
}

func (s *Sessions) expired(v *Session, now time.Time) bool {
	return !now.Before(v.LastSeen.Add(s.cfg.Idle)) || !now.Before(v.Expires)
}

// Lookup returns the session of token and marks it used now. An expired session is
// deleted and not returned.
func (s *Sessions) Lookup(token string) (Session, bool) { return s.lookup(token, true) }

// Peek returns the session of token without marking it used: a page that only watches
// whether its session still lives (the web client's event stream) must not keep it alive.
func (s *Sessions) Peek(token string) (Session, bool) { return s.lookup(token, false) }

func (s *Sessions) lookup(token string, touch bool) (Session, bool) {
	if token == "" || len(token) > 128 {
		return Session{}, false
	}
	k := sha256.Sum256([]byte(token))
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return Session{}, false
	}
	if s.expired(v, now) {
		delete(s.m, k)
		return Session{}, false
	}
	if touch {
		v.LastSeen = now
	}
	return *v, true
}

// Delete ends the session of token, if any.
func (s *Sessions) Delete(token string) {
	k := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}

// DeleteAccount ends every session of the account name: on disable and on a password
// change.
func (s *Sessions) DeleteAccount(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if v.Account == name {
			delete(s.m, k)
		}
	}
}

// Len is the number of sessions held, expired ones not yet swept included.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
