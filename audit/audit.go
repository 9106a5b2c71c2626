// Package audit is what an auditor does with the CIRC stream, with no key: read it through
// (read-only, with direct reads) and describe each event without opening a patron
// reference: "sealed" while the transaction's key may exist, "expunged" once the stream
// records that it was destroyed; verify the whole history (Verifier); aggregate it
// anonymously (Stats).
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

// Line is one event as an auditor sees it. Patron references are never opened: they
// show as "sealed" while the transaction's key may exist and "expunged" once the stream
// records that it was destroyed.
type Line struct {
	Seq uint64 `json:"seq"`
	// Index is the event's place in its message, from 1, when the message is a command's
	// batch of several events (they share its sequence); 0 (left out) otherwise.
	Index   int       `json:"index,omitempty"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Subject string    `json:"subject"`
	TxnID   string    `json:"txn_id,omitempty"`
	Barcode string    `json:"barcode,omitempty"`
	Patron  string    `json:"patron,omitempty"`
	Amount  *int64    `json:"amount_cents,omitempty"`
}

// lineEvent is what a line shows of an event: decoded in one pass, the rest skipped.
type lineEvent struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Data auditData `json:"data"`
}

// auditData is the union of the fields of events an auditor's line shows.
type auditData struct {
	TxnID       string          `json:"txn_id"`
	Barcode     string          `json:"barcode"`
	Patron      json.RawMessage `json:"patron"`
	AmountCents *int64          `json:"amount_cents"`
}

// Auditor decodes and checks the stream without keys. Make one with New.
type Auditor struct {
	v        *schemas.Validator
	expunged map[string]bool
}

// Lines decodes one message and describes each of its events: one, or a command's
// batch. It does not check them against their schemas: the ledger did at intake, and
// lethe audit verify does again, with the signed checkpoints to show nothing changed
// since. A message that is not an event's JSON, or a batch of them, is an error.
func (a *Auditor) Lines(m ledger.Msg) ([]Line, error) {
	parts, err := schemas.SplitEvents(m.Data)
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeInvalid, "not an event")
	}
	lines := make([]Line, len(parts))
	for i, p := range parts {
		var ev lineEvent
		if err := jsonv2.Unmarshal(p, &ev); err != nil || ev.Type == "" {
			return nil, schemas.Errorf(schemas.CodeInvalid, "not an event")
		}
		d := ev.Data
		l := Line{Seq: m.Seq, Time: ev.Time, Type: ev.Type, Subject: m.Subject, TxnID: d.TxnID, Barcode: d.Barcode, Amount: d.AmountCents}
		if len(parts) > 1 {
			l.Index = i + 1
		}
		if len(d.Patron) > 0 && string(d.Patron) != "null" {
			l.Patron = "sealed"
			if a.expunged[d.TxnID] {
				l.Patron = "expunged"
			}
		}
		lines[i] = l
	}
	return lines, nil
}

// Decoded is one message's lines, or why it could not be described.
type Decoded struct {
	Seq   uint64
	Lines []Line
	Err   error
}

// Decode is Lines for InOrder: it may run on several goroutines at once.
func (a *Auditor) Decode(m ledger.Msg) Decoded {
	lines, err := a.Lines(m)
	return Decoded{Seq: m.Seq, Lines: lines, Err: err}
}

// ExpungedTxns reads the transaction.expunged records: the transactions whose keys are
// destroyed. Like Lines, it decodes only what it needs (each record's type and txn_id),
// on every core, and leaves the schemas to lethe audit verify; anything on the records'
// subject that is not such a record is an error.
func ExpungedTxns(ctx context.Context, nc *nats.Conn) (map[string]bool, error) {
	out := map[string]bool{}
	read := func(fn func(ledger.Msg) error) error {
		return ledger.ReadDirect(ctx, nc, ledger.ReadOptions{Subjects: []string{ledger.ExpungedSubject}}, fn)
	}
	err := InOrder(read, runtime.GOMAXPROCS(0), expungedTxns, func(r expunged) error {
		if r.err != nil {
			return fmt.Errorf("sequence %d: %w", r.seq, r.err)
		}
		for _, id := range r.txns {
			out[id] = true
		}
		return nil
	})
	return out, err
}

// expunged is the transactions one message on the records' subject names.
type expunged struct {
	seq  uint64
	txns []string
	err  error
}

// expungedTxns decodes one message of transaction.expunged records.
func expungedTxns(m ledger.Msg) expunged {
	r := expunged{seq: m.Seq}
	parts, err := schemas.SplitEvents(m.Data)
	if err != nil {
		r.err = schemas.Errorf(schemas.CodeInvalid, "not an event")
		return r
	}
	for _, p := range parts {
		var ev lineEvent
		if err := jsonv2.Unmarshal(p, &ev); err != nil || ev.Type != schemas.TypeTransactionExpunged || ev.Data.TxnID == "" {
			r.err = schemas.Errorf(schemas.CodeInvalid, "not a transaction.expunged record")
			return r
		}
		r.txns = append(r.txns, ev.Data.TxnID)
	}
	return r
}

// New returns an auditor that knows which transactions were expunged.
func New(v *schemas.Validator, expunged map[string]bool) *Auditor {
	return &Auditor{v: v, expunged: expunged}
}
