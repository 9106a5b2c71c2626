package staff

import (
	"encoding/base64"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/policy"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var (
	alice = Account{Name: "alice", Role: policy.Administrator}
	bob   = Account{Name: "bob", Role: policy.Circulation}
)

func TestSessionToken(t *testing.T) {
	t.Parallel()
	s := NewSessions(SessionConfig{})
	tok, sess := s.Create(alice)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != 32 {
		t.Errorf("token %q decodes to %d bytes (%v), want 32 bytes of base64url", tok, len(raw), err)
	}
	if sess.Account != "alice" || sess.Role != policy.Administrator || !sess.Expires.Equal(sess.Created.Add(8*time.Hour)) {
		t.Errorf("Create(alice) = %+v, want alice's session expiring in 8 h", sess)
	}
	tok2, _ := s.Create(alice)
	if tok2 == tok {
		t.Errorf("two sessions share the token %q", tok)
	}
	for k := range s.m {
		if string(k[:]) == string(raw) || string(k[:]) == tok {
			t.Errorf("the session map holds a token as a key")
		}
	}
	if got, ok := s.Lookup(tok); !ok || got.Account != "alice" {
		t.Errorf("Lookup(token) = %+v, %v; want alice's session", got, ok)
	}
	for _, forged := range []string{"", "forged", tok + "x", tok[:len(tok)-1]} {
		if got, ok := s.Lookup(forged); ok {
			t.Errorf("Lookup(%q) = %+v, true; want false", forged, got)
		}
	}
	s.Delete(tok)
	if _, ok := s.Lookup(tok); ok {
		t.Errorf("Lookup after Delete = true")
	}
	if _, ok := s.Lookup(tok2); !ok {
		t.Errorf("Delete ended the other session too")
	}
}

func TestSessionIdleExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := NewSessions(SessionConfig{Now: clock.Now})
	if s.IdleTimeout() != 15*time.Minute {
		t.Errorf("IdleTimeout() = %v, want the default 15m", s.IdleTimeout())
	}
	tok, _ := s.Create(alice)
	for i := range 4 {
		clock.Advance(14 * time.Minute)
		got, ok := s.Lookup(tok) // each use restarts the idle timer
		if !ok {
			t.Fatalf("Lookup after %d idle periods of 14m = false, want true", i+1)
		}
		if !got.LastSeen.Equal(clock.Now()) {
			t.Errorf("LastSeen = %v, want now %v", got.LastSeen, clock.Now())
		}
	}
	clock.Advance(15 * time.Minute)
	if _, ok := s.Lookup(tok); ok {
		t.Errorf("Lookup after 15m idle = true, want false")
	}
	if n := s.Len(); n != 0 {
		t.Errorf("Len() after an expired Lookup = %d, want 0: expired sessions are deleted", n)
	}
}

func TestSessionAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := NewSessions(SessionConfig{Idle: time.Hour, Absolute: 3 * time.Hour, Now: clock.Now})
	tok, sess := s.Create(alice)
	for clock.Now().Add(30 * time.Minute).Before(sess.Expires) {
		clock.Advance(30 * time.Minute)
		if _, ok := s.Lookup(tok); !ok {
			t.Fatalf("Lookup %v after login = false, want true", clock.Now().Sub(sess.Created))
		}
	}
	clock.Advance(30 * time.Minute) // now exactly Created + 3h
	if _, ok := s.Lookup(tok); ok {
		t.Errorf("Lookup at the absolute timeout, in use all along = true, want false")
	}
}

func TestSessionDeleteAccount(t *testing.T) {
	t.Parallel()
	s := NewSessions(SessionConfig{})
	a1, _ := s.Create(alice)
	a2, _ := s.Create(alice)
	b1, _ := s.Create(bob)
	s.DeleteAccount("alice")
	for _, tok := range []string{a1, a2} {
		if _, ok := s.Lookup(tok); ok {
			t.Errorf("alice's session lives after DeleteAccount(alice)")
		}
	}
	if _, ok := s.Lookup(b1); !ok {
		t.Errorf("bob's session ended with DeleteAccount(alice)")
	}
}

func TestSessionsBounded(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := NewSessions(SessionConfig{Now: clock.Now})
	first, _ := s.Create(bob)
	for range maxSessionsPerAccount + 10 {
		clock.Advance(time.Second)
		s.Create(alice)
	}
	if n := s.Len(); n != maxSessionsPerAccount+1 {
		t.Errorf("Len() = %d, want %d: alice's sessions capped, bob's kept", n, maxSessionsPerAccount+1)
	}
	if _, ok := s.Lookup(first); !ok {
		t.Errorf("bob's session ended when alice logged in many times")
	}
	// Expired sessions are swept at the next login.
	clock.Advance(time.Hour)
	s.Create(bob)
	if n := s.Len(); n != 1 {
		t.Errorf("Len() after everyone else expired = %d, want 1", n)
	}
}
