package demo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
)

// Totals counts what the simulated library did. Refused counts Lethe's coded refusals
// (expected: the simulation's memory is not the truth); Errors counts commands that got
// no answer at all, after every retry.
type Totals struct {
	Checkouts, Returns, Renewals, Fines, Payments, Refused, Errors atomic.Int64
}

// RunConfig says how the simulated kiosks run.
type RunConfig struct {
	Kiosks int // simulated kiosks; 0 is 1
	// Summary receives the live summary: on a terminal one line redrawn every second,
	// otherwise a line every Every (0: 5 s). Nil: no summary.
	Summary io.Writer
	Every   time.Duration
	// Acknowledged, if set, is called with the name and command id of every command
	// that changes something and that Lethe acknowledged, from the kiosks' goroutines.
	Acknowledged func(name, commandID string)
}

// Run runs simulated kiosks against c until ctx ends, and returns what they did once
// every kiosk has stopped.
func (lib *Library) Run(ctx context.Context, c Circulation, cfg RunConfig) (*Totals, error) {
	var t Totals
	n := max(cfg.Kiosks, 1)
	kiosks := make([]Kiosk, n)
	for k := range n {
		var err error
		if kiosks[k], err = c.Kiosk(k, n); err != nil {
			return nil, err
		}
	}
	var wg sync.WaitGroup
	for _, k := range kiosks {
		wg.Go(func() { lib.kiosk(ctx, c, k, &t, cfg.Acknowledged) })
	}
	if cfg.Summary != nil {
		lib.summaries(ctx, c, &t, cfg.Summary, cfg.Every)
	}
	wg.Wait()
	return &t, nil
}

// retries is how often a command that got no answer, or unavailable, is sent again, and
// backoff the wait before each: together long enough for a kiosk's connection to move
// to another server when its own dies.
const retries = 6

func backoff(attempt int) time.Duration {
	return min(250*time.Millisecond<<attempt, 2*time.Second)
}

// retry sends a command until it is answered, or refused with anything but unavailable,
// or retries run out, or ctx ends. The command goes again as it was, same command id and
// same body, as a kiosk that lost a reply does: Lethe applies it once.
func retry(ctx context.Context, send func() (json.RawMessage, error)) (json.RawMessage, error) {
	for attempt := 0; ; attempt++ {
		res, err := send()
		var e *schemas.Error
		if err == nil || errors.As(err, &e) && e.Code != schemas.CodeUnavailable || attempt == retries || ctx.Err() != nil {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff(attempt)):
		}
	}
}

// kiosk is one simulated self-check machine.
func (lib *Library) kiosk(ctx context.Context, c Circulation, k Kiosk, t *Totals, acked func(name, id string)) {
	count := func(err error) {
		var e *schemas.Error
		switch {
		case errors.As(err, &e):
			t.Refused.Add(1)
		case ctx.Err() == nil:
			t.Errors.Add(1)
		}
	}
	// send sends a command with an id (made here); patron_info has none and is sent once.
	send := func(name string, id string, v any) (json.RawMessage, bool) {
		raw, _ := json.Marshal(v)
		try := func() (json.RawMessage, error) { return k.Send(ctx, name, raw) }
		var res json.RawMessage
		var err error
		if id == "" {
			res, err = try()
		} else {
			res, err = retry(ctx, try)
		}
		if err != nil {
			count(err)
			return nil, false
		}
		if id != "" && acked != nil {
			acked(name, id)
		}
		return res, true
	}
	desk := func(name, id string, v any) bool {
		raw, _ := json.Marshal(v)
		_, err := retry(ctx, func() (json.RawMessage, error) { return c.Desk(ctx, k.Branch, name, raw) })
		if err != nil {
			count(err)
			return false
		}
		if acked != nil {
			acked(name, id)
		}
		return true
	}
	for ctx.Err() == nil {
		roll := rand.IntN(100)
		switch {
		case roll < 50:
			bc := lib.Barcodes[rand.IntN(len(lib.Barcodes))]
			card := lib.Cards[rand.IntN(len(lib.Cards))]
			id := uuid.NewString()
			if _, ok := send(schemas.CmdCheckOut, id, schemas.CheckOut{CommandID: id, Card: card, Barcode: bc}); ok {
				t.Checkouts.Add(1)
				lib.mu.Lock()
				lib.out[bc] = card
				lib.mu.Unlock()
			}
		case roll < 90:
			bc, _, ok := lib.pickOut()
			if !ok {
				break
			}
			id := uuid.NewString()
			res, ok := send(schemas.CmdReturn, id, schemas.Return{CommandID: id, Barcode: bc})
			lib.mu.Lock()
			delete(lib.out, bc)
			lib.mu.Unlock()
			if ok {
				t.Returns.Add(1)
				var rr schemas.ReturnResult
				if json.Unmarshal(res, &rr) == nil && rr.FineCents > 0 {
					t.Fines.Add(1)
				}
			}
		case roll < 95:
			if bc, card, ok := lib.pickOut(); ok {
				id := uuid.NewString()
				if _, ok := send(schemas.CmdRenew, id, schemas.Renew{CommandID: id, Card: card, Barcode: bc}); ok {
					t.Renewals.Add(1)
				}
			}
		default:
			// A patron at the desk pays what they owe, sometimes in part.
			card := lib.Cards[rand.IntN(len(lib.Cards))]
			res, ok := send(schemas.CmdPatronInfo, "", schemas.PatronInfo{Card: card})
			if !ok {
				break
			}
			var rec schemas.PatronRecord
			if json.Unmarshal(res, &rec) != nil {
				break
			}
			for _, fine := range rec.Fines {
				amount := fine.RemainingCents
				if rand.IntN(3) == 0 && amount > 1 {
					amount /= 2
				}
				id := uuid.NewString()
				if desk(schemas.CmdPayFine, id, schemas.PayFine{CommandID: id, FineID: fine.FineID, AmountCents: amount}) {
					t.Payments.Add(1)
				}
			}
		}
		// Under the kiosk rate limit, together with the kiosks that share the identity.
		pause := time.Duration(40+rand.IntN(40)) * time.Millisecond * time.Duration(max(k.Shared, 1))
		select {
		case <-ctx.Done():
		case <-time.After(pause):
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
