package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
		AllowDirect:        true,
		Replicas:           replicas,
	}
}

// StreamCheck is what a start found about an existing stream that does not stop it but
// must not be served silently: messages that JetStream reports lost or deleted although
// the stream denies deletion (a damaged block file loses events at start).
type StreamCheck struct {
	First, Last uint64
	Lost        []uint64 // sequences JetStream reports lost
	Deleted     int      // messages missing between First and Last
}

// Damaged reports whether the stream lost acknowledged events.
func (c StreamCheck) Damaged() bool { return len(c.Lost) > 0 || c.Deleted > 0 }

// Problem describes the damage in a sentence, with sequence numbers only.
func (c StreamCheck) Problem() string {
	if !c.Damaged() {
		return ""
	}
	return fmt.Sprintf("stream %s lost acknowledged events: %d missing between sequences %d and %d (first %v); restore it from a backup",
		StreamName, max(len(c.Lost), c.Deleted), c.First, c.Last, c.Lost[:min(len(c.Lost), 5)])
}

// Errors of a start that finds the stream unfit to serve.
var (
	ErrStreamMissing = errors.New("stream is missing")
	ErrStreamShort   = errors.New("stream is shorter than what the projections applied")
	ErrStreamConfig  = errors.New("stream configuration drifted")
)

// EnsureStream creates the CIRC stream when there is none and nothing was applied from
// one, or checks an existing one: its configuration must be StreamConfig(replicas) in
// every setting that keeps it append-only and complete (a drifted one is refused with the
// differences), it must start at sequence 1, and it must hold at least applied messages.
// Lethe never recreates a stream behind the projections' back: a missing stream with
// applied > 0 is ErrStreamMissing. Losses JetStream reports are returned, not refused,
// because the projections still hold what was applied; the caller reports them.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int, applied uint64) (jetstream.Stream, StreamCheck, error) {
	want := StreamConfig(replicas)
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if applied > 0 {
			return nil, StreamCheck{}, fmt.Errorf("%w: %s does not exist, but the projections applied %d events from it; restore the stream (the nats/ directory) from a backup, or move projections/ aside to start a new history",
				ErrStreamMissing, StreamName, applied)
		}
		if s, err = js.CreateStream(ctx, want); err != nil {
			return nil, StreamCheck{}, fmt.Errorf("create stream %s: %w", StreamName, err)
		}
		return s, StreamCheck{}, nil
	}
	if err != nil {
		return nil, StreamCheck{}, fmt.Errorf("look up stream %s: %w", StreamName, err)
	}
	got := s.CachedInfo().Config
	if !got.AllowDirect {
		// Streams made by Lethe 0.1 lack direct reads, which auditors now use. Turning them
		// on is the one change Lethe makes to an existing stream: it adds a read path and
		// weakens nothing. Every other difference is refused below.
		upgraded := got
		upgraded.AllowDirect = true
		if len(ConfigDiff(upgraded, want)) == 0 {
			if s, err = js.UpdateStream(ctx, upgraded); err != nil {
				return nil, StreamCheck{}, fmt.Errorf("allow direct reads on stream %s: %w", StreamName, err)
			}
			got = s.CachedInfo().Config
		}
	}
	if diff := ConfigDiff(got, want); len(diff) > 0 {
		return nil, StreamCheck{}, fmt.Errorf("%w: %s differs from what Lethe requires: %s", ErrStreamConfig, StreamName, strings.Join(diff, "; "))
	}
	info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return nil, StreamCheck{}, fmt.Errorf("stream %s info: %w", StreamName, err)
	}
	st := info.State
	check := StreamCheck{First: st.FirstSeq, Last: st.LastSeq}
	if st.Msgs > 0 {
		check.Deleted = st.NumDeleted // an empty stream reports its moved first sequence as one
	}
	if st.Lost != nil {
		check.Lost = st.Lost.Msgs
	}
	switch {
	case st.LastSeq < applied:
		return nil, check, fmt.Errorf("%w: %s ends at sequence %d, but the projections applied %d; acknowledged events are gone: restore the stream from a backup",
			ErrStreamShort, StreamName, st.LastSeq, applied)
	case st.Msgs > 0 && st.FirstSeq != 1:
		return nil, check, fmt.Errorf("%w: %s starts at sequence %d instead of 1: its first events were removed; restore the stream from a backup",
			ErrStreamShort, StreamName, st.FirstSeq)
	}
	return s, check, nil
}

// ConfigDiff lists how a stream's configuration differs from want in the settings an
// append-only ledger depends on: what it captures, that nothing can delete, purge, trim,
// expire, roll up, seal, republish or redirect its messages, its durability and its
// deduplication window. Descriptions and limits JetStream fills in for itself are not
// compared. An empty list means the stream is fit.
func ConfigDiff(got, want jetstream.StreamConfig) []string {
	var diff []string
	cmp := func(name string, g, w any) {
		if fmt.Sprint(g) != fmt.Sprint(w) {
			diff = append(diff, fmt.Sprintf("%s is %v, want %v", name, g, w))
		}
	}
	unlimited := func(n int64) int64 { // JetStream stores 0 (no limit) as -1
		if n <= 0 {
			return -1
		}
		return n
	}
	cmp("subjects", got.Subjects, want.Subjects)
	cmp("storage", got.Storage, want.Storage)
	cmp("retention", got.Retention, want.Retention)
	cmp("discard", got.Discard, want.Discard)
	cmp("max_msgs", unlimited(got.MaxMsgs), unlimited(want.MaxMsgs))
	cmp("max_bytes", unlimited(got.MaxBytes), unlimited(want.MaxBytes))
	cmp("max_msgs_per_subject", unlimited(got.MaxMsgsPerSubject), unlimited(want.MaxMsgsPerSubject))
	cmp("max_age", got.MaxAge, want.MaxAge)
	cmp("max_msg_size", got.MaxMsgSize, want.MaxMsgSize)
	cmp("replicas", got.Replicas, want.Replicas)
	cmp("duplicate_window", got.Duplicates, want.Duplicates)
	cmp("deny_delete", got.DenyDelete, want.DenyDelete)
	cmp("deny_purge", got.DenyPurge, want.DenyPurge)
	cmp("sealed", got.Sealed, want.Sealed)
	cmp("allow_rollup_hdrs", got.AllowRollup, want.AllowRollup)
	cmp("allow_msg_ttl", got.AllowMsgTTL, want.AllowMsgTTL)
	cmp("allow_atomic", got.AllowAtomicPublish, want.AllowAtomicPublish)
	cmp("allow_direct", got.AllowDirect, want.AllowDirect)
	cmp("mirror_direct", got.MirrorDirect, want.MirrorDirect)
	cmp("no_ack", got.NoAck, want.NoAck)
	if got.RePublish != nil {
		diff = append(diff, "republish is set, want none")
	}
	if got.Mirror != nil || len(got.Sources) > 0 {
		diff = append(diff, "mirror or sources are set, want none")
	}
	if got.SubjectTransform != nil {
		diff = append(diff, "subject_transform is set, want none")
	}
	return diff
}

// Scrub reads every message the stream holds up to its last sequence and reports the
// sequences missing between its first and last: JetStream hides a message whose stored
// checksum no longer matches (a damaged block file) without counting it as deleted or
// lost, so only reading finds it. It reads raw messages without decoding them, on an
// ordered consumer; a start runs it in the background.
func Scrub(ctx context.Context, js jetstream.JetStream) (StreamCheck, error) {
	var check StreamCheck
	next := uint64(1)
	err := Read(ctx, js, ReadOptions{}, func(m Msg) error {
		if check.First == 0 {
			check.First = m.Seq
		}
		for ; next < m.Seq; next++ {
			if len(check.Lost) < 1000 {
				check.Lost = append(check.Lost, next)
			}
			check.Deleted++
		}
		next = m.Seq + 1
		check.Last = m.Seq
		return nil
	})
	return check, err
}
