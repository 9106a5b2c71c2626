package ledger

import (
	"context"
	"errors"
	"fmt"

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
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("read stream: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("message metadata: %w", err)
		}
		if err := fn(Msg{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Pending: md.NumPending}); err != nil {
			return err
		}
		if !opts.Follow && md.Sequence.Stream >= end {
			return nil
		}
	}
}
