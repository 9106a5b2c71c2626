package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

	errCodeWrongLastSeq   = 10071
	errCodeBatchDuplicate = 10201
)

var (
	// errStale means the expected subject sequence did not match: someone else appended
	// first. The caller waits for the projections and decides again.
	errStale = errors.New("subject changed since the state was read")
	// errDuplicate means the command id was already appended.
	errDuplicate = errors.New("command already applied")
)

// Expect is an optimistic-concurrency expectation: the last sequence on Subject must be
// Seq (0: the subject has no messages yet).
type Expect struct {
	Subject string
	Seq     uint64
}

// appender appends events to the stream with one request per command: a single publish,
// or an atomic batch when a command has several events.
type appender struct {
	nc      *nats.Conn
	timeout time.Duration
}

type pubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// append publishes events (in order) as one atomic unit and returns the stream sequence of
// the last. The first message carries commandID as its Nats-Msg-Id and the expectation, so
// a retried command is recognised and a concurrent change refuses the whole command.
func (a *appender) append(ctx context.Context, commandID string, expect Expect, events []schemas.Event) (uint64, error) {
	if len(events) == 0 {
		return 0, errors.New("append: no events")
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	msgs := make([]*nats.Msg, len(events))
	for i, ev := range events {
		data, err := json.Marshal(ev)
		if err != nil {
			return 0, fmt.Errorf("encode event: %w", err)
		}
		m := nats.NewMsg(ev.Subject)
		m.Data = data
		if i == 0 {
			m.Header.Set(hdrMsgID, commandID)
			if expect.Subject != "" {
				m.Header.Set(hdrExpectSubjSeq, strconv.FormatUint(expect.Seq, 10))
				if expect.Subject != ev.Subject {
					m.Header.Set(hdrExpectSubjName, expect.Subject)
				}
			}
		} else {
			m.Header.Set(hdrMsgID, commandID+"/"+strconv.Itoa(i+1))
		}
		msgs[i] = m
	}
	if len(msgs) > 1 {
		batch := uuid.NewString()
		for i, m := range msgs {
			m.Header.Set(hdrBatchID, batch)
			m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		}
		msgs[len(msgs)-1].Header.Set(hdrBatchCommit, "1")
		for _, m := range msgs[:len(msgs)-1] {
			if err := a.nc.PublishMsg(m); err != nil {
				return 0, unavailable(err)
			}
		}
	}
	resp, err := a.nc.RequestMsgWithContext(ctx, msgs[len(msgs)-1])
	if err != nil {
		return 0, unavailable(err)
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("decode publish ack: %w", err)
	}
	if ack.Error != nil {
		switch ack.Error.ErrCode {
		case errCodeWrongLastSeq:
			return 0, errStale
		case errCodeBatchDuplicate:
			return 0, errDuplicate
		}
		return 0, fmt.Errorf("append refused: %s (err_code %d)", ack.Error.Description, ack.Error.ErrCode)
	}
	if ack.Duplicate {
		return ack.Seq, errDuplicate
	}
	return ack.Seq, nil
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %v", schemas.Errorf(schemas.CodeUnavailable, "the ledger is not reachable; retry with the same command id"), err)
}
