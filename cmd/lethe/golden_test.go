package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/tlog"
	"github.com/nats-io/nats.go/jetstream"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run `go test ./cmd/lethe -run %s -update` and review the diff):\n%s", path, t.Name(), got)
	}
}

// transcript is what a person sees of a command: its standard output, its standard error
// with the line main adds for an error, and the exit status.
func transcript(stdout, stderr string, err error) []byte {
	var b strings.Builder
	section := func(name, text string) {
		fmt.Fprintf(&b, "-- %s --\n", name)
		b.WriteString(text)
		if text != "" && !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
	}
	section("stdout", stdout)
	code := 0
	if err != nil {
		stderr += "lethe: " + err.Error() + "\n"
		code = exitCode(err)
	}
	section("stderr", stderr)
	fmt.Fprintf(&b, "-- exit status %d --\n", code)
	return []byte(b.String())
}

// fixedHistory writes a small, fixed history into a data directory's stream, as a stopped
// server's would be: a catalog, a registration, a loan returned (its return and close one
// message, a command's batch) and expunged, a loan still open, a late return with its
// fine (a batch too), and a skip record.
func fixedHistory(t *testing.T, data string) {
	t.Helper()
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	n := 0
	id := func() string { n++; return "0195f0a0-0000-7000-8000-" + leftPad(n) }
	sealed := schemas.Sealed{KID: "k", Nonce: bytes.Repeat([]byte{1}, 24), CT: bytes.Repeat([]byte{2}, 40)}
	txn1, txn2, txn3 := "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"
	patron := "99999999-9999-4999-8999-999999999999"
	type ev struct {
		typ, subject string
		data         any
		batched      bool // in the same message as the event before: one command's batch
	}
	evs := []ev{
		{schemas.TypeItemCataloged, "circ.item.G1", schemas.ItemCataloged{Barcode: "G1", Title: "Atlas", Collection: "maps", Branch: "main", ReplacementCents: 2500}, false},
		{schemas.TypeItemCataloged, "circ.item.G2", schemas.ItemCataloged{Barcode: "G2", Title: "Birds", Collection: "nature", Branch: "north", ReplacementCents: 1800}, false},
		{schemas.TypePatronRegistered, "circ.patron." + patron, schemas.PatronRegistered{PatronID: patron, HomeBranch: "main", Profile: schemas.Sealed{KID: patron, Nonce: sealed.Nonce, CT: sealed.CT}}, false},
		{schemas.TypeItemCheckedOut, "circ.item.G1", schemas.ItemCheckedOut{TxnID: txn1, Barcode: "G1", Patron: schemas.Sealed{KID: txn1, Nonce: sealed.Nonce, CT: sealed.CT}, Branch: "main", Station: "k1", Due: at.Add(21 * 24 * time.Hour)}, false},
		{schemas.TypeItemReturned, "circ.item.G1", schemas.ItemReturned{TxnID: txn1, Barcode: "G1", Branch: "main", Station: "k1"}, false},
		{schemas.TypeTransactionClosed, "circ.item.G1", schemas.TransactionClosed{TxnID: txn1}, true},
		{schemas.TypeTransactionExpunged, ledger.ExpungedSubject, schemas.TransactionExpunged{TxnID: txn1, ClosedAt: at.Add(5 * time.Minute), KeyDestroyedAt: at.Add(5*time.Minute + 4*time.Millisecond)}, false},
		{schemas.TypeItemCheckedOut, "circ.item.G2", schemas.ItemCheckedOut{TxnID: txn2, Barcode: "G2", Patron: schemas.Sealed{KID: txn2, Nonce: sealed.Nonce, CT: sealed.CT}, Branch: "north", Station: "k2", Due: at.Add(21 * 24 * time.Hour)}, false},
		{schemas.TypeItemCheckedOut, "circ.item.G1", schemas.ItemCheckedOut{TxnID: txn3, Barcode: "G1", Patron: schemas.Sealed{KID: txn3, Nonce: sealed.Nonce, CT: sealed.CT}, Branch: "main", Station: "k1", Due: at.Add(24 * time.Hour)}, false},
		{schemas.TypeItemReturned, "circ.item.G1", schemas.ItemReturned{TxnID: txn3, Barcode: "G1", Branch: "main", Station: "desk"}, false},
		{schemas.TypeFineAssessed, "circ.item.G1", schemas.FineAssessed{TxnID: txn3, FineID: "44444444-4444-4444-8444-444444444444", Barcode: "G1", Reason: schemas.ReasonOverdue, AmountCents: 75}, true},
		{schemas.TypeProjectionSkipped, ledger.SkippedSubject, schemas.ProjectionSkipped{Seq: 2, Reason: "a test of the record", Staff: "ada"}, false},
	}
	withRawStream(t, data, func(js jetstream.JetStream) {
		if _, err := js.CreateStream(testkit.Context(t), ledger.StreamConfig(1)); err != nil {
			t.Fatal(err)
		}
		var msgs [][]schemas.Event
		for i, e := range evs {
			raw, _ := json.Marshal(e.data)
			event := schemas.Event{SpecVersion: schemas.SpecVersion, ID: id(), Type: e.typ, Source: "lethe/ledger/golden",
				Subject: e.subject, Time: at.Add(time.Duration(i) * time.Minute), DataContentType: "application/json",
				DataSchema: schemas.DataSchema(e.typ), Data: raw}
			if e.batched {
				last := msgs[len(msgs)-1]
				last[0].CommandID = "0195f0a0-0000-7000-9000-" + leftPad(i)
				event.CommandID = last[0].CommandID
				msgs[len(msgs)-1] = append(last, event)
				continue
			}
			msgs = append(msgs, []schemas.Event{event})
		}
		for _, m := range msgs {
			var body []byte
			if len(m) == 1 {
				body, _ = json.Marshal(m[0])
			} else {
				body, _ = json.Marshal(m)
			}
			if _, err := js.Publish(testkit.Context(t), m[0].Subject, body); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func leftPad(n int) string {
	s := "000000000000" + string(rune('0'+n/10)) + string(rune('0'+n%10))
	return s[len(s)-12:]
}

// TestAuditReplayGolden: what `lethe audit replay` prints for a fixed history, as a table
// and as JSON lines, is in testdata/ for an auditor to read and a reviewer to diff.
func TestAuditReplayGolden(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	fixedHistory(t, data)
	for _, format := range []string{"table", "json"} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"audit", "replay", "--data", data, "--format", format}, func(string) string { return "" }, nil, &out, &errOut)
		if err != nil {
			t.Fatalf("audit replay --format %s: %v\n%s", format, err, errOut.String())
		}
		golden(t, "audit-replay."+format, append(out.Bytes(), errOut.Bytes()...))
	}
}

// TestAuditVerifyGolden: what `lethe audit verify` prints for the fixed history, first
// unsigned (it fails: nothing is signed), then with a checkpoint signed by a fixed key
// appended, as text and as JSON, is in testdata/.
func TestAuditVerifyGolden(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	fixedHistory(t, data)
	signer, err := tlog.NewSigner(bytes.Repeat([]byte{0x1e}, 32))
	if err != nil {
		t.Fatal(err)
	}
	verify := func(name string, args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append([]string{"audit", "verify", "--data", data, "--key", signer.VerifierKey()}, args...)
		err := run(context.Background(), args, func(string) string { return "" }, nil, &out, &errOut)
		golden(t, name, transcript(out.String(), errOut.String(), err))
	}
	verify("audit-verify-unsigned.txt")
	withRawStream(t, data, func(js jetstream.JetStream) {
		ctx := testkit.Context(t)
		tree := tlog.NewTree()
		var last uint64
		if err := ledger.Read(ctx, js, ledger.ReadOptions{}, func(m ledger.Msg) error { last = m.Seq; return tree.Append(m.Data) }); err != nil {
			t.Fatal(err)
		}
		root, _ := tree.Root()
		note, err := signer.Sign(tree.Size(), root)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(schemas.CheckpointSigned{FirstSeq: 1, LastSeq: last, Size: tree.Size(), Root: root, Note: string(note), Key: signer.VerifierKey()})
		body, _ := json.Marshal(schemas.Event{SpecVersion: schemas.SpecVersion, ID: "0195f0a0-0000-7000-8000-000000000099", Type: schemas.TypeCheckpointSigned,
			Source: "lethe/system/checkpoint", Subject: ledger.CheckpointSubject, Time: time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC),
			DataContentType: "application/json", DataSchema: schemas.DataSchema(schemas.TypeCheckpointSigned), Data: raw})
		if _, err := js.Publish(ctx, ledger.CheckpointSubject, body); err != nil {
			t.Fatal(err)
		}
	})
	verify("audit-verify.txt")
	verify("audit-verify.json", "--json")
}
