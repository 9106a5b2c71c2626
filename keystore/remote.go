package keystore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Remote is where a node of a cluster keeps its keys (docs/design.md §11): a bucket every
// node shares, each key wrapped under the cluster's epoch key, which package kek rotates
// so that a destroyed key becomes unwrappable everywhere. A Store opened with OpenRemote
// keeps transaction, profile and system keys there and none in its own files: a key lives
// in one place, so destroying it there is destroying it on every node, and any node can
// read any open loan's key when another dies.
//
// Keys are named by the hex SHA-256 of their kind and id (Ref), never by their id, as in
// the single-node store. Create fails with an error wrapping ErrExists when the key exists,
// Get with one wrapping ErrNotFound when it does not; Destroy is idempotent.
type Remote interface {
	Create(ctx context.Context, kind, name string) ([]byte, error)
	Get(ctx context.Context, kind, name string) ([]byte, error)
	Destroy(ctx context.Context, kind, name string) error
	List(ctx context.Context, kind string) ([]RemoteEntry, error)
}

// RemoteEntry is a key listed by a Remote.
type RemoteEntry struct {
	Name    string
	Created time.Time
}

// ErrClusterNode refuses what a node of a cluster does otherwise: its keys are every
// node's, in the cluster's bucket, so they are not this node's to re-wrap, export or
// change alone.
var ErrClusterNode = errors.New("not on a node of a cluster: its keys are in the cluster's key bucket (see Running a cluster)")

// ErrUnavailable wraps a Remote's failure that says nothing about the key: the cluster's
// bucket did not answer in time, its leader is being elected, this node is learning the
// current key-encryption key. A caller retries later; nothing is wrong with the key or
// with what it protects.
var ErrUnavailable = errors.New("the cluster's key bucket is not reachable now")

// RemoteTimeout bounds one call to the Remote.
const RemoteTimeout = 10 * time.Second

// OpenRemote opens the store of a cluster's node: the local Pebble database in dir (which
// then holds no key: a directory that holds a single node's keys is refused, since keys in
// two places would not be destroyed in both) and the keys in remote. The system keys are
// read from remote, or created there by the first node to need them.
func OpenRemote(dir string, master MasterKey, remote Remote, logger *slog.Logger) (*Store, error) {
	m, err := newMaster(master)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := PebbleOptions(logger)
	opts.FS = noReuseFS{vfs.Default}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w", Damaged(err))
	}
	s := &Store{db: db, fs: vfs.Default, logger: logger.With(slog.String("component", "keystore")), now: time.Now, m: m, remote: remote}
	s.gen.Store(1)
	if err := s.loadRemote(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	s.logger.Info("keystore opened on the cluster's key bucket")
	return s, nil
}

// Remote reports whether the store keeps its keys in a cluster's bucket (OpenRemote).
func (s *Store) Remote() bool { return s.remote != nil }

func (s *Store) loadRemote() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyPrefix, byte(Transaction)}, UpperBound: []byte{keyPrefix, byte(Profile) + 1}})
	if err != nil {
		return err
	}
	local := it.First()
	if err := it.Close(); err != nil {
		return err
	}
	if local {
		return errors.New("this data directory holds a single node's transaction or profile keys; a node of a cluster starts from a data directory of its own (see Running a cluster)")
	}
	return s.loadSystemKeys(s.remoteSystemKey)
}

// remoteSystemKey reads the system key id from the bucket, creating it if no node has.
func (s *Store) remoteSystemKey(id string) ([]byte, error) {
	ref := RefOf(kindSystem, id)
	for range 3 {
		key, err := s.remoteCall(func(ctx context.Context) ([]byte, error) {
			return s.remote.Get(ctx, kindSystem.String(), remoteName(ref))
		})
		if !errors.Is(err, ErrNotFound) {
			if err != nil {
				return nil, fmt.Errorf("system key %s: %w", id, err)
			}
			return key, nil
		}
		key, err = s.remoteCall(func(ctx context.Context) ([]byte, error) {
			return s.remote.Create(ctx, kindSystem.String(), remoteName(ref))
		})
		if !errors.Is(err, ErrExists) { // else another node made it first: read theirs
			if err != nil {
				return nil, fmt.Errorf("system key %s: %w", id, err)
			}
			return key, nil
		}
	}
	return nil, fmt.Errorf("system key %s: created and destroyed by other nodes meanwhile", id)
}

func remoteName(r Ref) string { return hex.EncodeToString(r.Hash[:]) }

// remoteCall runs one call to the Remote with its time limit.
func (s *Store) remoteCall(f func(context.Context) ([]byte, error)) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), RemoteTimeout)
	defer cancel()
	return f(ctx)
}

func (s *Store) remoteCreate(ref Ref) ([]byte, error) {
	return s.remoteCall(func(ctx context.Context) ([]byte, error) {
		return s.remote.Create(ctx, ref.Kind.String(), remoteName(ref))
	})
}

func (s *Store) remoteGet(ref Ref) ([]byte, error) {
	return s.remoteCall(func(ctx context.Context) ([]byte, error) {
		return s.remote.Get(ctx, ref.Kind.String(), remoteName(ref))
	})
}

func (s *Store) remoteDestroy(ref Ref) error {
	_, err := s.remoteCall(func(ctx context.Context) ([]byte, error) {
		return nil, s.remote.Destroy(ctx, ref.Kind.String(), remoteName(ref))
	})
	return err
}

// remoteList lists the keys of kind in the bucket; names that are not a Ref's are refused.
func (s *Store) remoteList(kind Kind) ([]Entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	listed, err := s.remote.List(ctx, kind.String())
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(listed))
	for _, l := range listed {
		h, err := hex.DecodeString(l.Name)
		if err != nil || len(h) != len(Ref{}.Hash) {
			return nil, errors.New("malformed key name in the cluster's key bucket")
		}
		r := Ref{Kind: kind}
		copy(r.Hash[:], h)
		out = append(out, Entry{Ref: r, Created: l.Created})
	}
	return out, nil
}
