package testkit

import (
	"context"
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it holds, and fails the test if it
// does not within 20 seconds. Tests wait this way, never by sleeping.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitForWithin(t, what, 20*time.Second, cond)
}

// WaitForWithin is WaitFor with a deadline of its own, for conditions that wait on the
// server's schedules (sweeps, retries).
func WaitForWithin(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// Context returns a context that ends after 30 seconds or when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
