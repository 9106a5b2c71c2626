package ledger

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/phc"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

// Patron PINs.
//
// A PIN is what a self-check asks for with the card (SIP2's patron password). Lethe keeps
// only its argon2id hash (package phc), sealed under the patron's profile key
// (patron.pin_set), so a PIN goes with the profile when the account closes, and the
// projections hold it sealed like the profile. A PIN is never logged, never in an error,
// an event, a subject or a metric.
//
// Checking one costs an argon2id derivation (19 MiB, tens of milliseconds): at most
// pinHashers run at once, and a card with pinMaxMisses wrong PINs within pinMissWindow
// is refused, whatever the PIN, until the window has passed since its last miss.

const (
	pinMaxMisses  = 5
	pinMissWindow = 15 * time.Minute
	pinMaxCards   = 10_000 // cards whose misses are remembered; the oldest go first
)

// PINCheck is what CheckPIN found.
type PINCheck int

const (
	// PINNone: the patron has no PIN.
	PINNone PINCheck = iota
	// PINMatch: the PIN is the patron's.
	PINMatch
	// PINMismatch: it is not.
	PINMismatch
)

// errPINLocked refuses a card after too many wrong PINs.
var errPINLocked = schemas.Errorf(schemas.CodeRateLimited, "too many wrong PINs for this card; try again later or ask at the desk")

// pins bounds PIN hashing and remembers misses per card (by its keyed hash).
type pins struct {
	hashers chan struct{}
	mu      sync.Mutex
	misses  map[string][]time.Time // card hash -> recent misses
	order   []string               // card hashes in the order they first missed
}

func newPins() *pins {
	return &pins{hashers: make(chan struct{}, max(1, min(runtime.GOMAXPROCS(0), 4))), misses: map[string][]time.Time{}}
}

// hash runs f within the bound on concurrent hashing.
func (p *pins) hash(ctx context.Context, f func()) error {
	select {
	case p.hashers <- struct{}{}:
	case <-ctx.Done():
		return schemas.Errorf(schemas.CodeUnavailable, "busy checking PINs; retry shortly")
	}
	defer func() { <-p.hashers }()
	f()
	return nil
}

// locked reports whether card hash h has missed too often lately.
func (p *pins) locked(h string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	recent := p.recentLocked(h, now)
	return len(recent) >= pinMaxMisses
}

func (p *pins) recentLocked(h string, now time.Time) []time.Time {
	ms := p.misses[h]
	i := 0
	for i < len(ms) && now.Sub(ms[i]) >= pinMissWindow {
		i++
	}
	return ms[i:]
}

func (p *pins) miss(h string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.misses[h]; !ok {
		p.order = append(p.order, h)
		for len(p.order) > pinMaxCards {
			delete(p.misses, p.order[0])
			p.order = p.order[1:]
		}
	}
	p.misses[h] = append(p.recentLocked(h, now), now)
}

// hashPIN hashes a PIN that the command's schema has checked.
func (l *Ledger) hashPIN(ctx context.Context, pin string) (string, error) {
	var h string
	var err error
	if berr := l.pins.hash(ctx, func() { h, err = phc.New(pin) }); berr != nil {
		return "", berr
	}
	if err != nil {
		return "", err
	}
	return h, nil
}

// CheckPIN checks pin against the PIN of the card's holder. The card must open an
// account, as for any kiosk command (unknown, lost, closed: the same coded errors). A card
// with too many recent misses is refused with rate_limited before anything is hashed.
func (l *Ledger) CheckPIN(ctx context.Context, card, pin string) (PINCheck, error) {
	now := l.cfg.Now()
	cardHash := l.keys.CardHash(card)
	if l.pins.locked(cardHash, now) {
		return PINMismatch, errPINLocked
	}
	var patronID string
	var sealed *schemas.Sealed
	err := l.withView(func(v view) error {
		p, err := v.cardPatron(card)
		if err != nil {
			return err
		}
		patronID, sealed = p.ID, p.PIN
		return nil
	})
	if err != nil {
		return PINMismatch, err
	}
	if sealed == nil {
		return PINNone, nil
	}
	stored, err := seal.OpenPIN(l.keys, patronID, *sealed)
	if errors.Is(err, keystore.ErrNotFound) {
		return PINMismatch, errAccountClosed // closed since the view: its PIN is gone
	}
	if err != nil {
		return PINMismatch, err
	}
	h, err := phc.Parse(stored)
	if err != nil {
		return PINMismatch, err
	}
	ok := false
	if err := l.pins.hash(ctx, func() { ok = h.Matches(pin) }); err != nil {
		return PINMismatch, err
	}
	if !ok {
		l.pins.miss(cardHash, now)
		return PINMismatch, nil
	}
	return PINMatch, nil
}

// setPIN seals the PIN's hash under the patron's profile key.
func (l *Ledger) setPIN(at Station, c schemas.SetPIN, hash string) decider {
	return func(l view) (plan, error) {
		p, err := l.openPatron(c.PatronID)
		if err != nil {
			return plan{}, err
		}
		key, err := l.keys.Get(keystore.Profile, p.ID)
		if err != nil {
			return plan{}, err
		}
		sealed, err := seal.PIN(key, p.ID, hash)
		clear(key)
		if err != nil {
			return plan{}, err
		}
		return l.oneEvent(at, schemas.TypePatronPINSet, PatronSubject(p.ID), schemas.PatronPINSet{PatronID: p.ID, PIN: sealed})
	}
}

// sameSetPIN: the patron, and the PIN while the profile key exists.
func sameSetPIN(l *Ledger, c schemas.SetPIN, evs []appended) error {
	d, err := dataOf[schemas.PatronPINSet](evs[0])
	if err != nil {
		return err
	}
	if d.PatronID != c.PatronID {
		return errReused
	}
	stored, err := seal.OpenPIN(l.keys, d.PatronID, d.PIN)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil // the account closed since: the PIN cannot be checked
	}
	if err != nil {
		return err
	}
	h, err := phc.Parse(stored)
	if err != nil {
		return err
	}
	if !h.Matches(c.PIN) {
		return errReused
	}
	return nil
}
