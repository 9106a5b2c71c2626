package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkClusterKiosks: kiosk round trips (a checkout and its return, each answered
// only once applied) on a three-node cluster, every stream and bucket R3 with fsync before
// every acknowledgement, from kiosks spread over the nodes; next to it, in the same run,
// raw JetStream on an identical three-server cluster doing the writes a round trip makes,
// one after another for each kiosk, with the same concurrency: the key's creation in an R3
// bucket, the checkout's append, the return's append, the key's purge and the expunge
// record's append, each append with a message id and an expected last subject sequence.
// It reports round trips per second and the p99 of a round trip.
//
//	go test -run '^$' -bench BenchmarkClusterKiosks -benchtime 400x ./node
func BenchmarkClusterKiosks(b *testing.B) {
	for _, kiosks := range []int{1, 16} {
		b.Run(fmt.Sprintf("kiosks=%d/raw", kiosks), func(b *testing.B) { benchRawR3(b, kiosks) })
		b.Run(fmt.Sprintf("kiosks=%d/lethe", kiosks), func(b *testing.B) { benchLetheR3(b, kiosks) })
	}
}

// roundTrips runs b.N round trips over kiosks goroutines and reports their rate and p99.
func roundTrips(b *testing.B, kiosks int, trip func(k, n int) error) {
	b.Helper()
	var (
		next  atomic.Int64
		mu    sync.Mutex
		lat   []time.Duration
		wg    sync.WaitGroup
		first error
	)
	b.ResetTimer()
	start := time.Now()
	for k := range kiosks {
		wg.Go(func() {
			var mine []time.Duration
			for n := 0; next.Add(1) <= int64(b.N); n++ {
				t0 := time.Now()
				if err := trip(k, n); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if first != nil {
		b.Fatal(first)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "trips/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func benchLetheR3(b *testing.B, kiosks int) {
	c := startCluster(b, time.Minute)
	var cmds []json.RawMessage
	var cards []string
	for k := range kiosks {
		raw, _ := json.Marshal(schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
			Barcode: fmt.Sprintf("B%04d", k), Title: "Book", Collection: "fiction", Branch: "main", ReplacementCents: 2000}})
		cmds = append(cmds, raw)
	}
	if err := c.catalog(cmds); err != nil {
		b.Fatal(err)
	}
	for k := range kiosks {
		card := fmt.Sprintf("29%012d", k+1)
		cards = append(cards, card)
		if _, err := c.desk(k%3, schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: uuid.NewString(), HomeBranch: "main",
			Profile: schemas.Profile{Name: "Bench " + strconv.Itoa(k), BirthDate: "1980-01-02"}, Card: card}); err != nil {
			b.Fatal(err)
		}
	}
	c.caughtUp()
	send := func(k int, cmd string, v any) error {
		raw, _ := json.Marshal(v)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		m, err := c.kiosks[k%3].Request(ctx, "main", fmt.Sprintf("b%d", k), cmd, raw)
		if err != nil {
			return err
		}
		var r schemas.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			return fmt.Errorf("%s = %s", cmd, m.Data)
		}
		return nil
	}
	for k := range kiosks { // each kiosk's identity made before the clock starts
		if _, err := c.kiosks[k%3].Conn("main", fmt.Sprintf("b%d", k)); err != nil {
			b.Fatal(err)
		}
	}
	roundTrips(b, kiosks, func(k, _ int) error {
		bc := fmt.Sprintf("B%04d", k)
		if err := send(k, schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: cards[k], Barcode: bc}); err != nil {
			return err
		}
		return send(k, schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: bc})
	})
}

func benchRawR3(b *testing.B, kiosks int) {
	ctx := context.Background()
	servers := testkit.StartJetStreamCluster(b, 3)
	// Placed by the meta leader once the cluster has one: retried until then.
	testkit.WaitForWithin(b, "an R3 stream and bucket", time.Minute, func() bool {
		_, err := servers[0].JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"},
			Replicas: 3, Storage: jetstream.FileStorage, Duplicates: time.Hour})
		if err == nil {
			_, err = servers[0].JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "RAWKEYS", History: 1, Replicas: 3, Storage: jetstream.FileStorage})
		}
		return err == nil
	})
	var err error
	kvs := make([]jetstream.KeyValue, 3)
	for i, s := range servers {
		if kvs[i], err = s.JS.KeyValue(ctx, "RAWKEYS"); err != nil {
			b.Fatal(err)
		}
	}
	event := make([]byte, 600) // a checkout event's size, give or take
	key := make([]byte, 88)    // a wrapped key's
	last := make([]uint64, kiosks)
	publish := func(k int, subject string) error {
		s := servers[k%3]
		m := nats.NewMsg(subject)
		m.Data = event
		m.Header.Set("Nats-Msg-Id", uuid.NewString())
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last[k], 10))
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		ack, err := s.JS.PublishMsg(pctx, m)
		if err != nil {
			return err
		}
		last[k] = ack.Sequence
		return nil
	}
	roundTrips(b, kiosks, func(k, _ int) error {
		id := uuid.NewString()
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := kvs[k%3].Create(kctx, "t."+id, key); err != nil {
			return err
		}
		subject := "raw.item." + strconv.Itoa(k)
		if err := publish(k, subject); err != nil {
			return err
		}
		if err := publish(k, subject); err != nil {
			return err
		}
		if err := kvs[k%3].Purge(kctx, "t."+id); err != nil {
			return err
		}
		// The expunge record goes on a subject of its own, with no expectation.
		m := nats.NewMsg("raw.expunged")
		m.Data = event[:200]
		m.Header.Set("Nats-Msg-Id", uuid.NewString())
		_, err := servers[k%3].JS.PublishMsg(kctx, m)
		return err
	})
}
