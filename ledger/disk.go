package ledger

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/imagineif/lethe/schemas"
)

// DefaultMinFreeDisk is the free space below which the ledger refuses new work when
// Config.FreeDisk is set and Config.MinFreeDisk is not: 256 MiB. It is the room the
// expunger, the erasure sweep (which writes new tables before it deletes the old ones)
// and JetStream's own bookkeeping need to go on after new work stops.
const DefaultMinFreeDisk = 256 << 20

// diskLowError refuses new work while the disk holding the data directory has less than
// the minimum free. It unwraps to an unavailable *schemas.Error, which is what leaves the
// process: the numbers are about the server's disk, never about a patron.
type diskLowError struct{ free, min uint64 }

func (e *diskLowError) Error() string { return e.public().Error() }

// Unwrap makes the refusal an unavailable error for every transport.
func (e *diskLowError) Unwrap() error { return e.public() }

func (e *diskLowError) public() *schemas.Error {
	return schemas.Errorf(schemas.CodeUnavailable, "the disk holding the data directory has %d MiB free; writes resume above %d MiB",
		e.free>>20, e.min>>20)
}

// errDiskUnknown refuses new work while the free space cannot be read: the guard cannot
// tell a full disk from a healthy one.
var errDiskUnknown = schemas.Errorf(schemas.CodeUnavailable, "the free space of the disk holding the data directory cannot be read; writes resume when it can")

// isDiskRefusal reports whether err is the disk guard's refusal, which the guard has
// logged already.
func isDiskRefusal(err error) bool {
	var low *diskLowError
	return errors.As(err, &low) || errors.Is(err, errDiskUnknown)
}

// diskGuard refuses new work before the disk is full. Pebble cannot commit on a full
// disk (it stops the process: "pebble: fatal commit error: … no space left on device"),
// and JetStream, once a write to the stream fails, keeps failing every later write
// until it restarts, answering none of them. So the ledger stops taking work while a
// reserve is left, for the expunger and the sweep, which free space and keep the
// privacy promise, and takes work again by itself once the disk has room.
//
// It logs when the state changes, not per refused request: one line when the disk
// falls below the minimum (or its free space cannot be read), one when it is back.
type diskGuard struct {
	free   func() (uint64, error) // nil: no check
	min    uint64
	logger *slog.Logger

	mu    sync.Mutex
	state diskState
}

type diskState int

const (
	diskOK diskState = iota
	diskLow
	diskUnknown
)

// check returns nil when there is room for new work, and otherwise the refusal.
func (g *diskGuard) check() error {
	if g == nil || g.free == nil {
		return nil
	}
	free, err := g.free()
	switch {
	case err != nil:
		if g.enter(diskUnknown) {
			g.logger.Error("cannot read the free space of the disk holding the data directory; refusing new work until it can", "err", err)
		}
		return errDiskUnknown
	case free < g.min:
		if g.enter(diskLow) {
			g.logger.Error("the disk holding the data directory is nearly full; refusing new work until space is freed (the expunger and the erasure sweep go on)",
				"free_mib", free>>20, "min_free_mib", g.min>>20)
		}
		return &diskLowError{free: free, min: g.min}
	}
	if g.enter(diskOK) {
		g.logger.Info("the disk holding the data directory has room again; taking new work", "free_mib", free>>20, "min_free_mib", g.min>>20)
	}
	return nil
}

// enter moves to state s and reports whether that is a change.
func (g *diskGuard) enter(s diskState) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == s {
		return false
	}
	g.state = s
	return true
}

// low returns the guard's refusal if the disk is below the minimum now, without
// logging a change: it explains a failed append, it does not admit work.
func (g *diskGuard) low() error {
	if g == nil || g.free == nil {
		return nil
	}
	free, err := g.free()
	if err != nil || free >= g.min {
		return nil
	}
	return &diskLowError{free: free, min: g.min}
}
