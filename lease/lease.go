// Package lease runs a piece of work on one node of a cluster at a time (docs/design.md
// §11: the epoch rotation, the rules sweeper, checkpoints): the node that holds the
// work's lease, a key in a replicated JetStream KV bucket whose entries expire after the
// lease's time to live unless renewed. A holder renews at a third of it, with the
// revision it last wrote, and stops its work when it has not renewed for half of it, so
// the work has ended before another node can take the expired lease.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of leases.
const Bucket = "LETHE_LEASES"

// Open opens (or creates) the lease bucket for leases of ttl, with replicas copies. The
// bucket's entries expire ttl after they were written: that is the lease's time to live.
func Open(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: Bucket, History: 1, TTL: ttl, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("lease: open the lease bucket: %w", err)
	}
	return kv, nil
}

// Config is one lease.
type Config struct {
	Name   string        // the work's name: a KV key
	Holder string        // this node's name, written as the lease's value
	TTL    time.Duration // the bucket's time to live
	Logger *slog.Logger
}

// Run holds the lease whenever it can and runs work while it does, until ctx ends. work
// gets a context that ends when the lease is lost (or ctx ends) and must return then. On
// the way out a held lease is deleted, so another node takes over at once.
func Run(ctx context.Context, kv jetstream.KeyValue, cfg Config, work func(context.Context)) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	renewEvery := cfg.TTL / 3
	for ctx.Err() == nil {
		rev, err := kv.Create(ctx, cfg.Name, []byte(cfg.Holder))
		if err != nil {
			// Held elsewhere (or the bucket is unreachable): look again in a while.
			if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
				logger.Debug("lease: cannot take", "lease", cfg.Name, "err", err)
			}
			select {
			case <-time.After(renewEvery):
			case <-ctx.Done():
			}
			continue
		}
		logger.Info("lease taken", "lease", cfg.Name, "holder", cfg.Holder)
		hold(ctx, kv, cfg, rev, renewEvery, work, logger)
	}
}

// hold runs work while renewing the lease; it returns once work has returned.
func hold(ctx context.Context, kv jetstream.KeyValue, cfg Config, rev uint64, renewEvery time.Duration,
	work func(context.Context), logger *slog.Logger) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(wctx)
	}()
	last := time.Now()
	tick := time.NewTicker(renewEvery)
	defer tick.Stop()
	for {
		select {
		case <-done:
			cancel()
			release(kv, cfg, rev)
			return
		case <-ctx.Done():
			cancel()
			<-done
			release(kv, cfg, rev)
			return
		case <-tick.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, renewEvery)
		next, err := kv.Update(rctx, cfg.Name, []byte(cfg.Holder), rev)
		rcancel()
		if err == nil {
			rev, last = next, time.Now()
			continue
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) ||
			time.Since(last) >= cfg.TTL/2 {
			// Taken by another, expired, or not renewed for half its life: stop before
			// anyone else can start.
			logger.Warn("lease lost", "lease", cfg.Name, "holder", cfg.Holder, "err", err)
			cancel()
			<-done
			return
		}
	}
}

// release deletes the lease if it is still this holder's.
func release(kv jetstream.KeyValue, cfg Config, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.TTL/3)
	defer cancel()
	_ = kv.Delete(ctx, cfg.Name, jetstream.LastRevision(rev))
}

// Once waits until it holds the lease, runs work under it and releases it: work that must
// not overlap the singleton of that name (a node joining a cluster must not overlap a
// key-encryption rotation). work's context ends if the lease is lost. Once returns work's
// error, or ctx's if the lease was not taken before ctx ended.
func Once(ctx context.Context, kv jetstream.KeyValue, cfg Config, work func(context.Context) error) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for {
		rev, err := kv.Create(ctx, cfg.Name, []byte(cfg.Holder))
		if err == nil {
			var werr error
			hold(ctx, kv, cfg, rev, cfg.TTL/3, func(wctx context.Context) { werr = work(wctx) }, logger)
			return werr
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			logger.Debug("lease: cannot take", "lease", cfg.Name, "err", err)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("lease %s: %w", cfg.Name, ctx.Err())
		}
	}
}
