// Package schemas is Lethe's wire contract: the CloudEvents 1.0 envelope of every event on
// the CIRC stream, the data of each event type, the kiosk and staff commands and their
// replies, and the error codes every transport maps.
//
// Each event type and each command has a JSON Schema (draft 2020-12) under json/, embedded
// in the binary. The same schema files validate commands at intake and events in the
// auditor's replay, so what the ledger accepts and what an auditor can check never drift.
//
// Wire names are append-only: an event type such as lethe.item.checked_out.v1, a subject
// or an error code is never renamed or reused; a change of shape is a new version.
//
// Privacy rule of the format: the only place a patron appears in a circulation event is a
// Sealed reference, AEAD ciphertext under the transaction's key. Card numbers, names,
// contacts and birth dates never appear in plaintext in any event; the profile of a patron
// is sealed under the patron's own profile key.
package schemas
