package kek

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/lease"
)

// TestIdentityPersists: a node's identity is made once, sealed under its master key, and
// the same after a reopen; another master key does not open it.
func TestIdentityPersists(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "node.id")
	var master, other [Size]byte
	master[0], other[0] = 1, 2
	a, err := LoadIdentity(path, "n1", master)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadIdentity(path, "n1", master)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Sign.Equal(b.Sign) || !bytes.Equal(a.Box.Bytes(), b.Box.Bytes()) {
		t.Errorf("the identity changed across a reopen")
	}
	if _, err := LoadIdentity(path, "n1", other); !errors.Is(err, ErrBadFile) {
		t.Errorf("another master key: %v, want ErrBadFile", err)
	}
}

// TestRotationsRunOnTheLeaseHolder: every node runs the rotation loop; the lease holder
// ends an epoch every interval with the members of the moment, so a destroyed key is
// beyond every node's KEKs two rotations later; the holder stopping hands the rotations
// to another node; a member removed no longer holds them up, and when it returns it
// catches up with the cluster's epoch by itself.
func TestRotationsRunOnTheLeaseHolder(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	const every = 400 * time.Millisecond
	nodes := cluster(t)
	members, err := OpenMembers(ctx, nodes[0].js.JS, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := members.Join(ctx, n.id.Peer()); err != nil {
			t.Fatal(err)
		}
	}
	var leases []jetstream.KeyValue
	for _, n := range nodes {
		kv, err := lease.Open(ctx, n.js.JS, 2*time.Second, 3)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, kv)
	}
	var (
		mu  sync.Mutex
		led = map[string]int{}
	)
	run := func(i int) context.CancelFunc {
		n := nodes[i]
		mctx, cancel := context.WithCancel(ctx)
		m, err := OpenMembers(mctx, n.js.JS, 3)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			RunRotations(mctx, n.js.NC, n.id, n.ring, n.store, m, RotationConfig{Every: every, Lease: leases[i], TTL: 2 * time.Second,
				Rotated: func(Rotation) { mu.Lock(); led[n.id.ID]++; mu.Unlock() }})
		})
		stop := func() { cancel(); wg.Wait() }
		t.Cleanup(stop)
		return stop
	}
	stops := []context.CancelFunc{run(0), run(1), run(2)}
	epoch := func() uint64 {
		e, err := members.Epoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	testkit.WaitForWithin(t, "two rotations", 30*time.Second, func() bool { return epoch() >= 3 })

	// A key destroyed now is beyond every KEK once two more epochs have ended.
	if _, err := nodes[0].store.Create(ctx, "transaction", "gone"); err != nil {
		t.Fatal(err)
	}
	wrapped := rawValue(t, nodes[0], "transaction", "gone")
	if err := nodes[1].store.Destroy(ctx, "transaction", "gone"); err != nil {
		t.Fatal(err)
	}
	live, err := nodes[2].store.Create(ctx, "transaction", "live")
	if err != nil {
		t.Fatal(err)
	}
	at := EpochOf(wrapped)
	testkit.WaitForWithin(t, "two more rotations", 30*time.Second, func() bool {
		for _, n := range nodes {
			if n.ring.Current() < at+2 {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if _, err := n.ring.Unwrap("transaction", "gone", wrapped); !errors.Is(err, ErrNoEpoch) {
			t.Errorf("%s still unwraps a key destroyed two epochs ago: %v", n.id.ID, err)
		}
	}

	// The lease holder stops: another node leads the rotations.
	mu.Lock()
	var first string
	for id := range led {
		first = id
	}
	mu.Unlock()
	i, _ := strconv.Atoi(first[1:])
	stops[i-1]()
	nodes[i-1].member.Close()
	if err := members.Remove(ctx, first); err != nil {
		t.Fatal(err)
	}
	before := epoch()
	testkit.WaitForWithin(t, "rotations led by another node", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(led) >= 2 && epoch() >= before+2
	})

	// It returns: joins again, answers again, and catches up by itself.
	back := nodes[i-1]
	if back.ring.Current() >= epoch() {
		t.Fatalf("the node that left is not behind (%d, cluster %d)", back.ring.Current(), epoch())
	}
	var peers []Peer
	for _, n := range nodes {
		peers = append(peers, n.id.Peer())
	}
	if back.member, err = Serve(back.js.NC, back.id, back.ring, peers); err != nil {
		t.Fatal(err)
	}
	if err := members.Join(ctx, back.id.Peer()); err != nil {
		t.Fatal(err)
	}
	run(i - 1)
	testkit.WaitForWithin(t, "the returning node to catch up", 30*time.Second, func() bool {
		return back.ring.Current() >= epoch()-1
	})
	testkit.WaitForWithin(t, "the live key on the returning node", 30*time.Second, func() bool {
		got, err := back.store.Get(ctx, "transaction", "live")
		return err == nil && bytes.Equal(got, live)
	})
}
