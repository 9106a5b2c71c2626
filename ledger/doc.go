// Package ledger is Lethe's write side: the domain rules that decide which events a
// command produces, the subjects they go on, and the append to the CIRC stream with
// per-subject optimistic concurrency and deduplication by command id.
//
// A command is decided against the projections' state (the State interface, implemented
// by package projections) and appended with Nats-Expected-Last-Subject-Sequence set to the
// sequence that state was built from. If another command got there first the append is
// refused, the ledger waits for the projector to catch up and decides again, so two kiosks
// can never both check out one item. A command that produces several events (a late return
// produces item.returned, fine.assessed and perhaps transaction.closed) is appended as one
// JetStream atomic batch: it is applied whole or not at all. A kiosk hears "ok" only after
// the stream acknowledged the append with the configured durability and the projections
// have applied it, so the next command on any kiosk sees its effect. A command whose id is
// already on the stream is answered from the events it appended, and only if it is the
// same command (Ledger.answerAgain says what is checked); another command reusing the id
// is refused as a conflict.
//
// Privacy rule: the patron appears in a circulation event only as a schemas.Sealed reference
// under a fresh per-transaction key from the keystore, with the event id and transaction id
// as associated data. Subjects and headers carry barcodes, fee ids and random patron ids,
// never a card number or anything else personal.
package ledger
