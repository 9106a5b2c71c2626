package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// maxBatch bounds how many events one Pebble batch applies while catching up.
const maxBatch = 512

// Stop is where and why the projector stopped. It names a sequence and a reason built
// from codes and opaque ids, never patron data.
type Stop struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
	// Poison is set when the event itself cannot be decoded or applied: the projector
	// waits for an administrator's skip record (ledger.Skip). Otherwise the failure is
	// the projections' own (a full disk) and the projector tries again by itself.
	Poison bool `json:"poison"`
}

func (s Stop) unavailable() error {
	if s.Poison {
		return schemas.Errorf(schemas.CodeUnavailable,
			"the projections stopped at stream sequence %d, an event they cannot apply; writes resume once an administrator resolves it (GET /healthz)", s.Seq)
	}
	return schemas.Errorf(schemas.CodeUnavailable,
		"the projections cannot write (stopped at stream sequence %d); writes resume when they can (GET /healthz)", s.Seq)
}

// stopError carries a Stop out of catchUp.
type stopError struct{ Stop }

func (e *stopError) Error() string {
	return fmt.Sprintf("projector stopped at sequence %d: %s", e.Seq, e.Reason)
}

// retryEvery is how often a stopped projector looks again: for an administrator's skip
// record, or whether a failed write now succeeds.
const retryEvery = 2 * time.Second

// Follow applies the stream from the event after the last one applied until ctx ends. It
// gathers consecutive messages into one batch while more are pending.
//
// An event it cannot decode or apply does not end it, and never ends the process: the
// projector stops at that sequence, says so (Stopped, Health, an error log line), and
// waits until an administrator records a skip of that sequence (ledger.Skip), looking
// again every few seconds or when Resume is called. A failure to write its own database
// (a full disk) stops it the same way until a retry succeeds. Follow returns only when ctx
// ends or the stream cannot be read.
func (s *Store) Follow(ctx context.Context, js jetstream.JetStream) error {
	for {
		err := s.catchUp(ctx, js, true, 0)
		if ctx.Err() != nil {
			return nil
		}
		var stop *stopError
		if !errors.As(err, &stop) {
			return err
		}
		s.setStopped(stop.Stop)
		s.logger.Error("projector stopped: kiosk and desk writes are refused until this is resolved",
			"seq", stop.Seq, "reason", stop.Reason, "poison", stop.Poison)
		t := time.NewTimer(retryEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.resume:
		case <-t.C:
		}
		t.Stop()
	}
}

// CatchUp applies the stream up to the end it had when called. An event it cannot apply
// stops it with an error naming the sequence; Follow then waits there.
func (s *Store) CatchUp(ctx context.Context, js jetstream.JetStream) error {
	return s.catchUp(ctx, js, false, 0)
}

// IsStop reports whether err is the projector stopping at an event (as opposed to the
// stream being unreadable).
func IsStop(err error) bool {
	var stop *stopError
	return errors.As(err, &stop)
}

// catchUp applies the stream from the next unapplied event, in batches, until its end
// (or, following, until ctx ends), or through sequence upTo when that is not 0.
//
// Reading and applying overlap: the stream is read on this goroutine while the previous
// batch is decoded (on every core, when it is big) and applied on another.
func (s *Store) catchUp(ctx context.Context, js jetstream.JetStream, follow bool, upTo uint64) error {
	for {
		err := s.catchUpOnce(ctx, js, follow, upTo)
		if !errors.Is(err, errLagging) {
			return err
		}
		s.logger.Warn("an event could not be read or applied now; reading it again", "err", err)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
}

// errLagging: the read passed over a message the stream's leader has, or an event needs a
// key the cluster's bucket cannot give now. On a cluster, a read is served by whichever
// copy of the stream holds its consumer, and a copy still catching up (a node that
// returns, or starts again on an empty disk) can skip what it has not received yet; and a
// bucket electing a leader answers nothing for a while. The projections apply nothing
// past it, and read again.
var errLagging = errors.New("an event the stream holds cannot be read or applied yet")

// confirmHole checks with the stream's leader (not a direct read, which any current enough
// copy may answer) that message seq does not exist: CIRC denies deletes, so a hole is
// damage, which the start reports, and the projections pass over it as before; anything
// else is a read that skipped it.
func confirmHole(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	req, _ := json.Marshal(map[string]uint64{"seq": seq})
	msg, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+ledger.StreamName, req)
	if err != nil {
		return fmt.Errorf("%w: sequence %d: the leader does not answer: %v", errLagging, seq, err)
	}
	var resp struct {
		Error *struct {
			ErrCode int `json:"err_code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("%w: sequence %d: %v", errLagging, seq, err)
	}
	if resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
		return nil
	}
	return fmt.Errorf("%w: sequence %d", errLagging, seq)
}

func (s *Store) catchUpOnce(ctx context.Context, js jetstream.JetStream, follow bool, upTo uint64) error {
	if upTo != 0 && s.Applied() >= upTo {
		return nil
	}
	st, err := s.newApplyState()
	if err != nil {
		return err
	}
	if st.skips, err = s.skips(ctx, js); err != nil {
		return err
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	ap := s.startApplying(st, stopReading)
	pending := make([]ledger.Msg, 0, maxBatch)
	flush := func() error {
		batch := pending
		pending = make([]ledger.Msg, 0, maxBatch) // the applier owns batch now
		return ap.submit(batch)
	}
	expect := s.Applied() + 1
	err = ledger.Read(readCtx, js, ledger.ReadOptions{From: expect, Follow: follow}, func(m ledger.Msg) error {
		// A gap first: a read that skipped messages must not pass for the end of the range.
		if m.Seq > expect {
			if err := confirmHole(readCtx, js, expect); err != nil {
				return err
			}
		}
		expect = m.Seq + 1
		if upTo != 0 && m.Seq > upTo {
			return errStop
		}
		if err := s.signed.add(m); err != nil {
			return err
		}
		pending = append(pending, m)
		last := upTo != 0 && m.Seq == upTo
		if m.Pending == 0 || len(pending) >= maxBatch || last {
			if err := flush(); err != nil {
				return err
			}
		}
		if last {
			return errStop
		}
		return nil
	})
	if (err == nil || errors.Is(err, errStop)) && len(pending) > 0 {
		err = flush()
	}
	// The applier's failure comes first: it is why reading stopped.
	if aerr := ap.close(); aerr != nil {
		return aerr
	}
	if errors.Is(err, errStop) || (errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		return nil
	}
	return err
}

// skips reads the administrators' skip records: the sequences the projections pass over.
// A record counts only for a sequence before its own, and a record that does not decode
// counts for nothing (the projector then stops at it like at any other).
func (s *Store) skips(ctx context.Context, js jetstream.JetStream) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	err := ledger.Read(ctx, js, ledger.ReadOptions{Subjects: []string{ledger.SkippedSubject}}, func(m ledger.Msg) error {
		_, data, err := s.v.EventData(m.Data)
		if d, ok := data.(schemas.ProjectionSkipped); err == nil && ok && d.Seq < m.Seq {
			out[d.Seq] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read skip records: %w", err)
	}
	return out, nil
}

// applying decodes and applies batches handed over by the reader, in order: one
// goroutine decodes (on every core, for a big batch) while another applies the batch
// before, so neither waits for the other.
type applying struct {
	batches chan []ledger.Msg
	done    chan struct{}
	mu      sync.Mutex
	err     error // the first failure
}

// startApplying starts the applier; fail is called when a batch fails, to stop reading.
func (s *Store) startApplying(st *applyState, fail func()) *applying {
	ap := &applying{batches: make(chan []ledger.Msg, 2), done: make(chan struct{})}
	decoded := make(chan []decoded, 2)
	go func() {
		defer close(decoded)
		for batch := range ap.batches {
			if ap.failed() == nil {
				decoded <- s.decodeAll(batch)
			}
		}
	}()
	go func() {
		defer close(ap.done)
		for batch := range decoded {
			if ap.failed() != nil {
				continue // drain: the reader stops at its next submit
			}
			if err := s.applyOrStop(st, batch); err != nil {
				ap.mu.Lock()
				ap.err = err
				ap.mu.Unlock()
				fail()
			}
		}
	}()
	return ap
}

// applyOrStop applies a batch. When an event in it cannot be applied, the events before
// it are applied on their own, so the projector stops exactly at the bad one.
func (s *Store) applyOrStop(st *applyState, batch []decoded) error {
	err := s.applyDecoded(st, batch)
	var bad *badEvent
	if !errors.As(err, &bad) {
		if err != nil {
			// The event was fine; writing the projections was not (a full disk).
			return &stopError{Stop{Seq: s.Applied() + 1, Reason: err.Error()}}
		}
		return nil
	}
	if bad.index > 0 {
		if err := s.applyDecoded(st, batch[:bad.index]); err != nil {
			return &stopError{Stop{Seq: s.Applied() + 1, Reason: err.Error()}}
		}
	}
	if bad.transient {
		return fmt.Errorf("%w: sequence %d: %v", errLagging, bad.seq, bad.err)
	}
	return &stopError{Stop{Seq: bad.seq, Reason: bad.err.Error(), Poison: true}}
}

func (ap *applying) failed() error {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	return ap.err
}

// submit hands a batch to the applier; it returns the applier's failure, if any.
func (ap *applying) submit(batch []ledger.Msg) error {
	if err := ap.failed(); err != nil {
		return err
	}
	if len(batch) > 0 {
		ap.batches <- batch
	}
	return ap.failed()
}

// close waits until every submitted batch is applied and returns the first failure.
func (ap *applying) close() error {
	close(ap.batches)
	<-ap.done
	return ap.failed()
}

// Diff is how two projections differ.
type Diff struct {
	Missing, Extra, Changed int      // rows only in the live, only in the rebuilt, or in both but different
	Examples                []string // a few prefixes of differing rows, for the operator; no ids
	// Unchecked is how many messages the rebuild decoded without their schemas, under a
	// signed checkpoint whose root it verified (Rebuild).
	Unchecked uint64
}

// Equal reports whether there was no difference.
func (d Diff) Equal() bool { return d.Missing == 0 && d.Extra == 0 && d.Changed == 0 }

var errStop = errors.New("stop")

// compare walks both databases in key order.
func compare(live, rebuilt *pebble.DB) (Diff, error) {
	skip := func(k []byte) bool {
		for _, p := range []string{pProfileK, pAccess, pAccessBy, keystore.FenceKey} {
			if bytes.HasPrefix(k, []byte(p)) {
				return true
			}
		}
		return false
	}
	a, err := live.NewIter(nil)
	if err != nil {
		return Diff{}, err
	}
	defer a.Close()
	b, err := rebuilt.NewIter(nil)
	if err != nil {
		return Diff{}, err
	}
	defer b.Close()
	var d Diff
	note := func(k []byte) {
		if len(d.Examples) < 5 {
			d.Examples = append(d.Examples, string(k[:min(2, len(k))]))
		}
	}
	okA, okB := a.First(), b.First()
	for okA || okB {
		switch {
		case okA && skip(a.Key()):
			okA = a.Next()
		case okB && skip(b.Key()):
			okB = b.Next()
		case !okB || (okA && bytes.Compare(a.Key(), b.Key()) < 0):
			d.Missing++
			note(a.Key())
			okA = a.Next()
		case !okA || bytes.Compare(a.Key(), b.Key()) > 0:
			d.Extra++
			note(b.Key())
			okB = b.Next()
		default:
			if !bytes.Equal(a.Value(), b.Value()) {
				d.Changed++
				note(a.Key())
			}
			okA, okB = a.Next(), b.Next()
		}
	}
	return d, errors.Join(a.Error(), b.Error())
}
