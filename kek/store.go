package kek

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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
	js   jetstream.JetStream
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
	return &Store{js: js, kv: kv, ring: ring}, nil
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
	wrapped, err := s.ring.Wrap(kind, id, key, time.Now())
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
	// A direct read may be answered by a copy that lags: one that has not received a key
	// another node has just made (its event can reach this node first), or, on a node that
	// was away, one still holding a value a rotation has since wrapped again under a KEK
	// this node never held. Then the leader, which holds the latest, decides.
	e, err := s.kv.Get(ctx, n)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("kek: get %s key: %w", kind, err)
	default:
		key, err := s.ring.Unwrap(kind, id, e.Value())
		if !errors.Is(err, ErrNoEpoch) {
			return key, err
		}
	}
	raw, err := s.leaderGet(ctx, n)
	if err != nil {
		return nil, err
	}
	return s.ring.Unwrap(kind, id, raw)
}

// leaderGet reads a key's latest value from the bucket's leader (the JetStream API's
// message get, which only the leader answers): ErrNotFound if it has none, or its last
// operation deleted or purged it.
func (s *Store) leaderGet(ctx context.Context, name string) ([]byte, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + Bucket + "." + name})
	msg, err := s.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+Bucket, req)
	if err != nil {
		return nil, fmt.Errorf("kek: get a key from the bucket's leader: %w", err)
	}
	var resp struct {
		Message *struct {
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("kek: get a key from the bucket's leader: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil, ErrNotFound
	case resp.Error != nil:
		return nil, fmt.Errorf("kek: get a key from the bucket's leader: %s", resp.Error.Description)
	case resp.Message == nil:
		return nil, errors.New("kek: get a key from the bucket's leader: an empty answer")
	case bytes.Contains(resp.Message.Header, []byte("KV-Operation")):
		return nil, ErrNotFound // a delete or purge marker
	}
	return resp.Message.Data, nil
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

// Listed is a key in the bucket: its id and when it was created.
type Listed struct {
	ID      string
	Created time.Time
}

// List returns the keys of kind in the bucket, without unwrapping any: their ids and the
// creation times their values carry.
func (s *Store) List(ctx context.Context, kind string) ([]Listed, error) {
	if _, err := name(kind, "x"); err != nil {
		return nil, err
	}
	w, err := s.kv.Watch(ctx, kind+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("kek: list %s keys: %w", kind, err)
	}
	defer w.Stop()
	var out []Listed
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return out, nil // every key present when the watch began has been read
			}
			_, id, _ := strings.Cut(e.Key(), ".")
			out = append(out, Listed{ID: id, Created: CreatedOf(e.Value())})
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// rewrapWindow is how many re-wraps are on their way to the bucket at once.
const rewrapWindow = 256

// Rewrap wraps every live key under the current epoch (the new one, once every node
// switched). It reads the bucket once with a watcher, and publishes the re-wrapped values
// asynchronously, rewrapWindow at a time, each with the key's revision as the expected
// last sequence of its subject, so that a key destroyed or changed meanwhile is not
// written back. It returns how many it re-wrapped.
func (s *Store) Rewrap(ctx context.Context) (int, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("kek: re-wrap: watch the bucket: %w", err)
	}
	defer w.Stop()
	current := s.ring.Current()
	var (
		done    int
		pending []jetstream.PubAckFuture
	)
	settle := func(all bool) error {
		for len(pending) > 0 && (all || len(pending) >= rewrapWindow) {
			f := pending[0]
			pending = pending[1:]
			select {
			case <-f.Ok():
				done++
			case err := <-f.Err():
				var apiErr *jetstream.APIError
				// 10071, or 10164 from a replicated stream: the key's subject moved on.
				if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
					apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
					continue // destroyed or changed since it was read: nothing to re-wrap
				}
				return fmt.Errorf("kek: re-wrap: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return done, ctx.Err()
		}
		if e == nil {
			break // every key present when the watch began has been read
		}
		if EpochOf(e.Value()) == current {
			continue
		}
		kind, id, _ := strings.Cut(e.Key(), ".")
		key, err := s.ring.Unwrap(kind, id, e.Value())
		if err != nil {
			return done, fmt.Errorf("kek: re-wrap %s: %w", kind, err)
		}
		wrapped, err := s.ring.Wrap(kind, id, key, CreatedOf(e.Value()))
		clear(key)
		if err != nil {
			return done, err
		}
		msg := nats.NewMsg("$KV." + Bucket + "." + e.Key())
		msg.Data = wrapped
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(e.Revision(), 10))
		f, err := s.js.PublishMsgAsync(msg)
		if err != nil {
			return done, fmt.Errorf("kek: re-wrap: %w", err)
		}
		pending = append(pending, f)
		if err := settle(false); err != nil {
			return done, err
		}
	}
	return done, settle(true)
}
