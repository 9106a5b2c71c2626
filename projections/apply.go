package projections

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// ErrUndecodable wraps an event the projector could not decode or apply. The projector
// stops on it: skipping an event would make the projections silently wrong.
var ErrUndecodable = errors.New("undecodable event")

// applier applies events to one indexed batch, which sees its own writes.
type applier struct {
	s     *Store
	b     *pebble.Batch
	work  bool // something closed that the expunger must finish
	stats map[string]int64
	// clock is the event-time high-water mark: the latest event time applied so far.
	clock time.Time
}

// Apply applies stream messages in order, in one Pebble batch together with the sequence
// of the last, so the projections move from one consistent state to the next.
func (s *Store) Apply(msgs []ledger.Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	a := applier{s: s, b: s.db.NewIndexedBatch(), stats: map[string]int64{}}
	defer a.b.Close()
	if err := a.loadClock(); err != nil {
		return err
	}
	applied := s.Applied()
	for _, m := range msgs {
		if m.Seq <= applied {
			continue // already applied before a restart
		}
		ev, err := s.v.Event(m.Data)
		if err != nil {
			return fmt.Errorf("%w: sequence %d: %v", ErrUndecodable, m.Seq, err)
		}
		if err := a.apply(m.Seq, ev); err != nil {
			return fmt.Errorf("%w: sequence %d (%s): %v", ErrUndecodable, m.Seq, ev.Type, err)
		}
		applied = m.Seq
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
	// No fsync: projections are disposable. A crash loses at most a suffix of batches,
	// m/applied with them, and the projector reads that suffix again.
	if err := a.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit projections: %w", err)
	}
	s.setApplied(applied, nil)
	if a.work {
		select {
		case s.work <- struct{}{}:
		default:
		}
	}
	return nil
}

func (a *applier) loadClock() error {
	val, closer, err := a.b.Get([]byte(pClock))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	defer closer.Close()
	a.clock = time.Unix(0, int64(binary.BigEndian.Uint64(val))).UTC()
	return nil
}

func (a *applier) get(key []byte, v any) error { return getJSON(a.b, key, v) }

func (a *applier) put(key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return a.b.Set(key, data, nil)
}

func (a *applier) del(key []byte) error { return a.b.Delete(key, nil) }

func (a *applier) apply(seq uint64, ev schemas.Event) error {
	if ev.Time.After(a.clock) {
		a.clock = ev.Time
	}
	if err := a.b.Set(subjectKey(ev.Subject), u64(seq), nil); err != nil {
		return err
	}
	if ev.CommandID != "" {
		if err := a.command(seq, ev); err != nil {
			return err
		}
	}
	switch ev.Type {
	case schemas.TypeItemCataloged:
		return decodeThen(ev, a.cataloged)
	case schemas.TypePatronRegistered:
		return decodeThen(ev, a.registered)
	case schemas.TypeCardIssued:
		return decodeThen(ev, a.cardIssued)
	case schemas.TypeCardReportedLost:
		return decodeThen(ev, a.cardLost)
	case schemas.TypePatronClosed:
		return decodeThen(ev, a.patronClosed)
	case schemas.TypeItemCheckedOut:
		return decodeThen(ev, func(d schemas.ItemCheckedOut) error { return a.checkedOut(ev, d) })
	case schemas.TypeItemRenewed:
		return decodeThen(ev, func(d schemas.ItemRenewed) error { return a.renewed(ev, d) })
	case schemas.TypeItemReturned:
		return decodeThen(ev, func(d schemas.ItemReturned) error {
			return a.loanEnded(ev, d.TxnID, d.Barcode, d.Branch, ledger.LoanReturned, "returns")
		})
	case schemas.TypeItemDeclaredLost:
		return decodeThen(ev, func(d schemas.ItemDeclaredLost) error {
			return a.loanEnded(ev, d.TxnID, d.Barcode, "", ledger.LoanLost, "lost")
		})
	case schemas.TypeItemDamaged:
		return decodeThen(ev, func(d schemas.ItemDamaged) error {
			return a.loanEnded(ev, d.TxnID, d.Barcode, d.Branch, ledger.LoanDamaged, "damaged")
		})
	case schemas.TypeFineAssessed:
		return decodeThen(ev, func(d schemas.FineAssessed) error { return a.fineAssessed(ev, d) })
	case schemas.TypeFinePaid:
		return decodeThen(ev, func(d schemas.FinePaid) error {
			return a.fineSettled(ev, d.TxnID, d.FineID, d.AmountCents, d.RemainingCents, "fines_paid_cents")
		})
	case schemas.TypeFineWaived:
		return decodeThen(ev, func(d schemas.FineWaived) error {
			return a.fineSettled(ev, d.TxnID, d.FineID, d.AmountCents, 0, "fines_waived_cents")
		})
	case schemas.TypeTransactionClosed:
		return decodeThen(ev, func(d schemas.TransactionClosed) error { return a.closed(ev, d) })
	case schemas.TypeTransactionExpunged:
		return decodeThen(ev, func(d schemas.TransactionExpunged) error { return a.del(expungeKey(d.TxnID)) })
	}
	return fmt.Errorf("unknown event type")
}

func decodeThen[D any](ev schemas.Event, f func(D) error) error {
	var d D
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return err
	}
	return f(d)
}

// command records the sequences a command appended. The row is stamped with the event-time
// high-water mark at the command's latest event, not with an event's own time: a late return
// from an offline kiosk happened long ago but was appended now, and its retry must still be
// recognised.
func (a *applier) command(seq uint64, ev schemas.Event) error {
	var row commandRow
	if err := a.get(commandKey(ev.CommandID), &row); err != nil && !errors.Is(err, ledger.ErrNotFound) {
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
	row.Seqs = append(row.Seqs, seq)
	return a.put(commandKey(ev.CommandID), row)
}

// forgetCommands drops commands older than DedupeWindow behind the high-water mark. It
// runs once per batch; since the mark only grows, the rows left do not depend on how the
// stream was cut into batches, so a rebuild forgets exactly what the live projections did.
func (a *applier) forgetCommands() error {
	it, err := a.b.NewIter(&pebble.IterOptions{
		LowerBound: []byte(pCmdTime),
		UpperBound: commandTimeKey(a.clock.Add(-ledger.DedupeWindow), ""),
	})
	if err != nil {
		return err
	}
	var expired [][2][]byte
	for ok := it.First(); ok; ok = it.Next() {
		expired = append(expired, [2][]byte{slices.Clone(it.Key()), slices.Clone(it.Value())})
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, kv := range expired {
		if err := a.del(kv[0]); err != nil {
			return err
		}
		if err := a.del(commandKey(string(kv[1]))); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) cataloged(d schemas.ItemCataloged) error {
	var it ledger.Item
	if err := a.get(itemKey(d.Barcode), &it); errors.Is(err, ledger.ErrNotFound) {
		it.Status = ledger.ItemAvailable
	} else if err != nil {
		return err
	}
	if it.Status == ledger.ItemLost && it.TxnID == "" {
		it.Status = ledger.ItemAvailable // a lost item cataloged again has been found or replaced
	}
	it.ItemCataloged = d
	return a.put(itemKey(d.Barcode), it)
}

func (a *applier) registered(d schemas.PatronRegistered) error {
	p := ledger.Patron{ID: d.PatronID, HomeBranch: d.HomeBranch, Profile: d.Profile}
	// The name index needs the profile key; in a replay of an account closed later in the
	// stream the key is gone, and so is the account's row at its close.
	profile, err := ledger.OpenProfile(a.s.keys, d.PatronID, d.Profile)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
	case err != nil:
		return err
	default:
		p.NameHash = a.s.keys.NameHash(profile.Name)
		if err := a.b.Set(nameKey(p.NameHash, p.ID), []byte(p.ID), nil); err != nil {
			return err
		}
		if p.AccessKID, err = ledger.AccessKID(a.s.keys, p.ID); err != nil {
			return err
		}
		if err := a.b.Set(accessKey(p.AccessKID), []byte(p.ID), nil); err != nil {
			return err
		}
	}
	return a.put(patronKey(d.PatronID), p)
}

func (a *applier) patron(id string) (ledger.Patron, error) {
	var p ledger.Patron
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
	return a.put(cardKey(d.CardHash), ledger.Card{Hash: d.CardHash, PatronID: d.PatronID})
}

func (a *applier) cardLost(d schemas.CardReportedLost) error {
	var c ledger.Card
	if err := a.get(cardKey(d.CardHash), &c); err != nil {
		return fmt.Errorf("lost card: %w", err)
	}
	c.Lost = true
	return a.put(cardKey(d.CardHash), c)
}

// patronClosed removes the patron's row; cards stay, without the patron, so a closed
// account's card never opens anything again. The expunger destroys the profile key.
func (a *applier) patronClosed(d schemas.PatronClosed) error {
	p, err := a.patron(d.PatronID)
	if err != nil {
		return fmt.Errorf("close unknown patron: %w", err)
	}
	for _, h := range p.Cards {
		var c ledger.Card
		if err := a.get(cardKey(h), &c); err != nil {
			return err
		}
		if err := a.put(cardKey(h), ledger.Card{Hash: h, Lost: c.Lost, Closed: true}); err != nil {
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
	if p.AccessKID != "" {
		if err := a.del(accessKey(p.AccessKID)); err != nil {
			return err
		}
	}
	a.work = true
	return a.b.Set(profileKeyRow(d.PatronID), []byte(d.PatronID), nil)
}

// openPatron returns the patron sealed in ref, or "" if the transaction's key is already
// destroyed (a replay of a transaction that closed later in the stream).
func (a *applier) openPatron(eventID string, ref schemas.Sealed) (string, error) {
	id, err := ledger.OpenPatron(a.s.keys, eventID, ref)
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
	if errors.Is(err, ledger.ErrNotFound) {
		return nil
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
	var it ledger.Item
	if err := a.get(itemKey(d.Barcode), &it); err != nil {
		return fmt.Errorf("checkout of unknown item: %w", err)
	}
	it.Status, it.TxnID, it.Due = ledger.ItemOnLoan, d.TxnID, d.Due
	if err := a.put(itemKey(d.Barcode), it); err != nil {
		return err
	}
	t := ledger.Txn{ID: d.TxnID, Subject: ev.Subject, Barcode: d.Barcode, PatronID: patronID,
		Opened: ev.Time, Due: d.Due, Loan: ledger.LoanOpen}
	if err := a.put(txnKey(d.TxnID), t); err != nil {
		return err
	}
	if err := a.b.Set(overdueKey(d.Due, d.Barcode), []byte(d.TxnID), nil); err != nil {
		return err
	}
	a.count(ev.Time, branchOr(d.Branch, it.Branch), it.Collection, "checkouts", 1)
	return a.linkTxn(patronID, d.TxnID)
}

func (a *applier) txn(id string) (ledger.Txn, error) {
	var t ledger.Txn
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
	var it ledger.Item
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
	var it ledger.Item
	if err := a.get(itemKey(barcode), &it); err != nil {
		return err
	}
	it.Due = time.Time{}
	if state == ledger.LoanLost {
		it.Status = ledger.ItemLost
	} else {
		it.Status, it.TxnID = ledger.ItemAvailable, ""
	}
	if err := a.put(itemKey(barcode), it); err != nil {
		return err
	}
	a.count(ev.Time, branchOr(branch, it.Branch), it.Collection, measure, 1)
	return nil
}

func (a *applier) fineAssessed(ev schemas.Event, d schemas.FineAssessed) error {
	var t ledger.Txn
	collection := "fees"
	if d.Patron != nil {
		// A stand-alone fee opens its own transaction.
		patronID, err := a.openPatron(ev.ID, *d.Patron)
		if err != nil {
			return err
		}
		t = ledger.Txn{ID: d.TxnID, Subject: ev.Subject, PatronID: patronID, Opened: ev.Time}
		if err := a.linkTxn(patronID, d.TxnID); err != nil {
			return err
		}
	} else {
		var err error
		if t, err = a.txn(d.TxnID); err != nil {
			return fmt.Errorf("fine in unknown transaction: %w", err)
		}
		var it ledger.Item
		if err := a.get(itemKey(t.Barcode), &it); err == nil {
			collection = it.Collection
		}
	}
	t.Fines = append(t.Fines, ledger.TxnFine{FineID: d.FineID, Reason: d.Reason, AmountCents: d.AmountCents, RemainingCents: d.AmountCents})
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
	i := slices.IndexFunc(t.Fines, func(f ledger.TxnFine) bool { return f.FineID == fineID })
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
		var it ledger.Item
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
		} else if !errors.Is(err, ledger.ErrNotFound) {
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
	day := t.In(a.s.loc).Format(time.DateOnly)
	a.stats[string(statKey(day, branch, collection, measure))] += n
}

func (a *applier) flushStats() error {
	for k, n := range a.stats {
		var cur int64
		val, closer, err := a.b.Get([]byte(k))
		if err == nil {
			cur = int64(binary.BigEndian.Uint64(val))
			closer.Close()
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return err
		}
		if err := a.b.Set([]byte(k), u64(uint64(cur+n)), nil); err != nil {
			return err
		}
	}
	return nil
}
