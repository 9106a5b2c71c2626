package kek

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// node is one cluster node of the tests: its server, identity, keyring and key store.
type node struct {
	js     *testkit.JetStream
	id     Identity
	ring   *Keyring
	ringAt string // the keyring file
	master [Size]byte
	store  *Store
	member *Member
}

// cluster starts three nodes: a JetStream cluster, each node's identity and keyring, the
// first node's epoch given to the others, and the R3 key bucket.
func cluster(t *testing.T) []*node {
	t.Helper()
	ctx := testkit.Context(t)
	servers := testkit.StartJetStreamCluster(t, 3)
	var nodes []*node
	var peers []Peer
	for i, s := range servers {
		id, err := NewIdentity("n" + strconv.Itoa(i+1))
		if err != nil {
			t.Fatal(err)
		}
		n := &node{js: s, id: id, ringAt: filepath.Join(t.TempDir(), "kek")}
		rand.Read(n.master[:])
		if n.ring, err = OpenKeyring(n.ringAt, n.master); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		peers = append(peers, id.Peer())
	}
	for _, n := range nodes {
		var err error
		if n.member, err = Serve(n.js.NC, n.id, n.ring, peers); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.member.Close() })
	}
	if _, err := nodes[0].ring.Start(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		// Until the subscriptions have spread over the routes, a request finds no one.
		var err error
		testkit.WaitForWithin(t, "the first node's epoch on "+n.id.ID, 30*time.Second, func() bool {
			_, err = CatchUp(ctx, n.js.NC, n.id, n.ring, nodes[0].id.Peer())
			return err == nil
		})
	}
	for _, n := range nodes {
		var err error
		// The bucket is R3: the meta leader may take a moment to place it.
		testkit.WaitForWithin(t, "the key bucket", 30*time.Second, func() bool {
			n.store, err = OpenStore(ctx, n.js.JS, n.ring, 3)
			return err == nil
		})
	}
	return nodes
}

func peersOf(nodes []*node) []Peer {
	var out []Peer
	for _, n := range nodes {
		out = append(out, n.id.Peer())
	}
	return out
}

// rawValue is the wrapped key as the bucket holds it.
func rawValue(t *testing.T, n *node, kind, id string) []byte {
	t.Helper()
	kv, err := n.js.JS.KeyValue(testkit.Context(t), Bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(testkit.Context(t), kind+"."+id)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(e.Value())
}

// filesHolding lists the files under dirs that contain b.
func filesHolding(t *testing.T, b []byte, dirs ...string) []string {
	t.Helper()
	var out []string
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(path string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(raw, b) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestDestroyedKeyUnwrappableAfterRotation is the forensic test of the cluster's
// keys: a key created on one node is read on the others; destroyed, its wrapped bytes
// stay in the JetStream files of the nodes (the negative control: before the rotation,
// every node can still unwrap them); after the rotation no KEK that exists on any node
// unwraps them, no file holds an old keyring file's bytes, and the live key is read on
// every node under the new epoch.
func TestDestroyedKeyUnwrappableAfterRotation(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	nodes := cluster(t)
	gone, err := nodes[1].store.Create(ctx, "transaction", "t-gone")
	if err != nil {
		t.Fatal(err)
	}
	live, err := nodes[1].store.Create(ctx, "transaction", "t-live")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testkit.WaitFor(t, "the key on "+n.id.ID, func() bool {
			got, err := n.store.Get(ctx, "transaction", "t-gone")
			return err == nil && bytes.Equal(got, gone)
		})
	}
	if _, err := nodes[1].store.Create(ctx, "transaction", "t-gone"); !errors.Is(err, ErrExists) {
		t.Errorf("creating an existing key: %v, want ErrExists", err)
	}
	wrapped := rawValue(t, nodes[0], "transaction", "t-gone")
	var oldRings [][]byte
	for _, n := range nodes {
		raw, err := os.ReadFile(n.ringAt)
		if err != nil {
			t.Fatal(err)
		}
		oldRings = append(oldRings, raw)
	}

	if err := nodes[0].store.Destroy(ctx, "transaction", "t-gone"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testkit.WaitFor(t, "the key destroyed on "+n.id.ID, func() bool {
			_, err := n.store.Get(ctx, "transaction", "t-gone")
			return errors.Is(err, ErrNotFound)
		})
	}
	var dirs []string
	for _, n := range nodes {
		dirs = append(dirs, n.js.StoreDir())
	}
	// The negative control: the destroyed key's wrapped bytes are still on disk, and
	// every node's KEK still unwraps them.
	residue := filesHolding(t, wrapped, dirs...)
	if len(residue) == 0 {
		t.Fatalf("no file holds the destroyed key's wrapped bytes before the rotation: the control finds nothing, so the test proves nothing")
	}
	for _, n := range nodes {
		if k, err := n.ring.Unwrap("transaction", "t-gone", wrapped); err != nil || !bytes.Equal(k, gone) {
			t.Fatalf("before the rotation %s cannot unwrap the residue (%v): the control is wrong", n.id.ID, err)
		}
	}

	rot, err := Rotate(ctx, nodes[0].js.NC, nodes[0].id, nodes[0].ring, nodes[0].store, peersOf(nodes))
	if err != nil {
		t.Fatal(err)
	}
	if rot.Epoch != 2 || rot.Rewraps != 1 {
		t.Errorf("rotation = %+v, want epoch 2 and one key re-wrapped", rot)
	}
	for _, n := range nodes {
		if e := n.ring.Epochs(); len(e) != 1 || e[0] != 2 || n.ring.Current() != 2 {
			t.Errorf("%s holds epochs %v (current %d), want only 2", n.id.ID, e, n.ring.Current())
		}
		if _, err := n.ring.Unwrap("transaction", "t-gone", wrapped); !errors.Is(err, ErrNoEpoch) {
			t.Errorf("after the rotation %s unwraps the destroyed key's residue: %v", n.id.ID, err)
		}
		// The keyring as it is on disk after a restart: only epoch 2.
		again, err := OpenKeyring(n.ringAt, n.master)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := again.Unwrap("transaction", "t-gone", wrapped); !errors.Is(err, ErrNoEpoch) {
			t.Errorf("%s's keyring file still unwraps the residue: %v", n.id.ID, err)
		}
		got, err := n.store.Get(ctx, "transaction", "t-live")
		if err != nil || !bytes.Equal(got, live) {
			t.Errorf("the live key on %s after the rotation: %v", n.id.ID, err)
		}
	}
	if EpochOf(rawValue(t, nodes[2], "transaction", "t-live")) != 2 {
		t.Errorf("the live key is not wrapped under epoch 2")
	}
	// The old keyring files were overwritten in place: their bytes (the old KEK sealed
	// under each node's master key) are in no file.
	for i, old := range oldRings {
		if where := filesHolding(t, old, filepath.Dir(nodes[i].ringAt)); len(where) > 0 {
			t.Errorf("%s's keyring of epoch 1 is still on disk: %v", nodes[i].id.ID, where)
		}
	}
}

// TestNodeCatchesUp: a node left out of a rotation (down) learns the current KEK from a
// peer when it returns, forgets the epoch it held, and reads every key.
func TestNodeCatchesUp(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	nodes := cluster(t)
	want, err := nodes[0].store.Create(ctx, "profile", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(ctx, nodes[0].js.NC, nodes[0].id, nodes[0].ring, nodes[0].store, peersOf(nodes[:2])); err != nil {
		t.Fatal(err)
	}
	late := nodes[2]
	if late.ring.Current() != 1 {
		t.Fatalf("the node left out holds epoch %d", late.ring.Current())
	}
	if _, err := late.store.Get(ctx, "profile", "p1"); !errors.Is(err, ErrNoEpoch) {
		t.Errorf("before catching up the node reads a key of an epoch it does not hold: %v", err)
	}
	epoch, err := CatchUp(ctx, late.js.NC, late.id, late.ring, nodes[1].id.Peer())
	if err != nil || epoch != 2 {
		t.Fatalf("catch up = %d, %v", epoch, err)
	}
	if got, err := late.store.Get(ctx, "profile", "p1"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("after catching up: %v", err)
	}
	if e := late.ring.Epochs(); len(e) != 1 || e[0] != 2 {
		t.Errorf("after catching up the node holds %v", e)
	}
}

// TestForgedRotationRefused: a KEK or a commit from a node that is not a known peer, or
// sealed to another node, is refused and changes nothing.
func TestForgedRotationRefused(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	nodes := cluster(t)
	stranger, err := NewIdentity("n1") // the name of a member, not its key
	if err != nil {
		t.Fatal(err)
	}
	var kek [Size]byte
	rand.Read(kek[:])
	target := nodes[1].id.Peer()
	sealed, err := sealTo(target, 2, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := request(ctx, nodes[0].js.NC, stranger, target, message{Op: "prepare", Epoch: 2, Sealed: sealed}); err == nil {
		t.Errorf("a prepare signed by a stranger was accepted")
	}
	if _, err := request(ctx, nodes[0].js.NC, stranger, target, message{Op: "commit", Epoch: 1}); err == nil {
		t.Errorf("a commit signed by a stranger was accepted")
	}
	// Sealed to another node: the real leader's signature, the wrong recipient.
	other, err := sealTo(nodes[2].id.Peer(), 2, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := request(ctx, nodes[0].js.NC, nodes[0].id, target, message{Op: "prepare", Epoch: 2, Sealed: other}); err == nil {
		t.Errorf("a KEK sealed to another node was accepted")
	}
	if e := nodes[1].ring.Epochs(); len(e) != 1 || e[0] != 1 {
		t.Errorf("after forged messages the node holds %v, want only epoch 1", e)
	}
}

// TestRotationRacesDestroysAndCreates: keys destroyed and created on other nodes while a
// rotation re-wraps are neither written back nor lost: a destroyed key stays destroyed,
// a created one is read under the new epoch, every other key too.
func TestRotationRacesDestroysAndCreates(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	nodes := cluster(t)
	const n = 400
	keys := map[string][]byte{}
	for i := range n {
		id := "t" + strconv.Itoa(i)
		k, err := nodes[i%3].store.Create(ctx, "transaction", id)
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = k
	}
	var wg sync.WaitGroup
	created := make(chan map[string][]byte, 1)
	wg.Go(func() {
		for i := 0; i < n; i += 2 {
			if err := nodes[1].store.Destroy(ctx, "transaction", "t"+strconv.Itoa(i)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() {
		fresh := map[string][]byte{}
		for i := range 100 {
			id := "new" + strconv.Itoa(i)
			k, err := nodes[2].store.Create(ctx, "transaction", id)
			if err != nil {
				t.Error(err)
				break
			}
			fresh[id] = k
		}
		created <- fresh
	})
	if _, err := Rotate(ctx, nodes[0].js.NC, nodes[0].id, nodes[0].ring, nodes[0].store, peersOf(nodes)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for id, k := range <-created {
		keys[id] = k
	}
	// A create that was still waiting for the keyring when the rotation committed used
	// the new epoch; one before the prepare was re-wrapped. Either way every key reads.
	for id, want := range keys {
		i, err := strconv.Atoi(id[1:])
		destroyed := err == nil && id[0] == 't' && i%2 == 0
		for _, nd := range nodes {
			got, err := nd.store.Get(ctx, "transaction", id)
			switch {
			case destroyed && !errors.Is(err, ErrNotFound):
				t.Fatalf("%s on %s after the rotation: %v, want destroyed", id, nd.id.ID, err)
			case !destroyed && (err != nil || !bytes.Equal(got, want)):
				t.Fatalf("%s on %s after the rotation: %v", id, nd.id.ID, err)
			}
		}
	}
}

// BenchmarkRotate is the cost of an epoch rotation with many live keys on a three-node
// cluster on one machine (R3, fsync before every acknowledgement): preparing the next KEK
// on every node, re-wrapping every key (one R3 KV update each) and committing.
//
//	go test -run '^$' -bench BenchmarkRotate -benchtime 1x ./kek
func BenchmarkRotate(b *testing.B) {
	for _, keys := range []int{1_000, 10_000, 100_000} {
		b.Run(strconv.Itoa(keys)+" keys", func(b *testing.B) { benchRotate(b, keys) })
	}
}

func benchRotate(b *testing.B, keys int) {
	ctx := context.Background()
	servers := testkit.StartJetStreamCluster(b, 3)
	var nodes []*node
	var peers []Peer
	for i, s := range servers {
		id, err := NewIdentity("n" + strconv.Itoa(i+1))
		if err != nil {
			b.Fatal(err)
		}
		n := &node{js: s, id: id}
		rand.Read(n.master[:])
		if n.ring, err = OpenKeyring(filepath.Join(b.TempDir(), "kek"), n.master); err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
		peers = append(peers, id.Peer())
	}
	for _, n := range nodes {
		m, err := Serve(n.js.NC, n.id, n.ring, peers)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
	}
	if _, err := nodes[0].ring.Start(); err != nil {
		b.Fatal(err)
	}
	for _, n := range nodes[1:] {
		var err error
		testkit.WaitForWithin(b, "the first node's epoch", 30*time.Second, func() bool {
			_, err = CatchUp(ctx, n.js.NC, n.id, n.ring, nodes[0].id.Peer())
			return err == nil
		})
	}
	var store *Store
	var err error
	testkit.WaitForWithin(b, "the key bucket", 30*time.Second, func() bool {
		store, err = OpenStore(ctx, nodes[0].js.JS, nodes[0].ring, 3)
		return err == nil
	})
	// Fill the bucket with async puts: the benchmark is the rotation, not the filling.
	for i := 0; i < keys; i += 500 {
		var futures []jetstream.PubAckFuture
		for j := i; j < min(i+500, keys); j++ {
			k := make([]byte, Size)
			rand.Read(k)
			w, err := nodes[0].ring.Wrap("transaction", "t"+strconv.Itoa(j), k, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			f, err := nodes[0].js.JS.PublishAsync("$KV."+Bucket+".transaction.t"+strconv.Itoa(j), w)
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		rot, err := Rotate(ctx, nodes[0].js.NC, nodes[0].id, nodes[0].ring, store, peers)
		if err != nil {
			b.Fatal(err)
		}
		if rot.Rewraps != keys {
			b.Fatalf("re-wrapped %d of %d keys", rot.Rewraps, keys)
		}
	}
	b.ReportMetric(float64(keys), "keys")
}

// TestLostRequestEndsTheRotation: a member that takes a request and never answers (as a
// request does when it is lost on its way to a member that just stopped: the interest
// lingers on the other servers, so no "no responders" comes back) fails the rotation after
// requestTimeout, with the context of the caller still open: it does not hold the
// rotation, and the epoch lock, for as long as the caller's lease lasts. Nothing changes.
func TestLostRequestEndsTheRotation(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	nodes := cluster(t)
	nodes[2].member.Close()
	silent, err := nodes[2].js.NC.Subscribe(subjectPrefix+"."+nodes[2].id.ID, func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Unsubscribe()
	if err := nodes[2].js.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	// The test's context ends 30 s after it began: without its own bound, the request to
	// n3 waited for that, and the aborts then failed too.
	start := time.Now()
	_, err = Rotate(ctx, nodes[0].js.NC, nodes[0].id, nodes[0].ring, nodes[0].store, peersOf(nodes))
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "prepare to n3") {
		t.Fatalf("a rotation with a silent member: %v, want prepare to n3 failing", err)
	}
	if took < requestTimeout || took > 2*requestTimeout {
		t.Errorf("the rotation failed after %v, want about %v", took, requestTimeout)
	}
	for _, n := range nodes[:2] {
		if e := n.ring.Epochs(); len(e) != 1 || e[0] != 1 {
			t.Errorf("after the failed rotation %s holds %v, want only epoch 1", n.id.ID, e)
		}
	}
}

// TestRotationInterrupted: a rotation that cannot reach a member is abandoned before any
// node wraps under the new KEK, so keys made meanwhile stay readable everywhere and the
// next rotation draws a KEK of its own; a rotation stopped after some nodes switched is
// finished by another leader with the same KEK, and every key made on either side of
// the switch is read on every node afterwards.
func TestRotationInterrupted(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	nodes := cluster(t)
	keys := map[string][]byte{}
	create := func(n *node, id string) {
		t.Helper()
		k, err := n.store.Create(ctx, "transaction", id)
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = k
	}
	readable := func(when string) {
		t.Helper()
		for _, n := range nodes {
			for id, want := range keys {
				if got, err := n.store.Get(ctx, "transaction", id); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %s reads key %s: %v", when, n.id.ID, id, err)
				}
			}
		}
	}
	create(nodes[0], "k1")

	// n3 does not answer: the rotation stops at the prepare and is abandoned.
	nodes[2].member.Close()
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := Rotate(short, nodes[0].js.NC, nodes[0].id, nodes[0].ring, nodes[0].store, peersOf(nodes))
	cancel()
	if err == nil {
		t.Fatal("a rotation without one member's answer succeeded")
	}
	for _, n := range nodes[:2] {
		if e := n.ring.Epochs(); len(e) != 1 || e[0] != 1 {
			t.Errorf("after the abandoned rotation %s holds %v, want only epoch 1", n.id.ID, e)
		}
	}
	create(nodes[1], "k2")
	readable("after an abandoned rotation")

	// n3 answers again: the next rotation ends the epoch everywhere.
	if nodes[2].member, err = Serve(nodes[2].js.NC, nodes[2].id, nodes[2].ring, peersOf(nodes)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForWithin(t, "a rotation with every member", 30*time.Second, func() bool {
		_, err := Rotate(ctx, nodes[0].js.NC, nodes[0].id, nodes[0].ring, nodes[0].store, peersOf(nodes))
		return err == nil
	})
	readable("after the rotation")

	// The leader stops after n1 and n2 switched to epoch 3, before n3 did.
	var kek [Size]byte
	rand.Read(kek[:])
	for _, n := range nodes {
		sealed, err := sealTo(n.id.Peer(), 3, kek)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := request(ctx, nodes[0].js.NC, nodes[0].id, n.id.Peer(), message{Op: "prepare", Epoch: 3, Sealed: sealed}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes[:2] {
		if _, err := request(ctx, nodes[0].js.NC, nodes[0].id, n.id.Peer(), message{Op: "switch", Epoch: 3}); err != nil {
			t.Fatal(err)
		}
	}
	create(nodes[0], "k3") // under epoch 3
	create(nodes[2], "k4") // under epoch 2
	if EpochOf(rawValue(t, nodes[0], "transaction", "k3")) != 3 || EpochOf(rawValue(t, nodes[0], "transaction", "k4")) != 2 {
		t.Fatal("the keys were not wrapped on either side of the switch")
	}
	readable("in the middle of a rotation")
	// n3 leads now: it finishes epoch 3 with the KEK it was given, and draws no other.
	rot, err := Rotate(ctx, nodes[2].js.NC, nodes[2].id, nodes[2].ring, nodes[2].store, peersOf(nodes))
	if err != nil || rot.Epoch != 3 {
		t.Fatalf("the rotation finished by another leader: epoch %d, %v", rot.Epoch, err)
	}
	for _, n := range nodes {
		if e := n.ring.Epochs(); len(e) != 1 || e[0] != 3 {
			t.Errorf("%s holds %v, want only epoch 3", n.id.ID, e)
		}
	}
	readable("after the finished rotation")
}

// TestKeyReadFromTheLeader: when a node's own copy of the bucket has not received a key
// yet (a checkout's event can reach a node before the key it was sealed under), Get asks
// the bucket's leader, whose answer is the bucket's: the value of a key that exists, and
// not found for one never made or destroyed (its purge marker is no value).
func TestKeyReadFromTheLeader(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	nodes := cluster(t)
	want, err := nodes[0].store.Create(ctx, "transaction", "led")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		raw, err := n.store.leaderGet(ctx, "transaction.led")
		if err != nil || !bytes.Equal(raw, rawValue(t, n, "transaction", "led")) {
			t.Fatalf("%s's leader read of a live key: %v", n.id.ID, err)
		}
		if got, err := n.ring.Unwrap("transaction", "led", raw); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s unwraps the leader's value: %v", n.id.ID, err)
		}
		if _, err := n.store.leaderGet(ctx, "transaction.never"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s's leader read of a key never made: %v", n.id.ID, err)
		}
	}
	if err := nodes[1].store.Destroy(ctx, "transaction", "led"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if _, err := n.store.leaderGet(ctx, "transaction.led"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s's leader read of a destroyed key: %v", n.id.ID, err)
		}
	}
}

// laggingKV is a node's copy of the bucket that has not caught up: Get answers the value
// a key had before, for the keys in old, and the real bucket for the rest.
type laggingKV struct {
	jetstream.KeyValue
	old map[string]jetstream.KeyValueEntry
}

func (l laggingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if e, ok := l.old[key]; ok {
		return e, nil
	}
	return l.KeyValue.Get(ctx, key)
}

// TestStaleCopyReadFromTheLeader: a node that was away reads its own copy of the bucket,
// which may still hold a key as it was before a rotation wrapped it again, under a KEK
// that no node holds any more. The read goes to the leader, which has the key under the
// current KEK, instead of failing until the copy catches up.
func TestStaleCopyReadFromTheLeader(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	nodes := cluster(t)
	want, err := nodes[0].store.Create(ctx, "transaction", "lagging")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := nodes[2].js.JS.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx, "transaction.lagging")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(ctx, nodes[0].js.NC, nodes[0].id, nodes[0].ring, nodes[0].store, peersOf(nodes)); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[2].ring.Unwrap("transaction", "lagging", before.Value()); !errors.Is(err, ErrNoEpoch) {
		t.Fatalf("the value before the rotation opens with %v, want ErrNoEpoch: the test tests nothing", err)
	}
	n := nodes[2]
	n.store.kv = laggingKV{KeyValue: n.store.kv, old: map[string]jetstream.KeyValueEntry{"transaction.lagging": before}}
	got, err := n.store.Get(ctx, "transaction", "lagging")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a key read from a lagging copy: %v", err)
	}
}
