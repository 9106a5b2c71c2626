package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// Circulation is a running Lethe as the simulated library meets it: a desk that catalogs
// items, registers patrons and takes payments, and kiosks that send kiosk commands. A
// service in this process (Local) and a server or cluster reached over the network
// (Remote) both satisfy it, so the library day is the same code either way.
//
// A refusal is a *schemas.Error with its code; any other error means no answer came.
type Circulation interface {
	// Desk executes one staff command at a desk of branch and returns its result.
	Desk(ctx context.Context, branch, name string, cmd []byte) (json.RawMessage, error)
	// CatalogItems catalogs 1 to ledger.MaxCatalogItems items at once.
	CatalogItems(ctx context.Context, cmds []json.RawMessage) error
	// Kiosk is the k-th of n simulated kiosks (k from 0).
	Kiosk(k, n int) (Kiosk, error)
	// Status is what Lethe says of itself, for the live summary.
	Status(ctx context.Context) (Status, error)
}

// Kiosk is one simulated kiosk's way in.
type Kiosk struct {
	Name   string // branch/kiosk, as Lethe knows it
	Branch string // where its patrons go to the desk
	// Shared is how many simulated kiosks use this kiosk's identity, and so share its
	// rate limit; 1 when it has its own.
	Shared int
	// Send sends one kiosk command and returns the reply's result or its refusal.
	Send func(ctx context.Context, name string, cmd []byte) (json.RawMessage, error)
}

// Status is a running Lethe's own count of what is open and what it forgot.
type Status struct {
	OnLoan, OpenTxns, Expunged int
	ExpungeLagP99              time.Duration
}

// Local is a service in this process: the desk is its ledger, the kiosks are identities
// made in its data directory and connected in-process (node.KioskClients).
type Local struct {
	s  *node.Service
	kc *node.KioskClients
}

// NewLocal is the simulated library's way into a service in this process. Close hangs up
// the kiosks it connected; call it before the service stops.
func NewLocal(s *node.Service) *Local {
	return &Local{s: s, kc: node.NewKioskClients(s)}
}

// Close hangs up every kiosk connection.
func (l *Local) Close() { l.kc.Close() }

// Desk executes the command with the ledger, at the branch's desk.
func (l *Local) Desk(ctx context.Context, branch, name string, cmd []byte) (json.RawMessage, error) {
	res, err := l.s.Ledger.Execute(ctx, ledger.Station{Kind: "desk", Branch: branch, ID: "desk"}, name, cmd)
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// CatalogItems catalogs with the ledger's bulk command, at main's desk.
func (l *Local) CatalogItems(ctx context.Context, cmds []json.RawMessage) error {
	_, err := l.s.Ledger.CatalogItems(ctx, ledger.Station{Kind: "desk", Branch: "main", ID: "desk"}, cmds)
	return err
}

// Kiosk is kiosk<k+1> of a branch, in turn, each with an identity of its own.
func (l *Local) Kiosk(k, _ int) (Kiosk, error) {
	branch, id := branches()[k%len(branches())], fmt.Sprintf("kiosk%d", k+1)
	return Kiosk{Name: branch + "/" + id, Branch: branch, Shared: 1, Send: func(ctx context.Context, name string, cmd []byte) (json.RawMessage, error) {
		m, err := l.kc.Request(ctx, branch, id, name, cmd)
		if err != nil {
			return nil, err
		}
		return replyResult(m.Data)
	}}, nil
}

// Status counts the projections and reads the expunger's statistics.
func (l *Local) Status(context.Context) (Status, error) {
	c, err := l.s.Proj.Counts()
	if err != nil {
		return Status{}, err
	}
	st := l.s.Expunger.Stats()
	return Status{OnLoan: c.OnLoan, OpenTxns: c.OpenTxns, Expunged: st.Expunged, ExpungeLagP99: st.ExpungeLagP99}, nil
}

// replyResult reads a kiosk reply: its result, or its refusal as a *schemas.Error.
func replyResult(data []byte) (json.RawMessage, error) {
	var r schemas.Reply
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("a reply that is not Lethe's: %w", err)
	}
	if !r.OK {
		if r.Error == nil {
			return nil, schemas.Errorf(schemas.CodeInternal, "refused without a reason")
		}
		return nil, r.Error
	}
	return r.Result, nil
}
