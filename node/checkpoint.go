package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/tlog"
)

// Checkpoints.
//
// The service keeps the Merkle tree of the stream (package tlog) and appends a signed
// checkpoint of it every CheckpointInterval, or sooner once CheckpointEvents messages
// came since the last, when anything but its own last checkpoint came. The tree is
// rebuilt from the stream at every start, in the background; a stream with a hole in it
// gets no checkpoint over the hole (the start's scrub reports it), since a signature over
// what is left would vouch for it.

// Defaults: a checkpoint a minute, or every 10,000 events, whichever comes first. One
// event in 10,000 is 0.01 % of the appends.
const (
	DefaultCheckpointInterval = time.Minute
	DefaultCheckpointEvents   = 10_000
)

type checkpointer struct {
	s      *Service
	signer *tlog.Signer

	mu        sync.Mutex // serialises catching up and appending
	tree      *tlog.Tree
	first     uint64 // the stream's first sequence: the first leaf
	next      uint64 // the next sequence to hash
	lastCP    uint64 // sequence of the last checkpoint appended, or 0
	lastAt    time.Time
	broken    error // a hole in the stream: no checkpoint from here on
	published uint64
}

func newCheckpointer(s *Service) (*checkpointer, error) {
	seed := s.Keys.CheckpointSeed()
	signer, err := tlog.NewSigner(seed)
	clear(seed)
	if err != nil {
		return nil, err
	}
	return &checkpointer{s: s, signer: signer, tree: tlog.NewTree()}, nil
}

// VerifierKey is the public key of the service's checkpoints, as auditors pin it.
func (s *Service) VerifierKey() string { return s.cp.signer.VerifierKey() }

// Checkpoint appends a checkpoint of the stream as it stands now, if anything came since
// the last one. It returns the checkpoint's sequence (0 if none was needed).
func (s *Service) Checkpoint(ctx context.Context) (uint64, error) { return s.cp.checkpoint(ctx, true) }

// catchUp hashes the messages appended since the last call. The caller holds mu.
func (c *checkpointer) catchUp(ctx context.Context) error {
	if c.broken != nil {
		return c.broken
	}
	if c.next == 0 {
		info, err := c.s.Stream.Info(ctx)
		if err != nil {
			return err
		}
		c.first, c.next = max(info.State.FirstSeq, 1), max(info.State.FirstSeq, 1)
	}
	err := ledger.Read(ctx, c.s.JS, ledger.ReadOptions{From: c.next}, func(m ledger.Msg) error {
		if m.Seq != c.next {
			return fmt.Errorf("the stream has no message at sequence %d (the next is %d): no checkpoint covers a hole", c.next, m.Seq)
		}
		if err := c.tree.Append(m.Data); err != nil {
			return err
		}
		c.next++
		return nil
	})
	if err != nil && ctx.Err() == nil {
		c.broken = err
	}
	return err
}

// checkpoint appends a checkpoint if one is due (or force). One that another message beat
// to the stream is made again at once, a few times: under a steady load the next try
// usually wins.
func (c *checkpointer) checkpoint(ctx context.Context, force bool) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range 20 {
		seq, err := c.try(ctx, force)
		if !errors.Is(err, ledger.ErrCheckpointStale) {
			return seq, err
		}
	}
	return 0, nil // the next round tries again
}

func (c *checkpointer) try(ctx context.Context, force bool) (uint64, error) {
	if err := c.catchUp(ctx); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	size := c.tree.Size()
	last := c.first + size - 1
	if size == 0 || last == c.lastCP {
		return 0, nil // nothing since the last checkpoint but itself
	}
	if !force {
		due := time.Since(c.lastAt) >= c.s.checkpointEvery || size-c.published >= uint64(c.s.checkpointEvents)
		if !due {
			return 0, nil
		}
	}
	root, err := c.tree.Root()
	if err != nil {
		return 0, err
	}
	signed, err := c.signer.Sign(size, root)
	if err != nil {
		return 0, err
	}
	seq, err := c.s.Ledger.AppendCheckpoint(ctx, schemas.CheckpointSigned{
		FirstSeq: c.first, LastSeq: last, Size: size, Root: root, Note: string(signed), Key: c.signer.VerifierKey(),
	})
	if err != nil {
		return 0, err
	}
	c.lastCP, c.lastAt, c.published = seq, time.Now(), size
	c.s.cfg.Logger.Debug("checkpoint appended", "size", size, "root", base64.StdEncoding.EncodeToString(root), "seq", seq)
	return seq, nil
}

// run appends checkpoints until ctx ends.
func (c *checkpointer) run(ctx context.Context) {
	c.lastAt = time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if _, err := c.checkpoint(ctx, false); err != nil && ctx.Err() == nil {
			c.s.cfg.Logger.Error("checkpoint", "err", err)
			if c.broken != nil {
				return // said once; the scrub says the rest on /healthz
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
