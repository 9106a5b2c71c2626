package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// TestCrashWithKeysReady: transaction keys made ahead of need (keystore.Pool) never
// outlive the process that made them, nor carry anything. A checkout takes one of them, at
// no keystore sync. A stop destroys the keys the pool still holds. A real lethe serve
// killed (SIGKILL) while its pool holds keys, after a checkout took one, leaves them on
// disk, linked to nothing; the next start destroys every one of them and keeps the two
// loans' keys; and no event on the stream was ever sealed under a key the pool held.
func TestCrashWithKeysReady(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	const card = "21000000000950"
	h.Catalog("KP1", 1000)
	h.Catalog("KP2", 1000)
	h.Register(card, "Kip Pool", "1980-01-01")
	full := fmt.Sprintf("\nlethe_key_pool_ready %d\n", keystore.DefaultPoolSize)
	testkit.WaitFor(t, "the key pool filled", func() bool { return strings.Contains(h.Scrape(), full) })
	h.MustCheckout(card, "KP1")
	if st := h.S.Ledger.KeyPool(); st.Taken != 1 || st.Missed != 0 {
		t.Errorf("key pool after a checkout = %+v, want one key taken and none missed", st)
	}
	txn1 := h.TxnOf("KP1")
	data := h.Cfg.Data
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	// A stop: only the loan's key is left.
	if got := transactionKeys(t, data); len(got) != 1 || !got[keystore.RefOf(keystore.Transaction, txn1)] {
		t.Errorf("transaction keys after a stop = %d, want only the open loan's", len(got))
	}

	// A kill: a real server fills its pool, lends KP2 with one of the keys, and is killed.
	ready := killedWithKeysReady(t, data, card, "KP2")
	left := transactionKeys(t, data)
	if len(left) != 2+ready {
		t.Fatalf("transaction keys after the kill = %d, want the two loans' and the %d the pool held", len(left), ready)
	}

	h.Start() // reconciles
	txn2 := h.TxnOf("KP2")
	loans := map[keystore.Ref]bool{keystore.RefOf(keystore.Transaction, txn1): true, keystore.RefOf(keystore.Transaction, txn2): true}
	pooled := map[keystore.Ref]bool{}
	for r := range left {
		if !loans[r] {
			pooled[r] = true
		}
	}
	if len(pooled) != ready {
		t.Fatalf("keys the pool held at the kill = %d, want %d (each loan's key among those left)", len(pooled), ready)
	}
	entries, err := h.S.Keys.List(keystore.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if pooled[e.Ref] {
			t.Errorf("a key the killed process's pool held outlived the restart: %v", e.Ref)
		}
	}
	for _, id := range []string{txn1, txn2} {
		if _, err := h.S.Keys.Get(keystore.Transaction, id); err != nil {
			t.Errorf("an open loan's key after the restart: %v", err)
		}
	}
	for _, ev := range h.Events() {
		var d struct {
			TxnID string `json:"txn_id"`
		}
		if json.Unmarshal(ev.Data, &d) == nil && d.TxnID != "" && pooled[keystore.RefOf(keystore.Transaction, d.TxnID)] {
			t.Errorf("event %s (%s) names a transaction whose key the pool held", ev.ID, ev.Type)
		}
	}
	if r := h.Checkin("KP2"); r.Barcode != "KP2" {
		t.Errorf("return of the loan made by the killed process = %+v", r)
	}
}

// transactionKeys lists the transaction keys of a stopped data directory.
func transactionKeys(t *testing.T, data string) map[keystore.Ref]bool {
	t.Helper()
	m, err := keystore.LoadMaster(filepath.Join(data, "master.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Open(filepath.Join(data, "keystore"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	entries, err := ks.List(keystore.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	out := map[keystore.Ref]bool{}
	for _, e := range entries {
		out[e.Ref] = true
	}
	return out
}

var poolReadyLine = regexp.MustCompile(`\nlethe_key_pool_ready (\d+)\n`)

// killedWithKeysReady runs lethe serve on data in a child process (the test binary, see
// TestMain), waits until its key pool is full, checks out barcode to card at the desk,
// and kills the process (SIGKILL) once the checkout is answered. It returns how many keys
// the pool held then.
func killedWithKeysReady(t *testing.T, data, card, barcode string) int {
	t.Helper()
	url, logs, kill := serveChild(t, data)
	metric := func() string {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := poolReadyLine.FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("no lethe_key_pool_ready in /metrics:\n%s", body)
		}
		return m[1]
	}
	full := fmt.Sprint(keystore.DefaultPoolSize)
	testkit.WaitFor(t, "the key pool filled", func() bool { return metric() == full })

	post := func(path, token string, v any) []byte {
		raw, _ := json.Marshal(v)
		req, _ := http.NewRequestWithContext(testkit.Context(t), http.MethodPost, url+path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(staff.ClientHeader, "cli")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s = %d %s\n%s", path, resp.StatusCode, body, logs.String())
		}
		return body
	}
	var login struct {
		Result staff.SessionInfo `json:"result"`
	}
	if err := json.Unmarshal(post("/api/login", "", map[string]string{"name": lethetest.Admin, "password": lethetest.Password}), &login); err != nil {
		t.Fatal(err)
	}
	post("/api/desk/checkout", login.Result.Token, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: card, Barcode: barcode})
	n := metric()
	if want := fmt.Sprint(keystore.DefaultPoolSize - 1); n != want {
		t.Errorf("keys ready after a checkout = %s, want %s: the checkout takes one, and the rest stay until half are gone", n, want)
	}

	kill()
	var ready int
	fmt.Sscan(n, &ready)
	return ready
}

var readyLineRE = regexp.MustCompile(`msg="lethe ready" (?:mode="[^"]*" )?http=(\S+)`)

// serveChild runs lethe serve on data in a child process (the test binary, see TestMain)
// and returns its HTTP address once it is ready, its log, and kill, which kills it with
// SIGKILL and checks that it died of that. A child still running when the test ends is
// killed then.
func serveChild(t *testing.T, data string) (url string, logs *testkit.SyncBuffer, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "off", "--log-level", "info")
	cmd.Env = append(os.Environ(), childEnv+"=lethe")
	logs = &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // ends when the child does, which the kill ensures
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			<-exited
		}
	})
	testkit.WaitFor(t, "lethe serve ready", func() bool {
		if m := readyLineRE.FindStringSubmatch(logs.String()); m != nil {
			url = m[1]
			return true
		}
		return false
	})
	return url, logs, func() {
		t.Helper()
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killed = true
		if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("lethe serve after the kill: %v, want killed", err)
		}
	}
}
