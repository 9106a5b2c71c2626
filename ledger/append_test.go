package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testStream starts an embedded JetStream server with fsync before every acknowledgement
// and the CIRC stream, and returns an appender on it and the stream.
func testStream(t *testing.T) (*appender, jetstream.Stream) {
	t.Helper()
	return testStreamWith(t, func(*server.Options) {})
}

// testStreamWith is testStream with server options changed by opt.
func testStreamWith(t *testing.T, opt func(*server.Options)) (*appender, jetstream.Stream) {
	t.Helper()
	opts := &server.Options{JetStream: true, StoreDir: filepath.Join(t.TempDir(), "nats"),
		DontListen: true, NoSigs: true, NoLog: true, SyncAlways: true}
	opt(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := EnsureStream(context.Background(), js, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &appender{nc: nc, timeout: 10 * time.Second}, st
}

// testEvents returns n events on subject.
func testEvents(subject string, n int) []schemas.Event {
	evs := make([]schemas.Event, n)
	for i := range evs {
		evs[i] = schemas.Event{SpecVersion: "1.0", ID: uuid.NewString(), Type: schemas.TypeTransactionClosed,
			Source: "lethe/test", Subject: subject, Data: []byte(`{}`)}
	}
	return evs
}

func mustReq(t *testing.T, id string, expect Expect, events []schemas.Event) *appendReq {
	t.Helper()
	r, err := newAppendReq(id, expect, events)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkLanded checks that the command's message is at seq in the stream: its id, and its
// events (one, or a batch of them) as they were sent.
func checkLanded(t *testing.T, st jetstream.Stream, r *appendReq, res appendResult) {
	t.Helper()
	if res.err != nil {
		t.Fatalf("command %s: %v", r.commandID, res.err)
	}
	m, err := st.GetMsg(context.Background(), res.seq)
	if err != nil {
		t.Fatalf("get %d: %v", res.seq, err)
	}
	if got := m.Header.Get(hdrMsgID); got != r.commandID {
		t.Errorf("sequence %d holds %s, want the message of %s", res.seq, got, r.commandID)
	}
	if !bytes.Equal(m.Data, r.msg.Data) || m.Subject != r.msg.Subject {
		t.Errorf("sequence %d holds other events than command %s sent", res.seq, r.commandID)
	}
}

// TestGroupCommitConcurrentCommands: commands appended at once share commits, and each
// learns the sequence of its own message.
func TestGroupCommitConcurrentCommands(t *testing.T) {
	t.Parallel()
	a, st := testStream(t)
	const n = 48
	type result struct {
		req *appendReq
		seq uint64
		err error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			events := testEvents(fmt.Sprintf("circ.item.g%d", i), 1+i%2)
			req, err := newAppendReq(uuid.NewString(), Expect{Subject: events[0].Subject}, events)
			if err != nil {
				results[i] = result{err: err}
				return
			}
			r := a.appendAll(context.Background(), []*appendReq{req})[0]
			results[i] = result{req, r.seq, r.err}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("append: %v", r.err)
		}
		if seen[r.seq] {
			t.Fatalf("two commands answered with sequence %d", r.seq)
		}
		seen[r.seq] = true
		checkLanded(t, st, r.req, appendResult{seq: r.seq})
	}
	if commits, commands := a.commits.Load(), a.commands.Load(); commands != n || commits >= n {
		t.Errorf("%d commands in %d commits, want %d commands in fewer commits", commands, commits, n)
	}
}

// TestGroupCommitRefusedBatch: one stale command (or one already appended) refuses the
// whole atomic batch; every command is then committed on its own and only those fail.
func TestGroupCommitRefusedBatch(t *testing.T) {
	t.Parallel()
	a, st := testStream(t)
	done := mustReq(t, uuid.NewString(), Expect{}, testEvents("circ.item.dup", 1))
	a.commitAlone(done)
	if r := <-done.done; r.err != nil {
		t.Fatal(r.err)
	}
	good1 := mustReq(t, uuid.NewString(), Expect{Subject: "circ.item.a"}, testEvents("circ.item.a", 2))
	stale := mustReq(t, uuid.NewString(), Expect{Subject: "circ.item.b", Seq: 99}, testEvents("circ.item.b", 2))
	dup := mustReq(t, done.commandID, Expect{}, testEvents("circ.item.dup", 1))
	good2 := mustReq(t, uuid.NewString(), Expect{Subject: "circ.item.c"}, testEvents("circ.item.c", 2))
	a.commit([]unit{{good1, stale, dup, good2}})
	checkLanded(t, st, good1, <-good1.done)
	checkLanded(t, st, good2, <-good2.done)
	if r := <-stale.done; !errors.Is(r.err, errStale) {
		t.Errorf("stale command: %v, want errStale", r.err)
	}
	if r := <-dup.done; !errors.Is(r.err, errDuplicate) {
		t.Errorf("duplicate command: %v, want errDuplicate", r.err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("stream holds %d messages, want 3 (the first, and two commands of two events, a message each)", info.State.Msgs)
	}
}

// TestBatchable: a command whose expectation's subject an earlier message of the batch is
// on, or whose id is already in it, waits for the next group.
func TestBatchable(t *testing.T) {
	t.Parallel()
	r := func(id, expect, subject string) *appendReq {
		return &appendReq{commandID: id, expect: Expect{Subject: expect}, msg: nats.NewMsg(subject)}
	}
	group := []*appendReq{
		r("1", "circ.item.a", "circ.item.a"),
		r("2", "circ.item.a", "circ.item.a"),       // same subject as 1: waits
		r("3", "", "circ.sys.expunged"),            // no expectation
		r("4", "", "circ.sys.expunged"),            // no expectation: shares the subject
		r("5", "circ.item.x", "circ.item.b"),       // expects on another subject
		r("6", "circ.item.b", "circ.item.b"),       // 5 wrote circ.item.b: waits
		r("1", "circ.item.z", "circ.item.z"),       // same id as 1: waits
		r("7", "circ.patron.p", "circ.patron.p"),   // free
		r("8", "circ.sys.expunged", "circ.item.q"), // expects on a subject 3 wrote: waits
	}
	batch, rest := batchable(group)
	ids := func(rs []*appendReq) (out []string) {
		for _, r := range rs {
			out = append(out, r.commandID+":"+r.expect.Subject)
		}
		return out
	}
	want := []string{"1:circ.item.a", "3:", "4:", "5:circ.item.x", "7:circ.patron.p"}
	if got := ids(batch); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batch = %v, want %v", got, want)
	}
	wantRest := []string{"2:circ.item.a", "6:circ.item.b", "1:circ.item.z", "8:circ.sys.expunged"}
	if got := ids(rest); fmt.Sprint(got) != fmt.Sprint(wantRest) {
		t.Errorf("rest = %v, want %v", got, wantRest)
	}
}

// TestGroupCommitPlans: the cost model chooses between committing a group's commands each
// alone (pipelined, a sync each) and in one atomic batch; with the batch, a command whose
// expectation's subject an earlier command writes waits for the next group. Every command
// lands where its result says.
func TestGroupCommitPlans(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		single  time.Duration // the observed cost of a single publish
		commits int64
		rest    int
	}{
		{"alone", 100 * time.Microsecond, 7, 0},
		{"together", 5 * time.Millisecond, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, st := testStream(t)
			a.singleNS.Store(int64(tc.single))
			var group []*appendReq
			for i := range 6 {
				subject := fmt.Sprintf("circ.item.p%d", i)
				group = append(group, mustReq(t, uuid.NewString(), Expect{Subject: subject}, testEvents(subject, 1+i%2)))
			}
			late := mustReq(t, uuid.NewString(), Expect{Subject: "circ.item.p0"}, testEvents("circ.item.p0", 2))
			group = append(group, late)
			rest := a.commitGroup(group)
			if len(rest) != tc.rest || (tc.rest > 0 && rest[0] != late) {
				t.Fatalf("commitGroup left %d commands, want %d", len(rest), tc.rest)
			}
			for _, r := range group[:6] {
				checkLanded(t, st, r, <-r.done)
			}
			if commits := a.commits.Load(); commits != tc.commits {
				t.Errorf("%d commits, want %d", commits, tc.commits)
			}
			if r := a.commitGroup(rest); len(r) != 0 {
				t.Fatalf("commitGroup left %d", len(r))
			}
			if r := <-late.done; !errors.Is(r.err, errStale) {
				t.Errorf("late command: %v, want errStale (p0 moved on)", r.err)
			}
		})
	}
}

// TestSingleCostIsPerMessage: the cost model learns what one more message adds to a
// pipeline of commands committed alone, not each command's wait in it. Fed the waits, it
// judged six kiosk commands cheaper in one 8 ms atomic batch than pipelined in 2 ms (the
// later a command's place in a pipeline, the longer its wait, though its message costs no
// more), and eight kiosks went no faster than one.
func TestSingleCostIsPerMessage(t *testing.T) {
	t.Parallel()
	a, st := testStream(t)
	const k = 8
	units := make([]unit, k)
	for i := range units {
		subject := fmt.Sprintf("circ.item.pipe%d", i)
		units[i] = unit{mustReq(t, uuid.NewString(), Expect{Subject: subject}, testEvents(subject, 1))}
	}
	start := time.Now()
	a.commit(units)
	elapsed := time.Since(start)
	for _, u := range units {
		checkLanded(t, st, u[0], <-u[0].done)
	}
	// Every wait is at least the first's, which includes a round trip and a sync; the
	// whole pipeline's time shared among its k messages is less.
	if got := time.Duration(a.singleNS.Load()); got <= 0 || got*k > elapsed {
		t.Errorf("single cost %v after a pipeline of %d that took %v: want at most %v, the pipeline's time a message", got, k, elapsed, elapsed/k)
	}
}

// TestCommandIsOneMessage: a command of several events is one message, a CloudEvents
// batch of its events in order, on their subject, with the command's id and expectation;
// a command of one event is that event. One with more events than a message holds, or
// events on two subjects, is refused before anything is sent.
func TestCommandIsOneMessage(t *testing.T) {
	t.Parallel()
	a, st := testStream(t)
	for _, n := range []int{1, 2, 3} {
		subject := fmt.Sprintf("circ.item.one%d", n)
		events := testEvents(subject, n)
		r := mustReq(t, uuid.NewString(), Expect{Subject: subject}, events)
		a.commitAlone(r)
		res := <-r.done
		checkLanded(t, st, r, res)
		parts, err := schemas.SplitEvents(r.msg.Data)
		if err != nil || len(parts) != n || schemas.IsBatch(r.msg.Data) != (n > 1) {
			t.Fatalf("%d events: %d parts (%v), batch %v", n, len(parts), err, schemas.IsBatch(r.msg.Data))
		}
		for i, p := range parts {
			var ev schemas.Event
			if err := json.Unmarshal(p, &ev); err != nil || ev.ID != events[i].ID {
				t.Errorf("%d events: part %d is not event %d (%v)", n, i, i, err)
			}
		}
		if got := r.msg.Header.Get(hdrExpectSubjSeq); got != "0" {
			t.Errorf("expectation header %q, want 0", got)
		}
	}
	if _, err := newAppendReq(uuid.NewString(), Expect{}, testEvents("circ.item.many", schemas.MaxBatchEvents+1)); err == nil {
		t.Error("a command of more events than a message holds was accepted")
	}
	two := append(testEvents("circ.item.x", 1), testEvents("circ.item.y", 1)...)
	if _, err := newAppendReq(uuid.NewString(), Expect{}, two); err == nil {
		t.Error("a command with events on two subjects was accepted")
	}
}

// TestAppendAllMaxBatch: a bulk append of more than MaxAtomicBatch commands on distinct
// subjects, each with its expectation, goes in whole atomic batches of MaxAtomicBatch (the
// server's limit; one more message and it refuses the batch) whatever the cost model
// says, and every command lands where its result says. One stale command among them
// refuses its batch: the others land on their own, and it alone fails.
func TestAppendAllMaxBatch(t *testing.T) {
	t.Parallel()
	a, st := testStream(t)
	// A model that says single publishes are nearly free must not split a bulk append.
	a.singleNS.Store(int64(time.Microsecond))
	n := MaxAtomicBatch + 10
	reqs := make([]*appendReq, n)
	for i := range reqs {
		subject := fmt.Sprintf("circ.item.bulk%d", i)
		reqs[i] = mustReq(t, uuid.NewString(), Expect{Subject: subject}, testEvents(subject, 1))
	}
	results := a.appendAll(context.Background(), reqs)
	for i, r := range reqs {
		checkLanded(t, st, r, results[i])
		if i > 0 && results[i].seq != results[i-1].seq+1 {
			t.Fatalf("command %d at sequence %d after %d: want one after the other", i, results[i].seq, results[i-1].seq)
		}
	}
	if commits := a.commits.Load(); commits != 2 {
		t.Errorf("%d commands in %d commits, want 2 (%d in the first)", n, commits, MaxAtomicBatch)
	}

	reqs = reqs[:0]
	for i := range 20 {
		subject := fmt.Sprintf("circ.item.again%d", i)
		expect := Expect{Subject: subject}
		if i == 13 {
			expect.Seq = 99 // stale
		}
		reqs = append(reqs, mustReq(t, uuid.NewString(), expect, testEvents(subject, 1)))
	}
	results = a.appendAll(context.Background(), reqs)
	for i, r := range reqs {
		if i == 13 {
			if !errors.Is(results[i].err, errStale) {
				t.Errorf("stale command: %v, want errStale", results[i].err)
			}
			continue
		}
		checkLanded(t, st, r, results[i])
	}
}

// TestMaxAtomicBatchIsTheServerLimit: the server takes an atomic batch of MaxAtomicBatch
// messages and refuses one of a message more, whole (err_code 10199). If a new
// nats-server moves its limit, this says so.
func TestMaxAtomicBatchIsTheServerLimit(t *testing.T) {
	t.Parallel()
	a, st := testStream(t)
	inbox := nats.NewInbox()
	sub, err := a.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{MaxAtomicBatch, MaxAtomicBatch + 1} {
		u := make(unit, n)
		for i := range u {
			u[i] = mustReq(t, uuid.NewString(), Expect{}, testEvents("circ.item.limit", 1))
		}
		if err := a.send(u.msgs(), inbox); err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
		var ack pubAck
		if err := json.Unmarshal(m.Data, &ack); err != nil {
			t.Fatal(err)
		}
		switch {
		case n == MaxAtomicBatch && (ack.Error != nil || ack.Count != n):
			t.Errorf("batch of %d = %+v, want it taken", n, ack)
		case n > MaxAtomicBatch && (ack.Error == nil || ack.Error.ErrCode != 10199):
			t.Errorf("batch of %d = %+v, want it refused as too large (10199)", n, ack)
		}
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != MaxAtomicBatch {
		t.Errorf("stream holds %d messages, want %d: the batch too large left nothing", info.State.Msgs, MaxAtomicBatch)
	}
}
