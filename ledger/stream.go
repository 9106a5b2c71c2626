package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DedupeWindow is how long a command id is remembered, by JetStream and by the
// projections: a kiosk retry inside it is answered, not applied again.
const DedupeWindow = time.Hour

// StreamConfig is the configuration of the CIRC stream: file storage, append-only (delete
// and purge denied), no maximum age (history is kept, anonymous), a deduplication window
// for command ids, and atomic batches for commands with several events.
func StreamConfig(replicas int) jetstream.StreamConfig {
	if replicas <= 0 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:               StreamName,
		Description:        "Lethe circulation ledger (append-only; patrons sealed under per-transaction keys)",
		Subjects:           []string{StreamSubjects},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		MaxMsgSize:         64 << 10,
		Duplicates:         DedupeWindow,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowAtomicPublish: true,
		Replicas:           replicas,
	}
}

// EnsureStream creates the CIRC stream, or checks that an existing one keeps the
// invariants Lethe depends on. It never weakens an existing stream.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	want := StreamConfig(replicas)
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", StreamName, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", StreamName, err)
	}
	got := s.CachedInfo().Config
	switch {
	case !got.DenyDelete || !got.DenyPurge:
		return nil, fmt.Errorf("stream %s allows delete or purge: the ledger must be append-only", StreamName)
	case !got.AllowAtomicPublish:
		return nil, fmt.Errorf("stream %s does not allow atomic publish", StreamName)
	case got.MaxAge != 0:
		return nil, fmt.Errorf("stream %s has a maximum age: history would be lost", StreamName)
	case got.Storage != jetstream.FileStorage:
		return nil, fmt.Errorf("stream %s is not file-backed", StreamName)
	}
	return s, nil
}
