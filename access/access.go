package access

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
	"github.com/nats-io/nats.go/jetstream"
)

// The access stream and its one subject. Nothing about a patron is ever in a subject.
const (
	StreamName = "ACCESS"
	Subject    = "access.entry"
)

// Outcomes of a request, and of an entry that cannot be trusted.
const (
	Disclosed = "disclosed"
	Refused   = "refused"
	// Unreadable is a message on the access stream that is not a genuine entry: it does
	// not decode, or the ledger's MAC does not verify. Listed says so, and nothing more.
	Unreadable = "unreadable"
)

// Why an entry is Unreadable. The reasons are fixed: they never repeat what the message
// holds.
const (
	ReasonUndecodable = "not a well-formed access entry"
	ReasonUnverified  = "the ledger's MAC does not verify"
)

// Entry is one entry of the access record as stored; the package comment defines its
// format and the MAC.
type Entry struct {
	ID      string       `json:"id"`
	Time    time.Time    `json:"time"`
	Staff   string       `json:"staff"`
	Role    policy.Role  `json:"role"`
	Action  string       `json:"action"`
	Basis   policy.Basis `json:"basis"`
	Scope   policy.Scope `json:"scope"`
	Outcome string       `json:"outcome"`
	Clause  string       `json:"clause"`
	// Requests is how many requests the entry stands for when it summarises several (a
	// kiosk's card lookups that opened no account, over a window); absent means one.
	Requests int              `json:"requests,omitempty"`
	Patrons  []schemas.Sealed `json:"patrons,omitempty"`
	// OrderSealed is a court order's reference: it may name the person, so it is sealed
	// with the first patron named, or under the system key when the entry names none.
	OrderSealed *schemas.Sealed `json:"order_sealed,omitempty"`
	MAC         []byte          `json:"mac"`
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

// Index is the only way from a pseudonym to an account: the projections keep it while the
// account is open, and delete an account's rows when it closes. Its errors never name an
// account.
type Index interface {
	// IndexAccess maps kids[i] to the account patronIDs[i], durably, for every account
	// still open, and skips the others. The check that an account is open and the write
	// are one critical section with respect to the account's close.
	IndexAccess(patronIDs, kids []string) error
	// PatronByAccessKID returns the open account kid stands for, or model.ErrNotFound.
	PatronByAccessKID(kid string) (string, error)
	// AccessKIDs returns the pseudonyms of an open account, none once it is closed.
	AccessKIDs(patronID string) ([]string, error)
}

// Log appends to and reads the access record.
type Log struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	keys   *keystore.Store
	index  Index
	logger *slog.Logger
}

var _ ledger.Recorder = (*Log)(nil)

// Open creates the ACCESS stream or checks that an existing one is append-only.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, keys *keystore.Store, index Index, logger *slog.Logger) (*Log, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, StreamConfig(replicas))
	}
	if err != nil {
		return nil, fmt.Errorf("access stream: %w", err)
	}
	if diff := ledger.ConfigDiff(s.CachedInfo().Config, StreamConfig(replicas)); len(diff) > 0 {
		return nil, fmt.Errorf("%w: %s differs from what Lethe requires: %s", ledger.ErrStreamConfig, StreamName, strings.Join(diff, "; "))
	}
	return &Log{js: js, stream: s, keys: keys, index: index, logger: logger}, nil
}

// Record implements ledger.Recorder: it appends one entry and returns once it is stored
// with the stream's durability.
func (l *Log) Record(ctx context.Context, d ledger.Disclosure) error {
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("access entry id: %w", err)
	}
	e := Entry{ID: id.String(), Time: d.At.UTC(), Staff: d.By.Name, Role: d.By.Role, Action: d.Action,
		Basis: d.Basis, Scope: d.Scope, Outcome: Disclosed, Clause: d.Clause, Requests: max(d.Requests, 0)}
	if d.Scope == policy.Refused || d.Scope == "" {
		e.Scope, e.Outcome = policy.Refused, Refused
	}
	// Each reference gets a fresh pseudonym. They are indexed before the entry exists: a
	// row without its entry is harmless and goes with the account; an entry without its
	// row would read "erased" too early. An account closed already (closing one is itself
	// recorded, after the close) is not indexed, so its reference reads "erased" at once.
	kids := make([]string, len(d.Patrons))
	for i := range kids {
		kids[i] = seal.NewKID()
	}
	if len(kids) > 0 {
		if err := l.index.IndexAccess(d.Patrons, kids); err != nil {
			return err
		}
	}
	owner, ownerKID := "", "" // whose key seals the order's reference: the first patron sealed
	for i, p := range d.Patrons {
		sealed, err := seal.AccessPatron(l.keys, p, e.ID, kids[i])
		if errors.Is(err, keystore.ErrNotFound) {
			continue // the profile key is destroyed: there is nobody left to tie it to
		} else if err != nil {
			return err
		}
		e.Patrons = append(e.Patrons, sealed)
		if owner == "" {
			owner, ownerKID = p, kids[i]
		}
	}
	if d.OrderRef != "" {
		sealed, err := seal.AccessNote(l.keys, owner, e.ID, ownerKID, d.OrderRef)
		if err != nil {
			return err
		}
		e.OrderSealed = &sealed
	}
	sign(l.keys, &e)
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode access entry: %w", err)
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

// Listed is an entry as an administrator reads it. An Unreadable entry has only Seq,
// Outcome and Reason.
type Listed struct {
	Seq      uint64       `json:"seq"` // the entry's sequence on the ACCESS stream
	ID       string       `json:"id,omitempty"`
	Time     time.Time    `json:"time,omitzero"`
	Staff    string       `json:"staff,omitempty"`
	Role     policy.Role  `json:"role,omitempty"`
	Action   string       `json:"action,omitempty"`
	Basis    policy.Basis `json:"basis,omitempty"`
	Scope    policy.Scope `json:"scope,omitempty"`
	Outcome  string       `json:"outcome"`
	Clause   string       `json:"clause,omitempty"`
	Requests int          `json:"requests,omitempty"`  // how many requests a summary stands for
	OrderRef string       `json:"order_ref,omitempty"` // the court order's reference, or Erased
	Patrons  []string     `json:"patrons"`             // internal ids of open accounts; Erased for closed ones
	Reason   string       `json:"reason,omitempty"`    // why the entry is Unreadable
}

// Erased stands for a patron whose account was closed: the entry stays, the person is gone.
const Erased = "erased"

// List reads the access record, oldest first, and opens each patron reference whose
// account is still open.
//
// A message that is not a genuine entry is listed as Unreadable, in its place, when no
// staff or patron is asked for (nothing in it can be trusted to match one) and the stream
// stored it within From and To; the rest of the record is listed as usual.
func (l *Log) List(ctx context.Context, f Filter) ([]Listed, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	var kids map[string]bool
	if f.PatronID != "" {
		ks, err := l.index.AccessKIDs(f.PatronID)
		if err != nil {
			return nil, err
		}
		if len(ks) == 0 {
			return []Listed{}, nil // no such open account
		}
		kids = make(map[string]bool, len(ks))
		for _, k := range ks {
			kids[k] = true
		}
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("access stream: %w", err)
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
		return nil, fmt.Errorf("read access stream: %w", err)
	}
	for {
		// No wait: the stream holds every entry up to last already, and a pull that waited
		// for a full batch would hold each listing for its whole expiry.
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("read access stream: %w", err)
		}
		n := 0
		done := false
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("read access stream: %w", err)
			}
			seq := meta.Sequence.Stream
			if e, reason := l.read(m.Data()); reason != "" {
				l.logger.Warn("unreadable access entry", "seq", seq, "reason", reason)
				if f.Staff == "" && kids == nil && inWindow(meta.Timestamp, f) {
					out = append(out, Listed{Seq: seq, Outcome: Unreadable, Reason: reason, Patrons: []string{}})
				}
			} else if matches(e, f, kids) {
				out = append(out, l.open(seq, e))
			}
			if len(out) > f.Limit {
				out = out[1:]
			}
			if seq >= last {
				done = true
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read access stream: %w", err)
		}
		if done || n == 0 || ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
}

// read decodes and verifies one message of the access stream. It returns a reason when
// the message is not a genuine entry.
func (l *Log) read(data []byte) (Entry, string) {
	var e Entry
	if err := schemas.DecodeStrict(data, &e); err != nil || e.ID == "" || len(e.MAC) != sha256.Size {
		return Entry{}, ReasonUndecodable
	}
	if !verify(l.keys, e) {
		return Entry{}, ReasonUnverified
	}
	return e, ""
}

func inWindow(t time.Time, f Filter) bool {
	return (f.From.IsZero() || !t.Before(f.From)) && (f.To.IsZero() || t.Before(f.To))
}

func matches(e Entry, f Filter, kids map[string]bool) bool {
	if f.Staff != "" && !strings.EqualFold(e.Staff, f.Staff) {
		return false
	}
	if !inWindow(e.Time, f) {
		return false
	}
	if kids != nil {
		for _, p := range e.Patrons {
			if kids[p.KID] {
				return true
			}
		}
		return false
	}
	return true
}

// open is an entry as listed: each sealed patron reference replaced by the open account
// it names, or Erased, and the court order's reference opened.
func (l *Log) open(seq uint64, e Entry) Listed {
	out := Listed{Seq: seq, ID: e.ID, Time: e.Time, Staff: e.Staff, Role: e.Role, Action: e.Action, Basis: e.Basis,
		Scope: e.Scope, Outcome: e.Outcome, Clause: e.Clause, Requests: e.Requests, Patrons: make([]string, 0, len(e.Patrons))}
	for _, s := range e.Patrons {
		id, err := l.index.PatronByAccessKID(s.KID)
		if err == nil {
			id, err = seal.OpenAccessPatron(l.keys, id, e.ID, s)
		}
		if err != nil {
			l.unopened(e.ID, "open access reference", err)
			id = Erased
		}
		out.Patrons = append(out.Patrons, id)
	}
	if s := e.OrderSealed; s != nil {
		var (
			id  string
			err error
		)
		if s.KID != SystemKID {
			id, err = l.index.PatronByAccessKID(s.KID)
		}
		if err == nil {
			out.OrderRef, err = seal.OpenAccessNote(l.keys, id, e.ID, *s)
		}
		if err != nil {
			l.unopened(e.ID, "open order reference", err)
			out.OrderRef = Erased
		}
	}
	return out
}

// unopened logs a reference that should have opened. A closed account is not news: its
// row is gone (model.ErrNotFound) or its key destroyed (keystore.ErrNotFound).
func (l *Log) unopened(entryID, what string, err error) {
	if !errors.Is(err, model.ErrNotFound) && !errors.Is(err, keystore.ErrNotFound) {
		l.logger.Error(what, "entry", entryID, "err", err)
	}
}
