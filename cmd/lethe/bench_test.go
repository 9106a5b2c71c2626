package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"github.com/imagineif/lethe/bench"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkKioskCheckoutReturn is one patron's checkout and return over the kiosk API:
// NATS request/reply, validation, a transaction key from the pool (made ahead, many to a
// sync), two durable (fsync) appends, projection applies, and the expunger destroying the
// key in the background.
func BenchmarkKioskCheckoutReturn(b *testing.B) {
	h := lethetest.New(b)
	h.Register("21000000009999", "Bench Reader", "1980-01-01")
	h.Catalog("BENCH", 1000)
	b.ResetTimer()
	for b.Loop() {
		if r := h.Checkout("21000000009999", "BENCH"); !r.OK {
			b.Fatal(r.Error)
		}
		h.Checkin("BENCH")
	}
}

// BenchmarkKeyPool is 64 kiosks at once, each checking its own item out to its own
// patron and back in as fast as it is answered, with transaction keys made ahead of need
// in pools of several sizes, or none (each checkout creates and syncs its own key). ns/op
// is per round trip, all kiosks together; missed/op counts checkouts that found the pool
// empty and synced a key of their own, fills/op the refills (one sync each).
func BenchmarkKeyPool(b *testing.B) {
	for _, size := range []int{-1, 16, 32, 128, 512} {
		name := fmt.Sprintf("size=%d", size)
		if size < 0 {
			name = "none"
		}
		b.Run(name, func(b *testing.B) { benchKiosks(b, 64, size) })
	}
}

func benchKiosks(b *testing.B, kiosks, pool int) {
	h := lethetest.New(b, func(c *node.ServiceConfig) { c.KeyPool = pool })
	for i := range kiosks {
		h.Catalog(fmt.Sprintf("KP%03d", i), 1000)
		h.Register(fmt.Sprintf("2100000009%04d", i), "Pool Reader", "1980-01-01")
		if _, err := h.Kiosks.Conn("main", fmt.Sprintf("k%d", i)); err != nil { // its identity, made once
			b.Fatal(err)
		}
	}
	if pool >= 0 {
		testkit.WaitFor(b, "the key pool filled", func() bool { return h.S.Ledger.KeyPool().Ready == pool })
	}
	before := h.S.Ledger.KeyPool()
	ctx := testkit.Context(b)
	var left atomic.Int64
	left.Store(int64(b.N))
	errs := make(chan error, kiosks)
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := range kiosks {
		wg.Go(func() {
			kiosk, card, barcode := fmt.Sprintf("k%d", i), fmt.Sprintf("2100000009%04d", i), fmt.Sprintf("KP%03d", i)
			for left.Add(-1) >= 0 {
				for _, c := range []struct {
					name string
					cmd  any
				}{
					{schemas.CmdCheckOut, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: card, Barcode: barcode}},
					{schemas.CmdReturn, schemas.Return{CommandID: lethetest.CmdID(), Barcode: barcode}},
				} {
					raw, _ := json.Marshal(c.cmd)
					m, err := h.Kiosks.Request(ctx, "main", kiosk, c.name, raw)
					var r schemas.Reply
					if err == nil {
						err = json.Unmarshal(m.Data, &r)
					}
					if err == nil && !r.OK {
						err = fmt.Errorf("%s: %+v", c.name, r.Error)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	after := h.S.Ledger.KeyPool()
	b.ReportMetric(float64(after.Missed-before.Missed)/float64(b.N), "missed/op")
	b.ReportMetric(float64(after.Fills-before.Fills)/float64(b.N), "fills/op")
}

// BenchmarkRawJetStreamSyncPublish is the same durable I/O done raw: two synced publishes
// of a message of the checkout event's size, one after the other, to a file stream on the
// same server (fsync before every ack).
func BenchmarkRawJetStreamSyncPublish(b *testing.B) {
	h := lethetest.New(b)
	payload := make([]byte, 600)
	ctx := testkit.Context(b)
	if _, err := h.S.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		for range 2 {
			if _, err := h.S.JS.Publish(ctx, "raw.bench", payload); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// benchEvents returns n stream messages of a realistic mix: checkouts and returns of many
// items, each return closing its transaction.
func benchEvents(b *testing.B, keys *keystore.Store, items int, n int) []ledger.Msg {
	b.Helper()
	var msgs []ledger.Msg
	seq := uint64(0)
	add := func(typ, subject string, data any) {
		raw, _ := json.Marshal(data)
		id, _ := uuid.NewV7()
		ev := schemas.Event{SpecVersion: "1.0", ID: id.String(), Type: typ, Source: "lethe/bench", Subject: subject,
			DataContentType: "application/json", DataSchema: schemas.DataSchema(typ), Data: raw}
		body, _ := json.Marshal(ev)
		seq++
		msgs = append(msgs, ledger.Msg{Seq: seq, Subject: subject, Data: body})
	}
	for i := range items {
		bc := fmt.Sprintf("P%06d", i)
		add(schemas.TypeItemCataloged, "circ.item."+bc, schemas.ItemCataloged{Barcode: bc, Title: "t", Collection: "c", Branch: "main", ReplacementCents: 100})
	}
	for len(msgs) < n {
		i := len(msgs) % items
		bc := fmt.Sprintf("P%06d", i)
		txn := uuid.NewString()
		add(schemas.TypeItemCheckedOut, "circ.item."+bc, schemas.ItemCheckedOut{TxnID: txn, Barcode: bc,
			Patron: schemas.Sealed{KID: txn, Nonce: make([]byte, 24), CT: make([]byte, 52)}, Branch: "main", Station: "k1"})
		add(schemas.TypeItemReturned, "circ.item."+bc, schemas.ItemReturned{TxnID: txn, Barcode: bc, Branch: "main", Station: "k1"})
		add(schemas.TypeTransactionClosed, "circ.item."+bc, schemas.TransactionClosed{TxnID: txn})
	}
	return msgs
}

// BenchmarkProjectionApply is the projection rebuild path without the stream: decode,
// schema check and apply in batches of 512 (keys already destroyed, as in a rebuild of
// closed history). Compare with BenchmarkRawPebbleBatch.
func BenchmarkProjectionApply(b *testing.B) {
	dir := b.TempDir()
	m, err := keystore.GenerateMasterFile(filepath.Join(dir, "master.key"))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := keystore.Open(filepath.Join(dir, "keys"), m, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer keys.Close()
	v, err := schemas.NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	msgs := benchEvents(b, keys, 1000, 20000)
	b.ResetTimer()
	total := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		st, err := projections.Open(filepath.Join(dir, fmt.Sprint("p", i)), keys, v, projections.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for j := 0; j < len(msgs); j += 512 {
			if err := st.Apply(msgs[j:min(j+512, len(msgs))]); err != nil {
				b.Fatal(err)
			}
		}
		total += len(msgs)
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawPebbleBatch writes the same number of rows of the same size in batches of
// 512, with no decoding: the engine's own cost for the projection's I/O.
func BenchmarkRawPebbleBatch(b *testing.B) {
	dir := b.TempDir()
	val := make([]byte, 300)
	total := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		db, err := pebble.Open(filepath.Join(dir, fmt.Sprint("p", i)), keystore.PebbleOptions(nil))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for j := 0; j < 20000; j += 512 {
			batch := db.NewBatch()
			for k := j; k < min(j+512, 20000); k++ {
				_ = batch.Set([]byte(fmt.Sprintf("i/%08d", k%1000)), val, nil)
			}
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
		}
		total += 20000
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRebuild rebuilds the projections from a stream of real kiosk traffic (made
// once, as lethe bench makes its history): the stream read, decode and schema check on
// every core, and the apply ("checked"); and as lethe projections rebuild does it, the
// messages under the last signed checkpoint hashed and decoded without their schemas
// ("signed"). Compare its messages/s with BenchmarkRawRead's.
func BenchmarkRebuild(b *testing.B) {
	n := benchHistory(b)
	msgs := n.Proj.Applied()
	signed, err := n.SignedPrefix(testkit.Context(b))
	if err != nil || signed == nil {
		b.Fatalf("the history's last checkpoint: %+v, %v", signed, err)
	}
	for _, bc := range []struct {
		name   string
		signed *projections.SignedPrefix
	}{{"checked", nil}, {"signed", signed}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				diff, err := n.Proj.Rebuild(testkit.Context(b), n.JS, filepath.Join(b.TempDir(), "projections"), projections.Config{}, bc.signed)
				if err != nil {
					b.Fatal(err)
				}
				if !diff.Equal() || (bc.signed != nil && diff.Unchecked != bc.signed.Size) {
					b.Fatalf("rebuild differs: %+v", diff)
				}
			}
			b.ReportMetric(float64(msgs)*float64(b.N)/b.Elapsed().Seconds(), "messages/s")
		})
	}
}

// BenchmarkRawRead reads the same stream with an ordered consumer and does nothing else.
func BenchmarkRawRead(b *testing.B) {
	n := benchHistory(b)
	total := 0
	b.ResetTimer()
	for b.Loop() {
		got, _, err := bench.RawRead(testkit.Context(b), n.JS)
		if err != nil {
			b.Fatal(err)
		}
		total += got
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAuditRead is lethe audit replay's decode path over the same stream.
func BenchmarkAuditRead(b *testing.B) {
	n := benchHistory(b)
	total := 0
	b.ResetTimer()
	for b.Loop() {
		got, _, err := bench.AuditRead(testkit.Context(b), n.NC, n.V)
		if err != nil {
			b.Fatal(err)
		}
		total += got
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// benchHistory makes a history as lethe bench does (kiosks for a few seconds) and opens
// it as lethe projections rebuild does.
func benchHistory(b *testing.B) *node.Node { return benchHistoryT(b) }

func benchHistoryT(b testing.TB) *node.Node {
	b.Helper()
	dir := b.TempDir()
	if err := bench.FillHistory(testkit.Context(b), dir, 3*time.Second, nil); err != nil {
		b.Fatal(err)
	}
	n, err := node.Open(testkit.Context(b), node.Config{Data: dir, NATSListen: "off", Location: time.UTC, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(n.Close)
	if err := n.Proj.CatchUp(testkit.Context(b), n.JS); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkKioskCheckoutReturnTLS is BenchmarkKioskCheckoutReturn as a kiosk on the network
// does it: its own NKey credentials, over TCP with TLS to the NATS listener.
func BenchmarkKioskCheckoutReturnTLS(b *testing.B) {
	certFile, keyFile, pool := testkit.SelfSignedCert(b)
	h := lethetest.New(b, lethetest.WithNATSListen(), func(c *node.ServiceConfig) { c.NATSTLSCert, c.NATSTLSKey = certFile, keyFile })
	h.Register("21000000009998", "Bench Reader", "1980-01-01")
	h.Catalog("BENCH", 1000)
	creds := h.IdentityFile(identity.Kiosk, "main", "tls")
	o, err := nats.NkeyOptionFromSeed(creds)
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(h.S.NATSURL(), o, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	lethetest.KioskRoundTrips(b, nc, "main", "tls", "21000000009998", "BENCH")
}
