package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// primaryEvent is the event each command a simulated kiosk or desk sends appends exactly
// once (with the command's id).
var primaryEvent = map[string]string{
	schemas.CmdCheckOut: schemas.TypeItemCheckedOut,
	schemas.CmdReturn:   schemas.TypeItemReturned,
	schemas.CmdRenew:    schemas.TypeItemRenewed,
	schemas.CmdPayFine:  schemas.TypeFinePaid,
}

// TestSimulateAgainstAServer runs lethe simulate against a real server over its TCP
// listeners, as a container drives a cluster: the desk through the staff HTTP API, two
// kiosk identities over NATS shared by three simulated kiosks under the real rate limit.
// The first --server and --nats-url are dead, so the desk and the kiosks move to the
// next. Every command it says was acknowledged is on the stream exactly once.
func TestSimulateAgainstAServer(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithNATSListen(), func(c *node.ServiceConfig) { c.Kiosks = kiosk.Config{} })
	dir := t.TempDir()
	var creds []string
	for _, k := range []string{"sim1", "sim2"} {
		path := filepath.Join(dir, k+".nk")
		if _, err := letheCLI(t, "kiosks", "add", "main", k, "--data", h.Cfg.Data, "--out", path); err != nil {
			t.Fatalf("kiosks add main %s: %v", k, err)
		}
		creds = append(creds, path)
	}
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(lethetest.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	acks := filepath.Join(dir, "acks.jsonl")
	var out testkit.SyncBuffer
	args := []string{"simulate", "--server", "http://127.0.0.1:1," + h.S.HTTPURL, "--user", lethetest.Admin, "--password-file", pwFile,
		"--nats-url", "nats://127.0.0.1:1," + h.S.NATSURL(), "--nats-creds", strings.Join(creds, ","),
		"--kiosks", "3", "--items", "40", "--patrons", "12", "--duration", "4s", "--every", "1s", "--acks", acks,
		"--dashboard", "https://lethe.example.org/"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, args, func(string) string { return "" }, nil, &out, &out); err != nil {
		t.Fatalf("simulate: %v\n%s", err, out.String())
	}
	order := regexp.MustCompile(`(?s)^lethe simulate: a simulated library against http://127\.0\.0\.1:1, \S+; kiosks over \S+\n.*` +
		`cataloging 40 items and registering 12 patrons\.\.\.\n.*seeded in \S+; 3 simulated kiosks start now, as main/sim1, main/sim2\n` +
		`dashboard: https://lethe\.example\.org/ \(sign in as ` + lethetest.Admin + `\)\n.*` +
		`checked out \d+ · returned \d+ · refused \d+ · errors \d+ · open loans \d+ .*\ntotals: `)
	if !order.MatchString(out.String()) {
		t.Errorf("simulate output is not: the start, seeding, the kiosks, the dashboard, summary lines, totals:\n%s", out.String())
	}
	m := regexp.MustCompile(`totals: checked out (\d+), returned (\d+), .* errors (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no totals line in:\n%s", out.String())
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("nothing checked out:\n%s", out.String())
	}
	if m[3] != "0" {
		t.Errorf("%s commands got no answer from a server that never went away:\n%s", m[3], out.String())
	}

	// The seeding went through the staff API: the catalog and the patrons are there.
	c, err := h.S.Proj.Counts()
	if err != nil || c.Items != 40 || c.Patrons != 12 {
		t.Errorf("projections hold %d items and %d patrons (%v), want 40 and 12", c.Items, c.Patrons, err)
	}

	// Every acknowledged command is on the stream once.
	f, err := os.Open(acks)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	acked := map[string]string{} // command id -> command
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a struct {
			Command   string `json:"command"`
			CommandID string `json:"command_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil || primaryEvent[a.Command] == "" {
			t.Fatalf("acks line %q: %v; want a command of the library day", sc.Text(), err)
		}
		if _, dup := acked[a.CommandID]; dup {
			t.Errorf("command %s acknowledged twice", a.CommandID)
		}
		acked[a.CommandID] = a.Command
	}
	checkouts, _ := strconv.Atoi(m[1])
	n := 0
	for _, cmd := range acked {
		if cmd == schemas.CmdCheckOut {
			n++
		}
	}
	if n != checkouts {
		t.Errorf("%d checkouts in --acks, the totals say %d", n, checkouts)
	}
	seen := map[string]int{}
	err = ledger.Read(ctx, h.S.JS, ledger.ReadOptions{}, func(msg ledger.Msg) error {
		parts, err := schemas.SplitEvents(msg.Data)
		if err != nil {
			return err
		}
		for _, p := range parts {
			var ev schemas.Event
			if err := json.Unmarshal(p, &ev); err != nil {
				return err
			}
			if cmd, ok := acked[ev.CommandID]; ok && primaryEvent[cmd] == ev.Type {
				seen[ev.CommandID]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, cmd := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged %s %s is on the stream %d times, want once", cmd, id, seen[id])
		}
	}
}

// TestSimulateSparesTheAccount: a server that refuses the login (a cluster's node that has
// not yet heard of the account) is not asked again for a minute, and then after twice
// that, so waiting for a server never makes the failed logins that lock the account.
func TestSimulateSparesTheAccount(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithNATSListen())
	dir := t.TempDir()
	creds := filepath.Join(dir, "sim1.nk")
	if _, err := letheCLI(t, "kiosks", "add", "main", "sim1", "--data", h.Cfg.Data, "--out", creds); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-password-at-all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out testkit.SyncBuffer
	args := []string{"simulate", "--server", h.S.HTTPURL, "--user", lethetest.Admin, "--password-file", wrong,
		"--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--wait", "7s"}
	err := run(context.Background(), args, func(string) string { return "" }, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "no server answered within 7s") {
		t.Fatalf("simulate with a wrong password = %v, want no server answered\n%s", err, out.String())
	}
	if n := strings.Count(h.Logs.String(), `msg="staff login failed"`); n != 1 {
		t.Errorf("%d failed logins in 7 s, want 1 (then a minute's wait)", n)
	}
	// The account is not locked: the right password still works.
	if tok := h.Session(lethetest.Admin); tok == "" {
		t.Error("the administrator cannot log in after simulate's failed logins")
	}
}
