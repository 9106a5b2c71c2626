package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures a Ledger. The zero value of each field means the default in its
// comment.
type Config struct {
	Rules      Rules            // loan rules; see Rules for defaults
	Now        func() time.Time // clock; default time.Now
	Location   *time.Location   // the library's time zone, for ages; default time.Local
	AckTimeout time.Duration    // how long to wait for the stream's acknowledgement; default 5s
	Logger     *slog.Logger     // default: discard
	// Recorder keeps the access record: every disclosure of a patron's data, and every
	// refusal, is recorded before anything is disclosed. Without one, nothing is disclosed.
	Recorder Recorder
	// Admit is asked before a command that opens a transaction (a checkout, a stand-alone
	// fee) is decided: forgetting comes before new work (the expunger's Admit). It may
	// wait, and refuses with an unavailable error. Nil admits everything.
	Admit func(context.Context) error
	// FreeDisk reports the bytes free on the disk that holds the data directory (the
	// keystore, the projections and, embedded, the stream). While it reports less than
	// MinFreeDisk, commands, access records and skips are refused as unavailable before
	// anything is written; the expunger's records are not, because destroying keys is what
	// frees space and what the privacy promise needs. Nil: no check.
	FreeDisk func() (uint64, error)
	// MinFreeDisk is that minimum, in bytes; default DefaultMinFreeDisk.
	MinFreeDisk uint64
	// KeyPool is how many transaction keys are kept ready (keystore.Pool), so that a
	// command opening a transaction pays no keystore sync for its key; 0 means
	// keystore.DefaultPoolSize, negative no pool. The pool fills only while RunKeyPool
	// runs; until then, and whenever it is empty, each key is created when needed.
	KeyPool int
}

func (c Config) withDefaults() Config {
	c.Rules = c.Rules.WithDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Location == nil {
		c.Location = time.Local
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MinFreeDisk == 0 {
		c.MinFreeDisk = DefaultMinFreeDisk
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.AckTimeout < 0 {
		return errors.New("ack timeout must not be negative")
	}
	if c.KeyPool > 0 {
		if err := (keystore.PoolConfig{Size: c.KeyPool}).Validate(); err != nil {
			return err
		}
	}
	return c.Rules.Validate()
}

// Station is where a command comes from: a kiosk, a staff desk, or Lethe itself (the rules
// sweeper). It becomes the event's source; it never names a patron.
type Station struct {
	Kind   string // "kiosk", "desk" or "system"
	Branch string
	ID     string
}

func (s Station) source() string {
	switch s.Kind {
	case "system":
		return "lethe/system/" + s.ID
	case "":
		return "lethe/desk"
	}
	return "lethe/" + s.Kind + "/" + s.Branch + "/" + s.ID
}

// Ledger decides and appends commands.
type Ledger struct {
	cfg    Config
	app    appender
	stream jetstream.Stream
	st     model.State
	keys   *keystore.Store
	pool   *keystore.Pool // transaction keys ready before they are needed; nil: none
	v      *schemas.Validator
	locks  *locks
	disk   *diskGuard
	pins   *pins
}

// New returns a Ledger appending to the CIRC stream through nc, deciding against st.
func New(nc *nats.Conn, stream jetstream.Stream, st model.State, keys *keystore.Store, v *schemas.Validator, cfg Config) (*Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ledger config: %w", err)
	}
	cfg = cfg.withDefaults()
	l := &Ledger{
		cfg:    cfg,
		app:    appender{nc: nc, timeout: cfg.AckTimeout},
		stream: stream,
		st:     st,
		keys:   keys,
		v:      v,
		locks:  newLocks(),
		pins:   newPins(),
		disk:   &diskGuard{free: cfg.FreeDisk, min: cfg.MinFreeDisk, logger: cfg.Logger},
	}
	if cfg.KeyPool >= 0 {
		// The pool's ids are transaction ids, made as every other one is (newID).
		pool, err := keys.NewPool(keystore.PoolConfig{Size: cfg.KeyPool, NewID: newID, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("ledger config: %w", err)
		}
		l.pool = pool
	}
	return l, nil
}

// RunKeyPool keeps the pool of transaction keys filled until ctx ends, then destroys the
// keys no command took, and returns (keystore.Pool.Run). Start it after the start's
// reconciliation of keys (the expunger's Reconcile) and end it before the keystore closes.
// Without a pool it returns at once.
func (l *Ledger) RunKeyPool(ctx context.Context) error {
	if l.pool == nil {
		return nil
	}
	return l.pool.Run(ctx)
}

// KeyPool reports the pool of transaction keys: how many are ready, taken, and how many
// commands found it empty and created their own. Zero without a pool.
func (l *Ledger) KeyPool() keystore.PoolStats {
	if l.pool == nil {
		return keystore.PoolStats{}
	}
	return l.pool.Stats()
}

// Rules returns the rules in force.
func (l *Ledger) Rules() Rules { return l.cfg.Rules }

// CommitStats reports how many commits (publishes or atomic batches) the ledger has made
// and how many commands they carried: group commit puts several commands in one.
func (l *Ledger) CommitStats() (commits, commands int64) {
	return l.app.commits.Load(), l.app.commands.Load()
}

// Execute validates and runs one command (raw JSON per its schema) from a station and
// returns its result. Errors are *schemas.Error for domain failures; anything else is
// internal and must not reach a client (use schemas.Public).
func (l *Ledger) Execute(ctx context.Context, at Station, name string, raw []byte) (any, error) {
	out, err := l.execute(ctx, at, name, raw)
	if errors.Is(err, keystore.ErrUnavailable) && !errors.As(err, new(*schemas.Error)) {
		// A cluster's key bucket not answering now: the command may be sent again.
		l.cfg.Logger.Warn("command waits for the key store", "command", name, "err", err)
		return nil, schemas.Errorf(schemas.CodeUnavailable, "the key store is not reachable now; retry with the same command id")
	}
	return out, err
}

func (l *Ledger) execute(ctx context.Context, at Station, name string, raw []byte) (any, error) {
	if err := l.v.Command(name, raw); err != nil {
		return nil, err
	}
	switch name {
	case schemas.CmdCheckOut:
		return decodeRun(l, ctx, name, raw, func(c schemas.CheckOut) (string, decider) { return c.CommandID, l.checkOut(at, c) })
	case schemas.CmdReturn:
		return decodeRun(l, ctx, name, raw, func(c schemas.Return) (string, decider) { return c.CommandID, l.checkIn(at, c) })
	case schemas.CmdRenew:
		return decodeRun(l, ctx, name, raw, func(c schemas.Renew) (string, decider) { return c.CommandID, l.renew(at, c) })
	case schemas.CmdCatalogItem:
		return decodeRun(l, ctx, name, raw, func(c schemas.CatalogItem) (string, decider) { return c.CommandID, l.catalog(at, c) })
	case schemas.CmdRegisterPatron:
		var c schemas.RegisterPatron
		if err := schemas.DecodeStrict(raw, &c); err != nil {
			return nil, err
		}
		var pinHash string
		if c.PIN != "" {
			var err error
			if pinHash, err = l.hashPIN(ctx, c.PIN); err != nil {
				return nil, err
			}
		}
		return decodeRun(l, ctx, name, raw, func(c schemas.RegisterPatron) (string, decider) { return c.CommandID, l.register(at, c, pinHash) })
	case schemas.CmdSetPIN:
		var c schemas.SetPIN
		if err := schemas.DecodeStrict(raw, &c); err != nil {
			return nil, err
		}
		pinHash, err := l.hashPIN(ctx, c.PIN)
		if err != nil {
			return nil, err
		}
		return decodeRun(l, ctx, name, raw, func(c schemas.SetPIN) (string, decider) { return c.CommandID, l.setPIN(at, c, pinHash) })
	case schemas.CmdUpdateContact:
		return decodeRun(l, ctx, name, raw, func(c schemas.UpdateContact) (string, decider) { return c.CommandID, l.updateContact(at, c) })
	case schemas.CmdIssueCard:
		return decodeRun(l, ctx, name, raw, func(c schemas.IssueCard) (string, decider) { return c.CommandID, l.issueCard(at, c) })
	case schemas.CmdReportCardLost:
		return decodeRun(l, ctx, name, raw, func(c schemas.ReportCardLost) (string, decider) { return c.CommandID, l.reportCardLost(at, c) })
	case schemas.CmdDeclareLost:
		return decodeRun(l, ctx, name, raw, func(c schemas.DeclareLost) (string, decider) { return c.CommandID, l.declareLost(at, c.Barcode, "") })
	case schemas.CmdMarkDamaged:
		return decodeRun(l, ctx, name, raw, func(c schemas.MarkDamaged) (string, decider) { return c.CommandID, l.markDamaged(at, c) })
	case schemas.CmdAssessFee:
		return decodeRun(l, ctx, name, raw, func(c schemas.AssessFee) (string, decider) { return c.CommandID, l.assessFee(at, c) })
	case schemas.CmdPayFine:
		return decodeRun(l, ctx, name, raw, func(c schemas.PayFine) (string, decider) {
			return c.CommandID, l.settleFine(at, c.FineID, c.AmountCents, false)
		})
	case schemas.CmdWaiveFine:
		return decodeRun(l, ctx, name, raw, func(c schemas.WaiveFine) (string, decider) {
			return c.CommandID, l.settleFine(at, c.FineID, 0, true)
		})
	case schemas.CmdClosePatron:
		return decodeRun(l, ctx, name, raw, func(c schemas.ClosePatron) (string, decider) { return c.CommandID, l.closePatron(at, c) })
	case schemas.CmdPatronInfo:
		var c schemas.PatronInfo
		if err := schemas.DecodeStrict(raw, &c); err != nil {
			return nil, err
		}
		return l.kioskPatronInfo(ctx, at, c.Card)
	}
	return nil, schemas.Errorf(schemas.CodeInvalid, "unknown command")
}

// plan is what a decision produces: the events to append as one unit, the expectation they
// are conditional on, and what to undo if they are definitely not appended.
type plan struct {
	expect Expect
	events []schemas.Event
	undo   func()
	// locks name what the decision relies on beyond its own subject (a patron, a card):
	// the command runs holding them (serial.go).
	locks []string
	// key, when set, is a new key the events are sealed under. It is created, synced, once
	// the decision's view is released (a sync under the view would hold up the projector
	// and every other decision); seal then builds the events with it.
	key *newKey
}

// newKey is a key a plan needs and the events sealed under it.
type newKey struct {
	kind keystore.Kind
	// id is the key's id for a profile key: the patron's id, chosen by the decision (it
	// names the subject). A transaction key's id is the transaction's id, which the key
	// brings: the pool's, or a fresh one (newID).
	id   string
	seal func(id string, key []byte) ([]schemas.Event, error)
}

// createKey gets the plan's key and seals its events, outside any view. A transaction key
// comes from the pool, already on disk under its own fresh id, at no sync; with the pool
// empty it is created here, synced, as a profile key always is. If the events are then not
// appended, undo destroys the key: its id is never used again, pooled or not.
func (l *Ledger) createKey(p *plan) error {
	k := p.key
	id, key, err := l.key(k)
	if err != nil {
		return fmt.Errorf("create %s key: %w", k.kind, err) // Execute answers keystore.ErrUnavailable as unavailable
	}
	p.undo = func() {
		if err := l.keys.Destroy(k.kind, id); err != nil {
			l.cfg.Logger.Error("destroy unused key", "kind", k.kind, "err", err)
		}
	}
	if p.events, err = k.seal(id, key); err != nil {
		p.undo()
		return err
	}
	return nil
}

// key returns the id and key of a plan's new key: for a transaction, one from the pool or
// else one created now under a fresh id.
func (l *Ledger) key(k *newKey) (string, []byte, error) {
	if k.kind != keystore.Transaction {
		key, err := l.keys.Create(k.kind, k.id)
		return k.id, key, err
	}
	if l.pool != nil {
		if id, key, ok := l.pool.Take(); ok {
			return id, key, nil
		}
	}
	id := newID()
	key, err := l.keys.Create(k.kind, id)
	return id, key, err
}

// decider decides a command against one consistent view of the state. It is called again,
// on a newer view, when the state changed under it.
type decider func(view) (plan, error)

// view is the ledger reading one consistent view of the projections: every row a decision reads,
// and the subject sequences its expectation names, are as of the same stream position. An
// event appended after the view on the decision's subject makes its append stale.
type view struct {
	*Ledger
	st model.Reader
}

// withView calls f with a fresh consistent view of the state.
func (l *Ledger) withView(f func(view) error) error {
	r, done := l.st.View()
	defer done()
	return f(view{Ledger: l, st: r})
}

func decodeRun[C any](l *Ledger, ctx context.Context, name string, raw []byte, f func(C) (string, decider)) (any, error) {
	var c C
	if err := schemas.DecodeStrict(raw, &c); err != nil {
		return nil, err
	}
	id, d := f(c)
	return l.run(ctx, name, id, c, d)
}

// opensTransaction reports whether a command opens a transaction: a new link between a
// patron and an item or a fee, which waits while forgetting is behind.
func opensTransaction(name string) bool {
	return name == schemas.CmdCheckOut || name == schemas.CmdAssessFee
}

// maxAttempts bounds how often a command is decided again after losing a race.
const maxAttempts = 8

// run decides and appends a command, once. cmd is the decoded command: a command id
// already on the stream is answered from the events it appended if cmd is the same command
// (answerAgain), and refused otherwise.
func (l *Ledger) run(ctx context.Context, name, commandID string, cmd any, decide decider) (any, error) {
	h := held{l: l.locks}
	defer func() { h.release() }()
	if l.cfg.Admit != nil && opensTransaction(name) {
		// A retry of a command already applied is answered, never held.
		if seqs, err := l.st.CommandSeqs(commandID); err == nil && seqs == nil {
			if err := l.cfg.Admit(ctx); err != nil {
				return nil, err
			}
		}
	}
	rechecked := false
	for range maxAttempts {
		if err := l.st.Stopped(); err != nil {
			return nil, err // no decision against projections that stopped
		}
		var known bool
		var p plan
		err := l.withView(func(v view) error {
			// Looked up in the decision's own view: looked up before it, a first attempt
			// applied in between would be decided again against rows that already hold it
			// (a retried return would read "not on loan").
			seqs, err := v.st.CommandSeqs(commandID)
			if err != nil {
				return fmt.Errorf("look up command: %w", err)
			}
			if known = seqs != nil; known {
				return nil
			}
			// Nothing is decided while the disk is nearly full: a decision can create a
			// key. The expunger's record is let through: it follows a key's destruction.
			if name != cmdRecordExpunged {
				if err := l.disk.check(); err != nil {
					return err
				}
			}
			p, err = decide(v)
			return err
		})
		if known {
			return l.answerAgain(ctx, name, commandID, cmd)
		}
		var refusal *schemas.Error
		if errors.As(err, &refusal) {
			// The view may be behind a first attempt that is on the stream already; the
			// rows it was refused on may even be newer than that attempt's decision. A
			// retry of an applied command is answered, never refused on today's rows.
			if l.catchUp(ctx) == nil {
				if seqs, lerr := l.st.CommandSeqs(commandID); lerr == nil && seqs != nil {
					return l.answerAgain(ctx, name, commandID, cmd)
				}
				// On a cluster the view may also be behind another node's command that
				// the stream holds (a kiosk's return right after its checkout, answered by
				// two nodes): a refusal is decided once more, on the projections caught up.
				if !rechecked {
					rechecked = true
					continue
				}
			}
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		if !h.covers(p.locks) {
			// The decision relies on a patron or card another command may be deciding on
			// too: take their locks and decide again, on a state that includes whatever
			// the other command appended (serial.go).
			h = l.locks.acquire(h, p.locks)
			continue
		}
		if p.key != nil {
			if err := l.createKey(&p); err != nil {
				return nil, err
			}
		}
		for i := range p.events {
			p.events[i].CommandID = commandID
		}
		seq, err := l.app.append(ctx, commandID, p.expect, p.events)
		switch {
		case err == nil:
			if err := l.waitApplied(ctx, seq); err != nil {
				return nil, err
			}
			return l.result(name, p.events, seq)
		case errors.Is(err, errStale), errors.Is(err, errDuplicate):
			if p.undo != nil {
				p.undo()
			}
			if err := l.catchUp(ctx); err != nil {
				return nil, err
			}
		case errors.Is(err, errInProcess):
			// The first attempt is being committed right now; this one was refused, so
			// nothing uses what it made.
			if p.undo != nil {
				p.undo()
			}
			return nil, err
		case errors.Is(err, errStoreFull):
			// JetStream could not store the command, so nothing uses what it made. But
			// destroying a key is a write too: on a disk below the minimum it is left to
			// the expunger's reconciliation at the next start, rather than risk Pebble
			// stopping the process on a full disk.
			if p.undo != nil && l.disk.low() == nil {
				p.undo()
			}
			return nil, l.appendFailed(name, err)
		default:
			// The outcome is unknown (timeout) or the stream refused: keep any key, the
			// expunger reconciles keys no transaction uses.
			return nil, l.appendFailed(name, err)
		}
	}
	return nil, schemas.Errorf(schemas.CodeUnavailable, "too much contention on this record; retry")
}

// appendFailed wraps an append's failure. When the disk is below the minimum now, that is
// the likely cause (JetStream answers a failed write with silence or a refused batch),
// and the refusal names it, so the caller sees unavailable and the disk, never internal.
func (l *Ledger) appendFailed(name string, err error) error {
	if low := l.disk.low(); low != nil {
		return fmt.Errorf("append %s: %w (%v)", name, low, err)
	}
	return fmt.Errorf("append %s: %w", name, err)
}

// errNotApplied answers a command whose events the projections have not applied when its
// caller stops waiting: it is on the stream (or may be), so a retry with the same id is
// answered from there.
var errNotApplied = schemas.Errorf(schemas.CodeUnavailable, "the ledger has not applied this command yet; retry with the same command id")

// waitApplied waits until the projections have applied the stream up to seq. A caller that
// stops waiting (its context ends) gets errNotApplied, not an internal error: nothing is
// wrong, the answer is only late. A projector that stopped answers with its own
// unavailable error, which says where it stopped.
func (l *Ledger) waitApplied(ctx context.Context, seq uint64) error {
	err := l.st.WaitApplied(ctx, seq)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %v", errNotApplied, err)
	}
	if err != nil {
		return fmt.Errorf("wait for projections: %w", err)
	}
	return nil
}

// catchUp waits until the projections have applied everything the stream holds now.
func (l *Ledger) catchUp(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return unavailable(err)
	}
	return l.waitApplied(ctx, info.State.LastSeq)
}

// result is the reply to a command, computed only from the events it appended, so a retry
// gets the same answer as the first attempt.
func (l *Ledger) result(name string, events []schemas.Event, lastSeq uint64) (any, error) {
	first := events[0]
	switch name {
	case schemas.CmdCheckOut:
		var d schemas.ItemCheckedOut
		if err := json.Unmarshal(first.Data, &d); err != nil {
			return nil, err
		}
		it, err := l.st.Item(d.Barcode)
		if err != nil {
			return nil, err
		}
		return schemas.CheckOutResult{Barcode: d.Barcode, Title: it.Title, Due: d.Due}, nil
	case schemas.CmdReturn:
		var d schemas.ItemReturned
		if err := json.Unmarshal(first.Data, &d); err != nil {
			return nil, err
		}
		it, err := l.st.Item(d.Barcode)
		if err != nil {
			return nil, err
		}
		r := schemas.ReturnResult{Barcode: d.Barcode, Title: it.Title, Branch: it.Branch}
		for _, ev := range events[1:] {
			if ev.Type == schemas.TypeFineAssessed {
				var f schemas.FineAssessed
				if err := json.Unmarshal(ev.Data, &f); err != nil {
					return nil, err
				}
				r.FineCents += f.AmountCents
			}
		}
		return r, nil
	case schemas.CmdRenew:
		var d schemas.ItemRenewed
		if err := json.Unmarshal(first.Data, &d); err != nil {
			return nil, err
		}
		return schemas.RenewResult{Barcode: d.Barcode, Due: d.Due, Renewals: d.Renewals}, nil
	case schemas.CmdRegisterPatron:
		var d schemas.PatronRegistered
		if err := json.Unmarshal(first.Data, &d); err != nil {
			return nil, err
		}
		return schemas.Registered{PatronID: d.PatronID}, nil
	}
	return schemas.Accepted{Seq: lastSeq}, nil
}

// event builds an envelope. Event ids are UUIDv7: time-ordered, unique across nodes.
func (l *Ledger) event(at Station, typ, subject string, t time.Time, data any) (schemas.Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return schemas.Event{}, err
	}
	return l.eventWithID(id.String(), at, typ, subject, t, data)
}

func (l *Ledger) eventWithID(id string, at Station, typ, subject string, t time.Time, data any) (schemas.Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return schemas.Event{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return schemas.Event{
		SpecVersion:     schemas.SpecVersion,
		ID:              id,
		Type:            typ,
		Source:          at.source(),
		Subject:         subject,
		Time:            t.UTC(),
		DataContentType: "application/json",
		DataSchema:      schemas.DataSchema(typ),
		Data:            raw,
	}, nil
}

// newID returns a random (version 4) id for a transaction, fine or patron: unlike a v7 id
// it says nothing about when it was made.
func newID() string { return uuid.NewString() }

// expungeNamespace makes the id of the command that records an expunged transaction
// deterministic, so recording it twice (after a crash) appends it once.
var expungeNamespace = uuid.MustParse("0b6f9e1c-2f4e-4c53-9a7d-8c3e5d2a1f47")

// RecordExpunged appends transaction.expunged for a closed transaction whose key was
// destroyed. It carries no patron data.
func (l *Ledger) RecordExpunged(ctx context.Context, txnID string, closedAt, destroyedAt time.Time) error {
	id := uuid.NewSHA1(expungeNamespace, []byte(txnID)).String()
	_, err := l.run(ctx, cmdRecordExpunged, id, recordExpunged{txnID: txnID}, func(view) (plan, error) {
		ev, err := l.event(Station{Kind: "system", ID: "expunger"}, schemas.TypeTransactionExpunged, ExpungedSubject, destroyedAt,
			schemas.TransactionExpunged{TxnID: txnID, ClosedAt: closedAt.UTC(), KeyDestroyedAt: destroyedAt.UTC()})
		return plan{events: []schemas.Event{ev}}, err
	})
	return err
}

// checkpointNamespace makes the id of a checkpoint's command deterministic per last
// sequence, so a checkpoint of one position is appended once.
var checkpointNamespace = uuid.MustParse("9a41c7e2-5b0d-4e8f-b6a3-1d7f2c90e4b5")

// ErrCheckpointStale says a checkpoint was not appended because another message came
// first: it must stand right after what it covers. Catch up and sign again.
var ErrCheckpointStale = errors.New("the stream moved since the checkpoint was made")

// AppendCheckpoint appends a signed checkpoint (package tlog) on circ.sys.checkpoint,
// right after the last message it covers (cp.LastSeq): JetStream refuses it, with
// ErrCheckpointStale, if anything else was appended first. So every checkpoint commits to
// exactly the messages before it, which is what an auditor checks.
func (l *Ledger) AppendCheckpoint(ctx context.Context, cp schemas.CheckpointSigned) (uint64, error) {
	ev, err := l.event(Station{Kind: "system", ID: "checkpoint"}, schemas.TypeCheckpointSigned, CheckpointSubject, l.cfg.Now(), cp)
	if err != nil {
		return 0, err
	}
	ev.CommandID = uuid.NewSHA1(checkpointNamespace, fmt.Appendf(nil, "%d", cp.LastSeq)).String()
	raw, err := json.Marshal(ev)
	if err != nil {
		return 0, err
	}
	if _, err := l.v.Event(raw); err != nil {
		return 0, err
	}
	m := nats.NewMsg(CheckpointSubject)
	m.Header.Set(hdrMsgID, ev.CommandID)
	m.Header.Set("Nats-Expected-Last-Sequence", strconv.FormatUint(cp.LastSeq, 10))
	m.Data = raw
	ack, err := l.app.publish(m)
	if err != nil {
		return 0, err
	}
	if ack.Error != nil {
		if ack.Error.ErrCode == 10071 || ack.Error.ErrCode == 10164 { // JetStream: wrong last sequence
			return 0, ErrCheckpointStale
		}
		return 0, fmt.Errorf("append checkpoint: %s", ack.Error.Description)
	}
	if ack.Duplicate {
		return 0, nil
	}
	return ack.Seq, nil
}

// AppendKeyRotation appends checkpoint.key_rotated on circ.sys.checkpoint: from here on,
// checkpoints are signed by rot.Key. Its command id is derived from the new key, so a
// rotation retried after a crash is appended once.
func (l *Ledger) AppendKeyRotation(ctx context.Context, rot schemas.CheckpointKeyRotated) error {
	ev, err := l.event(Station{Kind: "system", ID: "checkpoint"}, schemas.TypeCheckpointKey, CheckpointSubject, l.cfg.Now(), rot)
	if err != nil {
		return err
	}
	ev.CommandID = uuid.NewSHA1(checkpointNamespace, []byte(rot.Key)).String()
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := l.v.Event(raw); err != nil {
		return err
	}
	m := nats.NewMsg(CheckpointSubject)
	m.Header.Set(hdrMsgID, ev.CommandID)
	m.Data = raw
	ack, err := l.app.publish(m)
	if err != nil {
		return err
	}
	if ack.Error != nil {
		return fmt.Errorf("append key rotation: %s", ack.Error.Description)
	}
	return nil
}

// skipNamespace makes the id of a skip record's command deterministic per sequence, so a
// repeated skip of one sequence appends one record.
var skipNamespace = uuid.MustParse("5d0c2f51-7a3e-4f0b-8e43-2c9a61b7d5e8")

// ErrNotStoppedThere refuses a skip of a sequence the projections are not stopped at.
var ErrNotStoppedThere = schemas.Errorf(schemas.CodeConflict, "the projections are not stopped at this sequence")

// Skip records an administrator's decision that the projections pass over the event at
// seq, which they are stopped at because they cannot decode or apply it. The record,
// projection.skipped on circ.sys.skipped, is the only way past such an event; the
// projections, a rebuild and the auditor all honour it. staff is the administrator's
// account, reason their words; neither may hold patron data (the desk says so).
func (l *Ledger) Skip(ctx context.Context, seq uint64, reason, staff string) (uint64, error) {
	if seq == 0 || l.st.StoppedAt() != seq {
		return 0, ErrNotStoppedThere
	}
	if err := l.disk.check(); err != nil {
		return 0, err
	}
	ev, err := l.event(Station{Kind: "system", ID: "skip"}, schemas.TypeProjectionSkipped, SkippedSubject, l.cfg.Now(),
		schemas.ProjectionSkipped{Seq: seq, Reason: reason, Staff: staff})
	if err != nil {
		return 0, err
	}
	id := uuid.NewSHA1(skipNamespace, fmt.Appendf(nil, "%d", seq)).String()
	ev.CommandID = id
	raw, err := json.Marshal(ev)
	if err != nil {
		return 0, err
	}
	if _, err := l.v.Event(raw); err != nil {
		return 0, err // the reason or the staff name breaks the schema
	}
	// The projections are stopped: the record is appended without waiting for them, and
	// they find it when they look again.
	last, err := l.app.append(ctx, id, Expect{}, []schemas.Event{ev})
	if errors.Is(err, errDuplicate) {
		return 0, nil
	} else if err != nil {
		return 0, unavailable(fmt.Errorf("append skip record: %w", err))
	}
	return last, nil
}
