// Package tlog makes the circulation stream a transparency log: a Merkle tree (RFC 6962
// hashing, github.com/transparency-dev/merkle) over the bytes of every event in stream
// order, and checkpoints of it as C2SP tlog-checkpoint signed notes (golang.org/x/mod's
// note, github.com/transparency-dev/formats' checkpoint), signed with Ed25519. Any
// transparency-log tool can read them: the origin line, the tree size, the root in base64,
// then the signature.
//
// A leaf is the message data of one stream message (the event's envelope JSON, byte for
// byte), the tree's leaves are the stream's messages from its first sequence, in order,
// and a checkpoint of size N commits to the first N of them.
package tlog

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Origin is the first line of every Lethe checkpoint: it names the log.
const Origin = "lethe/circulation"

// keyName names the signing key in notes.
const keyName = "lethe"

// Tree is a Merkle tree that grows one leaf at a time, keeping only the compact range (a
// hash per set bit of the size).
type Tree struct {
	r *compact.Range
}

// NewTree returns an empty tree.
func NewTree() *Tree {
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	return &Tree{r: f.NewEmptyRange(0)}
}

// Append adds a leaf: the bytes of one event.
func (t *Tree) Append(leaf []byte) error {
	return t.r.Append(rfc6962.DefaultHasher.HashLeaf(leaf), nil)
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.r.End() }

// Root is the tree's root hash (RFC 6962: the empty tree's is SHA-256 of nothing).
func (t *Tree) Root() ([]byte, error) {
	if t.r.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	return t.r.GetRootHash(nil)
}

// Signer signs checkpoints with an Ed25519 key.
type Signer struct {
	s    note.Signer
	vkey string
}

// NewSigner makes a signer from a 32-byte Ed25519 seed (a keystore system key).
func NewSigner(seed []byte) (*Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key: %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	vkey, err := note.NewEd25519VerifierKey(keyName, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	// The signer key is the verifier key's name and hash with the seed in place of the
	// public key (the note package's encoding of an Ed25519 signer).
	parts := strings.Split(vkey, "+")
	skey := "PRIVATE+KEY+" + parts[0] + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, seed...))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	return &Signer{s: s, vkey: vkey}, nil
}

// VerifierKey is the public key, as a note verifier key ("lethe+<hash>+<base64>"): what
// a library publishes and an auditor pins.
func (s *Signer) VerifierKey() string { return s.vkey }

// Sign returns the signed checkpoint of a tree of size leaves and root.
func (s *Signer) Sign(size uint64, root []byte) ([]byte, error) {
	text := log.Checkpoint{Origin: Origin, Size: size, Hash: root}.Marshal()
	return note.Sign(&note.Note{Text: string(text)}, s.s)
}

// Checkpoint is a verified checkpoint.
type Checkpoint struct {
	Size uint64
	Root []byte
}

// ErrSignature says a checkpoint is not signed by the key given.
var ErrSignature = errors.New("checkpoint not signed by the key given")

// Open verifies a signed checkpoint against a verifier key and returns what it commits to.
func Open(signed []byte, vkey string) (Checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("verifier key: %w", err)
	}
	cp, _, _, err := log.ParseCheckpoint(signed, Origin, v)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return Checkpoint{Size: cp.Size, Root: cp.Hash}, nil
}

// LeafHash is the RFC 6962 hash of a leaf.
func LeafHash(leaf []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(leaf) }

// InclusionProof returns the RFC 6962 inclusion proof of leaf index in the tree of the
// first size leaves, from the hashes of the leaves (LeafHash), at least size of them.
func InclusionProof(leafHashes [][]byte, index, size uint64) ([][]byte, error) {
	if size > uint64(len(leafHashes)) {
		return nil, fmt.Errorf("a tree of %d leaves from %d hashes", size, len(leafHashes))
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		// Each is a perfect subtree inside the first size leaves.
		begin, end := id.Index<<id.Level, (id.Index+1)<<id.Level
		r := f.NewEmptyRange(begin)
		for _, h := range leafHashes[begin:end] {
			if err := r.Append(h, nil); err != nil {
				return nil, err
			}
		}
		// A perfect subtree's compact range is the one hash of its root.
		if hs := r.Hashes(); len(hs) == 1 {
			hashes[i] = hs[0]
		} else {
			return nil, fmt.Errorf("node %d/%d is not a perfect subtree", id.Level, id.Index)
		}
	}
	return nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

// VerifyInclusion checks that leaf is leaf index of the tree of size leaves and root.
func VerifyInclusion(leaf []byte, index, size uint64, proofHashes [][]byte, root []byte) error {
	return proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, LeafHash(leaf), proofHashes, root)
}

// rotationLine starts the text of a key rotation note.
const rotationLine = "key "

// SignRotation returns a note, signed by s, that names next as the key that signs the
// checkpoints from now on: how an auditor who pinned s's key learns to trust next.
func (s *Signer) SignRotation(next string) ([]byte, error) {
	if _, err := note.NewVerifier(next); err != nil {
		return nil, fmt.Errorf("next key: %w", err)
	}
	return note.Sign(&note.Note{Text: Origin + "\n" + rotationLine + next + "\n"}, s.s)
}

// OpenRotation verifies a rotation note against the key in force and returns the key it
// names.
func OpenRotation(signed []byte, vkey string) (string, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", fmt.Errorf("verifier key: %w", err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSignature, err)
	}
	origin, rest, _ := strings.Cut(n.Text, "\n")
	next, ok := strings.CutPrefix(strings.TrimSuffix(rest, "\n"), rotationLine)
	if origin != Origin || !ok {
		return "", errors.New("not a key rotation note")
	}
	if _, err := note.NewVerifier(next); err != nil {
		return "", fmt.Errorf("the rotation names no valid key: %w", err)
	}
	return next, nil
}

// TreeFrom continues a tree of size leaves from its compact range (Hashes): what a range
// export carries so that the leaves after it can be checked against a checkpoint without
// the leaves before.
func TreeFrom(size uint64, hashes [][]byte) (*Tree, error) {
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r, err := f.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("tree prefix: %w", err)
	}
	return &Tree{r: r}, nil
}

// Hashes is the tree's compact range: one hash per perfect subtree, left to right.
func (t *Tree) Hashes() [][]byte { return t.r.Hashes() }
