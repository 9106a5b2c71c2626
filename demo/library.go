// Package demo is the simulated library that lethe demo runs in its own process, lethe
// simulate runs against a server or cluster over the network, and lethe bench seeds.
//
// Its day: a catalog spread over three branches (main, north, south) and four
// collections, patrons of every age (one in seven a minor, with the caregiver who signed
// for the card), and self-check kiosks that, until stopped, check items out (half their
// requests), return them (two in five), renew them, and send patrons to the desk to pay
// what they owe, each kiosk a request every 40 to 80 ms, under the kiosk rate limit.
// lethe demo runs it on a compressed clock: a library day lasts --day (a second by
// default), so seven-day loans fall due, fines accrue and items go lost within seconds,
// and closed transactions are expunged and their keys erased while one watches.
//
// The simulation remembers only which cards exist and which items it believes are out.
// Lethe itself is the truth; refusals are expected.
//
// The day runs over Circulation, which a service in this process (Local) and a remote
// one (Remote: the staff HTTP API and kiosks' NATS connections) both satisfy. Against a
// cluster, a kiosk whose request gets no answer (its server died, or was cut off) sends
// the same command again, same id and same body, once its connection has moved to
// another server: Lethe applies it once.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/progress"
	"github.com/imagineif/lethe/schemas"
)

// branches and collections are the simulated library's: fresh slices, not shared state.
func branches() []string    { return []string{"main", "north", "south"} }
func collections() []string { return []string{"fiction", "nonfiction", "children", "media"} }

// Library is the simulated library's own memory: which cards exist and which items
// each kiosk believes are out. Lethe itself is the truth; refusals are expected.
type Library struct {
	Barcodes []string // every item cataloged, in order
	Cards    []string // every patron's card, in order of registration
	mu       sync.Mutex
	out      map[string]string // barcode -> card, as the simulation remembers it
}

// Seed catalogs the given number of items and registers the given number of patrons
// through c's desk at branch main, and returns the library that knows them. A request
// that gets no answer, or unavailable, is sent again as it was (Lethe applies it once).
// Its progress bars are drawn on w if w is a terminal.
func Seed(ctx context.Context, c Circulation, items, patrons int, w io.Writer) (*Library, error) {
	lib := &Library{out: map[string]string{}}
	// The catalog goes in as a bulk import does: up to a whole atomic batch at a time.
	p := progress.NewBar(w, "cataloging items", int64(items))
	var cmds []json.RawMessage
	for i := range items {
		bc := fmt.Sprintf("3%07d", i+1)
		raw, err := json.Marshal(schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
			Barcode: bc, Title: fmt.Sprintf("Book %d", i+1), Collection: collections()[i%len(collections())],
			Branch: branches()[i%len(branches())], ReplacementCents: int64(1500 + 100*(i%20)),
		}})
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, raw)
		lib.Barcodes = append(lib.Barcodes, bc)
		if len(cmds) == ledger.MaxCatalogItems || i == items-1 {
			if _, err := retry(ctx, func() (json.RawMessage, error) { return nil, c.CatalogItems(ctx, cmds) }); err != nil {
				p.Stop()
				return nil, fmt.Errorf("catalog: %w", err)
			}
			p.Add(len(cmds))
			cmds = cmds[:0]
		}
	}
	p.Stop()
	p = progress.NewBar(w, "registering patrons", int64(patrons))
	defer p.Stop()
	now := time.Now()
	for i := range patrons {
		card := fmt.Sprintf("2%013d", rand.Int64N(1e13))
		prof := schemas.Profile{Name: fmt.Sprintf("Patron %d", i+1), Email: fmt.Sprintf("patron%d@example.org", i+1),
			BirthDate: now.AddDate(-20-i%50, 0, -i%300).Format(time.DateOnly)}
		if i%7 == 0 { // a minor, with the caregiver who signed for the card
			prof.BirthDate = now.AddDate(-8-i%9, 0, -i%300).Format(time.DateOnly)
			prof.Caregiver = &schemas.Caregiver{Name: fmt.Sprintf("Caregiver %d", i+1)}
		}
		raw, err := json.Marshal(schemas.RegisterPatron{CommandID: uuid.NewString(),
			HomeBranch: branches()[i%len(branches())], Profile: prof, Card: card})
		if err != nil {
			return nil, err
		}
		if _, err := retry(ctx, func() (json.RawMessage, error) { return c.Desk(ctx, "main", schemas.CmdRegisterPatron, raw) }); err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
		lib.Cards = append(lib.Cards, card)
		p.Add(1)
	}
	return lib, nil
}
