package node_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/tlog"
)

// TestRebuildUnderSignedCheckpoint: a rebuild decodes the messages that the last signed
// checkpoint covers without their schemas, and gives the same projections as one that
// checks everything. It trusts nothing when the stream is not what the checkpoint
// signed (a root that differs, as a changed message would make it), when the prefix goes
// past what the live projections applied, or when the last checkpoint is signed by a
// key rotated away; and a checkpoint event whose signed note says otherwise is an error.
func TestRebuildUnderSignedCheckpoint(t *testing.T) {
	t.Parallel()
	h := treeHistory(t)
	ctx := testkit.Context(t)
	s := h.S
	signed, err := s.SignedPrefix(ctx)
	if err != nil || signed == nil {
		t.Fatalf("SignedPrefix() = %+v, %v; want the checkpoint just made", signed, err)
	}
	if signed.First != 1 || signed.Size < 5 {
		t.Fatalf("signed prefix %+v: want the history from sequence 1", signed)
	}
	rebuild := func(p *projections.SignedPrefix) (projections.Diff, error) {
		return s.Proj.Rebuild(ctx, s.JS, filepath.Join(t.TempDir(), "rebuild"), projections.Config{Location: time.UTC}, p)
	}
	checked, err := rebuild(nil)
	if err != nil || !checked.Equal() || checked.Unchecked != 0 {
		t.Fatalf("checked rebuild: %+v, %v", checked, err)
	}
	diff, err := rebuild(signed)
	if err != nil || !diff.Equal() || diff.Unchecked != signed.Size {
		t.Fatalf("rebuild under the checkpoint: %+v, %v; want equal, %d unchecked", diff, err, signed.Size)
	}

	// A stream whose messages hash to another root: refused, nothing trusted.
	other := *signed
	other.Root = append([]byte{}, signed.Root...)
	other.Root[0] ^= 1
	if _, err := rebuild(&other); !errors.Is(err, projections.ErrNotAsSigned) {
		t.Errorf("rebuild against another root: %v, want ErrNotAsSigned", err)
	}
	// A prefix past what the live projections applied cannot be verified by the read.
	past := *signed
	past.Size = s.Proj.Applied() + 10
	if diff, err := rebuild(&past); err != nil || !diff.Equal() || diff.Unchecked != 0 {
		t.Errorf("rebuild with a prefix past the projections: %+v, %v; want everything checked", diff, err)
	}

	// A checkpoint event whose signed note covers another root: an error, not a prefix.
	seed := s.Keys.CheckpointSeed()
	signer, err := tlog.NewSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	last := h.StreamLast()
	note, err := signer.Sign(last, signed.Root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ledger.AppendCheckpoint(ctx, schemas.CheckpointSigned{FirstSeq: 1, LastSeq: last, Size: last,
		Root: other.Root, Note: string(note), Key: signer.VerifierKey()}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.SignedPrefix(ctx); err == nil {
		t.Errorf("a checkpoint whose note signs another root: %+v, want an error", p)
	}

	// After a key rotation, the last checkpoint message names the new key, which has
	// signed nothing yet.
	if _, _, err := s.RotateCheckpointKey(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := s.SignedPrefix(ctx); err != nil || p != nil {
		t.Errorf("after a key rotation: %+v, %v; want no prefix", p, err)
	}
}
