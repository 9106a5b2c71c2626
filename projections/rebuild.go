package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/tlog"
	"github.com/nats-io/nats.go/jetstream"
)

// SignedPrefix is the part of the stream that a checkpoint signed by the library's key
// covers, as its checkpoint.signed event says once its signature is verified (the caller
// does that): Size messages from sequence First, whose Merkle tree (package tlog) has
// Root.
type SignedPrefix struct {
	First, Size uint64
	Root        []byte
}

// ErrNotAsSigned: the messages a rebuild read are not those its checkpoint signed.
var ErrNotAsSigned = errors.New("the stream is not what its signed checkpoint covers")

// Rebuild builds fresh projections in dir from the whole stream up to the sequence s has
// applied, and compares them with s row for row. Rows that do not come from the stream
// are left out of the comparison: work queues for the expunger (k/), which drain outside
// it, and the index of the access record's pseudonyms (a/, r/), which the access log
// writes and which no stream can rebuild.
//
// With a signed prefix, the rebuild decodes the messages it covers, up to what s applied,
// without checking them against their schemas again, which is most of a rebuild's work.
// That is safe because of two facts together. s applied them, and the projector applies
// nothing it has not checked (or an administrator's skip record passes over, as the
// rebuild does too): so their bytes passed the schemas when s applied them. And the
// rebuild hashes every message it reads into the Merkle tree and compares its root with
// the signed one when it reaches the prefix's last message: so these are the same bytes.
// A root that differs, or a prefix the read cannot finish, fails the rebuild with
// ErrNotAsSigned, and nothing it built is kept. A prefix that ends past what s applied is
// not trusted at all (the read stops before its root could be checked), and no message
// after a prefix's end is: those are checked as before.
func (s *Store) Rebuild(ctx context.Context, js jetstream.JetStream, dir string, cfg Config, signed *SignedPrefix) (Diff, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Diff{}, err
	}
	fresh, err := Open(dir, s.keys, s.v, cfg)
	if err != nil {
		return Diff{}, err
	}
	defer fresh.Close()
	if fresh.Applied() != 0 {
		return Diff{}, fmt.Errorf("rebuild directory is not empty")
	}
	upTo := s.Applied()
	if signed != nil && signed.Size > 0 {
		last := signed.First + signed.Size - 1
		if last > upTo {
			// The read stops at what s applied, before the prefix's end, where its root
			// would be checked: nothing is trusted.
			signed = nil
		} else {
			fresh.signed = &signedCheck{SignedPrefix: *signed, last: last, tree: tlog.NewTree()}
		}
	}
	if err := fresh.catchUp(ctx, js, false, upTo); err != nil {
		return Diff{}, err
	}
	var unchecked uint64
	if c := fresh.signed; c != nil {
		if !c.verified {
			return Diff{}, fmt.Errorf("%w: the read ended at sequence %d, before the checkpoint's last message (%d)", ErrNotAsSigned, fresh.Applied(), c.last)
		}
		unchecked = c.Size
	}
	d, err := compare(s.db, fresh.db)
	d.Unchecked = unchecked
	return d, err
}

// signedCheck is a rebuild's check of the stream against a signed prefix.
type signedCheck struct {
	SignedPrefix
	last     uint64 // the prefix's last sequence
	tree     *tlog.Tree
	verified bool // the tree reached the prefix's end with the signed root
}

// covers reports whether the message at seq is decoded without its schemas: it is in the
// signed prefix. (Until the prefix's root is verified the rebuild's result is only
// provisional: a mismatch fails it.)
func (c *signedCheck) covers(seq uint64) bool {
	return c != nil && seq >= c.First && seq <= c.last
}

// add hashes a message read, in order, into the tree, and checks the root at the
// prefix's last message. It runs on the reading goroutine, before the message is handed
// on.
func (c *signedCheck) add(m ledger.Msg) error {
	if !c.covers(m.Seq) {
		return nil
	}
	if want := c.First + c.tree.Size(); m.Seq != want {
		// A hole in the stream: the signed tree has a leaf there.
		return fmt.Errorf("%w: message %d is missing", ErrNotAsSigned, want)
	}
	if err := c.tree.Append(m.Data); err != nil {
		return err
	}
	if m.Seq == c.last {
		root, err := c.tree.Root()
		if err != nil {
			return err
		}
		if !bytes.Equal(root, c.Root) {
			return fmt.Errorf("%w: the Merkle root of messages %d to %d differs from the checkpoint's", ErrNotAsSigned, c.First, c.last)
		}
		c.verified = true
	}
	return nil
}
