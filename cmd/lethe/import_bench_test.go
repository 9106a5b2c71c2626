package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bulkBody is a request of the bulk catalog route: n new items, barcodes from prefix.
func bulkBody(tb testing.TB, prefix string, n int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	buf.WriteString(`{"commands":[`)
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		raw, err := json.Marshal(schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
			Barcode: fmt.Sprintf("%s%06d", prefix, i), Title: fmt.Sprintf("Title %d, a book", i),
			Collection: "fiction", Branch: "main", ReplacementCents: int64(1000 + i),
		}})
		if err != nil {
			tb.Fatal(err)
		}
		buf.Write(raw)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

// BenchmarkCatalogItems is one request of the bulk catalog route with ledger.MaxCatalogItems
// new items, as lethe items import sends it: HTTP, the schema check of every command, the
// decisions, one atomic batch of item.cataloged events (fsync before the ack), and the
// wait for the projections to apply them. Compare with BenchmarkRawJetStreamAtomicBatch.
func BenchmarkCatalogItems(b *testing.B) {
	h := lethetest.New(b)
	bodies := make([][]byte, 0, 64)
	b.ResetTimer()
	items := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		for len(bodies) <= i {
			bodies = append(bodies, bulkBody(b, "B"+strconv.Itoa(len(bodies))+"x", ledger.MaxCatalogItems))
		}
		b.StartTimer()
		status, body := h.RequestAs(lethetest.Admin, http.MethodPost, desk.CatalogItemsPath, bodies[i])
		if status != http.StatusOK {
			b.Fatalf("bulk = %d %.300s", status, body)
		}
		items += ledger.MaxCatalogItems
	}
	b.ReportMetric(float64(items)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkRawJetStreamAtomicBatch is the same durable I/O done raw: atomic batches of
// ledger.MaxAtomicBatch messages of an item.cataloged event's size, each on its own
// subject with a message id and an expectation, to a stream configured as CIRC on the same
// server (fsync before every ack).
func BenchmarkRawJetStreamAtomicBatch(b *testing.B) {
	h := lethetest.New(b)
	ctx := testkit.Context(b)
	cfg := ledger.StreamConfig(1)
	cfg.Name, cfg.Subjects = "RAW", []string{"raw.>"}
	if _, err := h.S.JS.CreateStream(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 420) // an item.cataloged event of the benchmark's items
	nc := h.S.NC
	msgs := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		batch := uuid.NewString()
		var ack *nats.Msg
		for j := range ledger.MaxAtomicBatch {
			m := nats.NewMsg(fmt.Sprintf("raw.item.R%dx%06d", i, j))
			m.Data = payload
			m.Header.Set("Nats-Msg-Id", uuid.NewString())
			m.Header.Set("Nats-Expected-Last-Subject-Sequence", "0")
			m.Header.Set("Nats-Batch-Id", batch)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(j+1))
			if j < ledger.MaxAtomicBatch-1 {
				if err := nc.PublishMsg(m); err != nil {
					b.Fatal(err)
				}
				continue
			}
			m.Header.Set("Nats-Batch-Commit", "1")
			var err error
			if ack, err = nc.RequestMsgWithContext(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		var pa jetstream.PubAck
		var e struct {
			Error *struct{ Description string } `json:"error"`
		}
		if json.Unmarshal(ack.Data, &e); e.Error != nil {
			b.Fatalf("batch refused: %s", e.Error.Description)
		}
		if err := json.Unmarshal(ack.Data, &pa); err != nil {
			b.Fatal(err)
		}
		msgs += ledger.MaxAtomicBatch
	}
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
}
