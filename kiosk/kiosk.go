// Package kiosk is the kiosk API's NATS transport: requests on
// lethe.kiosk.<branch>.<kiosk>.<command> in, ledger commands out, one coded reply each. It
// sits beside package desk, the staff API's HTTP transport, over the same ledger.
//
// Everything a client sends is bounded here: a fixed pool of workers behind a bounded
// queue, a subscription per kiosk with bounded pending requests, a rate per kiosk, a
// limit on cards that open no account, and replies only to inboxes.
package kiosk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"
)

// Config bounds the kiosk API. The zero value of each field means the default in its
// comment. Every bound answers excess work with a coded refusal at once: nothing a client
// sends grows a queue, a goroutine count or memory without limit.
type Config struct {
	Workers int // commands executed at once; default 64
	Queue   int // requests waiting for a worker; default 1024. Beyond it: unavailable.
	// Rate is the requests per second each kiosk may send on average, Burst how many at
	// once; beyond them: rate_limited. Defaults 20 and 40: a patron scanning a stack of
	// books is a few a second. A negative Rate turns the limit off (benchmarks).
	Rate  float64
	Burst int
	// A card lookup that opens no account (an unknown or lost card) is a miss. A kiosk
	// with MissesPerKiosk misses in a MissWindow, or all kiosks together with MissesTotal,
	// get rate_limited for every command that presents a card until the window ends:
	// guessing cards is slow. Defaults 10, 100 and one minute.
	MissesPerKiosk int
	MissesTotal    int
	MissWindow     time.Duration

	Now    func() time.Time // clock of the miss windows; default time.Now
	Logger *slog.Logger     // default: discard
}

func (c Config) withDefaults() Config {
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Queue <= 0 {
		c.Queue = 1024
	}
	if c.Rate == 0 {
		c.Rate = 20
	}
	if c.Burst <= 0 {
		c.Burst = 40
	}
	if c.MissesPerKiosk <= 0 {
		c.MissesPerKiosk = 10
	}
	if c.MissesTotal <= 0 {
		c.MissesTotal = 100
	}
	if c.MissWindow <= 0 {
		c.MissWindow = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server answers kiosk requests on lethe.kiosk.<branch>.<kiosk>.<command>: a fixed
// pool of workers behind a bounded queue, per-kiosk rate limits, and a limit on card
// lookups that miss. Card misses are not recorded one access entry per guess; each
// kiosk's misses are summarised in one entry per window.
//
// When the kiosks are known (ServeOnly), each has a subscription of its own, so requests
// are taken in by one goroutine per kiosk: a kiosk flooding the ledger waits behind its own
// requests, not in front of everyone else's. Otherwise one wildcard subscription takes
// them all in.
type Server struct {
	l    *ledger.Ledger
	cfg  Config
	nc   *nats.Conn
	work chan *nats.Msg
	wg   sync.WaitGroup // the workers
	sum  sync.WaitGroup // the summariser
	stop chan struct{}
	// inMu guards sending on work against its closing: intake holds it shared.
	inMu   sync.RWMutex
	closed bool

	subMu sync.Mutex
	wild  *nats.Subscription            // every kiosk's subjects, until ServeOnly
	subs  map[string]*nats.Subscription // by "branch/kiosk", after ServeOnly
	done  bool                          // Close began: subscribe to nothing more

	mu      sync.Mutex
	limits  map[string]*rate.Limiter // by kiosk
	misses  map[string]int           // by kiosk, this window
	total   int                      // all kiosks, this window
	window  time.Time                // start of the window
	summary map[string]int           // by kiosk: misses not yet on the access record

	refused atomic.Int64 // requests refused for a full queue or a rate, for the metric
}

// maxKiosksTracked bounds the per-kiosk tables: kiosk names come from subjects, which
// NATS permissions tie to identities; with an external NATS they might not be.
const maxKiosksTracked = 10000

// Pending limits of one kiosk's subscription: requests taken in but not yet looked at.
// Beyond them NATS drops that kiosk's requests (they get no answer) rather than the
// ledger's memory growing: 64Ki requests or 16 MiB, whichever comes first.
const (
	kioskPendingMsgs  = 64 << 10
	kioskPendingBytes = 16 << 20
)

// Serve answers kiosk requests from the moment it returns until Close, on nc, which
// should be a connection of its own: replies to a flood must not queue in front of the
// ledger's appends. Every request with a valid reply subject gets exactly one reply: a
// result, or a coded error that never holds personal data or internal detail. The queue
// group lets several Lethe processes share the kiosks.
func Serve(l *ledger.Ledger, nc *nats.Conn, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	k := &Server{
		l: l, cfg: cfg, nc: nc, work: make(chan *nats.Msg, cfg.Queue), stop: make(chan struct{}),
		subs:   map[string]*nats.Subscription{},
		limits: map[string]*rate.Limiter{}, misses: map[string]int{}, summary: map[string]int{},
		window: cfg.Now(),
	}
	// Closing does not cancel a command in flight: each finishes, or ends at its own
	// deadline (commandTimeout), before Close returns.
	for range cfg.Workers {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			for m := range k.work {
				k.answer(m)
			}
		}()
	}
	k.sum.Add(1)
	go func() {
		defer k.sum.Done()
		k.summarise()
	}()
	sub, err := k.subscribe(ledger.KioskWildcard)
	if err != nil {
		k.shutdown()
		return nil, err
	}
	k.wild = sub
	return k, nil
}

// subscribe takes in requests on subject, bounded, and returns once the server has the
// subscription (no request sent after it returns can miss it).
func (k *Server) subscribe(subject string) (*nats.Subscription, error) {
	sub, err := k.nc.QueueSubscribe(subject, "lethe-ledger", k.intake)
	if err == nil {
		err = sub.SetPendingLimits(kioskPendingMsgs, kioskPendingBytes)
	}
	if err == nil {
		err = k.nc.Flush()
	}
	if err != nil {
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		return nil, fmt.Errorf("subscribe to kiosk requests: %w", err)
	}
	return sub, nil
}

// ServeOnly serves exactly these kiosks ("branch/kiosk"), each on a subscription of its
// own, in place of the wildcard: a kiosk added gets one, a kiosk gone loses its own (its
// connection is cut by NATS; this stops the ledger listening). Called again whenever the
// set changes.
func (k *Server) ServeOnly(kiosks []string) error {
	k.subMu.Lock()
	defer k.subMu.Unlock()
	if k.done {
		return nil
	}
	want := map[string]bool{}
	for _, kiosk := range kiosks {
		want[kiosk] = true
		if _, ok := k.subs[kiosk]; ok {
			continue
		}
		branch, id, _ := strings.Cut(kiosk, "/")
		if !ledger.ValidToken(branch) || !ledger.ValidToken(id) {
			return errors.New("a kiosk to serve is not branch/kiosk")
		}
		sub, err := k.subscribe(ledger.KioskSubject(branch, id, "*"))
		if err != nil {
			return err
		}
		k.subs[kiosk] = sub
	}
	for kiosk, sub := range k.subs {
		if !want[kiosk] {
			_ = sub.Unsubscribe()
			delete(k.subs, kiosk)
		}
	}
	if k.wild != nil {
		// The kiosks' own subscriptions are in place: the wildcard's can go. Both are in
		// the queue group, so NATS gives each request to one of them, never both.
		_ = k.wild.Unsubscribe()
		k.wild = nil
	}
	return nil
}

// Close stops taking requests, waits for every request taken to be answered, writes the
// last miss summaries, and returns. It is the kiosk server's owner's last call.
func (k *Server) Close() error {
	k.subMu.Lock()
	subs := make([]*nats.Subscription, 0, len(k.subs)+1)
	for _, sub := range k.subs {
		subs = append(subs, sub)
	}
	if k.wild != nil {
		subs = append(subs, k.wild)
	}
	k.subs, k.wild, k.done = map[string]*nats.Subscription{}, nil, true
	k.subMu.Unlock()
	var errs []error
	for _, sub := range subs {
		closed := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			errs = append(errs, err)
			continue
		}
		// Drain returns at once; the subscription closes once its callback has taken
		// every message it had, so nothing is queued after work is closed.
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			errs = append(errs, errors.New("a kiosk subscription did not drain within 30s"))
		}
	}
	k.shutdown()
	return errors.Join(errs...)
}

// shutdown stops queueing, lets the workers finish what is queued, and waits for them
// and for the summariser's last summary.
func (k *Server) shutdown() {
	k.inMu.Lock()
	k.closed = true
	close(k.work)
	k.inMu.Unlock()
	k.wg.Wait() // the last misses are counted before the last summary
	close(k.stop)
	k.sum.Wait()
}

// Refused is how many requests were refused for a full queue or a rate limit.
func (k *Server) Refused() int64 { return k.refused.Load() }

// replyPrefixes are where a kiosk's reply may go: an inbox. The ledger's connection may
// publish anywhere, so a request whose reply subject names anything else (circ.item.x,
// access.entry) would make the ledger write there on the kiosk's behalf.
var replyPrefixes = []string{"_INBOX.", "_INBOX_", "_R_."}

func validReply(s string) bool {
	for _, p := range replyPrefixes {
		if strings.HasPrefix(s, p) && len(s) > len(p) && !strings.ContainsAny(s, " \t\r\n*>") {
			return true
		}
	}
	return false
}

// intake runs on the subscription's goroutine: it checks what is cheap to check and
// queues the rest, or refuses at once. It never blocks.
func (k *Server) intake(m *nats.Msg) {
	if !validReply(m.Reply) {
		k.refused.Add(1)
		return // nowhere safe to answer
	}
	tok := strings.Split(m.Subject, ".")
	if len(tok) != 5 || !ledger.ValidToken(tok[2]) || !ledger.ValidToken(tok[3]) {
		k.reply(m, "", nil, schemas.Errorf(schemas.CodeInvalid, "kiosk subject must be lethe.kiosk.<branch>.<kiosk>.<command>"))
		return
	}
	if !k.allow(tok[2] + "/" + tok[3]) {
		// Refused at the cost of one publish of a prepared reply, and counted rather than
		// logged: a flood must cost the ledger as little as possible.
		k.refused.Add(1)
		_ = m.Respond(replyRateLimited)
		return
	}
	k.inMu.RLock()
	queued := false
	if !k.closed {
		select {
		case k.work <- m:
			queued = true
		default:
		}
	}
	k.inMu.RUnlock()
	if !queued {
		k.refused.Add(1)
		_ = m.Respond(replyBusy)
	}
}

// The replies intake refuses with, encoded once.
var (
	replyRateLimited = mustReply(schemas.Errorf(schemas.CodeRateLimited, "too many requests from this kiosk; slow down"))
	replyBusy        = mustReply(schemas.Errorf(schemas.CodeUnavailable, "the ledger is busy; retry with the same command id"))
)

func mustReply(e *schemas.Error) []byte {
	b, err := json.Marshal(schemas.Reply{Error: e})
	if err != nil {
		panic(err) // a constant that does not encode is a programming error
	}
	return b
}

// allow takes a token from the kiosk's rate limiter.
func (k *Server) allow(kiosk string) bool {
	if k.cfg.Rate < 0 {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	lim, ok := k.limits[kiosk]
	if !ok {
		if len(k.limits) >= maxKiosksTracked {
			clear(k.limits) // forgetting every bucket only ever lets a request through
		}
		lim = rate.NewLimiter(rate.Limit(k.cfg.Rate), k.cfg.Burst)
		k.limits[kiosk] = lim
	}
	return lim.Allow()
}

// cardCommands are the kiosk commands that present a card.
var cardCommands = []string{schemas.CmdCheckOut, schemas.CmdRenew, schemas.CmdPatronInfo}

// commandTimeout bounds one kiosk command: a kiosk that waits longer has given up, and a
// worker never waits forever (for a stream or projections that stopped answering).
const commandTimeout = 30 * time.Second

// answer executes one request and replies.
func (k *Server) answer(m *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	start := time.Now()
	tok := strings.Split(m.Subject, ".")
	command := tok[4]
	at := ledger.Station{Kind: "kiosk", Branch: tok[2], ID: tok[3]}
	var result any
	var err error
	switch {
	case !slices.Contains(schemas.KioskCommands(), command):
		err = schemas.Errorf(schemas.CodeInvalid, "unknown kiosk command")
	case len(m.Data) > schemas.MaxCommandBytes:
		err = schemas.Errorf(schemas.CodeInvalid, "command is larger than %d bytes", schemas.MaxCommandBytes)
	case slices.Contains(cardCommands, command) && k.missedTooOften(at.Branch+"/"+at.ID):
		err = schemas.Errorf(schemas.CodeRateLimited, "too many cards were not recognised here; wait a minute or see staff")
	default:
		result, err = k.l.Execute(ctx, at, command, m.Data)
		if errors.Is(err, ledger.ErrUnknownCard) || errors.Is(err, ledger.ErrCardLost) {
			k.miss(at.Branch + "/" + at.ID)
		}
	}
	k.reply(m, command, result, err)
	k.cfg.Logger.Debug("kiosk command", "command", command, "ok", err == nil, "elapsed", time.Since(start))
}

// reply sends the reply envelope. err may wrap internal detail; only its public part
// leaves, and the log line carries codes and opaque ids only (the ledger builds errors
// from those).
func (k *Server) reply(m *nats.Msg, command string, result any, err error) {
	reply := schemas.Reply{OK: err == nil}
	if err != nil {
		pub := schemas.Public(err)
		reply.Error = pub
		k.cfg.Logger.Log(context.Background(), schemas.LogLevel(err), "kiosk command refused", "command", command, "code", pub.Code, "err", err)
	} else if reply.Result, err = json.Marshal(result); err != nil {
		reply = schemas.Reply{Error: schemas.Public(err)}
	}
	data, _ := json.Marshal(reply)
	if err := m.Respond(data); err != nil {
		k.cfg.Logger.Error("kiosk reply", "err", err)
	}
}

// rollWindow starts a new miss window when the current one is over. k.mu is held.
func (k *Server) rollWindow(now time.Time) {
	if now.Sub(k.window) >= k.cfg.MissWindow || now.Before(k.window) {
		k.window, k.total = now, 0
		clear(k.misses)
	}
}

// missedTooOften reports whether card commands from a kiosk are refused for now.
func (k *Server) missedTooOften(kiosk string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rollWindow(k.cfg.Now())
	return k.misses[kiosk] >= k.cfg.MissesPerKiosk || k.total >= k.cfg.MissesTotal
}

// miss counts a card lookup that opened no account.
func (k *Server) miss(kiosk string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rollWindow(k.cfg.Now())
	if len(k.misses) < maxKiosksTracked {
		k.misses[kiosk]++
	}
	k.total++
	if _, ok := k.summary[kiosk]; ok || len(k.summary) < maxKiosksTracked {
		k.summary[kiosk]++
	}
}

// summarise writes each kiosk's card misses on the access record, one entry per kiosk per
// window, until Close; then once more.
func (k *Server) summarise() {
	t := time.NewTicker(k.cfg.MissWindow)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			k.flushMisses()
		case <-k.stop:
			k.flushMisses()
			return
		}
	}
}

func (k *Server) flushMisses() {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	k.mu.Lock()
	pending := k.summary
	k.summary = map[string]int{}
	k.mu.Unlock()
	for kiosk, n := range pending {
		err := k.l.RecordAccess(ctx, ledger.Disclosure{
			By: ledger.Requester{Name: "kiosk " + kiosk, Role: policy.Kiosk}, Action: "card_misses",
			Basis: policy.Card, Scope: policy.Refused, Clause: policy.ClauseCard, Requests: n,
		})
		if err != nil {
			k.cfg.Logger.Error("record card misses", "kiosk", kiosk, "count", n, "err", err)
			k.mu.Lock()
			k.summary[kiosk] += n // keep them for the next window
			k.mu.Unlock()
		}
	}
}

// CardsBlocked reports whether commands presenting a card are refused for now at a kiosk
// ("branch/kiosk"): the SIP2 gateway shares the kiosk API's card-miss limits, so a
// self-check cannot guess cards faster over SIP2 than over NATS.
func (k *Server) CardsBlocked(kiosk string) bool { return k.missedTooOften(kiosk) }

// Allow takes a token from a kiosk's ("branch/kiosk") rate: the SIP2 gateway's messages
// and the NATS kiosk API's requests share one rate per kiosk (--kiosk-rate).
func (k *Server) Allow(kiosk string) bool { return k.allow(kiosk) }

// CardMissed counts a card presented at a kiosk that opened no account (unknown, lost):
// for the limit, and for the kiosk's one card_misses entry per window on the access record.
func (k *Server) CardMissed(kiosk string) { k.miss(kiosk) }
