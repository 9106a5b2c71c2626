package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

// badEvent is an event of a batch that cannot be decoded or applied: the index in the
// batch, its sequence and why.
type badEvent struct {
	index int
	seq   uint64
	err   error
	// transient: the event is fine, but a key it needs could not be read now (a
	// cluster's bucket electing a leader, or this node learning the current KEK); the
	// projector applies nothing past it and reads it again later.
	transient bool
}

func (e *badEvent) Error() string { return e.err.Error() }
func (e *badEvent) Unwrap() error { return e.err }

// ErrUndecodable wraps an event the projector could not decode or apply. The projector
// stops on it: skipping an event would make the projections silently wrong.
var ErrUndecodable = errors.New("undecodable event")

// applier applies events to one batch of rows (rowBatch), which sees its own writes.
type applier struct {
	s     *Store
	st    *applyState // what the projector run knows across batches; nil for a lone Apply
	b     *rowBatch
	work  bool // something closed that the expunger must finish
	stats map[string]int64
	// clock is the event-time high-water mark: the latest event time applied so far.
	clock time.Time
	// forgotten is the upper bound of this batch's forgetCommands.
	forgotten []byte
	// closedPatrons are the accounts this batch closes: their access-record index rows go in
	// the same commit (dropAccessIndex).
	closedPatrons []string
}

// rowBatch holds every row a batch of events reads, writes or deletes, in memory, until
// the batch is complete; then it writes the final state of the rows it changed in one
// Pebble batch. A row that many events of the batch touch (an item checked out, returned
// and closed; a subject's sequence) is decoded once, and encoded and written once. Its
// Set and Delete have the signatures of *pebble.Batch's.
type rowBatch struct {
	db    *pebble.DB
	st    *applyState // nil for a lone Apply
	rows  map[string]*cachedRow
	order []string // keys in the order first seen, for a deterministic write
}

// cachedRow is a row as the batch has it.
type cachedRow struct {
	v       any    // the decoded value (encoded as JSON when written), unless isRaw
	raw     []byte // the row's bytes, if isRaw
	isRaw   bool
	deleted bool // absent: deleted in the batch, or known not to exist
	dirty   bool // written or deleted in this batch
	// absentBefore: the database did not hold the row when the batch began, so deleting
	// it needs no tombstone.
	absentBefore bool
}

func newRowBatch(db *pebble.DB, st *applyState) *rowBatch {
	return &rowBatch{db: db, st: st, rows: make(map[string]*cachedRow, 64)}
}

// keep sets the batch's row at key, remembering whether the database held it before.
func (b *rowBatch) keep(key []byte, r *cachedRow) {
	k := string(key)
	if old, ok := b.rows[k]; ok {
		r.absentBefore = r.absentBefore || old.absentBefore
	} else {
		b.order = append(b.order, k)
		if b.st != nil && tracked(key) {
			if !b.st.mayExist(key) {
				r.absentBefore = true
			}
			b.st.add(key)
		}
	}
	b.rows[k] = r
}

// Set writes the bytes of a row.
func (b *rowBatch) Set(key, value []byte, _ *pebble.WriteOptions) error {
	b.keep(key, &cachedRow{raw: bytes.Clone(value), isRaw: true, dirty: true})
	return nil
}

// Delete deletes a row.
func (b *rowBatch) Delete(key []byte, _ *pebble.WriteOptions) error {
	b.keep(key, &cachedRow{deleted: true, dirty: true})
	return nil
}

// Get returns the bytes of a row as the batch has it, or pebble.ErrNotFound.
func (b *rowBatch) Get(key []byte) ([]byte, error) {
	if r, ok := b.rows[string(key)]; ok {
		switch {
		case r.deleted:
			return nil, pebble.ErrNotFound
		case r.isRaw:
			return r.raw, nil
		}
		return json.Marshal(r.v)
	}
	val, closer, err := b.db.Get(key)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(val), nil
}

// commit writes the rows the batch changed, and whatever also adds, in one Pebble batch.
// also returns the keys it deletes. The keys the batch deletes or may overwrite are
// recorded for the next erasure sweep with the commit (see pendingErasure); a row the
// database did not hold before the batch has no old bytes to erase.
func (b *rowBatch) commit(erasure *pendingErasure, also func(*pebble.Batch) ([][]byte, error)) error {
	pb := b.db.NewBatch()
	defer pb.Close()
	erase, err := also(pb)
	if err != nil {
		return err
	}
	for _, k := range b.order {
		r := b.rows[k]
		var err error
		switch {
		case !r.dirty, r.deleted && r.absentBefore:
			continue
		case r.deleted:
			err = pb.Delete([]byte(k), nil)
		case r.isRaw:
			err = pb.Set([]byte(k), r.raw, nil)
		default:
			var data []byte
			if data, err = json.Marshal(r.v); err == nil {
				err = pb.Set([]byte(k), data, nil)
			}
		}
		if err != nil {
			return err
		}
		if r.deleted || !r.absentBefore {
			erase = append(erase, []byte(k))
		}
	}
	// No fsync: projections are disposable. A crash loses at most a suffix of batches,
	// m/applied with them, and the projector reads that suffix again.
	return erasure.commit(pb, pebble.NoSync, erase)
}

// decoded is a stream message's events (one, or a command's batch) checked against their
// schemas, their data decoded; or the error that stops the projector at it.
type decoded struct {
	seq     uint64
	subject string // the stream subject it was appended on
	evs     []schemas.Event
	data    []any
	err     error
}

// decodeMsg checks a message's events against their schemas and decodes their data (a
// rebuild only decodes those a signed checkpoint covers).
func (s *Store) decodeMsg(m ledger.Msg) decoded {
	decode := s.v.EventsData
	if s.signed.covers(m.Seq) {
		decode = schemas.DecodeEventsData // checked when first applied; see rebuild.go
	}
	evs, data, err := decode(m.Data)
	if err == nil && evs[0].Subject != "" && evs[0].Subject != m.Subject {
		err = errors.New("the event's subject is not the subject it was appended on")
	}
	if err != nil {
		return decoded{seq: m.Seq, subject: m.Subject, err: fmt.Errorf("%w: sequence %d: %v", ErrUndecodable, m.Seq, err)}
	}
	return decoded{seq: m.Seq, subject: m.Subject, evs: evs, data: data}
}

// parallelDecodeMin is the batch size from which decoding is spread over the cores.
const parallelDecodeMin = 64

// decodeAll decodes the messages after the last applied sequence, in order. Big batches
// (catching up, a rebuild) are decoded on every core: checking and decoding cost more
// than applying.
func (s *Store) decodeAll(msgs []ledger.Msg) []decoded {
	applied := s.Applied()
	i := 0
	for i < len(msgs) && msgs[i].Seq <= applied {
		i++ // already applied before a restart
	}
	msgs = msgs[i:]
	out := make([]decoded, len(msgs))
	workers := min(runtime.GOMAXPROCS(0), len(msgs)/parallelDecodeMin)
	if workers <= 1 {
		for i, m := range msgs {
			out[i] = s.decodeMsg(m)
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(msgs) + workers - 1) / workers
	for lo := 0; lo < len(msgs); lo += chunk {
		hi := min(lo+chunk, len(msgs))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				out[i] = s.decodeMsg(msgs[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// Apply applies stream messages in order, in one Pebble batch together with the sequence
// of the last, so the projections move from one consistent state to the next.
func (s *Store) Apply(msgs []ledger.Msg) error {
	return s.applyDecoded(nil, s.decodeAll(msgs))
}

// applyState is what one run of the projector (catchUp) knows across its batches.
//
// known is a superset of the rows under the prefixes the applier creates per event (t/,
// o/, e/, x/) that the database holds: most events create such a row (a loan's
// transaction, a command's ids), and without the set each would cost a fruitless lookup
// through every level of the database (the projections have no bloom filters), and
// each row created and deleted within one batch (a loan checked out and returned) a
// tombstone.
type applyState struct {
	seed  maphash.Seed
	known map[uint64]struct{}
	// skips are the sequences administrators' skip records pass over.
	skips map[uint64]bool
	// hot holds the decoded rows (and known absences) the last batches read or wrote, so
	// that a row many batches touch, an item or a patron, is not read and decoded from
	// the database each time. Only the applier writes these rows, so hot stays true.
	hot map[string]any
	// forgotten is the upper bound of the last forgetCommands: every y/ row below it is
	// gone, and none is created there again (a row's time is the clock, which only grows),
	// so the next one need not step over their tombstones.
	forgotten []byte
}

// maxKnownRows bounds known; past it, known is read again from the database, which holds
// only open transactions and the commands of the deduplication window.
const maxKnownRows = 1 << 20

// trackedPrefixes are the prefixes of the rows in known.
func trackedPrefixes() []string { return []string{pTxn, pOverdue, pExpunge, pCommand} }

func tracked(key []byte) bool {
	if len(key) < 2 {
		return false
	}
	switch string(key[:2]) {
	case pTxn, pOverdue, pExpunge, pCommand:
		return true
	}
	return false
}

func (s *Store) newApplyState() (*applyState, error) {
	st := &applyState{seed: maphash.MakeSeed()}
	return st, st.load(s.db)
}

// load sets known to the tracked rows of the database.
func (st *applyState) load(db *pebble.DB) error {
	st.known = map[uint64]struct{}{}
	for _, p := range trackedPrefixes() {
		prefix := []byte(p)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			st.add(it.Key())
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (st *applyState) add(key []byte) { st.known[maphash.Bytes(st.seed, key)] = struct{}{} }

// mayExist reports whether the tracked row at key may exist; false means it does not.
func (st *applyState) mayExist(key []byte) bool {
	_, ok := st.known[maphash.Bytes(st.seed, key)]
	return ok
}

// absentRow marks a row in hot that the database does not hold.
type absentRow struct{}

// maxHotRows bounds hot; past it, it starts again empty.
const maxHotRows = 1 << 14

// hotRow reports whether rows under key's prefix may be kept in hot: the decoded rows
// that only the applier writes.
func hotRow(key string) bool {
	if len(key) < 2 {
		return false
	}
	switch key[:2] {
	case pItem, pTxn, pPatron, pCard, pFine, pCommand, pExpunge:
		return true
	}
	return false
}

// remember keeps the final state of the batch's decoded rows in hot, once committed.
func (st *applyState) remember(b *rowBatch) {
	if st.hot == nil || len(st.hot)+len(b.order) > maxHotRows {
		st.hot = make(map[string]any, 1024)
	}
	for _, k := range b.order {
		r := b.rows[k]
		switch {
		case !hotRow(k), r.isRaw:
			delete(st.hot, k)
		case r.deleted:
			st.hot[k] = absentRow{}
		default:
			st.hot[k] = r.v
		}
	}
}

// applyDecoded applies decoded messages in one batch. It stops at the first message that
// could not be decoded or applied, and then commits nothing.
func (s *Store) applyDecoded(st *applyState, msgs []decoded) error {
	if len(msgs) == 0 {
		return nil
	}
	if st != nil && len(st.known) > maxKnownRows {
		if err := st.load(s.db); err != nil {
			return err
		}
	}
	a := applier{s: s, st: st, b: newRowBatch(s.db, st), stats: map[string]int64{}}
	if err := a.loadClock(); err != nil {
		return err
	}
	applied := s.Applied()
	for i, d := range msgs {
		if d.seq <= applied {
			continue // already applied before a restart
		}
		if st != nil && st.skips[d.seq] {
			// An administrator's skip record passes over it. The subject's sequence still
			// moves: the ledger's next expectation on it must match the stream's.
			if err := a.b.Set(subjectKey(d.subject), u64(d.seq), nil); err != nil {
				return err
			}
			applied = d.seq
			continue
		}
		if d.err != nil {
			return &badEvent{index: i, seq: d.seq, err: d.err}
		}
		for k, ev := range d.evs {
			if err := a.apply(d.seq, d.subject, ev, d.data[k]); errors.Is(err, keystore.ErrUnavailable) {
				return &badEvent{index: i, seq: d.seq, err: err, transient: true}
			} else if err != nil {
				return &badEvent{index: i, seq: d.seq, err: fmt.Errorf("%w: sequence %d (%s): %v", ErrUndecodable, d.seq, ev.Type, err)}
			}
		}
		applied = d.seq
	}
	if err := a.flushStats(); err != nil {
		return err
	}
	if err := a.forgetCommands(); err != nil {
		return err
	}
	if err := a.b.Set([]byte(pClock), u64(uint64(a.clock.UnixNano())), nil); err != nil {
		return err
	}
	if err := a.b.Set([]byte(pApplied), u64(applied), nil); err != nil {
		return err
	}
	// No decision may see half of what it reads before, half after; and no access entry
	// may index a pseudonym of an account this batch closes (see IndexAccess).
	a.s.viewMu.Lock()
	err := a.b.commit(&s.erasure, func(pb *pebble.Batch) ([][]byte, error) { return s.dropAccessIndex(pb, a.closedPatrons) })
	a.s.viewMu.Unlock()
	if err != nil {
		if st != nil {
			st.hot = nil
		}
		return fmt.Errorf("commit projections: %w", err)
	}
	if st != nil {
		st.remember(a.b)
		st.forgotten = a.forgotten
	}
	s.setApplied(applied)
	if a.work {
		select {
		case s.work <- struct{}{}:
		default:
		}
	}
	return nil
}

func (a *applier) loadClock() error {
	val, err := a.b.Get([]byte(pClock))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	a.clock = time.Unix(0, int64(binary.BigEndian.Uint64(val))).UTC()
	return nil
}

// get reads the row at key into v.
func (a *applier) get(key []byte, v any) error {
	b := a.b
	if r, ok := b.rows[string(key)]; ok {
		switch {
		case r.deleted:
			return model.ErrNotFound
		case r.isRaw:
			return json.Unmarshal(r.raw, v)
		}
		return assign(v, r.v)
	}
	if a.st != nil && tracked(key) && !a.st.mayExist(key) {
		b.keep(key, &cachedRow{deleted: true, absentBefore: true})
		return model.ErrNotFound
	}
	if a.st != nil {
		if h, ok := a.st.hot[string(key)]; ok {
			if _, absent := h.(absentRow); absent {
				b.keep(key, &cachedRow{deleted: true, absentBefore: true})
				return model.ErrNotFound
			}
			if err := assign(v, h); err != nil {
				return err
			}
			if c, ok := snapshot(v); ok {
				b.keep(key, &cachedRow{v: c})
			}
			return nil
		}
	}
	if err := getJSON(b.db, key, v); errors.Is(err, model.ErrNotFound) {
		b.keep(key, &cachedRow{deleted: true, absentBefore: true})
		return err
	} else if err != nil {
		return err
	}
	// Keep a copy, decoded, for the next event that reads the row.
	if c, ok := snapshot(v); ok {
		b.keep(key, &cachedRow{v: c})
	}
	return nil
}

// put writes v as the row at key; it is encoded when the batch is complete. The batch
// keeps its own copy: a later change to v's slices does not reach it.
func (a *applier) put(key []byte, v any) error {
	switch r := v.(type) {
	case model.Txn:
		r.Fines = slices.Clone(r.Fines)
		v = r
	case model.Patron:
		r.Cards, r.Txns = slices.Clone(r.Cards), slices.Clone(r.Txns)
		v = r
	case commandRow:
		r.Seqs = slices.Clone(r.Seqs)
		v = r
	}
	a.b.keep(key, &cachedRow{v: v, dirty: true})
	return nil
}

func (a *applier) del(key []byte) error { return a.b.Delete(key, nil) }

// snapshot returns a copy of *v for the row cache, for the row types the applier uses.
func snapshot(v any) (any, bool) {
	switch v := v.(type) {
	case *model.Item:
		return *v, true
	case *model.Txn:
		t := *v
		t.Fines = slices.Clone(t.Fines)
		return t, true
	case *model.Patron:
		p := *v
		p.Cards, p.Txns = slices.Clone(p.Cards), slices.Clone(p.Txns)
		return p, true
	case *model.Card:
		return *v, true
	case *commandRow:
		c := *v
		c.Seqs = slices.Clone(c.Seqs)
		return c, true
	case *expungeRow:
		return *v, true
	case *string:
		return *v, true
	}
	return nil, false
}

// assign sets *dst to a copy of the cached value src, which no later change of *dst can
// reach. A value of another type goes through JSON, as the row would from the database.
func assign(dst, src any) error {
	switch d := dst.(type) {
	case *model.Item:
		if s, ok := src.(model.Item); ok {
			*d = s
			return nil
		}
	case *model.Txn:
		if s, ok := src.(model.Txn); ok {
			s.Fines = slices.Clone(s.Fines)
			*d = s
			return nil
		}
	case *model.Patron:
		if s, ok := src.(model.Patron); ok {
			s.Cards, s.Txns = slices.Clone(s.Cards), slices.Clone(s.Txns)
			*d = s
			return nil
		}
	case *model.Card:
		if s, ok := src.(model.Card); ok {
			*d = s
			return nil
		}
	case *commandRow:
		if s, ok := src.(commandRow); ok {
			s.Seqs = slices.Clone(s.Seqs)
			*d = s
			return nil
		}
	case *expungeRow:
		if s, ok := src.(expungeRow); ok {
			*d = s
			return nil
		}
	case *string:
		if s, ok := src.(string); ok {
			*d = s
			return nil
		}
	}
	data, err := json.Marshal(src)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, dst)
}

func (a *applier) apply(seq uint64, subject string, ev schemas.Event, data any) error {
	if ev.Time.After(a.clock) {
		a.clock = ev.Time
	}
	if err := a.b.Set(subjectKey(subject), u64(seq), nil); err != nil {
		return err
	}
	if ev.CommandID != "" {
		if err := a.command(seq, ev); err != nil {
			return err
		}
	}
	switch d := data.(type) {
	case schemas.ItemCataloged:
		return a.cataloged(d)
	case schemas.PatronRegistered:
		return a.registered(d)
	case schemas.CardIssued:
		return a.cardIssued(d)
	case schemas.CardReportedLost:
		return a.cardLost(d)
	case schemas.PatronClosed:
		return a.patronClosed(d)
	case schemas.PatronPINSet:
		return a.pinSet(d)
	case schemas.PatronContactUpdated:
		return a.contactUpdated(d)
	case schemas.ItemCheckedOut:
		return a.checkedOut(ev, d)
	case schemas.ItemRenewed:
		return a.renewed(ev, d)
	case schemas.ItemReturned:
		return a.loanEnded(ev, d.TxnID, d.Barcode, d.Branch, model.LoanReturned, "returns")
	case schemas.ItemDeclaredLost:
		return a.loanEnded(ev, d.TxnID, d.Barcode, "", model.LoanLost, "lost")
	case schemas.ItemDamaged:
		return a.loanEnded(ev, d.TxnID, d.Barcode, d.Branch, model.LoanDamaged, "damaged")
	case schemas.FineAssessed:
		return a.fineAssessed(ev, d)
	case schemas.FinePaid:
		return a.fineSettled(ev, d.TxnID, d.FineID, d.AmountCents, d.RemainingCents, "fines_paid_cents")
	case schemas.FineWaived:
		return a.fineSettled(ev, d.TxnID, d.FineID, d.AmountCents, 0, "fines_waived_cents")
	case schemas.TransactionClosed:
		return a.closed(ev, d)
	case schemas.TransactionExpunged:
		return a.del(expungeKey(d.TxnID))
	case schemas.ProjectionSkipped:
		return nil // honoured before its event is reached (applyState.skips)
	case schemas.CheckpointSigned, schemas.CheckpointKeyRotated:
		return nil // for auditors (lethe audit verify); nothing to read here
	}
	return fmt.Errorf("unknown event type")
}

// command records the sequences a command appended. The row is stamped with the event-time
// high-water mark at the command's latest event, not with an event's own time: a late return
// from an offline kiosk happened long ago but was appended now, and its retry must still be
// recognised.
func (a *applier) command(seq uint64, ev schemas.Event) error {
	var row commandRow
	key := commandKey(ev.CommandID)
	if err := a.get(key, &row); err != nil && !errors.Is(err, model.ErrNotFound) {
		return err
	}
	// The row ages from the command's latest event: re-stamp it as the mark moves.
	if now := a.clock.Unix(); row.Seqs == nil || row.Time < now {
		if row.Seqs != nil {
			if err := a.del(commandTimeKey(time.Unix(row.Time, 0), ev.CommandID)); err != nil {
				return err
			}
		}
		row.Time = now
		if err := a.b.Set(commandTimeKey(a.clock, ev.CommandID), []byte(ev.CommandID), nil); err != nil {
			return err
		}
	}
	if n := len(row.Seqs); n == 0 || row.Seqs[n-1] != seq { // a batch's events share a message
		row.Seqs = append(row.Seqs, seq)
	}
	return a.put(key, row)
}

// forgetCommands drops commands older than DedupeWindow behind the high-water mark. It
// runs once per batch; since the mark only grows, the rows left do not depend on how the
// stream was cut into batches, so a rebuild forgets exactly what the live projections did.
func (a *applier) forgetCommands() error {
	lower, upper := []byte(pCmdTime), commandTimeKey(a.clock.Add(-ledger.DedupeWindow), "")
	if a.st != nil && a.st.forgotten != nil && bytes.Compare(a.st.forgotten, upper) <= 0 {
		lower = a.st.forgotten
	}
	// The expired y/ rows: those in the database the batch has not touched, and those the
	// batch wrote.
	it, err := a.b.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	var expired [][2][]byte
	for ok := it.First(); ok; ok = it.Next() {
		if _, touched := a.b.rows[string(it.Key())]; !touched {
			expired = append(expired, [2][]byte{slices.Clone(it.Key()), slices.Clone(it.Value())})
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, k := range a.b.order {
		if r := a.b.rows[k]; !r.deleted && k >= string(lower) && k < string(upper) {
			val, err := a.b.Get([]byte(k))
			if err != nil {
				return err
			}
			expired = append(expired, [2][]byte{[]byte(k), val})
		}
	}
	for _, kv := range expired {
		if err := a.del(kv[0]); err != nil {
			return err
		}
		if err := a.del(commandKey(string(kv[1]))); err != nil {
			return err
		}
	}
	a.forgotten = upper
	return nil
}

func (a *applier) cataloged(d schemas.ItemCataloged) error {
	var it model.Item
	if err := a.get(itemKey(d.Barcode), &it); errors.Is(err, model.ErrNotFound) {
		it.Status = model.ItemAvailable
	} else if err != nil {
		return err
	}
	if it.Status == model.ItemLost && it.TxnID == "" {
		it.Status = model.ItemAvailable // a lost item cataloged again has been found or replaced
	}
	it.ItemCataloged = d
	return a.put(itemKey(d.Barcode), it)
}

func (a *applier) registered(d schemas.PatronRegistered) error {
	p := model.Patron{ID: d.PatronID, HomeBranch: d.HomeBranch, Profile: d.Profile}
	// The name index needs the profile key; in a replay of an account closed later in the
	// stream the key is gone, and so is the account's row at its close.
	profile, err := seal.OpenProfile(a.s.keys, d.PatronID, d.Profile)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
	case err != nil:
		return err
	default:
		p.NameHash = a.s.keys.NameHash(profile.Name)
		if err := a.b.Set(nameKey(p.NameHash, p.ID), []byte(p.ID), nil); err != nil {
			return err
		}
	}
	return a.put(patronKey(d.PatronID), p)
}

func (a *applier) patron(id string) (model.Patron, error) {
	var p model.Patron
	err := a.get(patronKey(id), &p)
	return p, err
}

func (a *applier) cardIssued(d schemas.CardIssued) error {
	p, err := a.patron(d.PatronID)
	if err != nil {
		return fmt.Errorf("card for unknown patron: %w", err)
	}
	p.Cards = append(p.Cards, d.CardHash)
	if err := a.put(patronKey(p.ID), p); err != nil {
		return err
	}
	return a.put(cardKey(d.CardHash), model.Card{Hash: d.CardHash, PatronID: d.PatronID})
}

// pinSet keeps the patron's PIN, sealed; a PIN set again replaces it (and the sweep
// erases the old one's bytes).
func (a *applier) pinSet(d schemas.PatronPINSet) error {
	p, err := a.patron(d.PatronID)
	if err != nil {
		return fmt.Errorf("PIN for unknown patron: %w", err)
	}
	pin := d.PIN
	p.PIN = &pin
	return a.put(patronKey(p.ID), p)
}

// contactUpdated keeps the profile after a change of contact details, sealed, in place of
// the one before (and the sweep erases the old one's bytes). The name is not a contact
// detail: the name index stands.
func (a *applier) contactUpdated(d schemas.PatronContactUpdated) error {
	p, err := a.patron(d.PatronID)
	if err != nil {
		return fmt.Errorf("contact update for unknown patron: %w", err)
	}
	p.Profile = d.Profile
	return a.put(patronKey(p.ID), p)
}

func (a *applier) cardLost(d schemas.CardReportedLost) error {
	var c model.Card
	if err := a.get(cardKey(d.CardHash), &c); err != nil {
		return fmt.Errorf("lost card: %w", err)
	}
	c.Lost = true
	return a.put(cardKey(d.CardHash), c)
}

// patronClosed removes the patron's row; cards stay, without the patron, so a closed
// account's card never opens anything again. The expunger destroys the profile key. The
// account's access-record pseudonyms go when the batch commits (dropAccessIndex).
func (a *applier) patronClosed(d schemas.PatronClosed) error {
	p, err := a.patron(d.PatronID)
	if err != nil {
		return fmt.Errorf("close unknown patron: %w", err)
	}
	for _, h := range p.Cards {
		var c model.Card
		if err := a.get(cardKey(h), &c); err != nil {
			return err
		}
		if err := a.put(cardKey(h), model.Card{Hash: h, Lost: c.Lost, Closed: true}); err != nil {
			return err
		}
	}
	if err := a.del(patronKey(d.PatronID)); err != nil {
		return err
	}
	if p.NameHash != "" {
		if err := a.del(nameKey(p.NameHash, p.ID)); err != nil {
			return err
		}
	}
	a.closedPatrons = append(a.closedPatrons, d.PatronID)
	a.work = true
	return a.b.Set(profileKeyRow(d.PatronID), []byte(d.PatronID), nil)
}

// openPatron returns the patron sealed in ref, or "" if the transaction's key is already
// destroyed (a replay of a transaction that closed later in the stream).
func (a *applier) openPatron(eventID string, ref schemas.Sealed) (string, error) {
	id, err := seal.OpenPatron(a.s.keys, eventID, ref)
	if errors.Is(err, keystore.ErrNotFound) {
		return "", nil
	}
	return id, err
}

// linkTxn adds an open transaction to its patron's row.
func (a *applier) linkTxn(patronID, txnID string) error {
	if patronID == "" {
		return nil
	}
	p, err := a.patron(patronID)
	if errors.Is(err, model.ErrNotFound) {
		// The ledger decides every transaction under its patron's lock against an open
		// account (ledger/serial.go): one for an account that is gone breaks an invariant,
		// and is not papered over.
		return errors.New("a transaction for an account that is closed or unknown")
	} else if err != nil {
		return err
	}
	p.Txns = append(p.Txns, txnID)
	return a.put(patronKey(patronID), p)
}

func (a *applier) checkedOut(ev schemas.Event, d schemas.ItemCheckedOut) error {
	patronID, err := a.openPatron(ev.ID, d.Patron)
	if err != nil {
		return err
	}
	var it model.Item
	if err := a.get(itemKey(d.Barcode), &it); err != nil {
		return fmt.Errorf("checkout of unknown item: %w", err)
	}
	it.Status, it.TxnID, it.Due = model.ItemOnLoan, d.TxnID, d.Due
	if err := a.put(itemKey(d.Barcode), it); err != nil {
		return err
	}
	t := model.Txn{ID: d.TxnID, Subject: ev.Subject, Barcode: d.Barcode, PatronID: patronID,
		Opened: ev.Time, Due: d.Due, Loan: model.LoanOpen}
	if err := a.put(txnKey(d.TxnID), t); err != nil {
		return err
	}
	if err := a.b.Set(overdueKey(d.Due, d.Barcode), []byte(d.TxnID), nil); err != nil {
		return err
	}
	a.count(ev.Time, branchOr(d.Branch, it.Branch), it.Collection, "checkouts", 1)
	return a.linkTxn(patronID, d.TxnID)
}

func (a *applier) txn(id string) (model.Txn, error) {
	var t model.Txn
	err := a.get(txnKey(id), &t)
	return t, err
}

func (a *applier) renewed(ev schemas.Event, d schemas.ItemRenewed) error {
	t, err := a.txn(d.TxnID)
	if err != nil {
		return fmt.Errorf("renewal of unknown transaction: %w", err)
	}
	if err := a.del(overdueKey(t.Due, t.Barcode)); err != nil {
		return err
	}
	t.Due, t.Renewals = d.Due, d.Renewals
	if err := a.put(txnKey(t.ID), t); err != nil {
		return err
	}
	var it model.Item
	if err := a.get(itemKey(d.Barcode), &it); err != nil {
		return err
	}
	it.Due = d.Due
	if err := a.put(itemKey(d.Barcode), it); err != nil {
		return err
	}
	if err := a.b.Set(overdueKey(d.Due, d.Barcode), []byte(d.TxnID), nil); err != nil {
		return err
	}
	a.count(ev.Time, it.Branch, it.Collection, "renewals", 1)
	return nil
}

func (a *applier) loanEnded(ev schemas.Event, txnID, barcode, branch, state, measure string) error {
	t, err := a.txn(txnID)
	if err != nil {
		return fmt.Errorf("end of unknown loan: %w", err)
	}
	if err := a.del(overdueKey(t.Due, t.Barcode)); err != nil {
		return err
	}
	t.Loan = state
	if err := a.put(txnKey(t.ID), t); err != nil {
		return err
	}
	var it model.Item
	if err := a.get(itemKey(barcode), &it); err != nil {
		return err
	}
	it.Due = time.Time{}
	if state == model.LoanLost {
		it.Status = model.ItemLost
	} else {
		it.Status, it.TxnID = model.ItemAvailable, ""
	}
	if err := a.put(itemKey(barcode), it); err != nil {
		return err
	}
	a.count(ev.Time, branchOr(branch, it.Branch), it.Collection, measure, 1)
	return nil
}

func (a *applier) fineAssessed(ev schemas.Event, d schemas.FineAssessed) error {
	var t model.Txn
	collection := "fees"
	if d.Patron != nil {
		// A stand-alone fee opens its own transaction.
		patronID, err := a.openPatron(ev.ID, *d.Patron)
		if err != nil {
			return err
		}
		t = model.Txn{ID: d.TxnID, Subject: ev.Subject, PatronID: patronID, Opened: ev.Time}
		if err := a.linkTxn(patronID, d.TxnID); err != nil {
			return err
		}
	} else {
		var err error
		if t, err = a.txn(d.TxnID); err != nil {
			return fmt.Errorf("fine in unknown transaction: %w", err)
		}
		var it model.Item
		if err := a.get(itemKey(t.Barcode), &it); err == nil {
			collection = it.Collection
		}
	}
	t.Fines = append(t.Fines, model.TxnFine{FineID: d.FineID, Reason: d.Reason, AmountCents: d.AmountCents, RemainingCents: d.AmountCents})
	if err := a.put(txnKey(t.ID), t); err != nil {
		return err
	}
	if err := a.put(fineKey(d.FineID), d.TxnID); err != nil {
		return err
	}
	a.count(ev.Time, "all", collection, "fines_assessed_cents", d.AmountCents)
	return nil
}

func (a *applier) fineSettled(ev schemas.Event, txnID, fineID string, cents, remaining int64, measure string) error {
	t, err := a.txn(txnID)
	if err != nil {
		return fmt.Errorf("payment in unknown transaction: %w", err)
	}
	i := slices.IndexFunc(t.Fines, func(f model.TxnFine) bool { return f.FineID == fineID })
	if i < 0 {
		return fmt.Errorf("payment of unknown fine")
	}
	t.Fines[i].RemainingCents = remaining
	a.count(ev.Time, "all", "all", measure, cents)
	return a.put(txnKey(t.ID), t)
}

// closed deletes every row of the transaction that links it to anyone, and queues it for
// the expunger.
func (a *applier) closed(ev schemas.Event, d schemas.TransactionClosed) error {
	t, err := a.txn(d.TxnID)
	if err != nil {
		return fmt.Errorf("close of unknown transaction: %w", err)
	}
	for _, f := range t.Fines {
		if err := a.del(fineKey(f.FineID)); err != nil {
			return err
		}
	}
	if t.Barcode != "" {
		var it model.Item
		if err := a.get(itemKey(t.Barcode), &it); err != nil {
			return err
		}
		if it.TxnID == t.ID {
			it.TxnID = "" // a lost item stays lost, but no longer points at its last loan
			if err := a.put(itemKey(t.Barcode), it); err != nil {
				return err
			}
		}
	} else if err := a.del(subjectKey(t.Subject)); err != nil {
		return err // a fee's subject is never used again
	}
	if t.PatronID != "" {
		p, err := a.patron(t.PatronID)
		if err == nil {
			p.Txns = slices.DeleteFunc(p.Txns, func(id string) bool { return id == t.ID })
			if err := a.put(patronKey(p.ID), p); err != nil {
				return err
			}
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
	}
	if err := a.del(txnKey(t.ID)); err != nil {
		return err
	}
	a.work = true
	return a.put(expungeKey(t.ID), expungeRow{TxnID: t.ID, ClosedAt: ev.Time})
}

func branchOr(b, fallback string) string {
	if b != "" {
		return b
	}
	return fallback
}

// count adds to an aggregate. Counts carry no patron data: day, branch, collection and
// measure only.
func (a *applier) count(t time.Time, branch, collection, measure string, n int64) {
	if measure == "" || n == 0 {
		return
	}
	a.stats[string(statKey(a.s.Day(t), branch, collection, measure))] += n
}

func (a *applier) flushStats() error {
	for k, n := range a.stats {
		var cur int64
		val, err := a.b.Get([]byte(k))
		if err == nil {
			cur = int64(binary.BigEndian.Uint64(val))
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return err
		}
		if err := a.b.Set([]byte(k), u64(uint64(cur+n)), nil); err != nil {
			return err
		}
	}
	return nil
}
