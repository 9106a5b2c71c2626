package projections

import (
	"context"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/keystore"
)

// maxPendingErasures bounds the keys kept for the next sweep. Past it the next sweep
// erases the whole key space, which then costs no more than compacting around that many
// keys, and memory stays bounded while sweeps fail.
const maxPendingErasures = 1 << 20

// pendingErasure is what the next erasure sweep must make physical: the keys of rows
// deleted or overwritten since the last successful sweep. Every write of the projections
// that deletes or overwrites a row goes through commit, which records the keys under
// the same lock as the commit, so a sweep takes a write's keys together with the write,
// or neither.
type pendingErasure struct {
	mu sync.Mutex
	// known: keys is all that is pending. Until the first sweep after Open takes it,
	// everything is pending (what was written before a crash or a stop was never
	// recorded), and so it is again after too many keys.
	known bool
	keys  map[string]struct{}
}

// commit commits b and records keys, the rows b deletes or overwrites.
func (p *pendingErasure) commit(b *pebble.Batch, opts *pebble.WriteOptions, keys [][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := b.Commit(opts); err != nil {
		return err
	}
	p.addLocked(keys)
	return nil
}

func (p *pendingErasure) addLocked(keys [][]byte) {
	if !p.known || len(keys) == 0 {
		return
	}
	if p.keys == nil {
		p.keys = make(map[string]struct{}, len(keys))
	}
	for _, k := range keys {
		p.keys[string(k)] = struct{}{}
	}
	if len(p.keys) > maxPendingErasures {
		p.known, p.keys = false, nil
	}
}

// take hands what is pending to a sweep, all of it or keys, and starts recording afresh.
func (p *pendingErasure) take() (all bool, keys [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	all = !p.known
	for k := range p.keys {
		keys = append(keys, []byte(k))
	}
	p.known, p.keys = true, nil
	return all, keys
}

// restore gives back what a failed sweep took.
func (p *pendingErasure) restore(all bool, keys [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if all {
		p.known, p.keys = false, nil
		return
	}
	p.addLocked(keys)
}

// Sweep makes every deletion and overwrite of a row so far physical: after it, no file of
// the projections holds a deleted row's value, tombstone or table bound, or an overwritten
// row's old value. It compacts only around the rows deleted or overwritten since the last
// successful sweep (keystore.EraseKeys), and does nothing when there are none; the first
// sweep after Open compacts the whole key space (keystore.Erase), because what was written
// before it was not recorded. A failed sweep leaves its work to the next one.
func (s *Store) Sweep(ctx context.Context) error {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	all, keys := s.erasure.take()
	var err error
	if all {
		err = keystore.Erase(ctx, s.db)
	} else {
		err = keystore.EraseKeys(ctx, s.db, keys)
	}
	if err != nil {
		s.erasure.restore(all, keys)
		return fmt.Errorf("sweep projections: %w", err)
	}
	return nil
}
