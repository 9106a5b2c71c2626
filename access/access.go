// Package access is the access record of Policy 1002: one entry for every disclosure of a
// patron's data and every refusal, on its own append-only stream, apart from circulation.
//
// An entry names the staff account, its role, the basis, the scope, the clause, the time
// and any court order's reference in the clear. The patron appears only sealed under the
// patron's profile key, with a pseudonym derived from that key (ledger.SealAccess): while
// the account is open an administrator sees whose record it was; once the account is
// closed and the key destroyed, the entry stays but cannot be tied to anyone.
package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// The access stream and its one subject. Nothing about a patron is ever in a subject.
const (
	StreamName = "ACCESS"
	Subject    = "access.entry"
)

// Outcomes of a request.
const (
	Disclosed = "disclosed"
	Refused   = "refused"
)

// Entry is one entry of the access record as stored.
type Entry struct {
	ID       string           `json:"id"`
	Time     time.Time        `json:"time"`
	Staff    string           `json:"staff"`
	Role     policy.Role      `json:"role"`
	Action   string           `json:"action"`
	Basis    policy.Basis     `json:"basis"`
	Scope    policy.Scope     `json:"scope"`
	Outcome  string           `json:"outcome"`
	Clause   string           `json:"clause"`
	OrderRef string           `json:"order_ref,omitempty"`
	Patrons  []schemas.Sealed `json:"patrons,omitempty"`
	// OrderSealed is the order reference when the entry names a patron: a reference may
	// name the person, so it is sealed under the first patron's profile key like the
	// patron, and goes with it when the account closes.
	OrderSealed *schemas.Sealed `json:"order_sealed,omitempty"`
}

// StreamConfig is the ACCESS stream: file storage, append-only, kept forever.
func StreamConfig(replicas int) jetstream.StreamConfig {
	if replicas <= 0 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Lethe access record (append-only; patrons sealed under their profile keys)",
		Subjects:    []string{Subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgSize:  64 << 10,
		Duplicates:  time.Hour,
		DenyDelete:  true,
		DenyPurge:   true,
		Replicas:    replicas,
	}
}

// Resolver finds the open account behind an access pseudonym: the projections.
type Resolver interface {
	PatronByAccessKID(kid string) (string, error)
}

// Log appends to and reads the access record.
type Log struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	keys   *keystore.Store
	ids    Resolver
	logger *slog.Logger
}

var _ ledger.Recorder = (*Log)(nil)

// Open creates the ACCESS stream or checks that an existing one is append-only.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, keys *keystore.Store, ids Resolver, logger *slog.Logger) (*Log, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, StreamConfig(replicas))
	}
	if err != nil {
		return nil, fmt.Errorf("access stream: %w", err)
	}
	got := s.CachedInfo().Config
	if !got.DenyDelete || !got.DenyPurge || got.MaxAge != 0 || got.Storage != jetstream.FileStorage {
		return nil, fmt.Errorf("stream %s must be file-backed, kept forever, with delete and purge denied", StreamName)
	}
	return &Log{js: js, stream: s, keys: keys, ids: ids, logger: logger}, nil
}

// Record implements ledger.Recorder: it appends one entry and returns once it is stored
// with the stream's durability.
func (l *Log) Record(ctx context.Context, d ledger.Disclosure) error {
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	e := Entry{ID: id.String(), Time: d.At.UTC(), Staff: d.By.Name, Role: d.By.Role, Action: d.Action,
		Basis: d.Basis, Scope: d.Scope, Outcome: Disclosed, Clause: d.Clause, OrderRef: d.OrderRef}
	if d.Scope == policy.Refused || d.Scope == "" {
		e.Scope, e.Outcome = policy.Refused, Refused
	}
	var first string // the first patron sealed
	for _, p := range d.Patrons {
		sealed, err := ledger.SealAccess(l.keys, p, e.ID)
		if errors.Is(err, keystore.ErrNotFound) {
			continue // the account closed meanwhile: there is nobody left to tie it to
		} else if err != nil {
			return err
		}
		e.Patrons = append(e.Patrons, sealed)
		if first == "" {
			first = p
		}
	}
	if e.OrderRef != "" && first != "" {
		sealed, err := ledger.SealAccessNote(l.keys, first, e.ID, e.OrderRef)
		if err != nil {
			return err
		}
		e.OrderRef, e.OrderSealed = "", &sealed
	}
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := l.js.Publish(ctx, Subject, body, jetstream.WithMsgID(e.ID), jetstream.WithExpectStream(StreamName)); err != nil {
		return fmt.Errorf("append access entry: %w", err)
	}
	return nil
}

// Filter selects entries. Zero fields select everything.
type Filter struct {
	Staff    string
	From, To time.Time // From inclusive, To exclusive
	PatronID string    // only entries about this open account
	Limit    int       // at most this many, the most recent; default 1000
}

// Listed is an entry as an administrator reads it.
type Listed struct {
	Entry
	Patrons []string `json:"patrons"` // internal ids of open accounts; "erased" for closed ones
}

// Erased stands for a patron whose account was closed: the entry stays, the person is gone.
const Erased = "erased"

// List reads the access record, oldest first, and opens each patron reference whose
// account is still open.
func (l *Log) List(ctx context.Context, f Filter) ([]Listed, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	var kid string
	if f.PatronID != "" {
		var err error
		if kid, err = ledger.AccessKID(l.keys, f.PatronID); errors.Is(err, keystore.ErrNotFound) {
			return []Listed{}, nil
		} else if err != nil {
			return nil, err
		}
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	out := []Listed{}
	if info.State.Msgs == 0 {
		return out, nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{Subject}}
	if !f.From.IsZero() {
		start := f.From
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := l.js.OrderedConsumer(ctx, StreamName, cfg)
	if err != nil {
		return nil, err
	}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		done := false
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			var e Entry
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				return nil, fmt.Errorf("access entry %d: %w", meta.Sequence.Stream, err)
			}
			if l.matches(e, f, kid) {
				out = append(out, l.open(e))
				if len(out) > f.Limit {
					out = out[1:]
				}
			}
			if meta.Sequence.Stream >= last {
				done = true
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if done || n == 0 || ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
}

func (l *Log) matches(e Entry, f Filter, kid string) bool {
	if f.Staff != "" && !strings.EqualFold(e.Staff, f.Staff) {
		return false
	}
	if !f.From.IsZero() && e.Time.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && !e.Time.Before(f.To) {
		return false
	}
	if kid != "" {
		for _, p := range e.Patrons {
			if p.KID == kid {
				return true
			}
		}
		return false
	}
	return true
}

// open replaces sealed patron references by the open accounts they name, or Erased.
func (l *Log) open(e Entry) Listed {
	out := Listed{Entry: e, Patrons: []string{}}
	for _, s := range e.Patrons {
		id, err := l.ids.PatronByAccessKID(s.KID)
		if err == nil {
			id, err = ledger.OpenAccess(l.keys, id, e.ID, s)
		}
		if err != nil {
			if !errors.Is(err, ledger.ErrNotFound) && !errors.Is(err, keystore.ErrNotFound) {
				l.logger.Error("open access reference", "entry", e.ID, "err", err)
			}
			id = Erased
		}
		out.Patrons = append(out.Patrons, id)
	}
	if s := e.OrderSealed; s != nil {
		out.OrderRef = Erased
		if id, err := l.ids.PatronByAccessKID(s.KID); err == nil {
			if ref, err := ledger.OpenAccessNote(l.keys, id, e.ID, *s); err == nil {
				out.OrderRef = ref
			}
		}
	}
	out.Entry.Patrons, out.OrderSealed = nil, nil
	return out
}
