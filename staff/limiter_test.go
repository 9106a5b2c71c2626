package staff

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiterLocksAccount(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewLimiter(LimitConfig{Now: clock.Now})
	for i := range 4 {
		fail(t, l, "alice", fmt.Sprintf("192.0.2.%d", i)) // a different address each time
		clock.Advance(time.Minute)
	}
	if wait, ok := l.Check("alice", "198.51.100.1"); !ok {
		t.Fatalf("Check(alice) after 4 failures = %v, false; want ok", wait)
	}
	fail(t, l, "alice", "192.0.2.9")
	wait, ok := l.Check("alice", "198.51.100.1")
	if ok || wait != 15*time.Minute {
		t.Errorf("Check(alice) after 5 failures = %v, %v; want locked for 15m", wait, ok)
	}
	if _, ok := l.Check("bob", "198.51.100.1"); !ok {
		t.Errorf("Check(bob) = locked; only alice's name is")
	}
	clock.Advance(15*time.Minute - time.Second)
	if wait, ok := l.Check("alice", ""); ok || wait != time.Second {
		t.Errorf("Check(alice) 1s before the lockout ends = %v, %v; want 1s, false", wait, ok)
	}
	clock.Advance(time.Second)
	if wait, ok := l.Check("alice", ""); !ok {
		t.Errorf("Check(alice) after the lockout = %v, false; want ok", wait)
	}
}

func TestLimiterLocksAddress(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewLimiter(LimitConfig{Now: clock.Now})
	for i := range 5 {
		fail(t, l, fmt.Sprintf("user%d", i), "192.0.2.7") // a different name each time
	}
	if wait, ok := l.Check("newname", "192.0.2.7"); ok || wait != 15*time.Minute {
		t.Errorf("Check(from 192.0.2.7) after 5 failures = %v, %v; want locked for 15m", wait, ok)
	}
	if _, ok := l.Check("newname", "192.0.2.8"); !ok {
		t.Errorf("Check(from 192.0.2.8) = locked; only 192.0.2.7 is")
	}
	// IPv6 counts per /64.
	for i := range 5 {
		fail(t, l, "", fmt.Sprintf("2001:db8:1:2::%x", i+1))
	}
	if _, ok := l.Check("", "2001:db8:1:2:ffff::1"); ok {
		t.Errorf("Check(2001:db8:1:2:ffff::1) = ok, want locked: its /64 failed 5 times")
	}
	if _, ok := l.Check("", "2001:db8:1:3::1"); !ok {
		t.Errorf("Check(2001:db8:1:3::1) = locked, want ok: another /64")
	}
	// An IPv4 address is one key however it is spelled.
	for range 5 {
		fail(t, l, "", "::ffff:203.0.113.5")
	}
	if _, ok := l.Check("", "203.0.113.5"); ok {
		t.Errorf("Check(203.0.113.5) = ok after 5 failures as ::ffff:203.0.113.5")
	}
}

func TestLimiterWindow(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewLimiter(LimitConfig{Failures: 3, Window: 10 * time.Minute, Lockout: time.Hour, Now: clock.Now})
	fail(t, l, "alice", "")
	fail(t, l, "alice", "")
	clock.Advance(10 * time.Minute) // both failures leave the window
	fail(t, l, "alice", "")
	fail(t, l, "alice", "")
	if _, ok := l.Check("alice", ""); !ok {
		t.Errorf("Check(alice) = locked after 2 failures in the window, want ok")
	}
	fail(t, l, "alice", "")
	if wait, ok := l.Check("alice", ""); ok || wait != time.Hour {
		t.Errorf("Check(alice) after 3 failures in the window = %v, %v; want locked for 1h", wait, ok)
	}
}

func TestLimiterSuccessResetsAccountOnly(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewLimiter(LimitConfig{Now: clock.Now})
	for range 4 {
		fail(t, l, "alice", "192.0.2.1")
	}
	reserve(t, l, "alice", "").Succeed()
	fail(t, l, "alice", "192.0.2.2")
	if _, ok := l.Check("alice", "192.0.2.2"); !ok {
		t.Errorf("Check(alice) = locked; Succeed should have reset alice's count")
	}
	fail(t, l, "mallory", "192.0.2.1") // the address's fifth failure: Succeed did not reset it
	if _, ok := l.Check("carol", "192.0.2.1"); ok {
		t.Errorf("Check(from 192.0.2.1) = ok, want locked: success resets the account, not the address")
	}
}

func TestLimiterPrunes(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewLimiter(LimitConfig{Now: clock.Now})
	for i := range 3000 {
		fail(t, l, "", fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := l.Len(); n < 1000 {
		t.Fatalf("Len() = %d after 3000 fresh failures, want them kept", n)
	}
	clock.Advance(15*time.Minute + time.Second)
	for i := range 2000 {
		fail(t, l, "", fmt.Sprintf("10.1.%d.%d", i/256, i%256))
	}
	if n := l.Len(); n > 2000 {
		t.Errorf("Len() = %d, want at most 2000: the stale entries should be pruned", n)
	}
}

// reserve reserves an attempt that must be admitted.
func reserve(t *testing.T, l *Limiter, name, addr string) *Attempt {
	t.Helper()
	a, wait, ok := l.Reserve(name, addr)
	if !ok {
		t.Fatalf("Reserve(%q, %q) = refused, wait %v; want admitted", name, addr, wait)
	}
	return a
}

// fail records one failed attempt.
func fail(t *testing.T, l *Limiter, name, addr string) {
	t.Helper()
	reserve(t, l, name, addr).Fail()
}

// TestLimiterCountsAttemptsInFlight: attempts still being checked take places, so no more
// than Failures run at once; Release and Succeed give their places back, Fail keeps it
// as a failure.
func TestLimiterCountsAttemptsInFlight(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewLimiter(LimitConfig{Now: clock.Now})
	var inFlight []*Attempt
	for i := range 5 {
		inFlight = append(inFlight, reserve(t, l, fmt.Sprintf("user%d", i), "192.0.2.7"))
	}
	if a, wait, ok := l.Reserve("user5", "192.0.2.7"); ok || a != nil || wait != time.Second {
		t.Fatalf("Reserve with 5 attempts in flight = %v, %v, %v; want refused for 1s", a, wait, ok)
	}
	if _, ok := l.Check("user5", "192.0.2.8"); !ok {
		t.Errorf("Check(from another address) = refused; only 192.0.2.7 is full")
	}
	inFlight[0].Release()
	inFlight[0].Fail() // ended already: does nothing
	inFlight[1].Succeed()
	again := []*Attempt{reserve(t, l, "user6", "192.0.2.7"), reserve(t, l, "user7", "192.0.2.7")}
	if _, _, ok := l.Reserve("user8", "192.0.2.7"); ok {
		t.Fatalf("Reserve with 5 attempts in flight again = admitted")
	}
	locks := 0
	for _, a := range append(inFlight[2:], again...) {
		if a.Fail() {
			locks++
		}
	}
	if wait, ok := l.Check("user9", "192.0.2.7"); ok || wait != 15*time.Minute || locks != 1 {
		t.Errorf("after 5 failures: Check = %v, %v, %d locks; want locked for 15m by one failure", wait, ok, locks)
	}
	if l.Len() == 0 {
		t.Fatal("no keys held")
	}
}

// TestLimiterFailureCountsFromStart: a failure is dated when its attempt started, so an
// attempt that started inside the window counts in it even if its check ended later.
func TestLimiterFailureCountsFromStart(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewLimiter(LimitConfig{Failures: 2, Window: 10 * time.Minute, Now: clock.Now})
	slow := reserve(t, l, "alice", "")
	clock.Advance(9 * time.Minute)
	fail(t, l, "alice", "")
	slow.Fail() // started 9 minutes before the other failure: both are in one window
	if _, ok := l.Check("alice", ""); ok {
		t.Errorf("Check(alice) after 2 failures started within the window = ok, want locked")
	}
}
