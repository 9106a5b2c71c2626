// Package compose_test is the Compose test: docker-compose.yml at the repository root run
// for real, three Lethe nodes and simulated kiosks in containers, with one node killed and
// restarted and one cut off the network and reconnected. Each time it checks from outside,
// as an auditor and a member of staff would: over NATS with an auditor's credentials (the
// CIRC stream, read with direct gets), every command the kiosks were told was applied is
// on the stream exactly once and every closed transaction is expunged exactly once; over
// each node's HTTPS API, the nodes' projections agree and each has forgotten what it had
// to. It has no code of its own.
//
// It needs a Docker Engine with Compose (the docker compose plugin or docker-compose) and
// skips, saying so, only when no engine answers `docker info`. It builds the static
// binary and the image itself (scripts/docker-image: nothing is pulled), under a project
// name and image tag of its own, and always ends with `docker compose down -v`. It reads
// the nodes at their container addresses, so it runs on the Docker host. With
// LETHE_COMPOSE_KEEP=1 a failed run's containers and volumes are kept for a look.
package compose_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
	"github.com/nats-io/nats.go"
)

var nodes = []string{"lethe1", "lethe2", "lethe3"}

const (
	killed = "lethe1" // docker kill, later docker start
	cutOff = "lethe3" // docker network disconnect, later connect
	// progress is how many more checkouts the kiosks must get acknowledged while a node
	// is down or cut off, within outageWait: the cluster keeps serving.
	progress   = 20
	outageWait = 90 * time.Second
	settleWait = 120 * time.Second // for the nodes to agree and forget, kiosks paused
)

// primaryEvent is the event each acknowledged command appended once, with its id.
var primaryEvent = map[string]string{
	schemas.CmdCheckOut: schemas.TypeItemCheckedOut,
	schemas.CmdReturn:   schemas.TypeItemReturned,
	schemas.CmdRenew:    schemas.TypeItemRenewed,
	schemas.CmdPayFine:  schemas.TypeFinePaid,
}

func TestCompose(t *testing.T) {
	began := time.Now()
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine reachable (docker info: %v: %s): the Compose test needs one", err, firstLine(out))
	}
	t.Cleanup(func() { t.Logf("the Compose test took %s", time.Since(began).Round(time.Second)) })
	// The whole test, clean-up included, inside the test binary's deadline.
	deadline := time.Now().Add(9 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-45*time.Second).Before(deadline) {
		deadline = d.Add(-45 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	c := &cluster{t: t, dir: t.TempDir(), project: "lethecompose" + randomHex(t, 4),
		sessions: map[string]string{}, loginAgain: map[string]time.Time{}, loginWait: map[string]time.Duration{}}
	c.compose = composeCommand(t)
	image := "lethe:" + c.project
	port := freePort(t)
	c.env = append(os.Environ(), "LETHE_IMAGE="+image, "LETHE_HTTPS_PORT="+strconv.Itoa(port))

	step := time.Now()
	build := exec.CommandContext(ctx, "../scripts/docker-image")
	build.Env = append(c.env, "LETHE_BUILD_DIR="+filepath.Join(c.dir, "image"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/docker-image: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if !c.keep {
			_ = exec.Command("docker", "rmi", "-f", image).Run()
		}
	})
	t.Logf("built the binary and the image %s in %s", image, time.Since(step).Round(time.Second))

	t.Cleanup(c.down)
	step = time.Now()
	c.run(ctx, c.composeArgs("up", "-d")...)
	c.waitKiosks(ctx)
	t.Logf("three nodes up and kiosks running in %s", time.Since(step).Round(time.Second))
	c.readSecrets(ctx)
	c.verify(ctx, "after the start", nodes, nodes)

	// A node killed: the others keep serving, and it catches up when it is back.
	step = time.Now()
	c.run(ctx, "docker", "kill", c.id(ctx, killed))
	c.waitProgress(ctx, "while "+killed+" was killed")
	live := without(nodes, killed)
	c.verify(ctx, "with "+killed+" killed", live, live)
	c.run(ctx, "docker", "start", c.id(ctx, killed))
	c.verify(ctx, "after "+killed+" restarted", nodes, without(nodes, killed))
	t.Logf("%s killed and restarted, checked, in %s", killed, time.Since(step).Round(time.Second))

	// A node cut off the network: likewise.
	step = time.Now()
	network := c.network(ctx, cutOff)
	c.run(ctx, "docker", "network", "disconnect", network, c.id(ctx, cutOff))
	c.waitProgress(ctx, "while "+cutOff+" was cut off")
	live = without(nodes, cutOff)
	c.verify(ctx, "with "+cutOff+" cut off", live, without(live, killed))
	// The compose file's name for the node is an alias on the network: give it back.
	c.run(ctx, "docker", "network", "connect", "--alias", cutOff, network, c.id(ctx, cutOff))
	c.verify(ctx, "after "+cutOff+" reconnected", nodes, without(nodes, killed, cutOff))
	t.Logf("%s cut off and reconnected, checked, in %s", cutOff, time.Since(step).Round(time.Second))

	// The kiosks stop (their totals line), and a last look.
	c.run(ctx, "docker", "stop", c.id(ctx, "kiosks"))
	logs := c.logs(ctx, "kiosks")
	if m := regexp.MustCompile(`totals: [^\n]*`).FindString(logs); m != "" {
		t.Logf("kiosks: %s", m)
	}
	c.verify(ctx, "at the end", nodes, without(nodes, killed, cutOff))

	// What the run cost the nodes, for the log: a node that stopped by itself (Docker
	// started it again: restart: unless-stopped) or whose projector stopped at an event
	// served nobody meanwhile. Not an assertion yet: see the README's Compose test.
	for _, n := range nodes {
		restarts := strings.TrimSpace(c.run(ctx, "docker", "inspect", "-f", "{{.RestartCount}}", c.id(ctx, n)))
		stops := strings.Count(c.logs(ctx, n), `msg="projector stopped`)
		t.Logf("%s: restarted by Docker %s times, its projector stopped %d times", n, restarts, stops)
	}
}

// cluster is one run of docker-compose.yml under a project of its own.
type cluster struct {
	t       *testing.T
	compose []string // docker compose, or docker-compose
	project string
	env     []string
	dir     string // copies of the CA, the secrets and the acknowledgements

	ca       *x509.CertPool
	password string // the administrator's
	auditor  string // the auditor's credentials file

	// sessions are the administrator's sessions, by node. A node that refused a login is
	// not asked again before loginAgain, a wait that doubles from a minute, so that retries
	// never lock the account (five failed logins in 15 minutes do).
	sessions   map[string]string
	loginAgain map[string]time.Time
	loginWait  map[string]time.Duration

	keep bool // a failed run kept for a look (LETHE_COMPOSE_KEEP)
}

// composeCommand finds Compose: the docker plugin, or docker-compose.
func composeCommand(t *testing.T) []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Fatal("a Docker engine answers but Compose is missing: install the docker compose plugin or docker-compose")
	return nil
}

func (c *cluster) composeArgs(args ...string) []string {
	return append(append(slices.Clone(c.compose), "-p", c.project, "-f", "../docker-compose.yml"), args...)
}

// run runs a command and fails the test if it fails.
func (c *cluster) run(ctx context.Context, args ...string) string {
	c.t.Helper()
	out, err := c.try(ctx, args...)
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) try(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// down removes everything the run made, whatever happened; after a failure it first
// shows the end of every service's log. With LETHE_COMPOSE_KEEP set, a failed run's
// containers and volumes are kept for a look, and it says how to remove them.
func (c *cluster) down() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if c.t.Failed() {
		out, _ := c.try(ctx, c.composeArgs("logs", "--no-color", "--tail", "60")...)
		c.t.Logf("the services' last log lines:\n%s", out)
		if os.Getenv("LETHE_COMPOSE_KEEP") != "" {
			c.t.Logf("LETHE_COMPOSE_KEEP: kept; remove with: %s -p %s -f docker-compose.yml down -v && docker rmi %s",
				strings.Join(c.compose, " "), c.project, "lethe:"+c.project)
			c.keep = true
			return
		}
	}
	if out, err := c.try(ctx, c.composeArgs("down", "-v", "--remove-orphans", "-t", "5")...); err != nil {
		c.t.Errorf("docker compose down -v: %v\n%s", err, out)
	}
}

// id is the container of a service, running or not.
func (c *cluster) id(ctx context.Context, service string) string {
	c.t.Helper()
	out := c.run(ctx, "docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "label=com.docker.compose.service="+service)
	ids := strings.Fields(out)
	if len(ids) != 1 {
		c.t.Fatalf("service %s has %d containers, want 1", service, len(ids))
	}
	return ids[0]
}

func (c *cluster) network(ctx context.Context, service string) string {
	c.t.Helper()
	out := strings.Fields(c.run(ctx, "docker", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", c.id(ctx, service)))
	if len(out) != 1 {
		c.t.Fatalf("%s is on networks %v, want one", service, out)
	}
	return out[0]
}

func (c *cluster) ip(ctx context.Context, service string) (string, error) {
	out, err := c.try(ctx, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", c.id(ctx, service))
	if err != nil {
		return "", fmt.Errorf("docker inspect: %v: %s", err, out)
	}
	ips := strings.Fields(out)
	if len(ips) != 1 {
		return "", fmt.Errorf("%s has addresses %v, want one", service, ips)
	}
	return ips[0], nil
}

func (c *cluster) logs(ctx context.Context, service string) string {
	out, _ := c.try(ctx, "docker", "logs", c.id(ctx, service))
	return out
}

// copyOut copies a file out of a service's container (running, paused or exited).
func (c *cluster) copyOut(ctx context.Context, service, path string) []byte {
	c.t.Helper()
	dst := filepath.Join(c.dir, service+"-"+filepath.Base(path))
	os.Remove(dst)
	c.run(ctx, "docker", "cp", c.id(ctx, service)+":"+path, dst)
	b, err := os.ReadFile(dst)
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

var summaryLine = regexp.MustCompile(`(?m)^checked out (\d+) · returned (\d+) · refused (\d+) · errors (\d+)`)

// checkouts is the kiosks' last summary line's count of acknowledged checkouts.
func (c *cluster) checkouts(ctx context.Context) int {
	all := summaryLine.FindAllStringSubmatch(c.logs(ctx, "kiosks"), -1)
	if len(all) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(all[len(all)-1][1])
	return n
}

// waitKiosks waits for the nodes to form the cluster and the kiosks to seed the library
// and get checkouts acknowledged.
func (c *cluster) waitKiosks(ctx context.Context) {
	c.t.Helper()
	end := time.Now().Add(4 * time.Minute)
	for c.checkouts(ctx) == 0 {
		if time.Now().After(end) || ctx.Err() != nil {
			c.t.Fatalf("no checkout acknowledged within 4 minutes of docker compose up; the kiosks said:\n%s", tail(c.logs(ctx, "kiosks"), 30))
		}
		sleep(ctx, 2*time.Second)
	}
	if !strings.Contains(c.logs(ctx, "kiosks"), "dashboard: https://localhost:") {
		c.t.Error("the kiosks did not say where the dashboard is")
	}
}

// waitProgress waits for the kiosks to get progress more checkouts acknowledged.
func (c *cluster) waitProgress(ctx context.Context, when string) {
	c.t.Helper()
	from, begin := c.checkouts(ctx), time.Now()
	for {
		n := c.checkouts(ctx)
		if n >= from+progress {
			c.t.Logf("%s: %d checkouts acknowledged in %s", when, n-from, time.Since(begin).Round(time.Second))
			return
		}
		if time.Since(begin) > outageWait || ctx.Err() != nil {
			c.t.Fatalf("%s: %d checkouts acknowledged in %s, want %d: the cluster must keep serving with one node gone; the kiosks said:\n%s",
				when, n-from, outageWait, progress, tail(c.logs(ctx, "kiosks"), 20))
		}
		sleep(ctx, 2*time.Second)
	}
}

// readSecrets copies the CA, the administrator's password and the auditor's credentials
// out of the volumes the certs and init services wrote.
func (c *cluster) readSecrets(ctx context.Context) {
	c.t.Helper()
	c.ca = x509.NewCertPool()
	if !c.ca.AppendCertsFromPEM(c.copyOut(ctx, "certs", "/certs/ca.crt")) {
		c.t.Fatal("ca.crt holds no certificate")
	}
	c.password = strings.TrimSpace(string(c.copyOut(ctx, "init", "/secrets/admin.password")))
	c.copyOut(ctx, "init", "/secrets/auditor.nk")
	c.auditor = filepath.Join(c.dir, "init-auditor.nk")
}

// nodeState is what one node says of itself over HTTPS.
type nodeState struct {
	Health struct {
		Status     string `json:"status"`
		Applied    uint64 `json:"applied"`
		StreamLast uint64 `json:"stream_last"`
		Forgetting struct {
			Waiting      int  `json:"waiting"`
			AwaitErasure int  `json:"await_erasure"`
			Overdue      int  `json:"overdue"`
			MissedTotal  int  `json:"missed_total"`
			SweepFailing bool `json:"sweep_failing"`
		} `json:"forgetting"`
	}
	Counts  map[string]int // GET /api/summary's counts, as an administrator
	Overdue int            // GET /api/erasure: transactions past their erasure deadline now
	Missed  int
}

// state reads a node's /healthz, /api/summary and /api/erasure, at its container address
// with the cluster's CA.
func (c *cluster) state(ctx context.Context, name string) (nodeState, error) {
	var st nodeState
	ip, err := c.ip(ctx, name)
	if err != nil {
		return st, err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: c.ca, ServerName: name, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	base := "https://" + net.JoinHostPort(ip, "8443")
	do := func(method, path, token string, body []byte, v any) error {
		req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(staff.ClientHeader, "cli")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK && path != "/healthz" {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, firstLine(b))
		}
		return json.Unmarshal(b, v)
	}
	if err := do(http.MethodGet, "/healthz", "", nil, &st.Health); err != nil {
		return st, fmt.Errorf("%s /healthz: %w", name, err)
	}
	token := c.sessions[name]
	if token == "" {
		if time.Now().Before(c.loginAgain[name]) {
			return st, fmt.Errorf("%s refused the administrator's login; trying again at %s", name, c.loginAgain[name].Format(time.TimeOnly))
		}
		login, _ := json.Marshal(map[string]string{"name": "admin", "password": c.password})
		var session struct {
			Result staff.SessionInfo `json:"result"`
		}
		if err := do(http.MethodPost, "/api/login", "", login, &session); err != nil {
			if strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "429") {
				c.loginWait[name] = max(time.Minute, 2*c.loginWait[name])
				c.loginAgain[name] = time.Now().Add(c.loginWait[name])
			}
			return st, fmt.Errorf("%s: log in as admin: %w", name, err)
		}
		token = session.Result.Token
		c.sessions[name] = token
	}
	var summary struct {
		Counts map[string]int `json:"counts"`
	}
	var erasure struct {
		Overdue     []json.RawMessage `json:"overdue"`
		MissedTotal int               `json:"missed_total"`
	}
	for _, r := range []struct {
		path string
		v    any
	}{{"/api/summary", &summary}, {"/api/erasure", &erasure}} {
		if err := do(http.MethodGet, r.path, token, nil, r.v); err != nil {
			if strings.Contains(err.Error(), "401") {
				delete(c.sessions, name) // the node restarted: sessions live in memory
			}
			return st, fmt.Errorf("%s: %w", name, err)
		}
	}
	st.Counts = summary.Counts
	st.Overdue, st.Missed = len(erasure.Overdue), erasure.MissedTotal
	return st, nil
}

// verify pauses the kiosks (if they run) and checks, on the live nodes: they agree (the same applied
// sequence, equal to the stream's last, and the same counts), each has forgotten what it
// had to (no close waiting for its key's destruction or its sweep, none past its
// deadline; on steady, nodes that were never down, no deadline ever missed), and, read as
// an auditor, every acknowledged command is on the stream exactly once and every closed
// transaction expunged exactly once.
func (c *cluster) verify(ctx context.Context, when string, live, steady []string) {
	c.t.Helper()
	begin := time.Now()
	kiosks := c.id(ctx, "kiosks")
	if strings.TrimSpace(c.run(ctx, "docker", "inspect", "-f", "{{.State.Running}}", kiosks)) == "true" {
		c.run(ctx, "docker", "pause", kiosks)
		defer func() {
			if _, err := c.try(context.Background(), "docker", "unpause", kiosks); err != nil {
				c.t.Errorf("unpause the kiosks: %v", err)
			}
		}()
	}
	acked := c.acknowledged(ctx)

	var states map[string]nodeState
	var why string
	for end := time.Now().Add(settleWait); ; {
		states, why = c.settled(ctx, live, steady)
		if why == "" {
			break
		}
		if time.Now().After(end) || ctx.Err() != nil {
			c.t.Fatalf("%s: the nodes did not settle within %s: %s", when, settleWait, why)
		}
		sleep(ctx, time.Second)
	}
	last := states[live[0]].Health.StreamLast
	c.checkStream(ctx, when, live[0], acked, last)
	c.t.Logf("%s: %s agree at stream sequence %d (%v) and have forgotten every close; %d acknowledged commands each on the stream once; checked in %s",
		when, strings.Join(live, ", "), last, states[live[0]].Counts, len(acked), time.Since(begin).Round(time.Second))
}

// settled reads every live node and says what keeps them from agreeing, or "".
func (c *cluster) settled(ctx context.Context, live, steady []string) (map[string]nodeState, string) {
	states := map[string]nodeState{}
	for _, n := range live {
		st, err := c.state(ctx, n)
		if err != nil {
			return nil, err.Error()
		}
		h := st.Health
		switch {
		case h.Status != "ok" && h.Status != "forgetting_first":
			return nil, fmt.Sprintf("%s /healthz says %s", n, h.Status)
		case h.Applied != h.StreamLast:
			return nil, fmt.Sprintf("%s applied %d of %d", n, h.Applied, h.StreamLast)
		case h.Forgetting.Waiting > 0 || h.Forgetting.AwaitErasure > 0:
			return nil, fmt.Sprintf("%s: %d closes wait for their keys' destruction, %d for a sweep", n, h.Forgetting.Waiting, h.Forgetting.AwaitErasure)
		case h.Forgetting.Overdue > 0 || st.Overdue > 0 || h.Forgetting.SweepFailing:
			return nil, fmt.Sprintf("%s: %d closes past their erasure deadline (sweep failing: %v)", n, max(h.Forgetting.Overdue, st.Overdue), h.Forgetting.SweepFailing)
		case slices.Contains(steady, n) && st.Missed > 0:
			return nil, fmt.Sprintf("%s, never down, missed %d erasure deadlines", n, st.Missed)
		}
		states[n] = st
	}
	first := states[live[0]]
	for _, n := range live[1:] {
		st := states[n]
		if st.Health.StreamLast != first.Health.StreamLast {
			return nil, fmt.Sprintf("%s is at sequence %d, %s at %d", live[0], first.Health.StreamLast, n, st.Health.StreamLast)
		}
		if !maps.Equal(st.Counts, first.Counts) {
			return nil, fmt.Sprintf("%s counts %v, %s counts %v", live[0], first.Counts, n, st.Counts)
		}
	}
	return states, ""
}

// acknowledged reads the kiosks' --acks file: command id to command, every whole line.
func (c *cluster) acknowledged(ctx context.Context) map[string]string {
	c.t.Helper()
	data := c.copyOut(ctx, "kiosks", "/sim/acks.jsonl")
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	acked := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var a struct {
			Command   string `json:"command"`
			CommandID string `json:"command_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil || primaryEvent[a.Command] == "" {
			c.t.Fatalf("acks line %q: %v; want a command of the library day", sc.Text(), err)
		}
		if _, dup := acked[a.CommandID]; dup {
			c.t.Errorf("command %s acknowledged twice", a.CommandID)
		}
		acked[a.CommandID] = a.Command
	}
	if len(acked) == 0 {
		c.t.Fatal("the kiosks acknowledged nothing")
	}
	return acked
}

// checkStream reads the CIRC stream through a node with the auditor's credentials, up to
// sequence last at least, and checks it.
func (c *cluster) checkStream(ctx context.Context, when, via string, acked map[string]string, last uint64) {
	c.t.Helper()
	ip, err := c.ip(ctx, via)
	if err != nil {
		c.t.Fatal(err)
	}
	creds, err := node.CredentialsOption(c.auditor)
	if err != nil {
		c.t.Fatal(err)
	}
	nc, err := nats.Connect("tls://"+net.JoinHostPort(ip, "4222"), creds, nats.Name("compose test auditor"),
		nats.Secure(&tls.Config{RootCAs: c.ca, ServerName: via, MinVersion: tls.VersionTLS12}), nats.MaxReconnects(0))
	if err != nil {
		c.t.Fatalf("%s: connect to %s as the auditor: %v", when, via, err)
	}
	defer nc.Close()
	type key struct{ id, typ string }
	once := map[key]int{}        // (command id, event type) -> events
	closed := map[string]int{}   // txn id -> transaction.closed events
	expunged := map[string]int{} // txn id -> transaction.expunged events
	var read uint64
	err = ledger.ReadDirect(ctx, nc, ledger.ReadOptions{}, func(m ledger.Msg) error {
		read = m.Seq
		parts, err := schemas.SplitEvents(m.Data)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", m.Seq, err)
		}
		for _, p := range parts {
			var ev schemas.Event
			if err := json.Unmarshal(p, &ev); err != nil {
				return fmt.Errorf("sequence %d: %w", m.Seq, err)
			}
			if ev.CommandID != "" {
				once[key{ev.CommandID, ev.Type}]++
			}
			var d struct {
				TxnID string `json:"txn_id"`
			}
			switch ev.Type {
			case schemas.TypeTransactionClosed:
				if json.Unmarshal(ev.Data, &d) == nil {
					closed[d.TxnID]++
				}
			case schemas.TypeTransactionExpunged:
				if json.Unmarshal(ev.Data, &d) == nil {
					expunged[d.TxnID]++
				}
			}
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("%s: read the stream through %s as the auditor: %v", when, via, err)
	}
	if read < last {
		c.t.Fatalf("%s: the auditor read to sequence %d through %s, which says its stream ends at %d", when, read, via, last)
	}
	bad := 0
	for id, cmd := range acked {
		if n := once[key{id, primaryEvent[cmd]}]; n != 1 && bad < 10 {
			c.t.Errorf("%s: acknowledged %s %s is on the stream %d times, want once", when, cmd, id, n)
			bad++
		}
	}
	for k, n := range once {
		if n > 1 && bad < 10 {
			c.t.Errorf("%s: command %s appended %s %d times, want once", when, k.id, k.typ, n)
			bad++
		}
	}
	for txn, n := range closed {
		if (n != 1 || expunged[txn] != 1) && bad < 10 {
			c.t.Errorf("%s: transaction %s closed %d times and expunged %d times, want once each", when, txn, n, expunged[txn])
			bad++
		}
	}
	for txn, n := range expunged {
		if closed[txn] == 0 && bad < 10 {
			c.t.Errorf("%s: transaction %s expunged %d times but never closed", when, txn, n)
			bad++
		}
	}
	if len(closed) == 0 {
		c.t.Errorf("%s: no transaction closed on the stream", when)
	}
}

func without(all []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(drop, n) })
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePort is a loopback port nothing listens on now, for node 1's published HTTPS port.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
