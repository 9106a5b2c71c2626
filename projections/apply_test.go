package projections

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
)

func openTestStore(t testing.TB, keys *keystore.Store, v *schemas.Validator, name string) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), name), keys, v, Config{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testKeys opens a keystore under a fresh master key, and a validator.
func testKeys(t testing.TB) (*keystore.Store, *schemas.Validator) {
	t.Helper()
	dir := t.TempDir()
	m, err := keystore.GenerateMasterFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.Open(filepath.Join(dir, "keys"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return keys, v
}

func testMsgs(t *testing.T) []ledger.Msg {
	t.Helper()
	at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	txn := uuid.NewString()
	var msgs []ledger.Msg
	add := func(typ string, data any) {
		raw, _ := json.Marshal(data)
		ev := schemas.Event{SpecVersion: "1.0", ID: uuid.Must(uuid.NewV7()).String(), Type: typ, Source: "lethe/test",
			Subject: "circ.item.T1", Time: at, DataContentType: "application/json", DataSchema: schemas.DataSchema(typ),
			CommandID: uuid.NewString(), Data: raw}
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, ledger.Msg{Seq: uint64(len(msgs) + 1), Subject: ev.Subject, Data: body})
	}
	add(schemas.TypeItemCataloged, schemas.ItemCataloged{Barcode: "T1", Title: "t", Collection: "c", Branch: "main", ReplacementCents: 100})
	// The transaction's key does not exist: as in a rebuild after it closed.
	add(schemas.TypeItemCheckedOut, schemas.ItemCheckedOut{TxnID: txn, Barcode: "T1", Branch: "main", Station: "k1", Due: at.Add(time.Hour),
		Patron: schemas.Sealed{KID: txn, Nonce: make([]byte, 24), CT: make([]byte, 52)}})
	add(schemas.TypeItemReturned, schemas.ItemReturned{TxnID: txn, Barcode: "T1", Branch: "main", Station: "k1"})
	add(schemas.TypeTransactionClosed, schemas.TransactionClosed{TxnID: txn})
	return msgs
}

// TestApplyExactlyOnce: messages delivered again after a restart (the projector resumes
// from m/applied, but a consumer may redeliver) change nothing, statistics included.
func TestApplyExactlyOnce(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	msgs := testMsgs(t)
	once, twice := openTestStore(t, keys, v, "once"), openTestStore(t, keys, v, "twice")
	if err := once.Apply(msgs); err != nil {
		t.Fatal(err)
	}
	for _, batch := range [][]ledger.Msg{msgs[:2], msgs[1:], msgs} {
		if err := twice.Apply(batch); err != nil {
			t.Fatal(err)
		}
	}
	if once.Applied() != 4 || twice.Applied() != 4 {
		t.Fatalf("applied = %d and %d, want 4", once.Applied(), twice.Applied())
	}
	d, err := compare(once.db, twice.db)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Equal() {
		t.Fatalf("redelivered messages changed the projections: %+v", d)
	}
	stats, err := twice.Stats("2026-05-04", "2026-05-04")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Count != 1 {
			t.Errorf("stat %s/%s = %d, want 1", s.Measure, s.Branch, s.Count)
		}
	}
	if len(stats) != 2 {
		t.Errorf("stats = %+v, want a checkout and a return", stats)
	}
	pending, err := twice.PendingExpunges()
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending expunges = %v, %v; want the closed transaction", pending, err)
	}
}

// TestApplyRefusesUndecodable: a message that is not a valid event stops the batch, and
// nothing of the batch is applied.
func TestApplyRefusesUndecodable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, _ := keystore.GenerateMasterFile(filepath.Join(dir, "master.key"))
	keys, err := keystore.Open(filepath.Join(dir, "keys"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	v, _ := schemas.NewValidator()
	s := openTestStore(t, keys, v, "p")
	msgs := testMsgs(t)[:1]
	msgs = append(msgs, ledger.Msg{Seq: 2, Subject: "circ.item.T1", Data: []byte(`{"not":"an event"}`)})
	if err := s.Apply(msgs); err == nil {
		t.Fatal("Apply of an undecodable event = nil, want an error")
	}
	if s.Applied() != 0 {
		t.Fatalf("applied = %d after a failed batch, want 0", s.Applied())
	}
	if _, err := s.Item("T1"); err == nil {
		t.Fatal("the batch's first event was applied although the batch failed")
	}
}

// TestViewIsConsistent: while a view is open no batch is committed, so everything a
// decision reads, rows and subject sequences alike, is as of one position in the stream.
// A decision that read "on loan" must not pair it with the subject sequence of the return
// that ended the loan. The batch commits as soon as the view is done.
func TestViewIsConsistent(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	msgs := testMsgs(t)
	s := openTestStore(t, keys, v, "view")
	if err := s.Apply(msgs[:2]); err != nil {
		t.Fatal(err)
	}
	check := func(name string, r model.Reader, status string, seq uint64) {
		t.Helper()
		it, err := r.Item("T1")
		if err != nil || it.Status != status {
			t.Errorf("%s: item = %+v, %v; want %s", name, it, err, status)
		}
		if got, err := r.SubjectSeq("circ.item.T1"); err != nil || got != seq {
			t.Errorf("%s: subject sequence = %d, %v; want %d", name, got, err, seq)
		}
	}
	view, done := s.View()
	applied := make(chan error, 1)
	go func() { applied <- s.Apply(msgs[2:]) }()
	select {
	case err := <-applied:
		t.Fatalf("a batch was committed while a view was open (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	check("view", view, model.ItemOnLoan, 2)
	done()
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	check("live", s, model.ItemAvailable, 4)
}
