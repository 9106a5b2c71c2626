package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

// JetStream header names and API error codes the appender uses.
const (
	hdrMsgID          = "Nats-Msg-Id"
	hdrExpectSubjSeq  = "Nats-Expected-Last-Subject-Sequence"
	hdrExpectSubjName = "Nats-Expected-Last-Subject-Sequence-Subject"
	hdrBatchID        = "Nats-Batch-Id"
	hdrBatchSeq       = "Nats-Batch-Sequence"
	hdrBatchCommit    = "Nats-Batch-Commit"

	errCodeWrongLastSeq = 10071
	// A replicated stream (a cluster's R3) answers a wrong last sequence with 10164, the
	// same refusal under its constant's own code.
	errCodeWrongLastSeqR  = 10164
	errCodeBatchDuplicate = 10201
	errCodeInProcess      = 10158 // "duplicate message id is in process"

	// JetStream's answers when it cannot store. 10023 ("insufficient resources"): the
	// server's storage limit is reached; unless configured, that limit is 75% of the disk
	// space free when the server started, plus what it held. 10047 ("insufficient storage
	// resources available"): the same limit, checked when a stream is made. A single
	// message whose write fails is not answered at all (the filestore keeps the error and
	// fails every later write until the server restarts): the append times out. (An atomic
	// batch of several commands that cannot be staged is refused with 10176; the group
	// commit then commits each command on its own, like any refused batch.)
	errCodeInsufficientResources = 10023
	errCodeStorageExceeded       = 10047
)

var (
	// errStale means the expected subject sequence did not match: someone else appended
	// first. The caller waits for the projections and decides again.
	errStale = errors.New("subject changed since the state was read")
	// errDuplicate means the command id was already appended.
	errDuplicate = errors.New("command already applied")
	// errInProcess means a message with the command id is being committed right now (a
	// clustered stream has proposed it but not yet stored it): the first attempt's outcome
	// is not known yet, so the retry can only be told to come back.
	errInProcess = schemas.Errorf(schemas.CodeUnavailable, "this command is still being applied; retry with the same command id")
	// errStoreFull means JetStream refused the append because it cannot store it: nothing
	// was appended, and a retry succeeds once it has room.
	errStoreFull = schemas.Errorf(schemas.CodeUnavailable, "the stream cannot store more events (JetStream is out of storage); retry with the same command id once the disk has room")
)

// Expect is an optimistic-concurrency expectation: the last sequence on Subject must be
// Seq (0: the subject has no messages yet).
type Expect struct {
	Subject string
	Seq     uint64
}

// appender appends commands to the stream. Each command is one message: its event, or a
// CloudEvents batch of its events (newAppendReq).
//
// Group commit. With fsync before every acknowledgement, JetStream syncs once per
// message, and an atomic batch costs a fixed handful of syncs (it is staged in a store
// of its own first) however many messages it holds. So commands that arrive while a
// commit is in flight wait, and are then committed together: as one atomic batch when
// that makes them wait less in all than committing them one by one (by the costs
// observed so far), or else each on its own, pipelined in one go. A batch holds at most
// one command with an expectation per subject, and no message before it on that subject,
// so each expectation is checked against the state it was decided on. If JetStream
// refuses the batch (a stale expectation, a duplicate command id), every command in it
// is committed again on its own, so one command never fails its neighbours.
type appender struct {
	nc      *nats.Conn
	timeout time.Duration

	mu      sync.Mutex
	queue   []*appendReq
	leading bool // a goroutine is committing the queue

	// Observed costs (exponential moving averages, in nanoseconds): what one message
	// committed alone adds to a pipeline of them, and an atomic batch's fixed cost.
	singleNS, batchNS atomic.Int64
	// What was committed: requests to JetStream, and commands in them.
	commits, commands atomic.Int64
}

// MaxAtomicBatch is the most messages JetStream takes in one atomic batch: nats-server
// v2.15.2 refuses a larger one whole (streamDefaultMaxAtomicBatchSize, err_code 10199),
// unless its jetstream limits set max_batch_size lower. The group commit never builds a
// larger batch, and a bulk import sends at most this many commands a request, so one
// request can be one commit.
const MaxAtomicBatch = 1000

// Cost model defaults, before any commit is observed, and the per-message cost of a
// message inside an atomic batch (measured on a 2-core machine: 4.5 ms for a batch of
// two, 9.7 ms for 64).
const (
	defaultSingleCost = 500 * time.Microsecond
	defaultBatchCost  = 4 * time.Millisecond
	batchMsgCost      = 80 * time.Microsecond
	// maxGroupMsgs bounds an atomic batch: the server's own limit.
	maxGroupMsgs = MaxAtomicBatch
)

// appendReq is one command waiting to be committed.
type appendReq struct {
	commandID string
	expect    Expect
	msg       *nats.Msg
	done      chan appendResult
	// bulk is set on the commands of one appendAll call: they go in an atomic batch
	// whatever the cost model says (see commitGroup).
	bulk bool
}

type appendResult struct {
	seq uint64 // stream sequence of the command's message
	err error
}

type pubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Count     int    `json:"count"` // messages in an atomic batch
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// append publishes a command's events (in order) as one message and returns its stream
// sequence.
func (a *appender) append(ctx context.Context, commandID string, expect Expect, events []schemas.Event) (uint64, error) {
	req, err := newAppendReq(commandID, expect, events)
	if err != nil {
		return 0, err
	}
	r := a.appendAll(ctx, []*appendReq{req})[0]
	return r.seq, r.err
}

// appendAll queues several commands at once and returns each one's result, in order. They
// enter the queue together, in order, so the group commit sees them side by side: commands
// on distinct subjects (a bulk import's items) go as one atomic batch of up to
// MaxAtomicBatch commands, with every command's expectation and id checked in it, and a
// refused batch is committed again command by command, as for any group.
func (a *appender) appendAll(ctx context.Context, reqs []*appendReq) []appendResult {
	if len(reqs) > 1 {
		for _, r := range reqs {
			r.bulk = true
		}
	}
	a.mu.Lock()
	a.queue = append(a.queue, reqs...)
	lead := !a.leading
	a.leading = true
	a.mu.Unlock()
	if lead {
		go a.lead()
	}
	out := make([]appendResult, len(reqs))
	for i, req := range reqs {
		select {
		case out[i] = <-req.done:
		case <-ctx.Done():
			// As with a timeout, the outcome is unknown: the commit goes on without us
			// (done is buffered, so nothing waits on us either).
			out[i] = appendResult{err: unavailable(ctx.Err())}
		}
	}
	return out
}

// newAppendReq encodes a command's events as the message it appends: the event itself,
// or a CloudEvents JSON batch of its events in order (schemas.SplitEvents). The message
// carries commandID as its Nats-Msg-Id, so a retried command is recognised, and the
// expectation, so a concurrent change refuses the whole command.
func newAppendReq(commandID string, expect Expect, events []schemas.Event) (*appendReq, error) {
	if len(events) == 0 {
		return nil, errors.New("append: no events")
	}
	if len(events) > schemas.MaxBatchEvents {
		return nil, fmt.Errorf("append: a command of %d events (a message holds at most %d)", len(events), schemas.MaxBatchEvents)
	}
	subject := events[0].Subject
	for _, ev := range events[1:] {
		if ev.Subject != subject {
			return nil, errors.New("append: a command's events are on one subject")
		}
	}
	var data []byte
	var err error
	if len(events) == 1 {
		data, err = json.Marshal(events[0])
	} else {
		data, err = json.Marshal(events)
	}
	if err != nil {
		return nil, fmt.Errorf("encode events: %w", err)
	}
	if len(data) > schemas.MaxEventBytes {
		return nil, fmt.Errorf("append: a command's events take %d bytes (a message holds at most %d)", len(data), schemas.MaxEventBytes)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(hdrMsgID, commandID)
	if expect.Subject != "" {
		m.Header.Set(hdrExpectSubjSeq, strconv.FormatUint(expect.Seq, 10))
		if expect.Subject != subject {
			m.Header.Set(hdrExpectSubjName, expect.Subject)
		}
	}
	return &appendReq{commandID: commandID, expect: expect, msg: m, done: make(chan appendResult, 1)}, nil
}

// lead commits the queue, group by group, until it is empty.
func (a *appender) lead() {
	for {
		a.mu.Lock()
		if len(a.queue) == 0 {
			a.leading = false
			a.mu.Unlock()
			return
		}
		group := a.queue
		a.queue = nil
		a.mu.Unlock()
		if rest := a.commitGroup(group); len(rest) > 0 {
			a.mu.Lock()
			a.queue = append(rest, a.queue...) // first in the next group
			a.mu.Unlock()
		}
	}
}

// commitGroup commits what it can of group and returns the commands left for the next
// group, in order. It chooses, by the costs observed so far, the plan under which the
// commands wait least in all: each alone (pipelined: JetStream commits them one after
// another, a sync each), or as many as can share one in one atomic batch.
//
// A group with a bulk command in it goes in one atomic batch (as much of it as fits)
// without asking the model: its linear cost of a message in a batch, measured on the
// small batches kiosks make, is higher than what a message costs in a large batch, and
// near a thousand commands it could tip a bulk import into a thousand single publishes,
// one fsync each.
func (a *appender) commitGroup(group []*appendReq) (rest []*appendReq) {
	if len(group) == 1 {
		a.commit([]unit{{group[0]}})
		return nil
	}
	// The plans' costs, as the sum of the commands' waits. Alone, the i-th of S pipelined
	// messages is acknowledged after i syncs: single·S(S+1)/2. Together, each of the n
	// commands waits for the whole batch: n·(batch + n·batchMsgCost).
	all, allRest := batchable(group)
	together := slices.ContainsFunc(group, func(r *appendReq) bool { return r.bulk })
	if !together && len(all) > 1 {
		single, batch := a.costs()
		S := time.Duration(len(group))
		eachAlone := single * S * (S + 1) / 2 // the sum of their waits, one after another
		n := time.Duration(len(all))
		together = n*(batch+n*batchMsgCost) < eachAlone
	}
	if together {
		if len(all) == 1 {
			a.commit([]unit{{all[0]}})
		} else {
			a.commit([]unit{all})
		}
		return allRest
	}
	units := make([]unit, len(group))
	for i, r := range group {
		units[i] = unit{r}
	}
	a.commit(units)
	return nil
}

// batchable splits group into the commands that can share one atomic batch, in order,
// and the rest: a command with an expectation on a subject that an earlier message of the
// batch is on, or whose id is already in the batch, waits.
func batchable(group []*appendReq) (batch, rest []*appendReq) {
	used := map[string]bool{}
	ids := map[string]bool{}
	for _, r := range group {
		if (r.expect.Subject != "" && used[r.expect.Subject]) || ids[r.commandID] || len(batch) >= maxGroupMsgs {
			rest = append(rest, r)
			continue
		}
		batch = append(batch, r)
		ids[r.commandID] = true
		used[r.msg.Subject] = true
		if r.expect.Subject != "" {
			used[r.expect.Subject] = true
		}
	}
	return batch, rest
}

func (a *appender) costs() (single, batch time.Duration) {
	single, batch = time.Duration(a.singleNS.Load()), time.Duration(a.batchNS.Load())
	if single == 0 {
		single = defaultSingleCost
	}
	if batch == 0 {
		batch = defaultBatchCost
	}
	return single, batch
}

// observeBatch folds the time an atomic batch of msgs messages took into the cost model.
func (a *appender) observeBatch(d time.Duration, msgs int) {
	d -= time.Duration(msgs) * batchMsgCost
	if d <= 0 {
		// A large batch (a bulk import's) costs less a message than the model's
		// batchMsgCost, which is measured on the small batches kiosks make: folded in, it
		// would tell the model that batches cost nothing.
		return
	}
	fold(&a.batchNS, d)
}

// observeSingles folds into the cost model the time k messages committed alone took, from
// the first's publication to the last's acknowledgement, pipelined. Divided by k, it is
// what one more message adds to the wait of those behind it: JetStream stores and syncs
// them one after another. (Folding in each message's own wait instead counts a
// pipeline's position as cost: a model fed that way judged six kiosk commands cheaper in
// an 8 ms atomic batch than pipelined in 2 ms.)
func (a *appender) observeSingles(d time.Duration, k int) {
	if k > 0 {
		fold(&a.singleNS, d/time.Duration(k))
	}
}

// fold moves a moving average an eighth of the way to d.
func fold(v *atomic.Int64, d time.Duration) {
	old := v.Load()
	if old == 0 {
		v.Store(int64(d))
		return
	}
	v.Store(old + (int64(d)-old)/8)
}

// unit is what JetStream commits at once: one command's message, or several commands'
// in one atomic batch.
type unit []*appendReq

func (u unit) msgs() []*nats.Msg {
	if len(u) == 1 {
		return []*nats.Msg{u[0].msg}
	}
	msgs := make([]*nats.Msg, len(u))
	for i, r := range u {
		// A copy: if the batch is refused, each command is published again as it was.
		c := nats.NewMsg(r.msg.Subject)
		c.Data = r.msg.Data
		for k, v := range r.msg.Header {
			c.Header[k] = v
		}
		msgs[i] = c
	}
	return msgs
}

// commit publishes the units in order, all at once (JetStream commits them one after
// another), and hands each command its result. A batch of several commands that
// JetStream refuses is committed again, each command on its own.
func (a *appender) commit(units []unit) {
	if len(units) == 1 && len(units[0]) == 1 {
		a.commitAlone(units[0][0])
		return
	}
	inbox := nats.NewInbox()
	sub, err := a.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		for _, u := range units {
			for _, r := range u {
				r.done <- appendResult{err: unavailable(err)}
			}
		}
		return
	}
	defer sub.Unsubscribe()
	type sent struct {
		u    unit
		msgs int
	}
	waiting := map[string]sent{}
	start := time.Now()
	for i, u := range units {
		msgs := u.msgs()
		reply := inbox + "." + strconv.Itoa(i)
		if err := a.send(msgs, reply); err != nil {
			for _, r := range u {
				r.done <- appendResult{err: err}
			}
			continue
		}
		waiting[reply] = sent{u, len(msgs)}
		a.commits.Add(1)
	}
	var refused []*appendReq
	var singles int // single commands acknowledged without error
	var lastSingle time.Time
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	for len(waiting) > 0 {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			// The outcome is unknown: the commits may or may not have happened.
			for _, w := range waiting {
				for _, r := range w.u {
					r.done <- appendResult{err: unavailable(err)}
				}
			}
			break
		}
		w, ok := waiting[m.Subject]
		if !ok {
			continue
		}
		delete(waiting, m.Subject)
		var ack pubAck
		if err := json.Unmarshal(m.Data, &ack); err != nil {
			for _, r := range w.u {
				r.done <- appendResult{err: fmt.Errorf("decode publish ack: %w", err)}
			}
			continue
		}
		if len(w.u) == 1 {
			if ack.Error == nil {
				singles++
				lastSingle = time.Now()
			}
			a.commands.Add(1)
			w.u[0].done <- ackResult(ack)
			continue
		}
		if ack.Error != nil || ack.Duplicate || ack.Count != w.msgs || ack.Seq < uint64(w.msgs) {
			refused = append(refused, w.u...)
			continue
		}
		a.observeBatch(time.Since(start), w.msgs)
		a.commands.Add(int64(len(w.u)))
		// The batch is contiguous in the stream and ends at ack.Seq.
		seq := ack.Seq - uint64(w.msgs)
		for _, r := range w.u {
			seq++
			r.done <- appendResult{seq: seq}
		}
	}
	a.observeSingles(lastSingle.Sub(start), singles)
	if len(refused) > 0 {
		units := make([]unit, len(refused))
		for i, r := range refused {
			units[i] = unit{r}
		}
		a.commit(units)
	}
}

// commitAlone commits one command's message.
func (a *appender) commitAlone(r *appendReq) {
	start := time.Now()
	ack, err := a.publish(r.msg)
	a.commits.Add(1)
	a.commands.Add(1)
	if err != nil {
		r.done <- appendResult{err: err}
		return
	}
	if ack.Error == nil {
		a.observeSingles(time.Since(start), 1)
	}
	r.done <- ackResult(ack)
}

// ackResult interprets a command's own acknowledgement.
func ackResult(ack pubAck) appendResult {
	if ack.Error != nil {
		switch ack.Error.ErrCode {
		case errCodeWrongLastSeq, errCodeWrongLastSeqR:
			return appendResult{err: errStale}
		case errCodeBatchDuplicate:
			return appendResult{err: errDuplicate}
		case errCodeInProcess:
			return appendResult{err: errInProcess}
		case errCodeInsufficientResources, errCodeStorageExceeded:
			return appendResult{err: fmt.Errorf("%w: %s (err_code %d)", errStoreFull, ack.Error.Description, ack.Error.ErrCode)}
		}
		return appendResult{err: fmt.Errorf("append refused: %s (err_code %d)", ack.Error.Description, ack.Error.ErrCode)}
	}
	if ack.Duplicate {
		return appendResult{seq: ack.Seq, err: errDuplicate}
	}
	return appendResult{seq: ack.Seq}
}

// send publishes msgs (one message, or one atomic batch), the last with reply as its
// reply subject; it does not wait.
func (a *appender) send(msgs []*nats.Msg, reply string) error {
	stage(msgs)
	for _, m := range msgs[:len(msgs)-1] {
		if err := a.nc.PublishMsg(m); err != nil {
			return unavailable(err)
		}
	}
	last := msgs[len(msgs)-1]
	last.Reply = reply
	if err := a.nc.PublishMsg(last); err != nil {
		return unavailable(err)
	}
	return nil
}

// stage marks several messages as one atomic batch.
func stage(msgs []*nats.Msg) {
	if len(msgs) < 2 {
		return
	}
	batch := uuid.NewString()
	for i, m := range msgs {
		m.Header.Set(hdrBatchID, batch)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
	}
	msgs[len(msgs)-1].Header.Set(hdrBatchCommit, "1")
}

// publish publishes one message and returns the stream's acknowledgement. An error means
// the outcome is unknown.
func (a *appender) publish(m *nats.Msg) (pubAck, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	resp, err := a.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return pubAck{}, unavailable(err)
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return pubAck{}, fmt.Errorf("decode publish ack: %w", err)
	}
	return ack, nil
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %v", schemas.Errorf(schemas.CodeUnavailable, "the ledger is not reachable; retry with the same command id"), err)
}

// InProcess reports whether err says the same command is being committed right now, by
// another attempt: on a cluster, two nodes' expungers record the same transaction at once
// (its record has one id, so one of them lands), and the other retries. Not a failure.
func InProcess(err error) bool { return errors.Is(err, errInProcess) }
