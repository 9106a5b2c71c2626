package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/imagineif/lethe/internal/atomicfile"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/tlog"
	"github.com/nats-io/nats.go/jetstream"
)

// TreeFile is the file in the data directory that keeps the checkpoint tree across starts
// (see "Checkpoints" in checkpoint.go): JSON, {"version": 1, "checkpoint_seq", "first_seq",
// "size", "hashes"}, the hashes in base64, one per perfect subtree, left to right. It
// holds nothing the stream does not: hashes of its messages.
const TreeFile = "checkpoint-tree.json"

// treeState is TreeFile's content: the tree as the checkpoint at Seq signed it.
type treeState struct {
	Version int      `json:"version"`
	Seq     uint64   `json:"checkpoint_seq"` // the checkpoint.signed event that signs the tree
	First   uint64   `json:"first_seq"`      // the stream sequence of the first leaf
	Size    uint64   `json:"size"`           // leaves: the messages from First on
	Hashes  [][]byte `json:"hashes"`         // the compact range (tlog.Tree.Hashes)
}

func (c *checkpointer) treePath() string { return filepath.Join(c.s.cfg.Data, TreeFile) }

// resume returns the tree the last checkpoint signed, from TreeFile, once the stream
// confirms it: the message at its sequence must be a checkpoint over the same first
// sequence, size and root, signed by the key that signs now. It returns nil, nil when
// there is no file, and an error saying why the file is not used otherwise; either way
// the caller hashes the stream from its first message. The caller holds mu.
func (c *checkpointer) resume(ctx context.Context) (*tlog.Tree, error) {
	data, err := os.ReadFile(c.treePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var st treeState
	if err := json.Unmarshal(data, &st); err != nil || st.Version != 1 || st.Size == 0 {
		return nil, fmt.Errorf("%s is damaged", TreeFile)
	}
	if st.First != c.first {
		return nil, fmt.Errorf("%s begins at sequence %d, the stream at %d", TreeFile, st.First, c.first)
	}
	tree, err := tlog.TreeFrom(st.Size, st.Hashes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", TreeFile, err)
	}
	root, err := tree.Root()
	if err != nil {
		return nil, err
	}
	m, err := c.s.Stream.GetMsg(ctx, st.Seq)
	if err != nil {
		return nil, fmt.Errorf("the checkpoint %s names at sequence %d: %w", TreeFile, st.Seq, err)
	}
	mismatch := fmt.Errorf("the stream's message at sequence %d is not the checkpoint %s names", st.Seq, TreeFile)
	if m.Subject != ledger.CheckpointSubject {
		return nil, mismatch
	}
	_, ev, err := c.s.V.EventData(m.Data)
	if err != nil {
		return nil, mismatch
	}
	cp, err := verifiedCheckpoint(ev, st.Seq, c.signer.VerifierKey())
	if errors.Is(err, tlog.ErrSignature) {
		return nil, err
	}
	if err != nil || cp.FirstSeq != st.First || cp.Size != st.Size || !bytes.Equal(cp.Root, root) {
		return nil, mismatch
	}
	return tree, nil
}

// verifiedCheckpoint checks the decoded data of the event at sequence seq: a
// checkpoint.signed that covers messages before itself, whose note is signed by vkey over
// its own size and root. An error wrapping tlog.ErrSignature means the note does not open
// under vkey.
func verifiedCheckpoint(ev any, seq uint64, vkey string) (schemas.CheckpointSigned, error) {
	cp, ok := ev.(schemas.CheckpointSigned)
	if !ok || cp.Size == 0 || cp.LastSeq != cp.FirstSeq+cp.Size-1 || cp.LastSeq >= seq {
		return schemas.CheckpointSigned{}, fmt.Errorf("the message at sequence %d is not a checkpoint of the messages before it", seq)
	}
	signed, err := tlog.Open([]byte(cp.Note), vkey)
	if err != nil {
		return schemas.CheckpointSigned{}, fmt.Errorf("the checkpoint at sequence %d is not signed by the key in force (rotated since?): %w", seq, err)
	}
	if signed.Size != cp.Size || !bytes.Equal(signed.Root, cp.Root) {
		return schemas.CheckpointSigned{}, fmt.Errorf("the checkpoint at sequence %d says another size or root than its signed note", seq)
	}
	return cp, nil
}

// SignedPrefix returns what the stream's last checkpoint covers, once its signature is
// verified under the key that signs checkpoints now: a rebuild of the projections decodes
// those messages without their schemas (projections.Store.Rebuild). It returns nil when
// the last message on the checkpoint subject is not a checkpoint signed by that key (none
// yet, or a key rotation not followed by a checkpoint): then a rebuild checks everything.
// A checkpoint whose event and signed note disagree is an error.
func (n *Node) SignedPrefix(ctx context.Context) (*projections.SignedPrefix, error) {
	m, err := n.Stream.GetLastMsgForSubject(ctx, ledger.CheckpointSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the last checkpoint: %w", err)
	}
	_, ev, err := n.V.EventData(m.Data)
	if err != nil {
		return nil, fmt.Errorf("the last checkpoint, at sequence %d: %w", m.Sequence, err)
	}
	if _, ok := ev.(schemas.CheckpointKeyRotated); ok {
		return nil, nil // the new key has signed nothing yet
	}
	signer, err := CheckpointSigner(n.Keys)
	if err != nil {
		return nil, err
	}
	cp, err := verifiedCheckpoint(ev, m.Sequence, signer.VerifierKey())
	if errors.Is(err, tlog.ErrSignature) {
		return nil, nil // signed by a key rotated away since
	}
	if err != nil {
		return nil, err
	}
	return &projections.SignedPrefix{First: cp.FirstSeq, Size: cp.Size, Root: cp.Root}, nil
}

// RebuildProjections rebuilds the projections into dir from the stream, as lethe
// projections rebuild does, and compares them with the live ones: under the last signed
// checkpoint (SignedPrefix), when there is one.
func (n *Node) RebuildProjections(ctx context.Context, dir string, cfg projections.Config) (projections.Diff, error) {
	signed, err := n.SignedPrefix(ctx)
	if err != nil {
		return projections.Diff{}, err
	}
	return n.Proj.Rebuild(ctx, n.JS, dir, cfg, signed)
}

// saveTree writes st to TreeFile atomically: a temporary file, synced, renamed over it. A
// crash leaves the old file or the new one; a file lost or torn costs the next start a
// full rebuild of the tree, nothing more.
func (c *checkpointer) saveTree(st treeState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.Write(c.treePath(), data)
}

// stop ends checkpointing: the start's scrub found a hole. A tree resumed from TreeFile
// never read the messages it covers, so the scrub is what finds a hole there; from then on
// no checkpoint is appended, as when the checkpointer reads the hole itself.
func (c *checkpointer) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = err
	}
	c.noteStatus()
}
