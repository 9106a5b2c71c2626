package replica

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/staff"
)

// node is one node of a test cluster: its data directory's registry and staff store,
// its NATS server, and its replica.
type node struct {
	name string
	dir  string
	reg  *identity.Registry
	st   *staff.Store
	js   *testkit.JetStream
	rep  *Replica
	log  *testkit.SyncBuffer
}

func newNodes(t *testing.T, servers []*testkit.JetStream) []*node {
	t.Helper()
	var nodes []*node
	for i, js := range servers {
		n := &node{name: string(rune('A' + i)), dir: t.TempDir(), js: js, log: &testkit.SyncBuffer{}}
		n.reg = identity.Open(n.dir)
		n.openStaff(t)
		nodes = append(nodes, n)
	}
	return nodes
}

func (n *node) openStaff(t *testing.T) {
	t.Helper()
	st, err := staff.Open(filepath.Join(n.dir, "staff"), nil)
	if err != nil {
		t.Fatal(err)
	}
	n.st = st
	t.Cleanup(func() { st.Close() })
}

// start starts the node's replica, waiting for the cluster to answer (right after the
// servers start, JetStream may not yet create a replicated bucket).
func (n *node) start(t *testing.T, replicas int, poll time.Duration) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := Start(testkit.Context(t), Config{JS: n.js.JS, Replicas: replicas, Registry: n.reg, Staff: n.st,
			Logger: slog.New(slog.NewTextHandler(n.log, nil)), Poll: poll})
		if err == nil {
			n.rep = rep
			t.Cleanup(rep.Close)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: Start = %v\nits log:\n%s", n.name, err, n.log)
		}
		time.Sleep(10 * time.Millisecond) // the cluster is not answering yet: nothing to poll
	}
}

// identities returns the node's registry, failing the test if it cannot be read.
func (n *node) identities(t *testing.T) []identity.Identity {
	t.Helper()
	ids, err := n.reg.List()
	if err != nil {
		t.Fatalf("node %s: List() = %v", n.name, err)
	}
	return ids
}

func find(ids []identity.Identity, pub string) (identity.Identity, bool) {
	for _, id := range ids {
		if id.PublicKey == pub {
			return id, true
		}
	}
	return identity.Identity{}, false
}

// waitIdentity waits until every node holds the identity pub and cond holds for it.
func waitIdentity(t *testing.T, nodes []*node, what, pub string, cond func(identity.Identity) bool) {
	t.Helper()
	for _, n := range nodes {
		testkit.WaitFor(t, what+" on node "+n.name, func() bool {
			id, ok := find(n.identities(t), pub)
			return ok && cond(id)
		})
	}
}

// waitAccount waits until every node holds the account and cond holds for it.
func waitAccount(t *testing.T, nodes []*node, what, name string, cond func(staff.Record) bool) {
	t.Helper()
	for _, n := range nodes {
		testkit.WaitFor(t, what+" on node "+n.name, func() bool {
			recs, err := n.st.Records()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.Name == name {
					return cond(r)
				}
			}
			return false
		})
	}
}

func active(id identity.Identity) bool  { return id.Active() }
func revoked(id identity.Identity) bool { return !id.Active() }

// TestKioskOnEveryNode: a kiosk added on node A, with its SIP2 password, is on nodes B
// and C within seconds at the default poll interval (the registry each node's NATS
// authentication reloads), and its SIP2 login works there; revoked on C, it is revoked on
// A and B. No seed and no password is in any registry, bucket entry or log.
func TestKioskOnEveryNode(t *testing.T) {
	// Not parallel: three servers each, and the machine may have two cores.
	nodes := newNodes(t, testkit.StartJetStreamCluster(t, 3))
	for _, n := range nodes {
		n.start(t, 3, 0)
	}
	a, c := nodes[0], nodes[2]
	begin := time.Now()
	k1, seed, err := a.reg.Add(identity.Kiosk, "main", "k1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pw, err := a.reg.SetSIP2Password("main", "k1")
	if err != nil {
		t.Fatal(err)
	}
	onA, _ := find(a.identities(t), k1.PublicKey)
	waitIdentity(t, nodes, "the new kiosk with its SIP2 password", k1.PublicKey, func(id identity.Identity) bool {
		return id.Active() && id.SIP2Password == onA.SIP2Password
	})
	t.Logf("a kiosk added on A was on every node %v later (poll every second)", time.Since(begin).Round(10*time.Millisecond))
	for _, n := range nodes[1:] {
		if got, err := n.reg.SIP2Login(identity.SIP2User("main", "k1"), pw); err != nil || got.PublicKey != k1.PublicKey {
			t.Errorf("node %s: SIP2Login(main/k1) = %v, %v, want the kiosk", n.name, got.Label(), err)
		}
	}

	if _, err := c.reg.Revoke(identity.Kiosk, "main", "k1", time.Now()); err != nil {
		t.Fatal(err)
	}
	waitIdentity(t, nodes, "the kiosk revoked on C", k1.PublicKey, revoked)
	for _, n := range nodes {
		if _, err := n.reg.SIP2Login(identity.SIP2User("main", "k1"), pw); err == nil {
			t.Errorf("node %s: SIP2Login of a revoked kiosk succeeded", n.name)
		}
	}

	// Public data only: the seed, the password and the hash are in no file, no bucket
	// entry, no log line (the registry holds the hash, and only the registry).
	kv, err := a.js.JS.KeyValue(testkit.Context(t), IdentitiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(testkit.Context(t), k1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		file, _ := os.ReadFile(n.reg.Path())
		for what, text := range map[string]string{"registry": string(file), "bucket entry": string(e.Value()), "log": n.log.String()} {
			if strings.Contains(text, string(seed)) || strings.Contains(text, pw) {
				t.Errorf("node %s: the %s holds the kiosk's seed or SIP2 password", n.name, what)
			}
		}
		if strings.Contains(n.log.String(), onA.SIP2Password) {
			t.Errorf("node %s: the log holds a SIP2 password hash", n.name)
		}
	}
}

// TestRevocationIsFinal: a kiosk revoked on C stays revoked on every node while, at the
// same time, A keeps changing its SIP2 password, a stale active copy is written over its
// bucket entry again and again, and B, cut off, re-adds the kiosk under a new key a
// moment before C's revocation: that re-added kiosk is revoked too, once B is back (the
// two commands, in the order of their times, end with no kiosk). A kiosk added after the
// revocation is active everywhere: the rule does not revoke everything of the name.
func TestRevocationIsFinal(t *testing.T) {
	// Not parallel: three servers each, and the machine may have two cores.
	nodes := newNodes(t, testkit.StartJetStreamCluster(t, 3))
	const poll = 20 * time.Millisecond
	for _, n := range nodes {
		n.start(t, 3, poll)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	base := time.Now()
	k1, _, err := a.reg.Add(identity.Kiosk, "main", "k1", base)
	if err != nil {
		t.Fatal(err)
	}
	waitIdentity(t, nodes, "the kiosk", k1.PublicKey, active)
	stale, _ := find(a.identities(t), k1.PublicKey)
	staleRaw, _ := json.Marshal(stale)
	kv, err := a.js.JS.KeyValue(testkit.Context(t), IdentitiesBucket)
	if err != nil {
		t.Fatal(err)
	}

	b.rep.Close() // B is cut off
	var k2 identity.Identity
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	wg.Go(func() {
		if _, err := c.reg.Revoke(identity.Kiosk, "main", "k1", base.Add(2*time.Second)); err != nil {
			errs <- fmt.Errorf("revoke on C: %w", err)
		}
	})
	wg.Go(func() {
		for range 3 {
			if _, err := a.reg.SetSIP2Password("main", "k1"); err != nil && !errors.Is(err, identity.ErrNotFound) {
				errs <- fmt.Errorf("SIP2 password on A: %w", err)
			}
		}
	})
	wg.Go(func() {
		for range 5 {
			if _, err := kv.Put(testkit.Context(t), k1.PublicKey, staleRaw); err != nil {
				errs <- fmt.Errorf("stale put: %w", err)
			}
		}
	})
	wg.Go(func() {
		if _, err := b.reg.Revoke(identity.Kiosk, "main", "k1", base.Add(time.Second)); err != nil {
			errs <- fmt.Errorf("revoke on B: %w", err)
			return
		}
		var err error
		if k2, _, err = b.reg.Add(identity.Kiosk, "main", "k1", base.Add(time.Second)); err != nil {
			errs <- fmt.Errorf("re-add on B: %w", err)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b.start(t, 3, poll) // B is back

	waitIdentity(t, nodes, "the kiosk revoked", k1.PublicKey, revoked)
	waitIdentity(t, nodes, "the kiosk re-added before the revocation, revoked", k2.PublicKey, revoked)
	testkit.WaitFor(t, "the same registry on every node", func() bool {
		opts := []cmp.Option{cmp.Comparer(sameIdentity), cmpopts.SortSlices(func(x, y identity.Identity) bool { return x.PublicKey < y.PublicKey })}
		return cmp.Equal(a.identities(t), b.identities(t), opts...) && cmp.Equal(a.identities(t), c.identities(t), opts...)
	})
	for _, key := range []string{k1.PublicKey, k2.PublicKey} {
		testkit.WaitFor(t, "the bucket entry revoked", func() bool {
			e, err := kv.Get(testkit.Context(t), key)
			var id identity.Identity
			return err == nil && json.Unmarshal(e.Value(), &id) == nil && !id.Active()
		})
	}
	for _, n := range nodes {
		if act, _ := n.reg.Active(); len(act) != 0 {
			t.Errorf("node %s: active identities %v, want none", n.name, act)
		}
	}

	k3, _, err := a.reg.Add(identity.Kiosk, "main", "k1", time.Now().Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	waitIdentity(t, nodes, "a kiosk added after the revocation, active", k3.PublicKey, active)
	for _, n := range nodes {
		if act, _ := n.reg.Active(); len(act) != 1 {
			t.Errorf("node %s: %d active identities, want the one added after the revocation", n.name, len(act))
		}
	}
}

func sameIdentity(x, y identity.Identity) bool {
	a, _ := json.Marshal(x)
	b, _ := json.Marshal(y)
	return string(a) == string(b)
}

// TestStaffOnEveryNode: an account added on A verifies on B; disabled on B, it is refused
// on A; a password changed on C while B disables it again both hold everywhere (disabled,
// and the new password once it is enabled); the old password is refused. No password is
// logged.
func TestStaffOnEveryNode(t *testing.T) {
	// Not parallel: three servers each, and the machine may have two cores.
	nodes := newNodes(t, testkit.StartJetStreamCluster(t, 3))
	for _, n := range nodes {
		n.start(t, 3, 50*time.Millisecond)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	const pw1, pw2 = "the first long password", "the second long password"
	if err := a.st.Add("ann", policy.Circulation, pw1); err != nil {
		t.Fatal(err)
	}
	waitAccount(t, nodes, "the new account", "ann", func(staff.Record) bool { return true })
	if acct, err := b.st.Verify("ann", pw1); err != nil || acct.Role != policy.Circulation {
		t.Fatalf("node B: Verify(ann) = %+v, %v, want the circulation account", acct, err)
	}

	if err := b.st.Disable("ann"); err != nil {
		t.Fatal(err)
	}
	waitAccount(t, nodes, "the account disabled", "ann", func(r staff.Record) bool { return r.Disabled })
	if _, err := a.st.Verify("ann", pw1); !errors.Is(err, staff.ErrBadCredentials) {
		t.Errorf("node A: Verify of an account disabled on B = %v, want ErrBadCredentials", err)
	}

	if err := a.st.Enable("ann"); err != nil {
		t.Fatal(err)
	}
	waitAccount(t, nodes, "the account enabled", "ann", func(r staff.Record) bool { return !r.Disabled })
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.st.SetPassword("ann", pw2); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		if err := b.st.Disable("ann"); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	newHash := func() string {
		recs, _ := c.st.Records()
		return recs[0].Hash
	}()
	waitAccount(t, nodes, "the account disabled, with C's password", "ann", func(r staff.Record) bool {
		return r.Disabled && r.Hash == newHash
	})
	if _, err := a.st.Verify("ann", pw2); !errors.Is(err, staff.ErrBadCredentials) {
		t.Errorf("node A: Verify of a disabled account = %v, want ErrBadCredentials", err)
	}
	if err := a.st.Enable("ann"); err != nil {
		t.Fatal(err)
	}
	waitAccount(t, nodes, "the account enabled again", "ann", func(r staff.Record) bool { return !r.Disabled })
	for _, n := range nodes {
		if _, err := n.st.Verify("ann", pw2); err != nil {
			t.Errorf("node %s: Verify(ann, new password) = %v", n.name, err)
		}
		if _, err := n.st.Verify("ann", pw1); !errors.Is(err, staff.ErrBadCredentials) {
			t.Errorf("node %s: Verify(ann, old password) = %v, want ErrBadCredentials", n.name, err)
		}
		if l := n.log.String(); strings.Contains(l, pw1) || strings.Contains(l, pw2) || strings.Contains(l, newHash) {
			t.Errorf("node %s: the log holds a password or its hash", n.name)
		}
	}
}

// TestNodeCatchesUp: node C's server and replica stop; meanwhile the others add a kiosk,
// revoke one, add an account and disable another, and C's data directory is changed by
// hand (an auditor added, a password changed, as `lethe auditors add` and `lethe staff
// passwd` do while the server is stopped). When C's server and replica start again, C
// has every change made elsewhere, and the others have C's. Close returns promptly with
// C's server gone under it.
func TestNodeCatchesUp(t *testing.T) {
	// Not parallel: three servers each, and the machine may have two cores.
	servers := testkit.StartJetStreamCluster(t, 3)
	nodes := newNodes(t, servers)
	const poll = 50 * time.Millisecond
	for _, n := range nodes {
		n.start(t, 3, poll)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("node %s log:\n%s", n.name, n.log)
			}
		}
	})
	const pw1, pw2 = "the first long password", "the second long password"
	k1, _, err := a.reg.Add(identity.Kiosk, "main", "k1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.st.Add("ann", policy.Circulation, pw1); err != nil {
		t.Fatal(err)
	}
	waitIdentity(t, nodes, "the first kiosk", k1.PublicKey, active)
	waitAccount(t, nodes, "the first account", "ann", func(staff.Record) bool { return true })

	restart := stopServer(t, servers, 2)
	closed := make(chan struct{})
	go func() { c.rep.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * opTimeout):
		t.Fatal("Close did not return with its server gone")
	}

	k2, _, err := a.reg.Add(identity.Kiosk, "main", "k2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.reg.Revoke(identity.Kiosk, "main", "k1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := a.st.Add("bob", policy.Administrator, pw1); err != nil {
		t.Fatal(err)
	}
	if err := b.st.Disable("ann"); err != nil {
		t.Fatal(err)
	}
	waitIdentity(t, nodes[:2], "the second kiosk", k2.PublicKey, active)
	waitAccount(t, nodes[:2], "the account disabled", "ann", func(r staff.Record) bool { return r.Disabled })

	carl, _, err := c.reg.Add(identity.Auditor, "", "carl", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c.st.Close() // as `lethe staff passwd` opens the store of a stopped server
	c.openStaff(t)
	if err := c.st.SetPassword("ann", pw2); err != nil {
		t.Fatal(err)
	}
	c.st.Close()
	c.openStaff(t)

	c.js = restart()
	c.start(t, 3, poll)
	waitIdentity(t, nodes, "the second kiosk", k2.PublicKey, active)
	waitIdentity(t, nodes, "the first kiosk revoked", k1.PublicKey, revoked)
	waitIdentity(t, nodes, "C's auditor", carl.PublicKey, active)
	waitAccount(t, nodes, "the second account", "bob", func(staff.Record) bool { return true })
	cHash := func() string {
		recs, _ := c.st.Records()
		return recs[0].Hash
	}()
	waitAccount(t, nodes, "the account disabled, with C's password", "ann", func(r staff.Record) bool {
		return r.Disabled && r.Hash == cHash
	})
	if _, err := c.st.Verify("bob", pw1); err != nil {
		t.Errorf("node C: Verify(bob) = %v", err)
	}
	if err := c.rep.Err(); err != nil {
		t.Errorf("node C: Err() = %v, want nil", err)
	}
}

// stopServer shuts down server i of the cluster and returns a function that starts it
// again, with the same name, store and route port, connected as before.
func stopServer(t *testing.T, servers []*testkit.JetStream, i int) func() *testkit.JetStream {
	t.Helper()
	old := servers[i].Server
	name, storeDir, cluster := old.Name(), filepath.Dir(old.StoreDir()), old.ClusterName()
	port := old.ClusterAddr().Port
	var routes []*url.URL
	for _, s := range servers {
		routes = append(routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(s.Server.ClusterAddr().Port))})
	}
	servers[i].Close()
	return func() *testkit.JetStream {
		t.Helper()
		ns, err := server.NewServer(&server.Options{
			ServerName: name, JetStream: true, StoreDir: storeDir, Host: "127.0.0.1", Port: -1,
			NoSigs: true, NoLog: true, SyncAlways: true,
			Cluster: server.ClusterOpts{Name: cluster, Host: "127.0.0.1", Port: port},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		j := &testkit.JetStream{Server: ns}
		t.Cleanup(j.Close)
		if !ns.ReadyForConnections(30 * time.Second) {
			t.Fatal("restarted server not ready")
		}
		if j.NC, err = nats.Connect("", nats.InProcessServer(ns)); err != nil {
			t.Fatal(err)
		}
		if j.JS, err = jetstream.New(j.NC); err != nil {
			t.Fatal(err)
		}
		return j
	}
}

// TestDamagedEntryRefused: bucket entries that do not decode, break the format's rules,
// have a key that is not theirs, or claim to be another identity than this node's copy of
// that key are refused, at the first sync and later: Start succeeds, nothing of them
// reaches the registry or the staff store, they are not overwritten, and Err names each
// by its key and never repeats its value. A good entry beside them is taken (the negative
// control), and a good value over a refused one is taken and clears it. Close leaves no
// goroutine behind.
func TestDamagedEntryRefused(t *testing.T) {
	// Not parallel: no other test's replica may be running when it counts goroutines.
	js := testkit.StartJetStream(t)
	n := newNodes(t, []*testkit.JetStream{js})[0]
	ctx := testkit.Context(t)
	k1, _, err := n.reg.Add(identity.Kiosk, "main", "k1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	idKV, err := js.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: IdentitiesBucket, History: 1, MaxValueSize: maxValue})
	if err != nil {
		t.Fatal(err)
	}
	staffKV, err := js.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: StaffBucket, History: 1, MaxValueSize: maxValue})
	if err != nil {
		t.Fatal(err)
	}
	key := func() string {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		return pub
	}
	good := identity.Identity{Kind: identity.Kiosk, Branch: "main", Name: "k5", PublicKey: key(), Added: time.Now().UTC()}
	notItsKey := identity.Identity{Kind: identity.Kiosk, Branch: "main", Name: "k6", PublicKey: key(), Added: time.Now().UTC()}
	conflict := k1
	conflict.Name = "k9"
	bad := map[string]string{
		key():                             `{"kind":"kiosk","branch":"main"`,
		key():                             `{"kind":"kiosk","branch":"main","name":"k7","public_key":"UX","added":"2026-01-01T00:00:00Z","secret_field":1}`,
		key():                             string(must(json.Marshal(notItsKey))),
		k1.PublicKey:                      string(must(json.Marshal(conflict))),
		hex.EncodeToString([]byte("eve")): `{"name":"eve","role":"administrator","disabled":false,"created":"2026-01-01T00:00:00Z","password_changed":"2026-01-01T00:00:00Z","hash":"plain-text-password"}`,
	}
	revs := map[string]uint64{}
	for k, v := range bad {
		kv := idKV
		if strings.HasPrefix(k, hex.EncodeToString([]byte("eve"))) {
			kv = staffKV
		}
		if revs[k], err = kv.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := idKV.Put(ctx, good.PublicKey, must(json.Marshal(good))); err != nil {
		t.Fatal(err)
	}
	registryBefore := n.identities(t)

	rep, err := Start(ctx, Config{JS: js.JS, Replicas: 1, Registry: n.reg, Staff: n.st,
		Logger: slog.New(slog.NewTextHandler(n.log, nil)), Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("Start with damaged entries = %v, want it to start", err)
	}
	checkRefused := func(keys ...string) {
		t.Helper()
		got := rep.Err()
		if got == nil {
			t.Fatal("Err() = nil, want the refused entries")
		}
		for _, k := range keys {
			if !strings.Contains(got.Error(), k) {
				t.Errorf("Err() = %q, does not name entry %s", got, k)
			}
		}
		for _, leak := range []string{"secret_field", "plain-text-password", "k9", "k6"} {
			if strings.Contains(got.Error(), leak) || strings.Contains(n.log.String(), leak) {
				t.Errorf("Err() or the log repeats a refused value (%q)", leak)
			}
		}
	}
	var badKeys []string
	for k := range bad {
		badKeys = append(badKeys, k)
	}
	checkRefused(badKeys...)
	want := append(registryBefore, good)
	if diff := cmp.Diff(want, n.identities(t), cmp.Comparer(sameIdentity)); diff != "" {
		t.Errorf("registry after the first sync (-want +got):\n%s", diff)
	}
	if recs, _ := n.st.Records(); len(recs) != 0 {
		t.Errorf("staff store holds %v, want nothing", recs)
	}

	// Later: a damaged value over the good entry changes nothing; a good one is taken.
	if _, err := idKV.Put(ctx, good.PublicKey, []byte(`{"kind":`)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the damaged value refused", func() bool {
		err := rep.Err()
		return err != nil && strings.Contains(err.Error(), good.PublicKey)
	})
	if id, ok := find(n.identities(t), good.PublicKey); !ok || !id.Active() {
		t.Errorf("the identity under a damaged entry changed: %+v, %v", id, ok)
	}
	revokedGood := good
	revokedGood.Revoked = new(time.Now().UTC())
	if _, err := idKV.Put(ctx, good.PublicKey, must(json.Marshal(revokedGood))); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the good value taken", func() bool {
		id, ok := find(n.identities(t), good.PublicKey)
		err := rep.Err()
		return ok && !id.Active() && err != nil && !strings.Contains(err.Error(), good.PublicKey)
	})
	for k, rev := range revs {
		kv := idKV
		if k == hex.EncodeToString([]byte("eve")) {
			kv = staffKV
		}
		e, err := kv.Get(ctx, k)
		if err != nil || e.Revision() != rev {
			t.Errorf("refused entry %s: %v, %v; want it left at revision %d", k, e, err, rev)
		}
	}
	if id, _ := find(n.identities(t), k1.PublicKey); id.Name != "k1" || !id.Active() {
		t.Errorf("the local kiosk under a conflicting entry changed: %+v", id)
	}

	rep.Close()
	rep.Close()
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "lethe/replica.(*mirror") {
		t.Errorf("a replica goroutine is left after Close:\n%s", stacks)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestConfig: a Config without JetStream, with no data to replicate, or out of range is
// refused before anything starts.
func TestConfig(t *testing.T) {
	t.Parallel()
	js := testkit.StartJetStream(t)
	reg := identity.Open(t.TempDir())
	for _, cfg := range []Config{
		{Registry: reg},
		{JS: js.JS},
		{JS: js.JS, Registry: reg, Replicas: 6},
		{JS: js.JS, Registry: reg, Poll: -time.Second},
	} {
		if _, err := Start(context.Background(), cfg); err == nil {
			t.Errorf("Start(%+v) succeeded, want an error", cfg)
		}
	}
}
