// Package replica keeps the kiosk and auditor identities and the staff accounts the same
// on every node of a cluster (docs/design.md §11), so that a kiosk and a clerk can use
// any node.
//
// Each node keeps its own copies, as a single node does: the identity registry
// (<data>/identities.json, which the node's NATS authentication reloads) and the staff
// store (<data>/staff). A Replica mirrors each into a replicated JetStream KV bucket, one
// entry per identity or account, and the bucket into it:
//
//   - LETHE_IDENTITIES, keyed by the identity's public key (an NKey, "U…"); the value is
//     the identity's JSON, as identities.json holds it.
//   - LETHE_STAFF, keyed by the account's name in hex (a name may hold '.', which a KV
//     key cannot hold everywhere); the value is staff.Record's JSON.
//
// Both hold public data only, safe to keep forever in every node's JetStream files: names,
// roles, public keys, argon2id hashes and times. Never a seed, never a password.
//
// Copies meet in any order and more than once, so neither side overwrites the other: each
// entry is the merge of every copy seen (identity.Merge, staff.MergeRecords: a revocation
// is final, the later password wins, the later disable or enable wins), and a node writes
// an entry only with the revision it last read (compare and swap), merging again when
// another node wrote first. The bucket's value of a key therefore only ever moves forward,
// and every node ends with the same identities and accounts.
//
// When: a change in the bucket arrives through a KV watcher within milliseconds; a change
// made on this node (`lethe kiosks add`, the staff API) is seen at the next poll (every
// second, as the NATS authentication reloads the registry), so a kiosk added on one node
// can connect to another within about two seconds. A watcher's consumer lives on one
// server of the cluster, which may stop or lag behind; a watcher that ends, or stays
// behind the bucket's last revision (as the stream's leader reports it) for three polls,
// is replaced. While a bucket has no leader (its server stopped, a new one not yet
// elected, a few seconds), writes wait and are tried again.
//
// A value in a bucket that does not decode, breaks the format's rules, or claims to be
// another identity than this node's copy of that key is refused: it changes nothing here,
// is not overwritten (a newer Lethe may have written it, or an operator must look), and
// is reported by Err and logged until a good value replaces it. One damaged entry does not
// stop the others: a revocation must reach every node whatever else is in the bucket.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/staff"
)

// The buckets. Wire names: never renamed or reused.
const (
	IdentitiesBucket = "LETHE_IDENTITIES"
	StaffBucket      = "LETHE_STAFF"
)

// maxValue bounds a bucket value: an identity or an account is a few hundred bytes.
const maxValue = 16 << 10

// opTimeout bounds one request to JetStream, so that Close never waits on a cluster that
// does not answer for longer than this. A write that times out is tried again at the
// next poll; compare and swap makes that safe.
const opTimeout = 5 * time.Second

// awaitTimeout bounds the wait for the watcher to deliver another node's write to an
// entry after this node's write to it was refused. A watcher that is current delivers it
// in milliseconds.
const awaitTimeout = 2 * time.Second

// readTimeout bounds reading the whole bucket when a watcher starts.
const readTimeout = 30 * time.Second

// Config is what a Replica keeps in step.
type Config struct {
	JS jetstream.JetStream // the node's own JetStream (required)
	// Replicas is how many copies of each bucket the cluster keeps: 0 means 3.
	Replicas int
	// Registry is the node's identity registry; nil replicates no identities.
	Registry *identity.Registry
	// Staff is the node's staff store; nil replicates no staff accounts. It must stay
	// open until Close has returned.
	Staff *staff.Store
	// Logger receives what the replica does; nil discards it. It never logs a value.
	Logger *slog.Logger
	// Poll is how often the local registry and store are checked for changes made on
	// this node (`lethe kiosks add`, the staff API): 0 means one second, as the NATS
	// authentication reloads the registry.
	Poll time.Duration
}

// Validate reports whether c can be used.
func (c Config) Validate() error {
	switch {
	case c.JS == nil:
		return errors.New("replica: no JetStream")
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("replica: %d replicas; JetStream keeps 1 to 5", c.Replicas)
	case c.Poll < 0:
		return errors.New("replica: negative poll interval")
	case c.Registry == nil && c.Staff == nil:
		return errors.New("replica: neither an identity registry nor a staff store to replicate")
	}
	return nil
}

// Replica keeps a node's identities and staff accounts in step with the cluster's
// buckets, from Start until Close.
type Replica struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mirrors []syncer
}

// syncer is a mirror of either kind (mirror.go).
type syncer interface {
	first(ctx context.Context, js jetstream.JetStream, replicas int) error
	run(ctx context.Context)
	problems() []error
}

// Start opens (creating if need be) the buckets, brings the local copies and the buckets
// into step (every local change published, every bucket entry merged here) before it
// returns, then keeps them in step in the background until Close. ctx bounds the first
// sync only. An error means nothing runs; a damaged bucket entry is not an error (Err).
func Start(ctx context.Context, cfg Config) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 3
	}
	if cfg.Poll == 0 {
		cfg.Poll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With(slog.String("component", "replica"))
	runCtx, cancel := context.WithCancel(context.Background())
	r := &Replica{cancel: cancel}
	if cfg.Registry != nil {
		r.mirrors = append(r.mirrors, newMirror(runCtx, cfg, IdentitiesBucket, identities{cfg.Registry, cfg.Logger}))
	}
	if cfg.Staff != nil {
		r.mirrors = append(r.mirrors, newMirror(runCtx, cfg, StaffBucket, accounts{cfg.Staff}))
	}
	for _, m := range r.mirrors {
		if err := m.first(ctx, cfg.JS, cfg.Replicas); err != nil {
			r.Close()
			return nil, err
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			m.run(runCtx)
		}()
	}
	return r, nil
}

// Close stops keeping in step and waits until the background work has ended (at most
// about opTimeout, if JetStream stopped answering in the middle of a write). Changes made
// locally meanwhile are published by the next Start. Closing twice is harmless.
func (r *Replica) Close() {
	r.cancel()
	r.wg.Wait()
}

// Err reports what is not in step, or nil: bucket entries refused (damaged, or claiming
// to be another identity or account than this node's copy), and the last failure to read
// or write either side, which is retried every poll interval. Its text names buckets and
// keys (public keys, hex names), never a value.
func (r *Replica) Err() error {
	var errs []error
	for _, m := range r.mirrors {
		errs = append(errs, m.problems()...)
	}
	return errors.Join(errs...)
}
