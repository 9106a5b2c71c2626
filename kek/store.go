package kek

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of wrapped keys.
const Bucket = "LETHE_KEYS"

// ErrNotFound: no such key (never created, or destroyed).
var ErrNotFound = errors.New("kek: no such key")

// ErrExists: the key exists already.
var ErrExists = errors.New("kek: the key exists")

// Store keeps Lethe's keys in a replicated KV bucket, each wrapped under the KEK of an
// epoch (Keyring).
type Store struct {
	kv   jetstream.KeyValue
	ring *Keyring
}

// OpenStore opens (or creates) the bucket with replicas copies, keeping only each key's
// latest value: a re-wrap replaces the older value, whose bytes JetStream keeps as
// residue until compaction, unwrappable once the older epoch is dropped everywhere.
func OpenStore(ctx context.Context, js jetstream.JetStream, ring *Keyring, replicas int) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: Bucket, History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("kek: open the key bucket: %w", err)
	}
	return &Store{kv: kv, ring: ring}, nil
}

// name is a key's name in the bucket: kind.id, both tokens.
func name(kind, id string) (string, error) {
	if kind == "" || id == "" || strings.ContainsAny(kind+id, ". *>\x00") {
		return "", fmt.Errorf("kek: a key's kind and id must be non-empty tokens")
	}
	return kind + "." + id, nil
}

// Create makes a new random key for (kind, id), wrapped under the current epoch, and
// returns it once the bucket acknowledged it (R3: on a majority of the nodes' disks).
func (s *Store) Create(ctx context.Context, kind, id string) ([]byte, error) {
	n, err := name(kind, id)
	if err != nil {
		return nil, err
	}
	key := make([]byte, Size)
	rand.Read(key)
	s.ring.wraps.RLock() // until the bucket has it: see Keyring.wraps
	defer s.ring.wraps.RUnlock()
	wrapped, err := s.ring.Wrap(kind, id, key)
	if err != nil {
		return nil, err
	}
	if _, err := s.kv.Create(ctx, n, wrapped); errors.Is(err, jetstream.ErrKeyExists) {
		return nil, ErrExists
	} else if err != nil {
		return nil, fmt.Errorf("kek: create %s key: %w", kind, err)
	}
	return key, nil
}

// Get returns the key of (kind, id).
func (s *Store) Get(ctx context.Context, kind, id string) ([]byte, error) {
	n, err := name(kind, id)
	if err != nil {
		return nil, err
	}
	e, err := s.kv.Get(ctx, n)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("kek: get %s key: %w", kind, err)
	}
	return s.ring.Unwrap(kind, id, e.Value())
}

// Destroy deletes the key and every revision of it from the bucket. Its bytes stay in the
// bucket's files and raft logs, wrapped under the current epoch's KEK, until every node
// dropped that KEK (Rotate): then nothing that exists unwraps them.
func (s *Store) Destroy(ctx context.Context, kind, id string) error {
	n, err := name(kind, id)
	if err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, n); err != nil {
		return fmt.Errorf("kek: destroy %s key: %w", kind, err)
	}
	return nil
}

// Rewrap wraps every live key under the newest epoch this node holds (the next one, after
// Prepare), each with an expected revision, so
// that a key destroyed meanwhile is not written back. It returns how many it re-wrapped.
func (s *Store) Rewrap(ctx context.Context) (int, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("kek: list keys: %w", err)
	}
	var names []string
	for n := range lister.Keys() {
		names = append(names, n)
	}
	newest := s.ring.newest()
	done := 0
	for _, n := range names {
		kind, id, _ := strings.Cut(n, ".")
		e, err := s.kv.Get(ctx, n)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // destroyed meanwhile
		} else if err != nil {
			return done, fmt.Errorf("kek: re-wrap: %w", err)
		}
		if EpochOf(e.Value()) == newest {
			continue
		}
		key, err := s.ring.Unwrap(kind, id, e.Value())
		if err != nil {
			return done, fmt.Errorf("kek: re-wrap %s: %w", kind, err)
		}
		wrapped, err := s.ring.Wrap(kind, id, key)
		clear(key)
		if err != nil {
			return done, err
		}
		if _, err := s.kv.Update(ctx, n, wrapped, e.Revision()); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // changed or destroyed since the read: nothing to re-wrap
			}
			return done, fmt.Errorf("kek: re-wrap: %w", err)
		}
		done++
	}
	return done, nil
}
