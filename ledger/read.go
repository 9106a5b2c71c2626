package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Msg is one message read from the stream.
type Msg struct {
	Seq     uint64
	Subject string
	Data    []byte
	// Pending is how many messages the stream held after this one when it was delivered:
	// zero means the reader has caught up.
	Pending uint64
}

// ReadOptions says where a read starts and whether it ends.
type ReadOptions struct {
	From   uint64 // first sequence to read; 0 or 1 is the start of the stream
	Follow bool   // keep reading new messages until ctx ends; otherwise stop at the end
	Batch  int    // messages fetched per pull; default 1000
	// Subjects filters the read to these subjects (wildcards allowed); empty reads all.
	Subjects []string
}

// Read reads the stream in order with an ordered consumer (no state on the server, nothing
// acknowledged) and calls fn for each message. Without Follow it returns nil once it has
// delivered the last message that was in the stream when it started.
func Read(ctx context.Context, js jetstream.JetStream, opts ReadOptions, fn func(Msg) error) error {
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	end := info.State.LastSeq
	if len(opts.Subjects) > 0 {
		// The end is the last message on the filtered subjects.
		end = 0
		for _, subj := range opts.Subjects {
			m, err := s.GetLastMsgForSubject(ctx, subj)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			} else if err != nil {
				return fmt.Errorf("last message on %s: %w", subj, err)
			}
			end = max(end, m.Sequence)
		}
	}
	from := max(opts.From, 1)
	if !opts.Follow && from > end {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubjects: opts.Subjects}
	if from > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("ordered consumer: %w", err)
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = 1000
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(batch))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	// Messages are taken from the consumer (and their metadata parsed) on one goroutine
	// and handed to fn on this one, so that reading and fn's work overlap.
	msgs := make(chan Msg, readAhead)
	var readErr error // set before msgs is closed
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				switch {
				case ctx.Err() != nil:
					readErr = ctx.Err()
				case errors.Is(err, jetstream.ErrMsgIteratorClosed):
				default:
					readErr = fmt.Errorf("read stream: %w", err)
				}
				return
			}
			md, err := m.Metadata()
			if err != nil {
				readErr = fmt.Errorf("message metadata: %w", err)
				return
			}
			msgs <- Msg{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Pending: md.NumPending}
			if !opts.Follow && md.Sequence.Stream >= end {
				return
			}
		}
	}()
	for m := range msgs {
		if err := fn(m); err != nil {
			it.Stop()
			for range msgs { // let the reader finish
			}
			<-done
			return err
		}
	}
	<-done
	return readErr
}

// readAhead is how many messages Read takes from the consumer ahead of fn.
const readAhead = 256

// directBatch is how many messages one direct read asks for.
const directBatch = 1000

// directTimeout bounds the wait for each message of a direct read: a stream that stops
// answering is an error, never a hang.
const directTimeout = 10 * time.Second

// ReadDirect reads the stream in order with JetStream's batched direct reads
// (DirectGetAPI): no consumer is created on the server, which is what an auditor's
// identity is limited to. It reads up to the last message the stream held when it
// started (or, with Subjects, the next messages on the first subject) and calls fn for
// each. Follow is not supported.
func ReadDirect(ctx context.Context, nc *nats.Conn, opts ReadOptions, fn func(Msg) error) error {
	if opts.Follow || len(opts.Subjects) > 1 {
		return errors.New("direct reads neither follow nor filter on several subjects")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	end := s.CachedInfo().State.LastSeq
	from := max(opts.From, 1)
	batch := opts.Batch
	if batch <= 0 {
		batch = directBatch
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	for from <= end {
		req := map[string]any{"seq": from, "batch": batch, "up_to_seq": end}
		if len(opts.Subjects) == 1 {
			req["next_by_subj"] = opts.Subjects[0]
		}
		body, err := json.Marshal(req)
		if err != nil {
			return err
		}
		if err := nc.PublishRequest(DirectGetAPI, inbox, body); err != nil {
			return fmt.Errorf("direct read: %w", err)
		}
		got, err := readDirectBatch(ctx, sub, &from, fn)
		if err != nil || got == 0 {
			return err
		}
	}
	return nil
}

// readDirectBatch takes one batch's messages from sub, advancing from past each, until
// the batch's end. It returns how many messages the batch held.
func readDirectBatch(ctx context.Context, sub *nats.Subscription, from *uint64, fn func(Msg) error) (int, error) {
	got := 0
	for {
		wait, cancel := context.WithTimeout(ctx, directTimeout)
		m, err := sub.NextMsgWithContext(wait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return got, ctx.Err()
			}
			return got, fmt.Errorf("direct read from sequence %d: no answer within %s: %w", *from, directTimeout, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204", "404": // the end of this batch; or nothing at or after from
			return got, nil
		default:
			return got, fmt.Errorf("direct read from sequence %d: status %s %s", *from, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || seq < *from {
			return got, fmt.Errorf("direct read from sequence %d: a message without a valid sequence", *from)
		}
		pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
		got++
		*from = seq + 1
		if err := fn(Msg{Seq: seq, Subject: m.Header.Get(jetstream.SubjectHeader), Data: m.Data, Pending: pending}); err != nil {
			return got, err
		}
	}
}
