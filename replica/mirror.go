package replica

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// local is what a mirror needs of one kind of data: its local copy (the registry, the
// staff store) and its rules.
type local[T any] interface {
	// key is the bucket key of an item.
	key(T) string
	// decode reads and checks a bucket value under key; its errors hold no value.
	decode(key string, raw []byte) (T, error)
	// merge is what two copies of one item come to (commutative, associative,
	// idempotent).
	merge(a, b T) (T, error)
	// list returns every local item.
	list() ([]T, error)
	// apply merges items into the local copy.
	apply([]T) error
	// version changes whenever the local copy changes.
	version() (string, error)
}

// held is a bucket entry's value and revision, as last read or written.
type held[T any] struct {
	v   T
	rev uint64
}

// mirror keeps one local copy and one bucket in step. Everything but mu and refuse
// belongs to the goroutine that runs it (first, then run).
type mirror[T any] struct {
	bucket string
	local  local[T]
	logger *slog.Logger
	poll   time.Duration

	mu     sync.Mutex
	refuse []error // what problems reports

	life      context.Context // ends when the replica closes, and with it every watcher
	kv        jetstream.KeyValue
	w         jetstream.KeyWatcher // nil after it ended, until the next poll watches again
	wcancel   context.CancelFunc   // ends w's subscription
	lastRev   uint64               // the highest revision the watcher delivered
	behind    int                  // polls in a row at which the watcher was behind the bucket
	known     map[string]held[T]   // the bucket's entries that were accepted
	damaged   map[string]error     // the bucket's entries that were refused, by key
	conflicts map[string]error     // entries that claim another item than the local copy's
	failed    error                // the last reconciliation's failure
	seen      string               // the local version the last reconciliation started from
}

func newMirror[T any](life context.Context, cfg Config, bucket string, l local[T]) *mirror[T] {
	return &mirror[T]{bucket: bucket, local: l, logger: cfg.Logger.With(slog.String("bucket", bucket)), poll: cfg.Poll,
		life: life, known: map[string]held[T]{}, damaged: map[string]error{}, conflicts: map[string]error{}}
}

// errBehind: this node has not yet seen what another node wrote to an entry. Its view of
// the bucket catches up (the watcher delivers it, or is replaced), and the write is tried
// again.
var errBehind = errors.New("another node wrote the entry, and this node has not seen it yet")

// first opens the bucket, reads every entry, and makes the first reconciliation,
// trying again while this node's view of the bucket is behind, until ctx ends.
func (m *mirror[T]) first(ctx context.Context, js jetstream.JetStream, replicas int) error {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	kv, err := js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: m.bucket, Description: "Lethe: public data kept the same on every node (package replica)",
		History: 1, Replicas: replicas, Storage: jetstream.FileStorage, MaxValueSize: maxValue,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("replica: open bucket %s: %w", m.bucket, err)
	}
	m.kv = kv
	for {
		if err = m.watch(ctx); err == nil {
			if err = m.reconcile(ctx); err == nil {
				m.report()
				return nil
			}
		}
		if !errors.Is(err, errBehind) || ctx.Err() != nil {
			m.stopWatch()
			return fmt.Errorf("replica: first sync of %s: %w", m.bucket, err)
		}
		m.logger.Info("replica: this node's view of the bucket is behind; reading it again", slog.Any("err", err))
	}
}

// watch starts a watcher (stopping the one before), which delivers every entry of the
// bucket and then every change, in order, and reads the entries. The watcher's
// subscription lives as long as its context: until stopWatch or Close; while it is made
// and read, ctx and readTimeout end it too.
func (m *mirror[T]) watch(ctx context.Context) error {
	m.stopWatch()
	wctx, wcancel := context.WithCancel(m.life)
	stopOnCtx := context.AfterFunc(ctx, wcancel)
	defer stopOnCtx()
	timer := time.AfterFunc(readTimeout, wcancel)
	defer timer.Stop()
	w, err := m.kv.WatchAll(wctx)
	if err != nil {
		wcancel()
		return fmt.Errorf("replica: watch bucket %s: %w", m.bucket, err)
	}
	m.w, m.wcancel, m.lastRev, m.behind = w, wcancel, 0, 0
	for e := range w.Updates() {
		if e == nil {
			return nil // every entry there was has been read
		}
		m.take(e)
	}
	m.stopWatch()
	if ctx.Err() != nil {
		return fmt.Errorf("replica: read bucket %s: %w", m.bucket, ctx.Err())
	}
	return fmt.Errorf("replica: read bucket %s: the watch ended before every entry was read", m.bucket)
}

// run keeps the two in step until ctx ends: after every change the watcher delivers, and
// whenever the local version has changed at a poll. A failed reconciliation is tried
// again at each poll. A watcher that ends, or stays behind the bucket (its consumer was on
// a server that stopped, or on one that is catching up), is replaced.
func (m *mirror[T]) run(ctx context.Context) {
	tick := time.NewTicker(m.poll)
	defer tick.Stop()
	defer m.stopWatch()
	dirty := false
	for {
		var updates <-chan jetstream.KeyValueEntry
		if m.w != nil {
			updates = m.w.Updates()
		}
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			for ok {
				if e != nil {
					m.take(e)
				}
				// Take whatever else is waiting, then reconcile once.
				select {
				case e, ok = <-updates:
					continue
				default:
				}
				break
			}
			if !ok {
				if ctx.Err() == nil {
					m.logger.Warn("replica: bucket watch ended; watching again at the next poll")
				}
				m.stopWatch()
			}
			dirty = true
		case <-tick.C:
			if m.w == nil || m.watchBehind(ctx) {
				if err := m.watch(ctx); err != nil {
					m.fail(err)
					continue
				}
				dirty = true
			}
			if v, err := m.local.version(); err != nil || v != m.seen {
				dirty = true
			}
		}
		if dirty && ctx.Err() == nil {
			err := m.reconcile(ctx)
			dirty = err != nil
			m.fail(err)
		}
	}
}

// watchBehind reports whether the watcher has been behind the bucket (as its stream's
// leader knows it) at three polls in a row.
func (m *mirror[T]) watchBehind(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	st, err := m.kv.Status(cctx)
	if err != nil {
		return false // the cluster does not answer: a new watcher would not either
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo().State.LastSeq <= m.lastRev {
		m.behind = 0
		return false
	}
	m.behind++
	if m.behind < 3 {
		return false
	}
	m.logger.Warn("replica: bucket watch is behind the bucket; watching again",
		slog.Uint64("revision", m.lastRev), slog.Uint64("bucket_revision", bs.StreamInfo().State.LastSeq))
	return true
}

// stopWatch stops the watcher and empties its channel until it closes (bounded), so that
// its delivering goroutine, blocked on a full channel, can end.
func (m *mirror[T]) stopWatch() {
	w := m.w
	if w == nil {
		return
	}
	m.w = nil
	m.wcancel()
	_ = w.Stop()
	timeout := time.NewTimer(opTimeout)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-timeout.C:
			return
		}
	}
}

// take records a bucket entry the watcher delivered: accepted, refused, or older than
// what this mirror wrote since.
func (m *mirror[T]) take(e jetstream.KeyValueEntry) {
	k := e.Key()
	m.lastRev = max(m.lastRev, e.Revision())
	if h, ok := m.known[k]; ok && e.Revision() < h.rev {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		// Deleted by hand: this node's copy, if it has one, is written again.
		delete(m.known, k)
		delete(m.damaged, k)
		return
	}
	v, err := m.decode(k, e.Value())
	if err != nil {
		err = fmt.Errorf("replica: %s entry %s, revision %d, refused: %w", m.bucket, k, e.Revision(), err)
		if old, was := m.damaged[k]; !was || old.Error() != err.Error() {
			m.logger.Error("replica: bucket entry refused; it changes nothing here and is left as it is",
				slog.String("key", k), slog.Uint64("revision", e.Revision()), slog.Any("err", err))
		}
		m.damaged[k] = err
		delete(m.known, k)
		return
	}
	delete(m.damaged, k)
	m.known[k] = held[T]{v, e.Revision()}
}

func (m *mirror[T]) decode(k string, raw []byte) (T, error) {
	if len(raw) > maxValue {
		var zero T
		return zero, fmt.Errorf("%d bytes, over %d", len(raw), maxValue)
	}
	return m.local.decode(k, raw)
}

// reconcile merges every accepted bucket entry into the local copy and publishes every
// local item the bucket lacks or has older. A conflict is reported, not an error.
func (m *mirror[T]) reconcile(ctx context.Context) error {
	version, err := m.local.version()
	if err != nil {
		return err
	}
	items, err := m.local.list()
	if err != nil {
		return err
	}
	mine := make(map[string]bool, len(items))
	conflicts := map[string]error{}
	publish := map[string]T{}
	var toLocal []T
	for _, l := range items {
		k := m.local.key(l)
		mine[k] = true
		if _, bad := m.damaged[k]; bad {
			continue
		}
		h, ok := m.known[k]
		if !ok {
			publish[k] = l
			continue
		}
		merged, err := m.local.merge(l, h.v)
		if err != nil {
			conflicts[k] = fmt.Errorf("replica: %s entry %s, revision %d, refused: %w", m.bucket, k, h.rev, err)
			continue
		}
		if !same(merged, l) {
			toLocal = append(toLocal, merged)
		}
		if !same(merged, h.v) {
			publish[k] = merged
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.known)) {
		if !mine[k] {
			toLocal = append(toLocal, m.known[k].v)
		}
	}
	for k, err := range conflicts {
		if old, was := m.conflicts[k]; !was || old.Error() != err.Error() {
			m.logger.Error("replica: bucket entry conflicts with this node's copy; neither is changed",
				slog.String("key", k), slog.Any("err", err))
		}
	}
	m.conflicts = conflicts
	var errs []error
	if len(toLocal) > 0 {
		if err := m.local.apply(toLocal); err != nil {
			errs = append(errs, fmt.Errorf("replica: merge %s into the local copy: %w", m.bucket, err))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(publish)) {
		if err := m.publish(ctx, k, publish[k]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	m.seen = version
	return nil
}

// maxTries bounds the writes of one entry that other nodes keep overtaking.
const maxTries = 10

// publish writes v, merged with the bucket's entry, as the entry of k, with the revision
// last seen: if another node wrote first, it waits for the watcher to deliver what that
// node wrote, and merges again.
func (m *mirror[T]) publish(ctx context.Context, k string, v T) error {
	for range maxTries {
		h, ok := m.known[k]
		if ok {
			merged, err := m.local.merge(h.v, v)
			if err != nil {
				return fmt.Errorf("replica: %s entry %s: %w", m.bucket, k, err)
			}
			if same(merged, h.v) {
				return nil
			}
			v = merged
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("replica: encode %s entry %s: %w", m.bucket, k, err)
		}
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		var rev uint64
		if ok {
			rev, err = m.kv.Update(cctx, k, raw, h.rev)
		} else {
			rev, err = m.kv.Create(cctx, k, raw)
		}
		cancel()
		if err == nil {
			m.known[k] = held[T]{v, rev}
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("replica: write %s entry %s: %w", m.bucket, k, err)
		}
		if err := m.awaitChange(ctx, k, ok, h.rev); err != nil {
			return err
		}
		if err, bad := m.damaged[k]; bad {
			return err
		}
	}
	return fmt.Errorf("replica: write %s entry %s: overtaken %d times: %w", m.bucket, k, maxTries, errBehind)
}

// awaitChange takes what the watcher delivers until entry k differs from what this node
// knew of it when a write was refused (known or not, and its revision), for at most
// awaitTimeout; a watcher that is behind does not deliver it, and errBehind says so.
func (m *mirror[T]) awaitChange(ctx context.Context, k string, had bool, rev uint64) error {
	changed := func() bool {
		h, ok := m.known[k]
		_, bad := m.damaged[k]
		return bad || ok != had || h.rev > rev
	}
	timeout := time.NewTimer(awaitTimeout)
	defer timeout.Stop()
	for !changed() {
		if m.w == nil {
			return fmt.Errorf("replica: write %s entry %s: %w", m.bucket, k, errBehind)
		}
		select {
		case e, ok := <-m.w.Updates():
			if !ok {
				m.stopWatch()
				continue
			}
			if e != nil {
				m.take(e)
			}
		case <-timeout.C:
			return fmt.Errorf("replica: write %s entry %s: %w", m.bucket, k, errBehind)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// same reports whether two items are equal, as their JSON (every time is in UTC).
func same[T any](a, b T) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// fail records the last reconciliation's failure (nil: it succeeded), logging a new one.
func (m *mirror[T]) fail(err error) {
	if err != nil && (m.failed == nil || m.failed.Error() != err.Error()) {
		m.logger.Error("replica: not in step; trying again at the next poll", slog.Any("err", err))
	}
	if err == nil && m.failed != nil {
		m.logger.Info("replica: in step again")
	}
	m.failed = err
	m.report()
}

// report publishes the mirror's problems for Err.
func (m *mirror[T]) report() {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m.damaged)) {
		errs = append(errs, m.damaged[k])
	}
	for _, k := range slices.Sorted(maps.Keys(m.conflicts)) {
		errs = append(errs, m.conflicts[k])
	}
	if m.failed != nil {
		errs = append(errs, m.failed)
	}
	m.mu.Lock()
	m.refuse = errs
	m.mu.Unlock()
}

func (m *mirror[T]) problems() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.refuse)
}
