package schemas

import (
	"encoding/json"
	"time"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// Event is a CloudEvents 1.0 event in structured JSON mode, the form of every message on
// the CIRC stream. ID is a UUIDv7. Time is when the occurrence happened (for a late return
// from an offline kiosk, the original time), and all rules evaluate against it, so replay
// is deterministic.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Type            string    `json:"type"`
	Source          string    `json:"source"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	DataSchema      string    `json:"dataschema"`
	// CommandID is a CloudEvents extension attribute: the id of the command that produced
	// the event, so a retried command is recognised and answered, not applied again.
	CommandID string          `json:"commandid,omitempty"`
	Data      json.RawMessage `json:"data"`
}

// Sealed is AEAD ciphertext (XChaCha20-Poly1305) under the key named by KID. For a patron
// reference in a circulation event the key is the transaction's key and the associated data
// is the event id and the transaction id, so a ciphertext cannot be moved to another event.
type Sealed struct {
	KID   string `json:"kid"`
	Nonce []byte `json:"nonce"`
	CT    []byte `json:"ct"`
}
