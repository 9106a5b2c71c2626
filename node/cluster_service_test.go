package node_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// testCluster is three Lethe services whose embedded servers form one cluster on
// loopback.
type testCluster struct {
	t      *testing.T
	cfgs   []node.ServiceConfig
	svcs   []*node.Service
	kiosks []*node.KioskClients
	logs   []*testkit.SyncBuffer
}

func startCluster(t *testing.T, rotation time.Duration) *testCluster {
	t.Helper()
	ports := freePorts(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &testCluster{t: t, svcs: make([]*node.Service, 3), kiosks: make([]*node.KioskClients, 3)}
	for i := range 3 {
		logs := &testkit.SyncBuffer{}
		c.logs = append(c.logs, logs)
		c.cfgs = append(c.cfgs, node.ServiceConfig{
			Config: node.Config{
				Data: filepath.Join(t.TempDir(), "data"), NATSListen: "off", Sync: "always", Location: time.UTC,
				Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Cluster: node.ClusterConfig{Name: "library", Node: fmt.Sprintf("n%d", i+1),
					Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes},
			},
			HTTP: cmp.Or(map[int]string{0: "127.0.0.1:0"}[i], "off"), SweepInterval: 2 * time.Second, RulesInterval: time.Hour, KEKRotation: rotation,
			Kiosks:             kiosk.Config{Rate: -1},
			CheckpointInterval: time.Hour, CheckpointEvents: 1 << 40,
		})
	}
	// n1 serves the staff API, with an administrator made offline as on a fresh install.
	st, err := staff.Open(filepath.Join(c.cfgs[0].Data, "staff"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(lethetest.Admin, policy.Administrator, lethetest.Password); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Together, as the machines of a cluster start: a node is ready once it sees a quorum.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node n%d: %v", i+1, err)
		}
	}
	t.Cleanup(func() {
		for i := range c.svcs {
			c.stop(i)
		}
	})
	return c
}

func (c *testCluster) start(i int) error {
	s, err := node.Start(context.Background(), c.cfgs[i])
	if err != nil {
		return err
	}
	c.svcs[i], c.kiosks[i] = s, node.NewKioskClients(s)
	return nil
}

func (c *testCluster) stop(i int) {
	if c.svcs[i] == nil {
		return
	}
	c.kiosks[i].Close()
	if err := c.svcs[i].Stop(); err != nil {
		c.t.Errorf("stop n%d: %v", i+1, err)
	}
	c.svcs[i], c.kiosks[i] = nil, nil
}

// api sends one request to n1's staff API as its administrator.
func (c *testCluster) api(method, path string) (int, []byte) {
	c.t.Helper()
	send := func(method, path, token string, body []byte) (int, []byte) {
		req, err := http.NewRequestWithContext(testkit.Context(c.t), method, c.svcs[0].HTTPURL+path, bytes.NewReader(body))
		if err != nil {
			c.t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(staff.ClientHeader, "cli")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	body, _ := json.Marshal(map[string]string{"name": lethetest.Admin, "password": lethetest.Password})
	code, out := send(http.MethodPost, "/api/login", "", body)
	var login struct {
		Result struct {
			Token string `json:"token"`
		} `json:"result"`
	}
	if code != http.StatusOK || json.Unmarshal(out, &login) != nil {
		c.t.Fatalf("log in: %d %s", code, out)
	}
	return send(method, path, login.Result.Token, nil)
}

// status is the cluster's status from n1's staff API.
func (c *testCluster) status() node.ClusterStatus {
	c.t.Helper()
	code, out := c.api(http.MethodGet, "/api/cluster")
	var st node.ClusterStatus
	if code != http.StatusOK || json.Unmarshal(out, &st) != nil {
		c.t.Fatalf("cluster status: %d %s", code, out)
	}
	return st
}

// desk runs a desk command on node i.
func (c *testCluster) desk(i int, name string, v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.svcs[i].Ledger.Execute(testkit.Context(c.t), ledger.Station{Kind: "desk", Branch: "main", ID: "desk"}, name, raw)
}

// kiosk sends a kiosk command to node i from its kiosk main/k<i>.
func (c *testCluster) kiosk(ctx context.Context, i int, cmd string, v any) (schemas.Reply, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return schemas.Reply{}, err
	}
	m, err := c.kiosks[i].Request(ctx, "main", fmt.Sprintf("k%d", i+1), cmd, raw)
	if err != nil {
		return schemas.Reply{}, err
	}
	var r schemas.Reply
	return r, json.Unmarshal(m.Data, &r)
}

// caughtUp waits until every running node's projections applied the whole stream.
func (c *testCluster) caughtUp() {
	c.t.Helper()
	testkit.WaitForWithin(c.t, "every node's projections at the stream's end", 60*time.Second, func() bool {
		var last uint64
		for _, s := range c.svcs {
			if s == nil {
				continue
			}
			l, err := s.StreamLast(testkit.Context(c.t))
			if err != nil {
				return false
			}
			last = max(last, l)
		}
		for _, s := range c.svcs {
			if s != nil && s.Proj.Applied() < last {
				return false
			}
		}
		return true
	})
}

// events reads the whole stream from node i.
func (c *testCluster) events(i int) []schemas.Event {
	c.t.Helper()
	var out []schemas.Event
	err := ledger.Read(testkit.Context(c.t), c.svcs[i].JS, ledger.ReadOptions{}, func(m ledger.Msg) error {
		var ev schemas.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			return fmt.Errorf("seq %d: %w", m.Seq, err)
		}
		out = append(out, ev)
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// TestClusterServesAndForgets: three nodes, a kiosk on each, checkouts and returns
// racing over the same items from every node; a node stopped in the middle of it and
// started again. No acknowledged command is lost or applied twice, every closed loan is
// expunged once, its key is gone from the cluster's bucket, the projections of every node
// equal a rebuild from the stream, and the returning node caught up on the stream and the
// key-encryption epoch.
func TestClusterServesAndForgets(t *testing.T) {
	t.Parallel()
	c := startCluster(t, time.Second)
	const items, patrons = 24, 12
	var cards, barcodes []string
	var cmds []json.RawMessage
	for i := range items {
		bc := fmt.Sprintf("3%07d", i+1)
		barcodes = append(barcodes, bc)
		raw, _ := json.Marshal(schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
			Barcode: bc, Title: "Book", Collection: "fiction", Branch: "main", ReplacementCents: 2000}})
		cmds = append(cmds, raw)
	}
	if _, err := c.svcs[0].Ledger.CatalogItems(testkit.Context(t), ledger.Station{Kind: "desk", Branch: "main", ID: "desk"}, cmds); err != nil {
		t.Fatal(err)
	}
	for i := range patrons {
		card := fmt.Sprintf("29%012d", i+1)
		cards = append(cards, card)
		// Accounts opened on every node: a profile key made on any node is everyone's.
		if _, err := c.desk(i%3, schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: uuid.NewString(), HomeBranch: "main",
			Profile: schemas.Profile{Name: fmt.Sprintf("Patron %d", i), BirthDate: "1980-01-02"}, Card: card}); err != nil {
			t.Fatal(err)
		}
	}
	c.caughtUp()
	st := c.status()
	if st.Mode != "cluster" || st.Node != "n1" || len(st.Nodes) != 3 || st.Epoch < 1 || st.Leases["kek-rotation"] == "" {
		t.Errorf("cluster status: %+v", st)
	}
	for _, s := range st.Streams {
		if s.Replicas != 3 || len(s.Copies) != 3 || s.Sync != "always" {
			t.Errorf("stream %s: %d replicas, copies %+v, sync %s", s.Name, s.Replicas, s.Copies, s.Sync)
		}
	}

	// A loan made on one node is returned on another: its key is read from the bucket.
	r, err := c.kiosk(testkit.Context(t), 0, schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: cards[0], Barcode: barcodes[0]})
	if err != nil || !r.OK {
		t.Fatalf("checkout on n1: %+v %v", r.Error, err)
	}
	c.caughtUp()
	if r, err = c.kiosk(testkit.Context(t), 1, schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: barcodes[0]}); err != nil || !r.OK {
		t.Fatalf("return on n2 of a loan made on n1: %+v %v", r.Error, err)
	}

	// Load from every node at once, over the same items.
	var (
		mu    sync.Mutex
		acked = map[string]string{} // command id: command
		sent  atomic.Int64
	)
	load := func(ctx context.Context, i, k int) {
		for n := 0; ctx.Err() == nil; n++ {
			bc := barcodes[(k*7+n)%items]
			id := uuid.NewString()
			var (
				r   schemas.Reply
				err error
				cmd = schemas.CmdCheckOut
			)
			if n%2 == 0 {
				r, err = c.kiosk(ctx, i, cmd, schemas.CheckOut{CommandID: id, Card: cards[(k+n)%patrons], Barcode: bc})
			} else {
				cmd = schemas.CmdReturn
				r, err = c.kiosk(ctx, i, cmd, schemas.Return{CommandID: id, Barcode: bc})
			}
			sent.Add(1)
			if err == nil && r.OK {
				mu.Lock()
				acked[id] = cmd
				mu.Unlock()
			}
		}
	}
	loadCtx, stopLoad := context.WithCancel(testkit.Context(t))
	var wg sync.WaitGroup
	var wg3 sync.WaitGroup
	ctx3, stop3 := context.WithCancel(loadCtx)
	for i := range 3 {
		for k := range 2 {
			if i == 2 {
				wg3.Go(func() { load(ctx3, i, i*2+k) })
			} else {
				wg.Go(func() { load(loadCtx, i, i*2+k) })
			}
		}
	}
	time.Sleep(2 * time.Second)
	// n3 stops in the middle of it: its kiosks' requests in flight fail or are answered.
	stop3()
	wg3.Wait()
	c.stop(2)
	// The stopped node holds the rotations (its epoch cannot end without it) until an
	// administrator takes it off the member list; then they go on without it.
	epochNow := c.status().Epoch
	time.Sleep(3 * time.Second)
	if e := c.status().Epoch; e != epochNow {
		t.Errorf("the epoch ended (%d to %d) without a member's answer", epochNow, e)
	}
	if code, _ := c.api(http.MethodPost, "/api/cluster/nodes/n9/remove"); code != http.StatusBadRequest {
		t.Errorf("removing a node that is no member: %d", code)
	}
	if code, body := c.api(http.MethodPost, "/api/cluster/nodes/n3/remove"); code != http.StatusOK {
		t.Fatalf("remove n3: %d %s", code, body)
	}
	testkit.WaitForWithin(t, "two rotations without n3", 30*time.Second, func() bool { return c.status().Epoch >= epochNow+2 })
	stopLoad()
	wg.Wait()
	// n3 returns, joins again, and learns the current KEK from a member.
	if err := c.start(2); err != nil {
		t.Fatalf("n3 returns: %v\n%s", err, errorLines(c.logs[2].String()))
	}
	t.Logf("%d commands sent, %d acknowledged", sent.Load(), len(acked))
	if len(acked) < 20 {
		t.Fatalf("only %d commands acknowledged", len(acked))
	}

	// Every loan closes, and forgetting catches up on every node.
	for i, bc := range barcodes {
		if r, err := c.kiosk(testkit.Context(t), i%3, schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: bc}); err != nil {
			t.Fatal(err)
		} else if !r.OK && r.Error.Code != schemas.CodeNotFound && r.Error.Code != schemas.CodeConflict {
			t.Fatalf("return %s: %+v", bc, r.Error)
		}
	}
	var evs []schemas.Event
	testkit.WaitForWithin(t, "every closed loan expunged", 60*time.Second, func() bool {
		c.caughtUp()
		evs = c.events(0)
		closed, expunged := map[string]int{}, map[string]int{}
		for _, ev := range evs {
			switch ev.Type {
			case schemas.TypeTransactionClosed:
				closed[txnOf(t, ev)]++
			case schemas.TypeTransactionExpunged:
				expunged[txnOf(t, ev)]++
			}
		}
		for id := range closed {
			if expunged[id] != 1 {
				return false
			}
		}
		return len(closed) > 0
	})

	// No acknowledged command lost, none applied twice.
	byCommand := map[string]int{}
	for _, ev := range evs {
		if ev.Type == schemas.TypeItemCheckedOut || ev.Type == schemas.TypeItemReturned {
			byCommand[ev.CommandID]++
		}
	}
	for id, cmd := range acked {
		if byCommand[id] != 1 {
			t.Errorf("acknowledged %s %s is on the stream %d times", cmd, id, byCommand[id])
		}
	}
	for id, n := range byCommand {
		if n != 1 {
			t.Errorf("command %s applied %d times", id, n)
		}
	}
	// Expunged once each, whatever node closed it; and the key gone from the bucket.
	expunged := map[string]int{}
	for _, ev := range evs {
		if ev.Type == schemas.TypeTransactionExpunged {
			expunged[txnOf(t, ev)]++
		}
	}
	for id, n := range expunged {
		if n != 1 {
			t.Errorf("transaction %s expunged %d times", id, n)
		}
		if _, err := c.svcs[1].Keys.Get(keystore.Transaction, id); err == nil {
			t.Errorf("the key of expunged transaction %s is still in the bucket", id)
		}
	}
	// Every node's projections equal a rebuild from the stream.
	c.caughtUp()
	for i, s := range c.svcs {
		diff, err := s.Proj.Rebuild(testkit.Context(t), s.JS, filepath.Join(t.TempDir(), "rebuild"), projections.Config{Location: time.UTC})
		if err != nil {
			t.Fatalf("n%d rebuild: %v", i+1, err)
		}
		if !diff.Equal() {
			t.Errorf("n%d's projections differ from a rebuild: %+v", i+1, diff)
		}
	}
	// The returning node holds the cluster's epoch, and its log names no patron.
	testkit.WaitForWithin(t, "n3 at the cluster's epoch", 30*time.Second, func() bool {
		st, err := c.svcs[2].ClusterStatus(testkit.Context(t))
		return err == nil && st.NodeEpoch >= st.Epoch && st.Epoch > 1
	})
	for i, logs := range c.logs {
		// A race between nodes is a conflict the ledger retries (a replicated stream's
		// error 10164), never an internal error.
		if strings.Contains(logs.String(), "code=internal") {
			t.Errorf("n%d refused a command as internal:\n%s", i+1, errorLines(logs.String()))
		}
		for _, card := range cards {
			if strings.Contains(logs.String(), card) {
				t.Errorf("n%d's log holds a card number", i+1)
			}
		}
	}
}

// txnOf is the transaction an event names.
func txnOf(t *testing.T, ev schemas.Event) string {
	t.Helper()
	var d struct {
		TxnID string `json:"txn_id"`
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.TxnID == "" {
		t.Fatalf("%s without a transaction: %v", ev.Type, err)
	}
	return d.TxnID
}

// errorLines are the lines of a log at level ERROR or WARN.
func errorLines(log string) string {
	var out []string
	for l := range strings.SplitSeq(log, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
