// Package identity holds who may connect to Lethe's NATS port besides the ledger itself:
// one identity per kiosk and one per auditor, each a NATS user NKey.
//
// An identity is its kind, its name (a kiosk's branch and id, an auditor's name) and the
// public half of an Ed25519 NKey. The seed (the private half) is generated once, written
// into the credentials file handed to the kiosk or auditor, and never stored by Lethe:
// the registry holds public keys only.
//
// Each identity is its own NATS account. The ledger's account is the only one with
// JetStream and the only one that can publish to circ.> or access.>; an identity's account
// imports exactly the ledger's services its kind needs (Imports) and its user may publish
// only those subjects and subscribe only to its own inboxes (Permissions). Accounts, not
// subject permissions alone, are the isolation: a kiosk cannot see another kiosk's
// requests or replies, cannot join the ledger's queue group, and cannot answer in the
// ledger's place, because none of that traffic exists in its account.
//
// The registry is one JSON file, <data>/identities.json (mode 0600), replaced atomically
// under an exclusive lock (<data>/identities.lock), so `lethe kiosks add` and `revoke` work
// while a server runs: the server reloads the file when it changes and closes the
// connections of identities that are no longer active.
package identity

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/imagineif/lethe/ledger"
)

// Kind is what an identity is for.
type Kind string

// The kinds of identity. Wire names: only ever added to.
const (
	Kiosk   Kind = "kiosk"   // a self-checkout station: its own kiosk subjects
	Auditor Kind = "auditor" // reads the CIRC stream, nothing else
)

// Identity is one kiosk or auditor allowed to connect.
type Identity struct {
	Kind      Kind   `json:"kind"`
	Branch    string `json:"branch,omitempty"` // kiosks only
	Name      string `json:"name"`             // the kiosk id, or the auditor's name
	PublicKey string `json:"public_key"`       // NATS user NKey, public half ("U…")
	// SIP2Password is the argon2id hash (PHC string) of a kiosk's SIP2 password, if it has
	// one (sip2.go); never the password.
	SIP2Password string `json:"sip2_password,omitempty"`
	// SIP2PasswordSet is when SIP2Password was set: of two copies of the identity (on two
	// nodes of a cluster, Merge), the later password wins. Zero in entries older than it.
	SIP2PasswordSet time.Time  `json:"sip2_password_set,omitzero"`
	Added           time.Time  `json:"added"`
	Revoked         *time.Time `json:"revoked,omitempty"`
}

// Active reports whether the identity may connect.
func (id Identity) Active() bool { return id.Revoked == nil }

// Label is how logs and the access record name the identity: "kiosk main/k1",
// "auditor ann". It carries no patron data.
func (id Identity) Label() string {
	if id.Kind == Kiosk {
		return "kiosk " + id.Branch + "/" + id.Name
	}
	return string(id.Kind) + " " + id.Name
}

// Account is the NATS account the identity's connections are placed in, one per identity.
// The separator ':' cannot occur in a name, so two identities never share an account.
func (id Identity) Account() string {
	if id.Kind == Kiosk {
		return "kiosk:" + id.Branch + ":" + id.Name
	}
	return string(id.Kind) + ":" + id.Name
}

// Import is a service of the ledger's account that an identity's account imports.
type Import struct {
	Subject  string
	Streamed bool // the service answers one request with several messages
}

// Imports are the ledger's services the identity's account imports: a kiosk its own
// command subjects; an auditor the stream's info and batched direct reads of CIRC. Nothing
// else of the ledger's account is reachable from the identity's.
func (id Identity) Imports() []Import {
	switch id.Kind {
	case Kiosk:
		return []Import{{Subject: ledger.KioskSubject(id.Branch, id.Name, ">")}}
	case Auditor:
		return []Import{
			{Subject: ledger.StreamInfoAPI},
			{Subject: ledger.DirectGetAPI, Streamed: true},
		}
	}
	return nil
}

// Permissions are a NATS user's subject permissions.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// Permissions are the identity's user's permissions inside its own account: publish only
// what it imports, subscribe only to inboxes (where replies arrive).
func (id Identity) Permissions() Permissions {
	var p Permissions
	for _, im := range id.Imports() {
		p.Publish = append(p.Publish, im.Subject)
	}
	p.Subscribe = []string{"_INBOX.>"}
	return p
}

// name is what a branch, kiosk id or auditor name must look like: a safe subject token.
var name = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Errors of the registry. They name no identity: callers add what they were asked.
var (
	ErrExists   = errors.New("an active identity with this name exists; revoke it first")
	ErrNotFound = errors.New("no active identity with this name")
)

// validate checks the kind and names of a new identity.
func validate(kind Kind, branch, n string) error {
	switch kind {
	case Kiosk:
		if !ledger.ValidToken(branch) {
			return errors.New("branch must be 1 to 64 letters, digits, '-' or '_'")
		}
	case Auditor:
		if branch != "" {
			return errors.New("an auditor has no branch")
		}
	default:
		return fmt.Errorf("unknown identity kind %q", kind)
	}
	if !name.MatchString(n) {
		return fmt.Errorf("%s name must be 1 to 64 letters, digits, '-' or '_'", kind)
	}
	return nil
}
