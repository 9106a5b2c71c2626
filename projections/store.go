package projections

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
)

// Config configures a Store. The zero value of each field means the default in its
// comment.
type Config struct {
	Location *time.Location // the library's time zone, for daily statistics; default time.Local
	Logger   *slog.Logger   // default: discard (a default logger is a leak waiting to happen)
	// Day is the length of a library day in daily statistics, when it is not 24 hours:
	// lethe demo runs a library day in a second, and its statistics count those days, as
	// the calendar days from DayEpoch's date on. Zero or 24h: calendar days in Location.
	Day      time.Duration
	DayEpoch time.Time

	// fs is the file system under the database; nil: the disk. The crash tests put the
	// projections on Pebble's crashable in-memory file system. It replaces the keystore's
	// wrapper that never reuses a file; with its cleaner Pebble never recycles a WAL, and
	// the erasure the wrapper backs up (Sweep) works on the disk only.
	fs vfs.FS
}

// Store holds the read models. It implements model.State.
type Store struct {
	rows   // the live rows; View gives a snapshot
	db     *pebble.DB
	keys   *keystore.Store
	v      *schemas.Validator
	loc    *time.Location
	day    time.Duration // a compressed library day; 0: calendar days
	epoch  time.Time     // when the first compressed day begins
	logger *slog.Logger

	// viewMu: views (decisions) read under RLock; a batch commits under Lock.
	viewMu sync.RWMutex

	mu      sync.Mutex
	applied uint64
	advance chan struct{} // closed and replaced whenever applied moves or the projector stops
	stop    *Stop         // the projector is stopped at this event; nil while it applies
	stops   int64         // how often the projector stopped, for the metric
	damage  string        // what a start found wrong with the stream; "" when nothing
	resume  chan struct{} // an administrator's skip was recorded: look again now

	work chan struct{} // signalled when a transaction closes or a patron account closes

	erasure pendingErasure // what the next Sweep must make physical
	sweepMu sync.Mutex     // serialises sweeps

	// signed, on a store a rebuild fills, is the checkpoint it checks the stream against
	// as it reads, and up to where it decodes without the schemas (rebuild.go).
	signed *signedCheck
}

var _ model.State = (*Store)(nil)

// blockCacheBytes is the projections' Pebble block cache. Pebble's default, 8 MB, is
// outgrown by a catalog of some tens of thousands of items: every lookup of a row that
// does not exist (a new item, a new command id; the projections have no bloom filters)
// then reads blocks from the files, and a bulk import of 100,000 items ran at about 60%
// of its speed with 64 MiB.
const blockCacheBytes = 64 << 20

// Open opens (or creates) the projections in dir with the keystore's erasure-safe Pebble
// options. keys opens patron references of open transactions as events are applied.
func Open(dir string, keys *keystore.Store, v *schemas.Validator, cfg Config) (*Store, error) {
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opts := keystore.PebbleOptions(cfg.Logger)
	opts.CacheSize = blockCacheBytes
	if cfg.fs != nil {
		opts.FS = cfg.fs
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open projections: %w", keystore.Damaged(err))
	}
	var day time.Duration
	if cfg.Day > 0 && cfg.Day != 24*time.Hour {
		day = cfg.Day
	}
	s := &Store{rows: rows{db}, db: db, keys: keys, v: v, loc: cfg.Location, logger: cfg.Logger, epoch: cfg.DayEpoch, day: day,
		advance: make(chan struct{}), work: make(chan struct{}, 1), resume: make(chan struct{}, 1)}
	v2, closer, err := db.Get([]byte(pApplied))
	switch {
	case err == nil:
		s.applied = binary.BigEndian.Uint64(v2)
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		db.Close()
		return nil, fmt.Errorf("open projections: read applied sequence: %w", keystore.Damaged(err))
	}
	if err := s.indexNames(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open projections: name index: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB is the Pebble database, for reading it. A write through it escapes Sweep, which
// erases only what the Store itself deleted or overwrote.
func (s *Store) DB() *pebble.DB { return s.db }

// Applied is the last stream sequence applied.
func (s *Store) Applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// Work is signalled when something closed that the expunger must finish.
func (s *Store) Work() <-chan struct{} { return s.work }

// WaitApplied blocks until the projections reflect the stream up to seq. While the
// projector is stopped at or before seq it fails at once with Stopped's error.
func (s *Store) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		applied, ch, stop := s.applied, s.advance, s.stop
		s.mu.Unlock()
		if applied >= seq {
			return nil
		}
		if stop != nil {
			return stop.unavailable()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stopped returns nil while the projector applies the stream, and otherwise an
// unavailable error naming the sequence it stopped at: the ledger refuses writes with it,
// since a decision against projections that stopped would be against a stale state.
func (s *Store) Stopped() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil {
		return nil
	}
	return s.stop.unavailable()
}

// StoppedAt implements model.State: the sequence of an event the projector cannot apply
// and waits at, or 0.
func (s *Store) StoppedAt() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil || !s.stop.Poison {
		return 0
	}
	return s.stop.Seq
}

// ProjectorHealth is the projector's state for /healthz and the metrics.
type ProjectorHealth struct {
	Applied uint64 `json:"applied"`
	Stop    *Stop  `json:"stopped,omitempty"` // where and why the projector stopped
	Stops   int64  `json:"-"`                 // how often it stopped since the start
	Damage  string `json:"damage,omitempty"`  // what the start found wrong with the stream
}

// Health reports the projector's state.
func (s *Store) Health() ProjectorHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := ProjectorHealth{Applied: s.applied, Stops: s.stops, Damage: s.damage}
	if s.stop != nil {
		st := *s.stop
		h.Stop = &st
	}
	return h
}

// ReportDamage records what a start found wrong with the stream (events lost from a
// damaged file): /healthz shows it until the next start.
func (s *Store) ReportDamage(problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.damage = problem
}

// Resume asks a stopped projector to look for an administrator's skip record now
// instead of at its next poll.
func (s *Store) Resume() {
	select {
	case s.resume <- struct{}{}:
	default:
	}
}

// setApplied moves the applied sequence; the projector is then not stopped.
func (s *Store) setApplied(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = seq
	s.stop = nil
	close(s.advance)
	s.advance = make(chan struct{})
}

// setStopped records that the projector stopped, and releases every waiter.
func (s *Store) setStopped(stop Stop) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil || *s.stop != stop {
		s.stops++
	}
	s.stop = &stop
	close(s.advance)
	s.advance = make(chan struct{})
}

func getJSON(r pebble.Reader, key []byte, v any) error {
	val, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return model.ErrNotFound
	} else if err != nil {
		return err
	}
	defer closer.Close()
	return json.Unmarshal(val, v)
}

func getOr[T any](r pebble.Reader, key []byte) (T, error) {
	var v T
	err := getJSON(r, key, &v)
	return v, err
}

// rows reads rows from the live database or from a snapshot of it.
type rows struct{ r pebble.Reader }

// Item implements model.Reader.
func (s rows) Item(barcode string) (model.Item, error) {
	return getOr[model.Item](s.r, itemKey(barcode))
}

// Card implements model.Reader.
func (s rows) Card(hash string) (model.Card, error) {
	return getOr[model.Card](s.r, cardKey(hash))
}

// Patron implements model.Reader.
func (s rows) Patron(id string) (model.Patron, error) {
	return getOr[model.Patron](s.r, patronKey(id))
}

// Txn implements model.Reader.
func (s rows) Txn(id string) (model.Txn, error) {
	return getOr[model.Txn](s.r, txnKey(id))
}

// FineTxn implements model.Reader.
func (s rows) FineTxn(fineID string) (string, error) {
	return getOr[string](s.r, fineKey(fineID))
}

// SubjectSeq implements model.Reader.
func (s rows) SubjectSeq(subject string) (uint64, error) {
	val, closer, err := s.r.Get(subjectKey(subject))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	defer closer.Close()
	return binary.BigEndian.Uint64(val), nil
}

// PatronsByName implements model.Reader.
func (s rows) PatronsByName(nameHash string) ([]string, error) {
	prefix := []byte(pName + nameHash)
	it, err := s.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var ids []string
	for ok := it.First(); ok; ok = it.Next() {
		ids = append(ids, string(it.Value()))
	}
	return ids, it.Error()
}

// EachTxn implements model.Reader.
func (s rows) EachTxn(fn func(model.Txn) error) error {
	it, err := s.r.NewIter(&pebble.IterOptions{LowerBound: []byte(pTxn), UpperBound: prefixEnd([]byte(pTxn))})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		var t model.Txn
		if err := json.Unmarshal(it.Value(), &t); err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	return it.Error()
}

func getString(r pebble.Reader, key []byte) (string, error) {
	val, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return "", model.ErrNotFound
	} else if err != nil {
		return "", err
	}
	defer closer.Close()
	return string(val), nil
}

// CommandSeqs implements model.Reader.
func (s rows) CommandSeqs(commandID string) ([]uint64, error) {
	row, err := getOr[commandRow](s.r, commandKey(commandID))
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil
	}
	return row.Seqs, err
}

// View implements model.State. No batch is committed while a view is open, so the rows
// it reads, and the subject sequences, are all as of one position in the stream. It is not
// a Pebble snapshot: a snapshot pins deleted rows, and with decisions running all the
// time the erasure sweep would never find a moment without one. A view lasts as long as
// one decision, so the projector waits at most that long.
func (s *Store) View() (model.Reader, func()) {
	s.viewMu.RLock()
	return s.rows, s.viewMu.RUnlock
}

// Overdue implements model.State.
func (s *Store) Overdue(before time.Time, limit int) ([]model.Overdue, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(pOverdue), UpperBound: overdueKey(before, "")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []model.Overdue
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()[len(pOverdue):]
		due := time.Unix(int64(binary.BigEndian.Uint64(k[:8])), 0).UTC()
		out = append(out, model.Overdue{Barcode: string(k[8:]), TxnID: string(it.Value()), Due: due})
	}
	return out, it.Error()
}

// Day is the library day of t in daily statistics, YYYY-MM-DD: the calendar day in the
// library's zone, or with compressed days (Config.Day) the date that many days after the
// epoch's.
func (s *Store) Day(t time.Time) string {
	if s.day == 0 {
		return t.In(s.loc).Format(time.DateOnly)
	}
	n := t.Sub(s.epoch) / s.day
	if t.Before(s.epoch) {
		n--
	}
	return s.epoch.In(s.loc).AddDate(0, 0, int(n)).Format(time.DateOnly)
}
