package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/imagineif/lethe/keystore"
)

// pebbleFatalChild is the child process of TestPebbleFatalNamesItsCause: it makes the call
// Pebble's commit pipeline makes when the WAL cannot be written (db.go, "fatal commit
// error"), with the error a full disk gives, through the logger of Lethe's Pebble
// databases. Fatalf must not return; if it does, the child exits 0 and the test fails.
func pebbleFatalChild() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := &fs.PathError{Op: "write", Path: "/srv/lethe/keystore/000002.log", Err: syscall.ENOSPC}
	keystore.PebbleOptions(logger).Logger.Fatalf("pebble: fatal commit error: %v", err)
}

// TestPebbleFatalNamesItsCause runs Pebble's Fatalf in a child process and checks that the
// process exits with keystore.ExitPebbleFatal and that its output names the real cause,
// formatted: it used to panic with the bare format ("pebble: fatal commit error: %v").
func TestPebbleFatalNamesItsCause(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=pebble-fatal")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != keystore.ExitPebbleFatal {
		t.Fatalf("child exit = %v, want exit code %d\n%s", err, keystore.ExitPebbleFatal, out)
	}
	for _, want := range []string{
		`level=ERROR msg="pebble fatal error; exiting"`,
		"pebble: fatal commit error: write /srv/lethe/keystore/000002.log: no space left on device",
		"exit_code=74",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"%v", "panic", "goroutine "} {
		if strings.Contains(string(out), bad) {
			t.Errorf("output contains %q:\n%s", bad, out)
		}
	}
}
