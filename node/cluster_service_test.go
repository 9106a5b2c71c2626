package node_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/kek"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// testCluster is three Lethe services whose embedded servers form one cluster on
// loopback.
type testCluster struct {
	t      testing.TB
	cfgs   []node.ServiceConfig
	svcs   []*node.Service
	kiosks []*node.KioskClients
	logs   []*testkit.SyncBuffer
}

func startCluster(t testing.TB, rotation time.Duration, opts ...func(*node.ServiceConfig)) *testCluster {
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
			HTTP: "127.0.0.1:0", SweepInterval: 2 * time.Second, RulesInterval: time.Hour, KEKRotation: rotation,
			Kiosks:             kiosk.Config{Rate: -1},
			CheckpointInterval: time.Hour, CheckpointEvents: 1 << 40,
		})
		for _, o := range opts {
			o(&c.cfgs[i])
		}
	}
	// Every node serves the staff API, with an administrator made offline as on a fresh
	// install.
	for _, cfg := range c.cfgs {
		st, err := staff.Open(filepath.Join(cfg.Data, "staff"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Add(lethetest.Admin, policy.Administrator, lethetest.Password); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
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
	// A new stream's copies are placed and elected after its creation: until then an
	// append waits for a quorum, and a busy machine running several clusters can time out.
	testkit.WaitForWithin(t, "CIRC current on three nodes", 90*time.Second, func() bool {
		info, err := c.svcs[0].Stream.Info(testkit.Context(t))
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		return true
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

// api sends one request to node i's staff API as its administrator.
func (c *testCluster) api(i int, method, path string) (int, []byte) {
	c.t.Helper()
	send := func(method, path, token string, body []byte) (int, []byte) {
		req, err := http.NewRequestWithContext(testkit.Context(c.t), method, c.svcs[i].HTTPURL+path, bytes.NewReader(body))
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

// status is the cluster's status from node i's staff API.
func (c *testCluster) status(i int) node.ClusterStatus {
	c.t.Helper()
	code, out := c.api(i, http.MethodGet, "/api/cluster")
	var st node.ClusterStatus
	if code != http.StatusOK || json.Unmarshal(out, &st) != nil {
		c.t.Fatalf("cluster status: %d %s", code, out)
	}
	return st
}

// desk runs a desk command on node i; unavailable is retried with the same command id, as
// a client would.
func (c *testCluster) desk(i int, name string, v any) (out any, err error) {
	raw, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	err = untilAvailable(func() (err error) {
		out, err = c.svcs[i].Ledger.Execute(testkit.Context(c.t), ledger.Station{Kind: "desk", Branch: "main", ID: "desk"}, name, raw)
		return err
	})
	return out, err
}

// catalog catalogs items on n1.
func (c *testCluster) catalog(cmds []json.RawMessage) error {
	return untilAvailable(func() error {
		_, err := c.svcs[0].Ledger.CatalogItems(testkit.Context(c.t), ledger.Station{Kind: "desk", Branch: "main", ID: "desk"}, cmds)
		return err
	})
}

// untilAvailable runs f up to six times while it answers unavailable, pausing between
// tries as kiosk does: a busy machine running several clusters can make an append wait
// longer than the ledger does.
func untilAvailable(f func() error) error {
	var err error
	for try := range 6 {
		if err = f(); schemas.Public(err).Code != schemas.CodeUnavailable {
			return err
		}
		time.Sleep(500 * time.Millisecond << try)
	}
	return err
}

// kiosk sends a kiosk command to node i from its kiosk main/k<i>, as a self-check
// machine does: a request that gets no answer within ten seconds, or the answer
// unavailable (a stream electing a new leader after a node died), is sent again with the
// same command id, after a pause that doubles from half a second, six times at most.
func (c *testCluster) kiosk(ctx context.Context, i int, cmd string, v any) (schemas.Reply, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return schemas.Reply{}, err
	}
	var r schemas.Reply
	for try := 0; ; try++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := c.kiosks[i].Request(rctx, "main", fmt.Sprintf("k%d", i+1), cmd, raw)
		cancel()
		if err == nil {
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return r, err
			}
		}
		if ctx.Err() != nil || try == 5 || (err == nil && (r.OK || r.Error.Code != schemas.CodeUnavailable)) {
			return r, err
		}
		time.Sleep(500 * time.Millisecond << try)
	}
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
	return lethetest.EventsOf(c.t, c.svcs[i].JS)
}

// TestClusterServesAndForgets: three nodes, a kiosk on each, checkouts and returns
// racing over the same items from every node; the node that leads the key-encryption
// rotations stopped in the middle of it (its open loan is closed on another, another
// takes the lead, the epoch waits for it until an administrator removes it, then goes
// on), and started again. No acknowledged command is lost or applied twice, every closed loan is
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
	held, _ := json.Marshal(schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
		Barcode: "HELD1", Title: "Book", Collection: "fiction", Branch: "main", ReplacementCents: 2000}})
	if err := c.catalog(append(cmds, held)); err != nil {
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
	st := c.status(0)
	if st.Mode != "cluster" || st.Node != "n1" || len(st.Nodes) != 3 || st.Epoch < 1 || st.Leases["kek-rotation"] == "" {
		t.Fatalf("cluster status: %+v", st)
	}
	// The node that dies is the one that leads the rotations; another answers the API.
	var victim int
	if _, err := fmt.Sscanf(st.Leases["kek-rotation"], "n%d", &victim); err != nil {
		t.Fatal(err)
	}
	victim--
	victimName, live := fmt.Sprintf("n%d", victim+1), (victim+1)%3
	for _, s := range st.Streams {
		if s.Replicas != 3 || len(s.Copies) != 3 || s.Sync != "always" {
			t.Errorf("stream %s: %d replicas, copies %+v, sync %s", s.Name, s.Replicas, s.Copies, s.Sync)
		}
	}

	// A kiosk made on n1 is admitted by n3 once the identities are in step (package
	// replica), and one revoked on n2 is cut off on n3.
	reg := identity.Open(c.cfgs[0].Data)
	_, seed, err := reg.Add(identity.Kiosk, "north", "roam", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	info, _ := json.Marshal(schemas.PatronInfo{Card: cards[0]})
	roam := func() error {
		nc, err := nats.Connect("", nats.InProcessServer(c.svcs[2].NS), nats.Nkey(pub, kp.Sign))
		if err != nil {
			return err
		}
		defer nc.Close()
		m, err := nc.Request(ledger.KioskSubject("north", "roam", schemas.CmdPatronInfo), info, 5*time.Second)
		if err != nil {
			return err
		}
		var r schemas.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			return fmt.Errorf("reply %s", m.Data)
		}
		return nil
	}
	testkit.WaitForWithin(t, "the kiosk made on n1 served by n3", 30*time.Second, func() bool { return roam() == nil })
	if _, err := identity.Open(c.cfgs[1].Data).Revoke(identity.Kiosk, "north", "roam", time.Now()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForWithin(t, "the kiosk revoked on n2 refused by n3", 30*time.Second, func() bool { return roam() != nil })

	// A loan on the node that will die, open when it does.
	if r, err := c.kiosk(testkit.Context(t), victim, schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: cards[1], Barcode: "HELD1"}); err != nil || !r.OK {
		t.Fatalf("checkout on %s: %+v %v", victimName, r.Error, err)
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
	var wgV sync.WaitGroup
	ctxV, stopV := context.WithCancel(loadCtx)
	for i := range 3 {
		for k := range 2 {
			if i == victim {
				wgV.Go(func() { load(ctxV, i, i*2+k) })
			} else {
				wg.Go(func() { load(loadCtx, i, i*2+k) })
			}
		}
	}
	testkit.WaitForWithin(t, "twenty commands acknowledged under load", time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 20
	})
	// The rotations' leader stops in the middle of it: its kiosks' requests in flight
	// fail or are answered.
	stopV()
	wgV.Wait()
	c.stop(victim)
	// Its open loan is read and closed on another node, and another node takes the lease.
	if r, err := c.kiosk(testkit.Context(t), live, schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: "HELD1"}); err != nil || !r.OK {
		t.Fatalf("return on n%d of a loan made on the dead %s: %+v %v\n%s", live+1, victimName, r.Error, err, errorLines(c.logs[live].String()))
	}
	testkit.WaitForWithin(t, "another node leads the rotations", 30*time.Second, func() bool {
		holder := c.status(live).Leases["kek-rotation"]
		return holder != "" && holder != victimName
	})
	// The stopped node holds the rotations (its epoch cannot end without it) until an
	// administrator takes it off the member list; then they go on without it.
	epochNow := c.status(live).Epoch
	var overdue node.ClusterStatus
	testkit.WaitForWithin(t, "the rotation reported overdue", 30*time.Second, func() bool {
		overdue = c.status(live)
		return overdue.RotationOverdue
	})
	if overdue.Epoch != epochNow {
		t.Errorf("the epoch ended (%d to %d) without a member's answer", epochNow, overdue.Epoch)
	}
	if code, _ := c.api(live, http.MethodPost, "/api/cluster/nodes/n9/remove"); code != http.StatusNotFound {
		t.Errorf("removing a node that is no member: %d", code)
	}
	if code, body := c.api(live, http.MethodPost, "/api/cluster/nodes/"+victimName+"/remove"); code != http.StatusOK {
		t.Fatalf("remove %s: %d %s", victimName, code, body)
	}
	if !waitUntil(30*time.Second, func() bool { return c.status(live).Epoch >= epochNow+2 }) {
		t.Fatalf("no two rotations without the stopped node within 30 s: %+v\n%s", c.status(live), errorLines(c.logs[live].String()))
	}
	stopLoad()
	wg.Wait()
	// It returns, joins again, and learns the current KEK from a member.
	if err := c.start(victim); err != nil {
		t.Fatalf("%s returns: %v\n%s", victimName, err, errorLines(c.logs[victim].String()))
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
		diff, err := s.Proj.Rebuild(testkit.Context(t), s.JS, filepath.Join(t.TempDir(), "rebuild"), projections.Config{Location: time.UTC}, nil)
		if err != nil {
			t.Fatalf("n%d rebuild: %v", i+1, err)
		}
		if !diff.Equal() {
			t.Errorf("n%d's projections differ from a rebuild: %+v", i+1, diff)
		}
	}
	// The returning node holds the cluster's epoch, and no log names a patron.
	testkit.WaitForWithin(t, "the returning node at the cluster's epoch", 30*time.Second, func() bool {
		st, err := c.svcs[victim].ClusterStatus(testkit.Context(t))
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

// TestClusterForgetsOnEveryDisk is the forensic test of a cluster's forgetting. A loan made
// on one node and closed on another: before the epoch ends, the destroyed key's wrapped
// bytes are in the nodes' JetStream files and every node's keyring file unwraps them, and
// while the loan is open its id is in every node's projection files (the negative
// controls). After
// the sweeps and one rotation: no keyring on any disk unwraps those bytes, no file holds
// an old keyring file's bytes, no projection or keystore file on any node holds the
// transaction's id, and a loan still open is read and closed as before. Then a node's disk
// is lost: the node starts again on an empty data directory and has everything back.
func TestClusterForgetsOnEveryDisk(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := startCluster(t, time.Hour, func(cfg *node.ServiceConfig) { cfg.SweepInterval = time.Hour })
	var cmds []json.RawMessage
	for _, bc := range []string{"F1", "F2"} {
		raw, _ := json.Marshal(schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
			Barcode: bc, Title: "Book", Collection: "fiction", Branch: "main", ReplacementCents: 2000}})
		cmds = append(cmds, raw)
	}
	if err := c.catalog(cmds); err != nil {
		t.Fatal(err)
	}
	const card = "29000000000777"
	if _, err := c.desk(0, schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: uuid.NewString(), HomeBranch: "main",
		Profile: schemas.Profile{Name: "Zelda Forensic", BirthDate: "1971-03-04"}, Card: card}); err != nil {
		t.Fatal(err)
	}
	c.caughtUp()
	for _, bc := range []string{"F1", "F2"} {
		if r, err := c.kiosk(ctx, 1, schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: card, Barcode: bc}); err != nil || !r.OK {
			t.Fatalf("checkout %s on n2: %+v %v", bc, r.Error, err)
		}
	}
	c.caughtUp()
	var txn string
	for _, ev := range c.events(0) {
		var d schemas.ItemCheckedOut
		if ev.Type == schemas.TypeItemCheckedOut && json.Unmarshal(ev.Data, &d) == nil && d.Barcode == "F1" {
			txn = d.TxnID
		}
	}
	bucket, err := c.svcs[0].JS.KeyValue(ctx, kek.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	ref := keystore.RefOf(keystore.Transaction, txn)
	name := hex.EncodeToString(ref.Hash[:])
	e, err := bucket.Get(ctx, "transaction."+name)
	if err != nil {
		t.Fatalf("the open loan's key is not in the bucket: %v", err)
	}
	wrapped := bytes.Clone(e.Value())
	// The negative control of the projections: the open loan's rows, flushed, name it on
	// every node.
	for i, cfg := range c.cfgs {
		if err := c.svcs[i].Proj.DB().Flush(); err != nil {
			t.Fatal(err)
		}
		if where := filesIn(t, []byte(txn), filepath.Join(cfg.Data, "projections")); len(where) == 0 {
			t.Fatalf("negative control: n%d's projection files do not hold the open loan's transaction id", i+1)
		}
	}

	if r, err := c.kiosk(ctx, 2, schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: "F1"}); err != nil || !r.OK {
		t.Fatalf("return on n3: %+v %v", r.Error, err)
	}
	testkit.WaitForWithin(t, "the closed loan expunged on every node", time.Minute, func() bool {
		c.caughtUp()
		for _, s := range c.svcs {
			if p, err := s.Proj.PendingExpunges(); err != nil || len(p) > 0 {
				return false
			}
		}
		_, err := bucket.Get(ctx, "transaction."+name)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})

	rings := func() []*kek.Keyring {
		t.Helper()
		var out []*kek.Keyring
		for _, cfg := range c.cfgs {
			master, err := keystore.LoadMaster(filepath.Join(cfg.Data, "master.key"), "")
			if err != nil {
				t.Fatal(err)
			}
			mk, err := master.Derive("cluster node")
			if err != nil {
				t.Fatal(err)
			}
			r, err := kek.OpenKeyring(filepath.Join(cfg.Data, "kek"), mk)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	var dataDirs, projDirs []string
	for _, cfg := range c.cfgs {
		dataDirs = append(dataDirs, cfg.Data)
		projDirs = append(projDirs, filepath.Join(cfg.Data, "projections"), filepath.Join(cfg.Data, "keystore"))
	}
	// The negative controls: the residue is there, and the KEKs of the moment open it.
	if where := filesIn(t, wrapped, dataDirs...); len(where) == 0 {
		t.Fatal("negative control: the destroyed key's wrapped bytes are in no file (the scan would see nothing)")
	}
	for i, r := range rings() {
		if _, err := r.Unwrap("transaction", name, wrapped); err != nil {
			t.Fatalf("negative control: n%d's keyring does not unwrap the residue before the rotation: %v", i+1, err)
		}
	}
	var oldRings [][]byte
	for _, cfg := range c.cfgs {
		raw, err := os.ReadFile(filepath.Join(cfg.Data, "kek"))
		if err != nil {
			t.Fatal(err)
		}
		oldRings = append(oldRings, raw)
	}

	for _, s := range c.svcs {
		if err := s.Expunger.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rot, err := c.svcs[0].RotateKEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rotation to epoch %d: %d keys re-wrapped in %s", rot.Epoch, rot.Rewraps, rot.Duration)

	for i, r := range rings() {
		if _, err := r.Unwrap("transaction", name, wrapped); !errors.Is(err, kek.ErrNoEpoch) {
			t.Errorf("n%d's keyring still unwraps the destroyed key after the rotation: %v", i+1, err)
		}
	}
	for i, old := range oldRings {
		if where := filesIn(t, old, dataDirs...); len(where) > 0 {
			t.Errorf("n%d's keyring from before the rotation is still in %v", i+1, where)
		}
	}
	if where := filesIn(t, []byte(txn), projDirs...); len(where) > 0 {
		t.Errorf("the closed transaction's id is still in %v", where)
	}
	// The loan still open is read under the new epoch, on another node than its own.
	if r, err := c.kiosk(ctx, 0, schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: "F2"}); err != nil || !r.OK {
		t.Fatalf("return of the open loan after the rotation: %+v %v", r.Error, err)
	}

	// A lost disk: n3 starts again on an empty data directory under its name, and gets
	// back the stream, its projections, the KEK, the staff accounts and the identities.
	c.stop(2)
	if err := os.RemoveAll(c.cfgs[2].Data); err != nil {
		t.Fatal(err)
	}
	if err := c.start(2); err != nil {
		t.Fatalf("n3 on an empty data directory: %v\n%s", err, errorLines(c.logs[2].String()))
	}
	c.caughtUp()
	if diff, err := c.svcs[2].Proj.Rebuild(ctx, c.svcs[2].JS, filepath.Join(t.TempDir(), "rebuild"), projections.Config{Location: time.UTC}, nil); err != nil || !diff.Equal() {
		t.Errorf("the restored node's projections: %+v %v", diff, err)
	}
	// The staff accounts come back from the bucket as the node's copy of it catches up
	// (waited for in its store, not by signing in: five failed sign-ins lock the account).
	testkit.WaitForWithin(t, "the administrator back on n3", 30*time.Second, func() bool { return c.svcs[2].HasStaffAccount(lethetest.Admin) })
	if code, _ := c.api(2, http.MethodGet, "/api/cluster"); code != http.StatusOK {
		t.Errorf("the administrator made on the lost disk does not sign in on the restored node: %d", code)
	}
	if r, err := c.kiosk(ctx, 2, schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: card, Barcode: "F1"}); err != nil || !r.OK {
		t.Fatalf("checkout on the restored node: %+v %v", r.Error, err)
	}
}

// filesIn lists the files under dirs that contain b.
func filesIn(t *testing.T, b []byte, dirs ...string) []string {
	t.Helper()
	var out []string
	for _, d := range dirs {
		hits, err := keystore.ScanDir(d, [][]byte{b})
		if err != nil {
			t.Fatal(err)
		}
		for _, files := range hits {
			out = append(out, files...)
		}
	}
	return out
}

// TestClusterGrows: a fourth node started with the cluster's flags (its routes naming the
// others, theirs not naming it) joins the JetStream cluster and the member list by itself,
// learns the KEK from a member, takes part in the rotations that follow, and serves a
// checkout whose loan another node closes.
func TestClusterGrows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := startCluster(t, time.Second)
	port := freePorts(t, 1)[0]
	cfg := c.cfgs[2]
	logs := &testkit.SyncBuffer{}
	cfg.Data = filepath.Join(t.TempDir(), "data")
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Cluster.Node, cfg.Cluster.Listen = "n4", fmt.Sprintf("127.0.0.1:%d", port)
	cfg.Cluster.Routes = append(slices.Clone(cfg.Cluster.Routes), "nats://"+cfg.Cluster.Listen)
	c.cfgs, c.logs = append(c.cfgs, cfg), append(c.logs, logs)
	c.svcs, c.kiosks = append(c.svcs, nil), append(c.kiosks, nil)
	if err := c.start(3); err != nil {
		t.Fatalf("n4: %v\n%s", err, errorLines(logs.String()))
	}
	st, err := c.svcs[3].ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeEpoch < st.Epoch || !slices.ContainsFunc(st.Nodes, func(m node.ClusterMember) bool { return m.Name == "n4" && m.Member }) {
		t.Fatalf("n4 after its start: %+v", st)
	}
	joined := st.Epoch
	testkit.WaitForWithin(t, "two rotations with n4 a member", 30*time.Second, func() bool {
		st, err := c.svcs[3].ClusterStatus(ctx)
		return err == nil && st.Epoch >= joined+2 && st.NodeEpoch >= st.Epoch
	})

	raw, _ := json.Marshal(schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
		Barcode: "G1", Title: "Book", Collection: "fiction", Branch: "main", ReplacementCents: 2000}})
	if err := c.catalog([]json.RawMessage{raw}); err != nil {
		t.Fatal(err)
	}
	const card = "29000000000444"
	if _, err := c.desk(0, schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: uuid.NewString(), HomeBranch: "main",
		Profile: schemas.Profile{Name: "Gus Grows", BirthDate: "1990-09-09"}, Card: card}); err != nil {
		t.Fatal(err)
	}
	c.caughtUp()
	if r, err := c.kiosk(ctx, 3, schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: card, Barcode: "G1"}); err != nil || !r.OK {
		t.Fatalf("checkout on n4: %+v %v", r.Error, err)
	}
	c.caughtUp()
	if r, err := c.kiosk(ctx, 0, schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: "G1"}); err != nil || !r.OK {
		t.Fatalf("return on n1 of n4's loan: %+v %v", r.Error, err)
	}
}

// waitUntil polls cond every 100 ms until it holds or d has passed.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
