package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagineif/lethe/keystore"
)

// childEnv names what a child process of the test binary is; unset in the test itself.
const childEnv = "LETHE_TEST_CHILD"

// TestMain lets the test binary be the lethe binary, a connection flooder, or a process
// that Pebble stops, in a child process: a test that needs a real server process (its own
// file descriptors under its own limit, a signal to stop it, an exit) starts os.Args[0]
// with LETHE_TEST_CHILD set, instead of building the binary.
func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "lethe":
		if step := os.Getenv(stopAtEnv); step != "" {
			os.Exit(runStoppedAt(keystore.Step(step)))
		}
		main() // os.Args[1:] are lethe's arguments
		os.Exit(0)
	case "flood":
		if err := floodChild(os.Getenv("LETHE_FLOOD_TARGET"), os.Getenv("LETHE_FLOOD_FROM"), os.Getenv("LETHE_FLOOD_CONNS"), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "flood:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "pebble-fatal":
		pebbleFatalChild()
		os.Exit(0) // Fatalf returned, which it must not
	case "pebble-full":
		pebbleFullChild(os.Getenv("LETHE_FULL_DIR"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stopAtEnv names a step of keys rotate (keystore.Step) at which a "lethe" child stops:
// it writes "stopped at STEP" to stdout and waits for the test to kill it.
const stopAtEnv = "LETHE_TEST_STOP_AT"

// runStoppedAt runs lethe as main does, with the rotation hook of keys rotate set to stop
// at step. The child then blocks on its standard input, which the test never writes or
// closes, until it is killed. Only the test binary can do this: lethe itself has no flag
// or variable that reaches the hook.
func runStoppedAt(step keystore.Step) int {
	stop := func(s keystore.Step) error {
		if s != step {
			return nil
		}
		fmt.Printf("stopped at %s\n", s)
		_, _ = io.Copy(io.Discard, os.Stdin)
		return errors.New("standard input closed before the test killed the process")
	}
	ctx := context.WithValue(context.Background(), rotationStepKey{}, stop)
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lethe:", err)
		return exitCode(err)
	}
	return 0
}

// floodWorkers dial at once in one flood child: enough to outpace a server's accept loop
// on loopback, few enough not to starve two shared cores.
const floodWorkers = 16

// floodChild opens n idle TCP connections from the loopback address from to target and
// holds them, sending nothing. It writes one line to out, "flood connected=C reset=R
// failed=F elapsed=D", then waits for in to end before closing them. A connection the
// server resets so soon that connect itself sees it counts as reset.
func floodChild(target, from, nstr string, in io.Reader, out io.Writer) error {
	n, err := strconv.Atoi(nstr)
	if err != nil || n < 1 {
		return errors.New("LETHE_FLOOD_CONNS must be a positive number")
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	var (
		mu                     sync.Mutex
		conns                  []net.Conn
		reset, failed, started int
		firstErr               error
		wg                     sync.WaitGroup
	)
	begin := time.Now()
	for range floodWorkers {
		wg.Go(func() {
			for {
				mu.Lock()
				if started == n {
					mu.Unlock()
					return
				}
				started++
				mu.Unlock()
				c, err := d.Dial("tcp", target)
				mu.Lock()
				switch {
				case err == nil:
					conns = append(conns, c)
				case errors.Is(err, syscall.ECONNRESET):
					reset++
				default:
					failed++
					if firstErr == nil {
						firstErr = err
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(out, "flood connected=%d reset=%d failed=%d elapsed=%s\n", len(conns), reset, failed, time.Since(begin).Round(time.Millisecond))
	if firstErr != nil {
		fmt.Fprintln(out, "flood first error:", firstErr)
	}
	_, _ = io.Copy(io.Discard, bufio.NewReader(in))
	for _, c := range conns {
		c.Close()
	}
	return nil
}
