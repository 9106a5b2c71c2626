package ledger

import (
	"regexp"

	"github.com/imagineif/lethe/schemas"
)

// Every subject Lethe uses is built in this file. Subjects are wire names: append-only.
const (
	// StreamName is the JetStream stream that holds the ledger.
	StreamName = "CIRC"
	// StreamSubjects is the subject filter of the stream.
	StreamSubjects = "circ.>"
	// ExpungedSubject carries transaction.expunged records.
	ExpungedSubject = "circ.sys.expunged"
	// KioskPrefix starts every kiosk request subject.
	KioskPrefix = "lethe.kiosk"
	// SkippedSubject carries projections.skipped records: an administrator's decision to
	// let the projections pass over an event they cannot apply.
	SkippedSubject = "circ.sys.skipped"
	// CheckpointSubject carries checkpoint.signed: the signed Merkle root of the stream so
	// far (package tlog).
	CheckpointSubject = "circ.sys.checkpoint"

	// StreamInfoAPI is JetStream's stream information request for CIRC: auditors may
	// send it.
	StreamInfoAPI = "$JS.API.STREAM.INFO." + StreamName
	// DirectGetAPI is JetStream's direct read of CIRC (batches of messages by sequence,
	// no consumer on the server): auditors replay the stream with it. Auditors get no
	// consumers because a push consumer's delivery subject is a write path: JetStream
	// publishes the stream's messages there, in the ledger's account, on behalf of
	// whoever created the consumer.
	DirectGetAPI = "$JS.API.DIRECT.GET." + StreamName
)

// token is what a barcode, branch or kiosk name must look like to be a safe subject token:
// no dots, wildcards or spaces.
var token = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToken reports whether s can stand as one NATS subject token.
func ValidToken(s string) bool { return token.MatchString(s) }

// ItemSubject is the subject of everything in the life of an item and its loans.
func ItemSubject(barcode string) (string, error) {
	if !ValidToken(barcode) {
		return "", schemas.Errorf(schemas.CodeInvalid, "barcode must be 1 to 64 letters, digits, '-' or '_'")
	}
	return "circ.item." + barcode, nil
}

// FeeSubject is the subject of a stand-alone fee's transaction.
func FeeSubject(fineID string) string { return "circ.fee." + fineID }

// PatronSubject is the subject of a patron's registration and cards. The id is the random
// internal patron id, never a card number.
func PatronSubject(patronID string) string { return "circ.patron." + patronID }

// KioskSubject is the request subject of a kiosk command.
func KioskSubject(branch, kiosk, command string) string {
	return KioskPrefix + "." + branch + "." + kiosk + "." + command
}

// KioskWildcard matches every kiosk command subject.
const KioskWildcard = KioskPrefix + ".*.*.*"
