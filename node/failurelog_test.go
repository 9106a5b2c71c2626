package node

import (
	"slices"
	"testing"
	"time"
)

// TestFailureLog: a loop retrying every second logs its failure when it begins, then once
// a minute with how many tries went unlogged, and after a success starts afresh.
func TestFailureLog(t *testing.T) {
	t.Parallel()
	var f failureLog
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var logged []time.Duration
	var unlogged []int
	for s := range 150 { // two and a half minutes of failures, one a second
		if log, n := f.failed(t0.Add(time.Duration(s) * time.Second)); log {
			logged = append(logged, time.Duration(s)*time.Second)
			unlogged = append(unlogged, n)
		}
	}
	if want := []time.Duration{0, time.Minute, 2 * time.Minute}; !slices.Equal(logged, want) {
		t.Errorf("logged at %v, want %v", logged, want)
	}
	if want := []int{0, 59, 59}; !slices.Equal(unlogged, want) {
		t.Errorf("unlogged before each %v, want %v", unlogged, want)
	}
	if n := f.ok(); n != 150 {
		t.Errorf("ok() after 150 failures = %d", n)
	}
	if n := f.ok(); n != 0 {
		t.Errorf("ok() after a success = %d, want 0", n)
	}
	if log, n := f.failed(t0.Add(151 * time.Second)); !log || n != 0 {
		t.Errorf("a failure after a success: log %v, unlogged %d; want logged at once", log, n)
	}
}
