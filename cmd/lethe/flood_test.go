//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/staff"
)

// The bounds TestIdleConnectionFlood holds the server to.
const (
	floodConns = 20000 // idle connections, as in the measurement that exhausted the fds
	floodFrom  = "127.0.0.2"
	// floodFDSlack is what the server may hold beyond its descriptors before the flood and
	// the per-address cap: the login's connection and one accepted to be reset.
	floodFDSlack = 16
	// floodLoginBound is how long a login from another address may take under the flood:
	// one argon2 check (a quarter of a second under -race) and a connection.
	floodLoginBound = 3 * time.Second
	floodLogLines   = 50 // the server's log lines during the flood, all told
)

// lethePID is a lethe serve running in a child process.
type lethePID struct {
	cmd  *exec.Cmd
	logs *testkit.SyncBuffer
	url  string
}

var readyLine = regexp.MustCompile(`msg="lethe ready" (?:mode="[^"]*" )?http=(\S+)`)

// startLetheProcess runs `lethe serve` on data in a child process (the test binary, see
// TestMain) and waits until it is ready. Cleanup stops it with an interrupt, as an
// administrator would, and expects it to exit cleanly.
func startLetheProcess(t *testing.T, data string, args ...string) *lethePID {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &lethePID{logs: &testkit.SyncBuffer{}}
	p.cmd = exec.CommandContext(ctx, os.Args[0], append([]string{"serve", "--data", data, "--http", "127.0.0.1:0",
		"--nats-listen", "off", "--log-level", "info"}, args...)...)
	p.cmd.Env = append(os.Environ(), childEnv+"=lethe")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(os.Interrupt) }
	p.cmd.WaitDelay = 15 * time.Second // then killed
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		// Wait says the context was cancelled even when the process then exited by itself.
		if err := p.cmd.Wait(); !p.cmd.ProcessState.Success() {
			t.Errorf("lethe serve after an interrupt: %v\n%s", err, p.logs)
		}
	})
	testkit.WaitFor(t, "lethe serve ready", func() bool {
		if m := readyLine.FindStringSubmatch(p.logs.String()); m != nil {
			p.url = m[1]
			return true
		}
		return false
	})
	return p
}

// fds is the number of file descriptors the process holds open.
func (p *lethePID) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// login logs in over a fresh connection and returns how long it took.
func (p *lethePID) login(t *testing.T) time.Duration {
	t.Helper()
	raw, _ := json.Marshal(map[string]string{"name": lethetest.Admin, "password": lethetest.Password})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	start := time.Now()
	resp, err := client.Post(p.url+"/api/login", "application/json", bytes.NewReader(raw))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("login after %v: %v", took, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login = %d after %v, want 200", resp.StatusCode, took)
	}
	return took
}

// flooder is a child process holding idle connections.
type flooder struct {
	cmd *exec.Cmd
	out *testkit.SyncBuffer
	in  interface{ Close() error }
}

var floodLine = regexp.MustCompile(`flood connected=(\d+) reset=(\d+) failed=(\d+) elapsed=(\S+)`)

// TestIdleConnectionFlood: 20,000 idle connections from one address (127.0.0.2) to a real
// `lethe serve` in its own process. The server's file descriptors stay under what it held
// before plus the per-address cap and a little slack, a staff login from 127.0.0.1 works
// within floodLoginBound while the flood holds its connections, the log stays a few lines,
// and the server still stops cleanly.
//
// The connections are held by child processes, each under the file limit this machine
// gives a process, so that the flood is the full 20,000 wherever the limit is 20,000 or
// more. Not parallel: the numbers measure this server alone.
func TestIdleConnectionFlood(t *testing.T) {
	data := t.TempDir()
	st, err := staff.Open(filepath.Join(data, "staff"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(lethetest.Admin, policy.Administrator, lethetest.Password); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	p := startLetheProcess(t, data)
	p.login(t) // warm: the server's descriptors now include what a login opens
	before := p.fds(t)
	logsBefore := strings.Count(p.logs.String(), "\n")

	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	perChild := min(floodConns, int(rl.Cur)-256) // a child's own descriptors besides the flood
	if perChild < 1000 {
		t.Skipf("RLIMIT_NOFILE is %d: too low to flood", rl.Cur)
	}
	children := (floodConns + perChild - 1) / perChild
	t.Logf("RLIMIT_NOFILE %d: %d child processes hold the %d connections", rl.Cur, children, floodConns)
	target := strings.TrimPrefix(p.url, "http://")
	var floods []*flooder
	for i := range children {
		n := min(perChild, floodConns-i*perChild)
		f := &flooder{out: &testkit.SyncBuffer{}}
		f.cmd = exec.Command(os.Args[0])
		f.cmd.Env = append(os.Environ(), childEnv+"=flood", "LETHE_FLOOD_TARGET="+target,
			"LETHE_FLOOD_FROM="+floodFrom, "LETHE_FLOOD_CONNS="+strconv.Itoa(n))
		f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
		f.cmd.WaitDelay = 15 * time.Second
		in, err := f.cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		f.in = in
		if err := f.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		floods = append(floods, f)
		t.Cleanup(func() {
			f.in.Close() // the child closes its connections and exits
			if err := f.cmd.Wait(); err != nil {
				t.Errorf("flood child: %v\n%s", err, f.out)
			}
		})
	}

	// While the flood connects, watch the server's descriptors. Without the caps the flood
	// does not finish (the server runs out of descriptors and its queue drops the rest):
	// the deadline then reports the peak.
	peak := before
	var connected, reset, failed int
	var floodTook time.Duration // the slowest child's
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for done := 0; done < len(floods); {
		select {
		case <-deadline:
			t.Fatalf("the flood did not finish in 20s; server fds peaked at %d (%d before)", peak, before)
		case <-tick.C:
		}
		peak = max(peak, p.fds(t))
		done, connected, reset, failed, floodTook = 0, 0, 0, 0, 0
		for _, f := range floods {
			if m := floodLine.FindStringSubmatch(f.out.String()); m != nil {
				done++
				c, _ := strconv.Atoi(m[1])
				r, _ := strconv.Atoi(m[2])
				e, _ := strconv.Atoi(m[3])
				d, _ := time.ParseDuration(m[4])
				connected, reset, failed, floodTook = connected+c, reset+r, failed+e, max(floodTook, d)
			}
		}
	}
	if connected+reset != floodConns || failed != 0 {
		for _, f := range floods {
			t.Log(f.out)
		}
		t.Fatalf("flood: %d connected, %d reset at connect, %d failed; want all %d connected or reset", connected, reset, failed, floodConns)
	}
	during := p.fds(t)
	took := p.login(t)
	after := p.fds(t)
	peak = max(peak, during, after)
	lines := strings.Count(p.logs.String(), "\n") - logsBefore
	t.Logf("%d idle connections from %s (%d reset during connect) in %v; server fds %d before, %d at peak, %d under the flood; login from 127.0.0.1 under the flood took %v; %d log lines; %v in all",
		floodConns, floodFrom, reset, floodTook, before, peak, during, took.Round(time.Millisecond), lines, time.Since(begin).Round(time.Millisecond))

	if bound := before + desk.DefaultMaxConnsPerIP + floodFDSlack; peak > bound {
		t.Errorf("server fds peaked at %d, want at most %d (%d before, %d per address, %d slack)",
			peak, bound, before, desk.DefaultMaxConnsPerIP, floodFDSlack)
	}
	if took > floodLoginBound {
		t.Errorf("login under the flood took %v, want at most %v", took, floodLoginBound)
	}
	if lines > floodLogLines || !strings.Contains(p.logs.String(), "staff http connections refused") {
		t.Errorf("the server wrote %d log lines under the flood, want the refusal line and at most %d:\n%s", lines, floodLogLines, p.logs)
	}
	if time.Since(begin) > 20*time.Second {
		t.Logf("the flood test took %v, more than the 20s it is meant to take", time.Since(begin))
	}
}
