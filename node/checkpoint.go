package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/tlog"
)

// Checkpoints.
//
// The service keeps the Merkle tree of the stream (package tlog) and appends a signed
// checkpoint of it every CheckpointInterval, or sooner once CheckpointEvents messages
// came since the last, when anything but its own last checkpoint came. A stream with a
// hole in it gets no checkpoint over the hole (the start's scrub reports it), since a
// signature over what is left would vouch for it.
//
// The tree is kept across starts. After each checkpoint it appends, the service writes
// the tree as that checkpoint signed it (its compact range: one hash per set bit of the
// size, and the checkpoint's stream sequence) to <data>/checkpoint-tree.json. The next
// start, in the background and before it appends anything, reads the checkpoint event at
// that sequence back from the stream and resumes from the file only if the event is a
// checkpoint over the same first sequence, size and root, signed by the key that signs
// now; then it hashes only the messages after the tree. Anything else (no file, a damaged
// one, another stream, a rotated key) and the tree is rebuilt from the first message, as
// before the file existed. Either way the next checkpoint is the same: a tree's root
// depends only on its leaves, and Ed25519 signatures are deterministic.

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
	resumed   uint64 // the tree size this start resumed from (TreeFile); 0: hashed from the first message

	status atomic.Pointer[CheckpointStatus] // the last of each try, read without mu
}

// CheckpointStatus is the state of the signed checkpoints, for the auditor's view.
type CheckpointStatus struct {
	Seq      uint64    // stream sequence of the last checkpoint this process appended; 0: none yet
	At       time.Time // when
	TreeSize uint64    // the messages it covers
	Hashed   uint64    // the messages in the tree so far
	// Resumed is how many of them this start took from the last checkpoint's saved tree
	// (TreeFile) instead of reading and hashing them again; 0 when it hashed them all.
	Resumed uint64
	Broken  string // the hole found in the stream, if any: no checkpoint from it on
}

// CheckpointStatus reports the checkpoints without waiting for one being made.
func (s *Service) CheckpointStatus() CheckpointStatus {
	if p := s.cp.status.Load(); p != nil {
		return *p
	}
	return CheckpointStatus{}
}

// noteStatus publishes the state; under c.mu.
func (c *checkpointer) noteStatus() {
	st := CheckpointStatus{Seq: c.lastCP, At: c.lastAt, TreeSize: c.published, Hashed: c.tree.Size(), Resumed: c.resumed}
	if c.lastCP == 0 {
		st.At = time.Time{}
	}
	if c.broken != nil {
		st.Broken = c.broken.Error()
	}
	c.status.Store(&st)
}

func newCheckpointer(ctx context.Context, s *Service) (*checkpointer, error) {
	if err := finishKeyRotation(ctx, s); err != nil {
		return nil, fmt.Errorf("checkpoint key rotation: %w", err)
	}
	signer, err := CheckpointSigner(s.Keys)
	if err != nil {
		return nil, err
	}
	// The first interval counts from the start. Set here, before the loop and a key
	// rotation can race for it: the loop used to set it without the lock.
	return &checkpointer{s: s, signer: signer, tree: tlog.NewTree(), lastAt: time.Now()}, nil
}

// CheckpointSigner is the signer of checkpoints, from the keystore's signing key.
func CheckpointSigner(keys *keystore.Store) (*tlog.Signer, error) {
	seed := keys.CheckpointSeed()
	defer clear(seed)
	return tlog.NewSigner(seed)
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
		if tree, err := c.resume(ctx); err != nil {
			c.s.cfg.Logger.Info("the checkpoint tree is rebuilt from the stream", "reason", err)
		} else if tree != nil {
			c.tree, c.resumed = tree, tree.Size()
			c.next = c.first + tree.Size()
		}
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
	return c.checkpointLocked(ctx, force)
}

func (c *checkpointer) checkpointLocked(ctx context.Context, force bool) (uint64, error) {
	defer c.noteStatus()
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
	if err := c.saveTree(treeState{Version: 1, Seq: seq, First: c.first, Size: size, Hashes: c.tree.Hashes()}); err != nil {
		// The checkpoint stands; the next start rebuilds the tree from the stream.
		c.s.cfg.Logger.Warn("keep the checkpoint tree for the next start", "err", err)
	}
	c.s.cfg.Logger.Debug("checkpoint appended", "size", size, "root", base64.StdEncoding.EncodeToString(root), "seq", seq)
	return seq, nil
}

// run appends checkpoints until ctx ends. A failure is logged when it begins and then at
// most once a minute while it lasts (the loop tries every second: a stream unreachable
// for an hour would otherwise log 3,600 lines), and the recovery once.
func (c *checkpointer) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var failures failureLog
	for {
		_, err := c.checkpoint(ctx, false)
		switch {
		case err != nil && ctx.Err() == nil:
			c.mu.Lock()
			broken := c.broken != nil
			c.mu.Unlock()
			if log, since := failures.failed(time.Now()); log || broken {
				c.s.cfg.Logger.Error("checkpoint", "err", err, "failed_since_last_logged", since)
			}
			if broken {
				return // said once; the scrub says the rest on /healthz
			}
		case err == nil:
			if n := failures.ok(); n > 0 {
				c.s.cfg.Logger.Info("checkpoints resumed", "failed_tries", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RotateCheckpointKey replaces the key that signs checkpoints, and returns the old and
// the new verifier keys. Everything so far is checkpointed under the old key; then a
// checkpoint.key_rotated event, signed by the old key, names the new one, and the new one
// signs from then on. The new key is staged in the keystore before the event is appended,
// so a crash in between is finished by the next start (finishKeyRotation).
func (s *Service) RotateCheckpointKey(ctx context.Context) (old, next string, err error) {
	c := s.cp
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.checkpointLocked(ctx, true); err != nil {
		return "", "", err
	}
	seed := make([]byte, 32)
	rand.Read(seed)
	defer clear(seed)
	signer, err := tlog.NewSigner(seed)
	if err != nil {
		return "", "", err
	}
	note, err := c.signer.SignRotation(signer.VerifierKey())
	if err != nil {
		return "", "", err
	}
	if err := s.Keys.StageCheckpointSeed(seed); err != nil {
		return "", "", err
	}
	if err := s.Ledger.AppendKeyRotation(ctx, schemas.CheckpointKeyRotated{Key: signer.VerifierKey(), Note: string(note)}); err != nil {
		return "", "", fmt.Errorf("announce the new checkpoint key (the next start finishes or drops it): %w", err)
	}
	if err := s.Keys.FinishCheckpointRotation(true); err != nil {
		return "", "", err
	}
	old = c.signer.VerifierKey()
	c.signer = signer
	c.lastCP = 0 // the next checkpoint is due under the new key
	return old, signer.VerifierKey(), nil
}

// finishKeyRotation ends a rotation a crash interrupted: a staged key the stream names
// in a checkpoint.key_rotated event comes into force; one it does not name is dropped.
func finishKeyRotation(ctx context.Context, s *Service) error {
	seed, staged, err := s.Keys.StagedCheckpointSeed()
	if err != nil || !staged {
		return err
	}
	signer, err := tlog.NewSigner(seed)
	clear(seed)
	if err != nil {
		return err
	}
	announced := false
	err = ledger.Read(ctx, s.JS, ledger.ReadOptions{Subjects: []string{ledger.CheckpointSubject}}, func(m ledger.Msg) error {
		_, data, err := s.V.EventData(m.Data)
		if rot, ok := data.(schemas.CheckpointKeyRotated); err == nil && ok && rot.Key == signer.VerifierKey() {
			announced = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.cfg.Logger.Warn("finishing an interrupted checkpoint key rotation", "announced", announced)
	return s.Keys.FinishCheckpointRotation(announced)
}

// failureLog says when a loop that retries every second should log its failure: at the
// first, then once every failureLogEvery while it goes on.
type failureLog struct {
	logged time.Time // when a failure was last logged
	since  int       // failures not logged since then
	tries  int       // failures since the last success
}

const failureLogEvery = time.Minute

// failed notes a failure at now and reports whether to log it, with how many failures
// went unlogged before it.
func (f *failureLog) failed(now time.Time) (log bool, unlogged int) {
	f.tries++
	if f.tries > 1 && now.Sub(f.logged) < failureLogEvery {
		f.since++
		return false, 0
	}
	unlogged, f.since, f.logged = f.since, 0, now
	return true, unlogged
}

// ok notes a success and returns how many tries had failed before it (0: none).
func (f *failureLog) ok() int {
	n := f.tries
	*f = failureLog{}
	return n
}
