package lethetest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamLast is the stream's last sequence.
func (h *Harness) StreamLast() uint64 {
	h.T.Helper()
	last, err := h.S.StreamLast(testkit.Context(h.T))
	if err != nil {
		h.T.Fatal(err)
	}
	return last
}

// ExpungeAll runs the expunger until nothing closed is waiting, then sweeps.
func (h *Harness) ExpungeAll() {
	h.T.Helper()
	ctx := testkit.Context(h.T)
	testkit.WaitFor(h.T, "pending expunges drained", func() bool {
		if _, err := h.S.Expunger.ExpungeNow(ctx); err != nil {
			h.T.Fatal(err)
		}
		p, err := h.S.Proj.PendingExpunges()
		if err != nil {
			h.T.Fatal(err)
		}
		return len(p) == 0
	})
	if err := h.S.Expunger.Sweep(ctx); err != nil {
		h.T.Fatalf("sweep: %v", err)
	}
}

// Events reads every event on the stream with a plain JetStream consumer.
func (h *Harness) Events() []schemas.Event {
	h.T.Helper()
	return EventsOf(h.T, h.S.JS)
}

// EventsOf reads every event on js's stream with a plain JetStream consumer.
func EventsOf(t testing.TB, js jetstream.JetStream) []schemas.Event {
	t.Helper()
	var out []schemas.Event
	err := ledger.Read(testkit.Context(t), js, ledger.ReadOptions{}, func(m ledger.Msg) error {
		parts, err := schemas.SplitEvents(m.Data)
		if err != nil {
			return fmt.Errorf("seq %d: %w", m.Seq, err)
		}
		for _, p := range parts {
			var ev schemas.Event
			if err := json.Unmarshal(p, &ev); err != nil {
				return fmt.Errorf("seq %d: %w", m.Seq, err)
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CountType is how many of evs are of type typ.
func CountType(evs []schemas.Event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TxnOf returns the open transaction of an item on loan.
func (h *Harness) TxnOf(barcode string) string {
	h.T.Helper()
	it, err := h.S.Proj.Item(barcode)
	if err != nil {
		h.T.Fatal(err)
	}
	if it.TxnID == "" {
		h.T.Fatalf("item %s has no open transaction", barcode)
	}
	return it.TxnID
}

// AssertExpunged checks that a transaction's key and link rows are gone and the stream
// records it as expunged, once.
func (h *Harness) AssertExpunged(txnID string) {
	h.T.Helper()
	if _, err := h.S.Keys.Get(keystore.Transaction, txnID); !errors.Is(err, keystore.ErrNotFound) {
		h.T.Errorf("transaction key after expunge: err = %v, want ErrNotFound", err)
	}
	if _, err := h.S.Proj.Txn(txnID); !errors.Is(err, model.ErrNotFound) {
		h.T.Errorf("transaction row after close: err = %v, want ErrNotFound", err)
	}
	n := 0
	for _, ev := range h.Events() {
		if ev.Type == schemas.TypeTransactionExpunged && ContainsTxn(ev, txnID) {
			n++
		}
	}
	if n != 1 {
		h.T.Errorf("transaction.expunged records for the transaction = %d, want 1", n)
	}
}

// ContainsTxn reports whether an event's data names the transaction.
func ContainsTxn(ev schemas.Event, txnID string) bool {
	return len(txnID) > 0 && bytes.Contains(ev.Data, []byte(`"txn_id":"`+txnID+`"`))
}

// AccessEntries is the number of entries on the access record.
func (h *Harness) AccessEntries() uint64 {
	h.T.Helper()
	s, err := h.S.JS.Stream(testkit.Context(h.T), access.StreamName)
	if err != nil {
		h.T.Fatal(err)
	}
	info, err := s.Info(testkit.Context(h.T))
	if err != nil {
		h.T.Fatal(err)
	}
	return info.State.Msgs
}

// LastAccessEntry returns the newest entry of the access record.
func (h *Harness) LastAccessEntry() access.Listed {
	h.T.Helper()
	entries, err := h.S.Desk.Access.List(testkit.Context(h.T), access.Filter{})
	if err != nil || len(entries) == 0 {
		h.T.Fatalf("access record: %d entries, %v", len(entries), err)
	}
	return entries[len(entries)-1]
}

// Snapshot is the state an attack must not change: where the stream, the projections and
// the access record stand.
type Snapshot struct {
	StreamLast, Applied, Access uint64
}

// Snapshot returns where the stream, the projections and the access record stand.
func (h *Harness) Snapshot() Snapshot {
	h.T.Helper()
	info, err := h.S.JS.Stream(testkit.Context(h.T), access.StreamName)
	if err != nil {
		h.T.Fatal(err)
	}
	ai, err := info.Info(testkit.Context(h.T))
	if err != nil {
		h.T.Fatal(err)
	}
	return Snapshot{StreamLast: h.StreamLast(), Applied: h.S.Proj.Applied(), Access: ai.State.LastSeq}
}

// MustBeUnchanged fails the test if the stream, the projections or the access record
// moved since before, or the projections stopped.
func (h *Harness) MustBeUnchanged(what string, before Snapshot) {
	h.T.Helper()
	if after := h.Snapshot(); after != before {
		h.T.Errorf("%s changed the ledger: before %+v, after %+v", what, before, after)
	}
	if err := h.S.Proj.Stopped(); err != nil {
		h.T.Errorf("%s stopped the projections: %v", what, err)
	}
}

// Scan returns, for each needle found, the files under dir that hold it: a forensic scan
// of every file, as keystore.ScanDir does it.
func Scan(t testing.TB, dir string, needles map[string][]byte) map[string][]string {
	t.Helper()
	var list [][]byte
	names := map[string]string{}
	for name, n := range needles {
		list = append(list, n)
		names[hex.EncodeToString(n)] = name
	}
	found, err := keystore.ScanDir(dir, list)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for k, files := range found {
		if len(files) > 0 {
			out[names[k]] = files
		}
	}
	return out
}

// ScanBytes returns the needles found in data.
func ScanBytes(data []byte, needles ...string) []string {
	var found []string
	for _, n := range needles {
		if n != "" && bytes.Contains(data, []byte(n)) {
			found = append(found, n)
		}
	}
	return found
}
