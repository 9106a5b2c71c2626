package lease

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagineif/lethe/internal/testkit"
)

// TestOneHolderAtATime: three nodes contend for one lease; one runs the work; when it
// stops, another takes over at once; when a holder's server dies, another takes over
// after the lease expires; and never do two run the work at the same time.
func TestOneHolderAtATime(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	nodes := testkit.StartJetStreamCluster(t, 3)
	var kvs []jetstream.KeyValue
	for _, n := range nodes {
		var kv jetstream.KeyValue
		var err error
		testkit.WaitForWithin(t, "the lease bucket", 30*time.Second, func() bool {
			kv, err = Open(testkit.Context(t), n.JS, ttl, 3)
			return err == nil
		})
		kvs = append(kvs, kv)
	}
	var (
		mu       sync.Mutex
		running  = map[string]bool{}
		maxAtOnc int
		holders  []string
	)
	work := func(name string) func(context.Context) {
		return func(ctx context.Context) {
			mu.Lock()
			running[name] = true
			maxAtOnc = max(maxAtOnc, len(running))
			holders = append(holders, name)
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			delete(running, name)
			mu.Unlock()
		}
	}
	holder := func() string {
		mu.Lock()
		defer mu.Unlock()
		for n := range running {
			return n
		}
		return ""
	}
	var wg sync.WaitGroup
	cancels := map[string]context.CancelFunc{}
	for i, kv := range kvs {
		name := "n" + strconv.Itoa(i+1)
		ctx, cancel := context.WithCancel(context.Background())
		cancels[name] = cancel
		wg.Go(func() { Run(ctx, kv, Config{Name: "rotation", Holder: name, TTL: ttl}, work(name)) })
	}
	t.Cleanup(func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	})

	testkit.WaitForWithin(t, "a holder", 15*time.Second, func() bool { return holder() != "" })
	first := holder()
	// A holder that stops releases the lease: another takes it well before it would
	// have expired.
	cancels[first]()
	stopped := time.Now()
	testkit.WaitForWithin(t, "a second holder", 15*time.Second, func() bool { h := holder(); return h != "" && h != first })
	if took := time.Since(stopped); took > ttl {
		t.Errorf("after a release the next holder took %s, want less than the lease's %s", took, ttl)
	}
	second := holder()
	// The second holder's server dies: its renewals fail, it stops its work, and the
	// last node takes the lease once it expired.
	i, _ := strconv.Atoi(second[1:])
	nodes[i-1].Close()
	testkit.WaitForWithin(t, "the dead node's work to stop", 15*time.Second, func() bool { return holder() != second })
	testkit.WaitForWithin(t, "a third holder", 30*time.Second, func() bool { h := holder(); return h != "" && h != first && h != second })
	mu.Lock()
	defer mu.Unlock()
	if maxAtOnc != 1 {
		t.Errorf("%d nodes ran the work at once (holders in turn: %v)", maxAtOnc, holders)
	}
}
