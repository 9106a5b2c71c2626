package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
)

// Bulk cataloging. A library's catalog arrives as a file of tens of thousands of items;
// one catalog_item command per request costs a decision, a synced append and a projection
// wait each, about 3 ms. CatalogItems takes up to MaxCatalogItems commands at once and
// runs them as run runs one: each is checked against its schema, looked up by its
// command id, decided against the projections and appended with an expectation on its own
// item subject, under its own command id. Only the append is shared: the commands enter
// the appender's queue together and go as one atomic batch (the group commit), so one
// fsync covers them all.

// MaxCatalogItems is the most catalog_item commands CatalogItems takes at once: one atomic
// batch's worth, one message each.
const MaxCatalogItems = MaxAtomicBatch

// What CatalogItems did with a command. Wire names (the staff API's answer): append-only.
const (
	// CatalogNew: item.cataloged appended; the barcode had no item.
	CatalogNew = "new"
	// CatalogUpdated: item.cataloged appended; the item had other catalog data (or was
	// recorded lost with no loan open, which cataloging again makes available).
	CatalogUpdated = "updated"
	// CatalogUnchanged: nothing appended; the item holds exactly this data already.
	CatalogUnchanged = "unchanged"
	// CatalogRepeated: nothing appended; this command id was applied before, within
	// DedupeWindow, and answered as a retry, but the item has been cataloged differently
	// since. A command id is applied once: send a new id to apply the data again.
	CatalogRepeated = "repeated"
)

// CatalogOutcome is what CatalogItems did with one command.
type CatalogOutcome struct {
	Barcode string `json:"barcode"`
	Outcome string `json:"outcome"` // CatalogNew, CatalogUpdated, CatalogUnchanged or CatalogRepeated
	// Seq is the stream sequence of the item.cataloged the command appended, now or in a
	// first attempt within DedupeWindow; 0 if it never appended one (unchanged).
	Seq uint64 `json:"seq,omitempty"`
}

// catalogView bounds how many commands are decided under one view: a view holds off the
// projector, so a thousand lookups are split into short views. Catalog decisions need no
// view in common: each reads only its own item's rows and expects on its own subject.
const catalogView = 128

// CatalogItems runs up to MaxCatalogItems catalog_item commands (raw JSON, each per its
// schema) from a station, and returns what it did with each, in order. The whole list is
// checked first: a command that breaks its schema, or repeats an earlier one's barcode or
// command id, refuses the list with nothing appended; the refusal names the command by
// its index as a JSON pointer (/commands/3), the location and the rule, never a value.
// So does a command id already used for a different command (conflict).
//
// The outcome counts are exact: each comes from the command's own decision and the
// stream's acknowledgement of its message. A command id already on the stream is a retry,
// answered from the event its first attempt appended (after checking it is the same
// command), and appends nothing. An item that already holds the command's data appends
// nothing either, whatever the command id, so a file imported again after the
// deduplication window is still unchanged.
//
// If the stream refuses the batch (another command changed an item since the decision),
// each command is committed on its own and the ones that lost the race are decided again.
// An error after some commands were appended (a timeout, the stream unreachable) leaves
// them appended: sending the same list again, with the same command ids, answers them.
func (l *Ledger) CatalogItems(ctx context.Context, at Station, raws []json.RawMessage) ([]CatalogOutcome, error) {
	if len(raws) == 0 || len(raws) > MaxCatalogItems {
		return nil, schemas.Errorf(schemas.CodeInvalid, "give 1 to %d catalog_item commands", MaxCatalogItems)
	}
	cmds := make([]schemas.CatalogItem, len(raws))
	barcodes := make(map[string]int, len(raws))
	ids := make(map[string]int, len(raws))
	for i, raw := range raws {
		if err := l.v.Command(schemas.CmdCatalogItem, raw); err != nil {
			return nil, atCommand(i, err)
		}
		if err := schemas.DecodeStrict(raw, &cmds[i]); err != nil {
			return nil, atCommand(i, err)
		}
		// One command per item: two expectations on one subject cannot share a batch, and
		// which of two rows for one item wins would depend on the order of a file.
		if j, ok := barcodes[cmds[i].Barcode]; ok {
			return nil, schemas.Errorf(schemas.CodeInvalid, "/commands/%d/barcode repeats the barcode of /commands/%d: one command per item", i, j)
		}
		if j, ok := ids[cmds[i].CommandID]; ok {
			return nil, schemas.Errorf(schemas.CodeInvalid, "/commands/%d/command_id repeats the command_id of /commands/%d", i, j)
		}
		barcodes[cmds[i].Barcode] = i
		ids[cmds[i].CommandID] = i
	}

	out := make([]CatalogOutcome, len(cmds))
	pending := make([]int, len(cmds))
	for i := range pending {
		pending[i] = i
	}
	var last uint64 // the last sequence appended, to wait for
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == maxAttempts {
			return nil, schemas.Errorf(schemas.CodeUnavailable, "too much contention on these items; retry")
		}
		if err := l.st.Stopped(); err != nil {
			return nil, err // no decision against projections that stopped
		}
		decided, err := l.decideCatalog(at, cmds, pending)
		if err != nil {
			return nil, err
		}
		// Retries are checked against the stream before anything is appended: a reused
		// command id refuses the list whole. Their events are read in a few batched
		// reads: a file imported again within the hour is a thousand retries a request.
		var retrySeqs []uint64
		for _, d := range decided {
			retrySeqs = append(retrySeqs, d.seqs...)
		}
		retried, err := l.readEvents(ctx, retrySeqs)
		if err != nil {
			return nil, err
		}
		var reqs []*appendReq
		var reqIdx []int
		for _, d := range decided {
			c := cmds[d.i]
			switch {
			case d.seqs != nil:
				o, err := l.catalogRetry(c, d.seqs, retried)
				if err != nil {
					return nil, atCommand(d.i, err)
				}
				out[d.i] = o
			case d.unchanged:
				out[d.i] = CatalogOutcome{Barcode: c.Barcode, Outcome: CatalogUnchanged}
			default:
				req, err := newAppendReq(c.CommandID, d.expect, []schemas.Event{d.event})
				if err != nil {
					return nil, err
				}
				reqs = append(reqs, req)
				reqIdx = append(reqIdx, d.i)
				outcome := CatalogNew
				if d.updated {
					outcome = CatalogUpdated
				}
				out[d.i] = CatalogOutcome{Barcode: c.Barcode, Outcome: outcome}
			}
		}
		pending = pending[:0]
		if len(reqs) == 0 {
			break
		}
		var failed error
		for k, res := range l.app.appendAll(ctx, reqs) {
			i := reqIdx[k]
			switch {
			case res.err == nil:
				out[i].Seq = res.seq
				last = max(last, res.seq)
			case errors.Is(res.err, errDuplicate) && res.seq > 0:
				// JetStream holds this command id already, at res.seq, though the
				// projections did not when the decision read them (they forget ids by
				// event time, JetStream by its own clock, a moment apart). It is a retry.
				if err := l.waitApplied(ctx, res.seq); err != nil {
					return nil, err
				}
				evs, err := l.readEvents(ctx, []uint64{res.seq})
				if err != nil {
					return nil, err
				}
				o, err := l.catalogRetry(cmds[i], []uint64{res.seq}, evs)
				if err != nil {
					return nil, atCommand(i, err)
				}
				out[i] = o
			case errors.Is(res.err, errStale), errors.Is(res.err, errDuplicate):
				// Another command got to the item first: decide again once the
				// projections hold it.
				pending = append(pending, i)
			case failed == nil:
				failed = res.err
			}
		}
		if failed != nil {
			if last > 0 {
				// What was appended is applied before the refusal is sent, so a retry of
				// the list reads it.
				_ = l.waitApplied(ctx, last)
			}
			return nil, fmt.Errorf("append catalog items: %w", failed)
		}
		if len(pending) > 0 {
			if err := l.catchUp(ctx); err != nil {
				return nil, err
			}
		}
	}
	if last > 0 {
		if err := l.waitApplied(ctx, last); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// atCommand names the command of a list that err is about.
func atCommand(i int, err error) error {
	var e *schemas.Error
	if errors.As(err, &e) {
		return &schemas.Error{Code: e.Code, Message: fmt.Sprintf("/commands/%d: %s", i, e.Message)}
	}
	return err
}

// catalogDecision is the decision on one command of a list.
type catalogDecision struct {
	i         int
	seqs      []uint64 // the command id is on the stream already, at these sequences
	unchanged bool     // the item holds the command's data: nothing to append
	updated   bool     // the item exists, with other data
	expect    Expect
	event     schemas.Event
}

// decideCatalog decides the commands cmds[i] for i in pending, a short view at a time.
func (l *Ledger) decideCatalog(at Station, cmds []schemas.CatalogItem, pending []int) ([]catalogDecision, error) {
	out := make([]catalogDecision, 0, len(pending))
	for start := 0; start < len(pending); start += catalogView {
		chunk := pending[start:min(start+catalogView, len(pending))]
		err := l.withView(func(v view) error {
			for _, i := range chunk {
				c := cmds[i]
				d := catalogDecision{i: i}
				// Looked up in the decision's own view, as run does.
				seqs, err := v.st.CommandSeqs(c.CommandID)
				if err != nil {
					return fmt.Errorf("look up command: %w", err)
				}
				if seqs != nil {
					d.seqs = seqs
					out = append(out, d)
					continue
				}
				subject, err := ItemSubject(c.Barcode)
				if err != nil {
					return err
				}
				it, err := v.st.Item(c.Barcode)
				switch {
				case errors.Is(err, model.ErrNotFound):
				case err != nil:
					return err
				case it.ItemCataloged == c.ItemCataloged && (it.Status != model.ItemLost || it.TxnID != ""):
					d.unchanged = true
				default:
					d.updated = true
				}
				if !d.unchanged {
					if d.expect, err = v.expectOn(subject); err != nil {
						return err
					}
				}
				out = append(out, d)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// The events are built outside the views: they read nothing.
	now := l.cfg.Now()
	for k := range out {
		d := &out[k]
		if d.seqs != nil || d.unchanged {
			continue
		}
		c := cmds[d.i]
		ev, err := l.event(at, schemas.TypeItemCataloged, d.expect.Subject, now, c.ItemCataloged)
		if err != nil {
			return nil, err
		}
		ev.CommandID = c.CommandID
		d.event = ev
	}
	return out, nil
}

// catalogRetry answers a command whose id is on the stream already at seqs: from the
// events its first attempt appended (in evs, by sequence), if it is the same command
// (errReused otherwise).
func (l *Ledger) catalogRetry(c schemas.CatalogItem, seqs []uint64, evs map[uint64][]appended) (CatalogOutcome, error) {
	first := make([]appended, 0, len(seqs))
	for _, seq := range seqs {
		e, ok := evs[seq]
		if !ok {
			return CatalogOutcome{}, unavailable(fmt.Errorf("event %d not read", seq))
		}
		first = append(first, e...)
	}
	if err := l.sameCommand(schemas.CmdCatalogItem, c, first); err != nil {
		return CatalogOutcome{}, err
	}
	o := CatalogOutcome{Barcode: c.Barcode, Outcome: CatalogUnchanged, Seq: seqs[len(seqs)-1]}
	it, err := l.st.Item(c.Barcode)
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		return CatalogOutcome{}, err
	}
	if err != nil || it.ItemCataloged != c.ItemCataloged {
		o.Outcome = CatalogRepeated
	}
	return o, nil
}

// maxReadGap is the most messages a batched read of events passes over between two it
// wants: past it, the next is read in a batch of its own.
const maxReadGap = 64

// readEvents reads the messages at seqs from the stream, each message's events checked
// against their schemas and decoded, with JetStream's batched direct reads: a run of nearby sequences (a file's
// earlier import is one run a request) is one request, not one each.
func (l *Ledger) readEvents(ctx context.Context, seqs []uint64) (map[uint64][]appended, error) {
	out := make(map[uint64][]appended, len(seqs))
	if len(seqs) == 0 {
		return out, nil
	}
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	want := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		want[s] = true
	}
	inbox := l.app.nc.NewRespInbox()
	sub, err := l.app.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, unavailable(err)
	}
	defer sub.Unsubscribe()
	for start := 0; start < len(seqs); {
		end := start
		for end+1 < len(seqs) && seqs[end+1]-seqs[end] <= maxReadGap && seqs[end+1]-seqs[start] < directBatch {
			end++
		}
		from, last := seqs[start], seqs[end]
		body, err := json.Marshal(map[string]any{"seq": from, "batch": last - from + 1, "up_to_seq": last})
		if err != nil {
			return nil, err
		}
		if err := l.app.nc.PublishRequest(DirectGetAPI, inbox, body); err != nil {
			return nil, unavailable(err)
		}
		var bad error
		_, err = readDirectBatch(ctx, sub, &from, func(m Msg) error {
			if !want[m.Seq] {
				return nil
			}
			evs, data, err := l.v.EventsData(m.Data)
			if err != nil {
				// Not %w: an event on the stream that fails its schema is a fault in
				// Lethe, not something wrong with this request.
				bad = fmt.Errorf("decode event %d: %v", m.Seq, err)
				return bad
			}
			for i, ev := range evs {
				out[m.Seq] = append(out[m.Seq], appended{ev, data[i]})
			}
			return nil
		})
		if bad != nil {
			return nil, bad
		}
		if err != nil {
			return nil, unavailable(err)
		}
		start = end + 1
	}
	return out, nil
}
