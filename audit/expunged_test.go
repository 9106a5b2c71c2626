package audit_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/imagineif/lethe/audit"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// TestExpungedTxns: the auditor's first pass finds exactly the transactions whose keys
// the stream records destroyed (not an open loan's), decoding only each record's type
// and id; anything else on the records' subject stops the read with a coded error that
// names the sequence and echoes nothing of the message.
func TestExpungedTxns(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	card := "21000000000001"
	h.Register(card, "Reader One", "1980-01-01")
	var closed []string
	for i := range 3 {
		bc := fmt.Sprintf("E%05d", i)
		h.Catalog(bc, 100)
		h.MustCheckout(card, bc)
		closed = append(closed, h.TxnOf(bc))
		h.Checkin(bc)
	}
	h.Catalog("E-OPEN", 100)
	h.MustCheckout(card, "E-OPEN")
	open := h.TxnOf("E-OPEN")
	h.ExpungeAll()
	for _, id := range closed {
		h.AssertExpunged(id)
	}

	ctx := testkit.Context(t)
	got, err := audit.ExpungedTxns(ctx, h.S.NC)
	if err != nil {
		t.Fatal(err)
	}
	if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, slices.Sorted(slices.Values(closed))) {
		t.Errorf("expunged %v, want the closed %v", ids, closed)
	}
	if got[open] {
		t.Error("the open loan's transaction is reported expunged")
	}

	// Something on the records' subject that is not a record: another event's type.
	js, err := jetstream.New(h.S.NC)
	if err != nil {
		t.Fatal(err)
	}
	secret := "Reader One"
	bogus := fmt.Sprintf(`{"specversion":"1.0","id":"x","type":%q,"source":"lethe/test","subject":%q,"time":"2026-01-01T00:00:00Z","data":{"txn_id":"t1","note":%q}}`,
		schemas.TypeTransactionClosed, ledger.ExpungedSubject, secret)
	ack, err := js.Publish(ctx, ledger.ExpungedSubject, []byte(bogus))
	if err != nil {
		t.Fatal(err)
	}
	_, err = audit.ExpungedTxns(ctx, h.S.NC)
	want := fmt.Sprintf("sequence %d", ack.Sequence)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not a transaction.expunged record") {
		t.Fatalf("a closed event on the records' subject: %v, want an error naming %s", err, want)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "t1") {
		t.Errorf("the error echoes the message: %v", err)
	}
}
