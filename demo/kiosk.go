package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// Totals counts what the simulated library did.
type Totals struct {
	Checkouts, Returns, Renewals, Fines, Payments, Refused atomic.Int64
}

// Run runs kiosks simulated kiosks against s until ctx ends, with the live summary on w,
// and returns what they did once every kiosk has stopped and hung up.
func (lib *Library) Run(ctx context.Context, s *node.Service, kiosks int, w io.Writer) *Totals {
	var t Totals
	kc := node.NewKioskClients(s)
	defer kc.Close() // before s.Stop: the kiosks hang up first
	var wg sync.WaitGroup
	for k := range max(kiosks, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lib.kiosk(ctx, s, kc, branches()[k%len(branches())], fmt.Sprintf("kiosk%d", k+1), &t)
		}()
	}
	lib.summaries(ctx, s, &t, w)
	wg.Wait()
	return &t
}

// kiosk is one simulated self-check machine talking to Lethe over NATS request/reply.
func (lib *Library) kiosk(ctx context.Context, s *node.Service, kc *node.KioskClients, branch, id string, t *Totals) {
	send := func(cmd string, v any) (json.RawMessage, *schemas.Error) {
		raw, _ := json.Marshal(v)
		m, err := kc.Request(ctx, branch, id, cmd, raw)
		if err != nil {
			return nil, schemas.Errorf(schemas.CodeUnavailable, "%v", err)
		}
		var r schemas.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			t.Refused.Add(1)
			return nil, r.Error
		}
		return r.Result, nil
	}
	desk := func(name string, v any) error {
		raw, _ := json.Marshal(v)
		_, err := s.Ledger.Execute(ctx, ledger.Station{Kind: "desk", Branch: branch, ID: "desk"}, name, raw)
		return err
	}
	for ctx.Err() == nil {
		roll := rand.IntN(100)
		switch {
		case roll < 50:
			bc := lib.Barcodes[rand.IntN(len(lib.Barcodes))]
			card := lib.Cards[rand.IntN(len(lib.Cards))]
			if _, e := send(schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: card, Barcode: bc}); e == nil {
				t.Checkouts.Add(1)
				lib.mu.Lock()
				lib.out[bc] = card
				lib.mu.Unlock()
			}
		case roll < 90:
			bc, _, ok := lib.pickOut()
			if !ok {
				continue
			}
			res, e := send(schemas.CmdReturn, schemas.Return{CommandID: uuid.NewString(), Barcode: bc})
			lib.mu.Lock()
			delete(lib.out, bc)
			lib.mu.Unlock()
			if e == nil {
				t.Returns.Add(1)
				var rr schemas.ReturnResult
				if json.Unmarshal(res, &rr) == nil && rr.FineCents > 0 {
					t.Fines.Add(1)
				}
			}
		case roll < 95:
			if bc, card, ok := lib.pickOut(); ok {
				if _, e := send(schemas.CmdRenew, schemas.Renew{CommandID: uuid.NewString(), Card: card, Barcode: bc}); e == nil {
					t.Renewals.Add(1)
				}
			}
		default:
			// A patron at the desk pays what they owe, sometimes in part.
			card := lib.Cards[rand.IntN(len(lib.Cards))]
			res, e := send(schemas.CmdPatronInfo, schemas.PatronInfo{Card: card})
			if e != nil {
				continue
			}
			var rec schemas.PatronRecord
			if json.Unmarshal(res, &rec) != nil {
				continue
			}
			for _, fine := range rec.Fines {
				amount := fine.RemainingCents
				if rand.IntN(3) == 0 && amount > 1 {
					amount /= 2
				}
				if desk(schemas.CmdPayFine, schemas.PayFine{CommandID: uuid.NewString(), FineID: fine.FineID, AmountCents: amount}) == nil {
					t.Payments.Add(1)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(40+rand.IntN(40)) * time.Millisecond): // under the kiosk rate limit
		}
	}
}

// pickOut picks an item the simulation believes is out, favouring none in particular.
func (lib *Library) pickOut() (barcode, card string, ok bool) {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	for bc, c := range lib.out { // map order is random enough
		return bc, c, true
	}
	return "", "", false
}
