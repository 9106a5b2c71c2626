package keystore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPoolSize is how many transaction keys a Pool keeps ready unless told otherwise.
// A refill is one synced batch however many keys it writes. With 64 kiosks as fast as
// answered, pools of 16 and 32 ran empty between refills (each miss is a sync back in a
// checkout's path), 128 never did, and 512 was no faster; 128 keys take about 13 KiB of
// the store (README, Benchmarks, "Transaction keys ahead of need").
const DefaultPoolSize = 128

// PoolConfig configures a Pool. The zero value of each field means the default in its
// comment.
type PoolConfig struct {
	// Size is how many keys the pool holds ready after a refill; default DefaultPoolSize.
	Size int
	// Low is the low-water mark: a take that leaves fewer than Low keys ready starts a
	// refill up to Size. Default Size/2 (at least 1).
	Low int
	// NewID returns a fresh transaction id for each key: it must be unpredictable (it is
	// the id the transaction is known by on the stream). Default: a random (version 4)
	// UUID from crypto/rand, in its text form.
	NewID func() string
	// RetryAfter is how long a failed refill waits before it tries again; default 1s.
	// Meanwhile takes find the pool empty and their callers create their own keys.
	RetryAfter time.Duration
	// Logger gets refill failures (never an id or a key); default: discard.
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work.
func (c PoolConfig) Validate() error {
	size := c.Size
	if size == 0 {
		size = DefaultPoolSize
	}
	switch {
	case c.Size < 0:
		return errors.New("key pool size must not be negative")
	case c.Low < 0 || c.Low > size:
		return fmt.Errorf("key pool low-water mark must be between 0 and the size (%d)", size)
	case c.RetryAfter < 0:
		return errors.New("key pool retry interval must not be negative")
	}
	return nil
}

func (c PoolConfig) withDefaults() PoolConfig {
	if c.Size == 0 {
		c.Size = DefaultPoolSize
	}
	if c.Low == 0 {
		c.Low = max(c.Size/2, 1)
	}
	if c.NewID == nil {
		c.NewID = randomUUID
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// randomUUID is a version 4 UUID: 122 random bits, nothing about the time it was made.
func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Pool keeps transaction keys ready before they are needed, so that a checkout's key
// costs it no sync of its own. Each key is created under a fresh id (NewID), wrapped
// under the master key and on disk before the pool hands it out, exactly as Create
// would leave it; a refill writes every key it makes in one synced batch. Take hands out
// each (id, key) once, and the key is from then on an ordinary transaction key.
//
// A pooled key is random and linked to nothing until it is taken: no event is sealed
// under it, no id of it is anywhere but in the process's memory (the store keeps the
// id's hash, as for every key). So holding keys ready discloses nothing (a copy of the
// store with its master key opens the loans later made with the keys it found ready, at
// most Size, as a copy taken those checkouts later would), and losing them loses nothing: when Run ends it destroys the keys still ready, in one synced batch;
// after a crash they are keys no open transaction uses, which the next start's
// reconciliation destroys (List lists them then, as no pool holds them). While a pool
// runs, List, Export and Stats leave its ready keys out, so neither a reconciliation nor
// a backup takes them for orphans or for keys in use.
//
// Only Run writes: one refill at a time, of at most Size keys. Take never waits for it.
type Pool struct {
	s       *Store
	cfg     PoolConfig
	wake    chan struct{} // a take left the pool below the low-water mark
	started atomic.Bool

	mu     sync.Mutex
	ready  []pooledKey      // on disk, oldest first
	held   map[Ref]struct{} // ready and being created: not in use, not an orphan
	closed bool             // Run ended: Take hands out nothing more
	taken  int64
	missed int64
	fills  int64
}

type pooledKey struct {
	id  string
	ref Ref
	key []byte
}

// PoolStats are a pool's counters, for metrics and benchmarks.
type PoolStats struct {
	Ready  int   // keys ready to take
	Taken  int64 // keys handed out
	Missed int64 // takes that found the pool empty, whose caller created its own key
	Fills  int64 // refills that wrote keys: one sync each
}

// NewPool returns a pool of transaction keys of s. It holds nothing until Run runs.
func (s *Store) NewPool(cfg PoolConfig) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Pool{s: s, cfg: cfg.withDefaults(), wake: make(chan struct{}, 1), held: map[Ref]struct{}{}}, nil
}

// Take hands out a ready transaction key and its id, each once. It never waits: with no
// key ready (before Run fills the pool, while a refill is slow or failing, after Run
// ended) it reports false, and the caller creates a key of its own (Create).
func (p *Pool) Take() (id string, key []byte, ok bool) {
	p.mu.Lock()
	if p.closed || len(p.ready) == 0 {
		p.missed++
		p.mu.Unlock()
		p.signal()
		return "", nil, false
	}
	k := p.ready[0]
	p.ready[0] = pooledKey{}
	p.ready = p.ready[1:]
	delete(p.held, k.ref)
	p.taken++
	low := len(p.ready) < p.cfg.Low
	p.mu.Unlock()
	if low {
		p.signal()
	}
	return k.id, k.key, true
}

func (p *Pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default: // a refill is due already
	}
}

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Ready: len(p.ready), Taken: p.taken, Missed: p.missed, Fills: p.fills}
}

// holds reports whether the key of ref is the pool's: ready, or being created. A nil
// pool holds nothing.
func (p *Pool) holds(r Ref) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.held[r]
	return ok
}

// Run fills the pool, refills it whenever a take leaves it below the low-water mark, and
// when ctx ends destroys the keys still ready, in one synced batch, and returns nil. It
// returns an error only if it cannot run: called twice, or beside another pool. A failed
// refill is logged and tried again after RetryAfter; meanwhile takes miss. Run runs once,
// and on one pool of a store at a time; start it only after the start's reconciliation
// (which must destroy the keys of a pool that a crash ended, not those of this one) and
// end it before the store closes.
func (p *Pool) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("key pool: Run called twice")
	}
	if !p.s.pool.CompareAndSwap(nil, p) {
		return errors.New("key pool: another pool runs on this store")
	}
	defer p.s.pool.CompareAndSwap(p, nil)
	for {
		if err := p.fill(); errors.Is(err, ErrClosed) {
			p.close()
			return nil
		} else if err != nil {
			p.cfg.Logger.Error("key pool refill failed; checkouts create their own keys until one succeeds", "err", err)
			t := time.NewTimer(p.cfg.RetryAfter)
			select {
			case <-ctx.Done():
				t.Stop()
				p.close()
				return nil
			case <-t.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			p.close()
			return nil
		case <-p.wake:
		}
	}
}

// fill tops the pool up to Size in one synced batch. The refs are the pool's (held)
// before the batch commits, so no List or Export can see the keys without knowing them
// for the pool's.
func (p *Pool) fill() error {
	p.mu.Lock()
	n := p.cfg.Size - len(p.ready)
	if p.closed || n <= 0 {
		p.mu.Unlock()
		return nil
	}
	batch := make([]pooledKey, n)
	refs := make([]Ref, n)
	for i := range batch {
		id := p.cfg.NewID()
		batch[i] = pooledKey{id: id, ref: RefOf(Transaction, id)}
		refs[i] = batch[i].ref
		p.held[refs[i]] = struct{}{}
	}
	p.mu.Unlock()
	keys, err := p.create(refs)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		for _, r := range refs {
			delete(p.held, r)
		}
		return fmt.Errorf("create %d transaction keys: %w", n, err)
	}
	for i := range batch {
		batch[i].key = keys[i]
	}
	p.ready = append(p.ready, batch...)
	p.s.transactions.Add(int64(n)) // with ready, under mu: Stats sees both or neither
	p.fills++
	return nil
}

func (p *Pool) create(refs []Ref) ([][]byte, error) {
	if err := p.s.rlock(); err != nil {
		return nil, err
	}
	defer p.s.mu.RUnlock()
	return p.s.createRefs(refs)
}

// close ends the pool: Take hands out nothing more, and the keys still ready are
// destroyed in one synced batch. Should that fail, it says so in the log and leaves them
// to the next start's reconciliation, as after a crash: they are linked to nothing.
func (p *Pool) close() {
	p.mu.Lock()
	p.closed = true
	refs := make([]Ref, len(p.ready))
	for i, k := range p.ready {
		refs[i] = k.ref
	}
	p.mu.Unlock()
	var err error
	gone := map[Kind]int{}
	if len(refs) > 0 {
		if err = p.s.rlock(); err == nil {
			gone, err = p.s.deleteRefs(refs)
			p.s.mu.RUnlock()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.s.transactions.Add(-int64(gone[Transaction]))
	for i := range p.ready {
		clear(p.ready[i].key)
	}
	p.ready = nil
	clear(p.held)
	if err != nil {
		p.cfg.Logger.Error("destroy the key pool's unused keys; the next start destroys them", "count", len(refs), "err", err)
	}
}
