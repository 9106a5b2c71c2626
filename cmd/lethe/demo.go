package main

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/progress"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

var (
	demoBranches    = []string{"main", "north", "south"}
	demoCollections = []string{"fiction", "nonfiction", "children", "media"}
)

// demoTotals counts what the simulated library did.
type demoTotals struct {
	checkouts, returns, renewals, fines, payments, refused atomic.Int64
}

func cmdDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("demo", getenv, stderr)
	// A short erasure window, to watch it in a short demo; no NATS port unless asked for.
	build := serviceFlags(f, "", "10s", "off")
	duration := f.Duration("duration", 0, "how long the simulated kiosks run; 0 runs until Ctrl-C")
	items := f.Int("items", 2000, "items to catalog")
	patrons := f.Int("patrons", 300, "patrons to register (some minors, with caregivers)")
	kiosks := f.Int("kiosks", 6, "simulated kiosks")
	day := f.Duration("day", time.Second, "how long a library day lasts in the demo (loans, fines and lost items run on it)")
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := build()
	if err != nil {
		return &exitError{2, err}
	}
	if cfg.Data == "" {
		dir, err := os.MkdirTemp("", "lethe-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.Data = dir
	}
	cfg.Rules.Day = *day
	cfg.Rules.LoanDays = 7
	cfg.RulesInterval = *day
	password, err := demoAccount(cfg.Data)
	if err != nil {
		return err
	}
	s, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Stop()
	fmt.Fprintf(stdout, "Lethe demo: data in %s; a library day lasts %s\n", cfg.Data, *day)
	if s.HTTPURL != "" {
		fmt.Fprintf(stdout, "dashboard: %s/   (staff API under %s/api/, metrics at %s/metrics)\n", s.HTTPURL, s.HTTPURL, s.HTTPURL)
		fmt.Fprintf(stdout, "sign in as %q with password %s (an administrator made for this demo; a real server's accounts come from 'lethe staff add')\n", demoUser, password)
	}
	lib, err := seedLibrary(ctx, s, *items, *patrons, stderr)
	if err != nil {
		return err
	}
	if url := s.NATSURL(); url != "" {
		// With --nats-listen, a visitor can be a kiosk too, with credentials of its own.
		path, err := demoKiosk(s, cfg.Data, url)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "kiosk API: %s; be a kiosk: lethe kiosk --nats-url %s --nats-creds %s info %s\n", url, url, path, lib.cards[0])
	}
	runCtx := ctx
	if *duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	var totals demoTotals
	kc := node.NewKioskClients(s)
	defer kc.Close() // before s.stop: the kiosks hang up first
	var wg sync.WaitGroup
	for k := range max(*kiosks, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lib.kiosk(runCtx, s, kc, demoBranches[k%len(demoBranches)], fmt.Sprintf("kiosk%d", k+1), &totals)
		}()
	}
	lib.summaries(runCtx, s, &totals, stdout)
	wg.Wait()
	// Let the last closes be expunged and erased before the totals.
	if _, err := s.Expunger.ExpungeNow(context.Background()); err != nil {
		return err
	}
	if err := s.Expunger.Sweep(context.Background()); err != nil {
		return err
	}
	st := s.Expunger.Stats()
	fmt.Fprintf(stdout, "totals: checked out %d, returned %d, renewed %d, fines %d, payments %d, refused %d; transactions closed and expunged %d (expunge lag p50 %s, p99 %s; erasure lag p99 %s)\n",
		totals.checkouts.Load(), totals.returns.Load(), totals.renewals.Load(), totals.fines.Load(), totals.payments.Load(),
		totals.refused.Load(), st.Expunged, st.ExpungeLagP50.Round(time.Microsecond), st.ExpungeLagP99.Round(time.Microsecond), st.ErasureLagP99.Round(time.Millisecond))
	return nil
}

// demoLibrary is the simulated library's own memory: which cards exist and which items
// each kiosk believes are out. Lethe itself is the truth; refusals are expected.
type demoLibrary struct {
	barcodes []string
	cards    []string
	mu       sync.Mutex
	out      map[string]string // barcode -> card, as the simulation remembers it
}

func seedLibrary(ctx context.Context, s *node.Service, items, patrons int, stderr io.Writer) (*demoLibrary, error) {
	desk := ledger.Station{Kind: "desk", Branch: "main", ID: "seed"}
	lib := &demoLibrary{out: map[string]string{}}
	exec := func(name string, v any) (any, error) {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return s.Ledger.Execute(ctx, desk, name, raw)
	}
	// The catalog goes in as a bulk import does: up to a whole atomic batch at a time.
	p := progress.NewBar(stderr, "cataloging items", int64(items))
	var cmds []json.RawMessage
	for i := range items {
		bc := fmt.Sprintf("3%07d", i+1)
		raw, err := json.Marshal(schemas.CatalogItem{CommandID: uuid.NewString(), ItemCataloged: schemas.ItemCataloged{
			Barcode: bc, Title: fmt.Sprintf("Book %d", i+1), Collection: demoCollections[i%len(demoCollections)],
			Branch: demoBranches[i%len(demoBranches)], ReplacementCents: int64(1500 + 100*(i%20)),
		}})
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, raw)
		lib.barcodes = append(lib.barcodes, bc)
		if len(cmds) == ledger.MaxCatalogItems || i == items-1 {
			if _, err := s.Ledger.CatalogItems(ctx, desk, cmds); err != nil {
				p.Stop()
				return nil, fmt.Errorf("catalog: %w", err)
			}
			p.Add(len(cmds))
			cmds = cmds[:0]
		}
	}
	p.Stop()
	p = progress.NewBar(stderr, "registering patrons", int64(patrons))
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
		if _, err := exec(schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: uuid.NewString(),
			HomeBranch: demoBranches[i%len(demoBranches)], Profile: prof, Card: card}); err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
		lib.cards = append(lib.cards, card)
		p.Add(1)
	}
	return lib, nil
}

// kiosk is one simulated self-check machine talking to Lethe over NATS request/reply.
func (lib *demoLibrary) kiosk(ctx context.Context, s *node.Service, kc *node.KioskClients, branch, id string, t *demoTotals) {
	send := func(cmd string, v any) (json.RawMessage, *schemas.Error) {
		raw, _ := json.Marshal(v)
		m, err := kc.Request(ctx, branch, id, cmd, raw)
		if err != nil {
			return nil, schemas.Errorf(schemas.CodeUnavailable, "%v", err)
		}
		var r schemas.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			t.refused.Add(1)
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
			bc := lib.barcodes[rand.IntN(len(lib.barcodes))]
			card := lib.cards[rand.IntN(len(lib.cards))]
			if _, e := send(schemas.CmdCheckOut, schemas.CheckOut{CommandID: uuid.NewString(), Card: card, Barcode: bc}); e == nil {
				t.checkouts.Add(1)
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
				t.returns.Add(1)
				var rr schemas.ReturnResult
				if json.Unmarshal(res, &rr) == nil && rr.FineCents > 0 {
					t.fines.Add(1)
				}
			}
		case roll < 95:
			if bc, card, ok := lib.pickOut(); ok {
				if _, e := send(schemas.CmdRenew, schemas.Renew{CommandID: uuid.NewString(), Card: card, Barcode: bc}); e == nil {
					t.renewals.Add(1)
				}
			}
		default:
			// A patron at the desk pays what they owe, sometimes in part.
			card := lib.cards[rand.IntN(len(lib.cards))]
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
					t.payments.Add(1)
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
func (lib *demoLibrary) pickOut() (barcode, card string, ok bool) {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	for bc, c := range lib.out { // map order is random enough
		return bc, c, true
	}
	return "", "", false
}

// summaries prints a live summary every second until ctx ends: on a terminal one line
// redrawn in place, otherwise a line every five seconds.
func (lib *demoLibrary) summaries(ctx context.Context, s *node.Service, t *demoTotals, w io.Writer) {
	tty := progress.IsTerminal(w)
	every := time.Second
	if !tty {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return
		case <-tick.C:
		}
		c, err := s.Proj.Counts()
		if err != nil {
			continue
		}
		st := s.Expunger.Stats()
		line := fmt.Sprintf("open loans %d · open transactions %d · checked out %d · returned %d · closed+expunged %d · expunge lag p99 %s",
			c.OnLoan, c.OpenTxns, t.checkouts.Load(), t.returns.Load(), st.Expunged, st.ExpungeLagP99.Round(time.Microsecond))
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

// demoUser is the demo's administrator.
const demoUser = "demo"

// demoAccount gives the demo an administrator with a fresh random password, so a newcomer
// can sign in to the dashboard and try the staff API. Only the demo does this: a real
// server has no account until 'lethe staff add' makes one.
func demoAccount(data string) (string, error) {
	b := make([]byte, 12)
	if _, err := crand.Read(b); err != nil {
		return "", err
	}
	password := base64.RawURLEncoding.EncodeToString(b)
	st, err := staff.Open(filepath.Join(data, "staff"), nil)
	if err != nil {
		return "", err
	}
	err = st.Add(demoUser, policy.Administrator, password)
	if errors.Is(err, staff.ErrExists) {
		err = st.SetPassword(demoUser, password)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return password, err
}

// demoKiosk makes kiosk main/visitor in the demo's data directory and writes its
// credentials file there.
func demoKiosk(s *node.Service, data, url string) (string, error) {
	id, seed, err := identity.Open(data).Add(identity.Kiosk, "main", "visitor", time.Now())
	if err != nil {
		return "", err
	}
	path := filepath.Join(data, "visitor.nk")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	err = identity.WriteCredentials(f, id, seed, url)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return path, s.ReloadIdentities()
}
