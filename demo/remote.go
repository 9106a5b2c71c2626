package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/ledger"
	"github.com/nats-io/nats.go"
)

// Staff is a staff session with a running Lethe's HTTP API, such as the lethe CLI holds.
// Do sends one request (body nil for a GET) and returns the body of a 200 answer, the
// refusal as a *schemas.Error, or the error of a request that got no answer.
type Staff interface {
	Do(ctx context.Context, method, path string, body []byte) ([]byte, error)
}

// RemoteKiosk is one kiosk identity's connection to Lethe's NATS servers, made with its
// credentials file.
type RemoteKiosk struct {
	Branch, ID string
	Conn       Requester
}

// Requester sends a NATS request and waits for its reply: a *nats.Conn, or a connection
// that is made again when nats.go gives one up.
type Requester interface {
	RequestWithContext(ctx context.Context, subject string, data []byte) (*nats.Msg, error)
}

// Remote is a Lethe server or cluster reached over the network, as a real library's desks
// and kiosks reach it: the desk through the staff HTTP API, the kiosks over NATS with
// their own credentials. With fewer identities than simulated kiosks, kiosks share them
// in turn (and slow down, to stay under each identity's rate limit together).
type Remote struct {
	Staff  Staff
	Kiosks []RemoteKiosk
	// Timeout bounds each kiosk request; 0 is 5 s. A kiosk whose server died gets no
	// answer within it, and sends the command again once its connection has moved to
	// another server.
	Timeout time.Duration
}

// Desk posts the command to its route of the staff API (the branch is the account's:
// the API has no desk of its own per branch).
func (r *Remote) Desk(ctx context.Context, _, name string, cmd []byte) (json.RawMessage, error) {
	path := desk.CommandPath(name)
	if path == "" {
		return nil, fmt.Errorf("%s is not a staff command", name)
	}
	return r.Staff.Do(ctx, http.MethodPost, path, cmd)
}

// CatalogItems posts the commands to the bulk catalog route.
func (r *Remote) CatalogItems(ctx context.Context, cmds []json.RawMessage) error {
	body, err := json.Marshal(desk.CatalogItemsRequest{Commands: cmds})
	if err != nil {
		return err
	}
	_, err = r.Staff.Do(ctx, http.MethodPost, "/api/desk/catalog-items", body)
	return err
}

// Kiosk is identity k mod len(Kiosks).
func (r *Remote) Kiosk(k, n int) (Kiosk, error) {
	if len(r.Kiosks) == 0 {
		return Kiosk{}, errors.New("no kiosk identities: give at least one credentials file")
	}
	rk := r.Kiosks[k%len(r.Kiosks)]
	shared := 0
	for j := range n {
		if j%len(r.Kiosks) == k%len(r.Kiosks) {
			shared++
		}
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return Kiosk{Name: rk.Branch + "/" + rk.ID, Branch: rk.Branch, Shared: max(shared, 1), Send: func(ctx context.Context, name string, cmd []byte) (json.RawMessage, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		m, err := rk.Conn.RequestWithContext(ctx, ledger.KioskSubject(rk.Branch, rk.ID, name), cmd)
		if err != nil {
			return nil, err
		}
		return replyResult(m.Data)
	}}, nil
}

// Status reads GET /api/summary.
func (r *Remote) Status(ctx context.Context) (Status, error) {
	out, err := r.Staff.Do(ctx, http.MethodGet, "/api/summary", nil)
	if err != nil {
		return Status{}, err
	}
	var s struct {
		Counts struct {
			OnLoan, OpenTxns int
		} `json:"counts"`
		Expunger struct {
			Expunged      int           `json:"expunged"`
			ExpungeLagP99 time.Duration `json:"expunge_lag_p99_ns"`
		} `json:"expunger"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return Status{}, fmt.Errorf("summary: %w", err)
	}
	return Status{OnLoan: s.Counts.OnLoan, OpenTxns: s.Counts.OpenTxns, Expunged: s.Expunger.Expunged, ExpungeLagP99: s.Expunger.ExpungeLagP99}, nil
}
