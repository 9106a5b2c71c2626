package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/tlog"
)

// Verifying the history.
//
// Verify reads the stream (or an export of it) once, in order, with no key but the
// ledger's public checkpoint key, and checks:
//
//   - completeness: the history starts at sequence 1 and has no hole;
//   - integrity: every checkpoint's signature, and its Merkle root recomputed over the
//     messages before it (so consecutive checkpoints are consistent: each tree extends the
//     last); what follows the last checkpoint is reported as the unsigned tail; a
//     published checkpoint (--checkpoint) must be one the history extends;
//   - schemas: every event against its envelope and data schema;
//   - no personal data: no string outside the sealed fields looks like a card number, an
//     e-mail address, a phone number or a date of birth (detectors);
//   - forgetting kept: every transaction that closed has its transaction.expunged, and
//     its key went within the window; no event after the expunge is sealed under its key.

// VerifyOptions is what an auditor brings.
type VerifyOptions struct {
	// Key is the checkpoint verifier key the library published ("lethe+<hash>+<key>").
	// Empty: the key of the first checkpoint is used, and the report says so.
	Key string
	// Checkpoint is a signed checkpoint published earlier (a note): the history must
	// extend it. Empty: none.
	Checkpoint []byte
	// Window is how long a closed transaction's key may live (default 60 s).
	Window time.Duration
	// End is when the history was read: a close within Window of it may still be
	// waiting for its expunge. Zero: the time of the last event.
	End time.Time
	// Prefix, for a range of the history (an export with --from), is the Merkle tree of
	// every message before it, as a compact range: the range's checkpoints are checked
	// against it. Forgetting is then checked only for transactions that close in the
	// range, and Cut says the range ends before the history does.
	Prefix *Prefix
	Cut    bool
}

// Prefix is what a range of the history carries of the messages before it.
type Prefix struct {
	FirstSeq uint64   `json:"first_seq"` // the history's first sequence
	Size     uint64   `json:"size"`      // messages before the range
	Hashes   [][]byte `json:"hashes"`    // their tree's compact range
}

// Problem is one failed check.
type Problem struct {
	Seq    uint64 `json:"seq,omitempty"`
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

// Report is what Verify found.
type Report struct {
	Events       int       `json:"events"`
	Messages     int       `json:"messages"` // a command's several events are one message
	FirstSeq     uint64    `json:"first_seq"`
	LastSeq      uint64    `json:"last_seq"`
	Checkpoints  int       `json:"checkpoints"`
	SignedTo     uint64    `json:"signed_to"`     // the last sequence a valid checkpoint covers
	UnsignedTail int       `json:"unsigned_tail"` // messages after it
	Key          string    `json:"key,omitempty"` // the key in force at the end of the history
	KeyPinned    bool      `json:"key_pinned"`    // whether the first key was given, or taken from the stream
	KeyRotations int       `json:"key_rotations"` // changes of key, each signed by the key before
	Closed       int       `json:"transactions_closed"`
	Expunged     int       `json:"transactions_expunged"`
	Pending      int       `json:"transactions_pending"` // closed within the window of the end
	LagP50       Duration  `json:"expunge_lag_p50"`
	LagP99       Duration  `json:"expunge_lag_p99"`
	LagMax       Duration  `json:"expunge_lag_max"`
	Window       Duration  `json:"window"`
	Problems     []Problem `json:"problems"`
	OK           bool      `json:"ok"`
}

// Duration is a time.Duration that reads as text in JSON ("1.5s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// maxProblems bounds the problems kept per check: a damaged stream can have millions.
const maxProblems = 100

// Verifier checks a history message by message. Make one with NewVerifier, Add every
// message in sequence order, then Finish.
type Verifier struct {
	v      *schemas.Validator
	opts   VerifyOptions
	tree   *tlog.Tree
	r      Report
	next   uint64
	counts map[string]int // problems per check
	hole   bool           // a hole was found: roots after it cannot match
	cpSeq  uint64         // where the last valid checkpoint stands

	published  *tlog.Checkpoint // the published checkpoint, once its signature checked out
	pubChecked bool

	closed    map[string]time.Time // transaction -> close time, until its expunge
	expunged  map[string]bool
	lags      []time.Duration
	lastEvent time.Time
}

// NewVerifier starts a verification.
func NewVerifier(v *schemas.Validator, opts VerifyOptions) *Verifier {
	if opts.Window <= 0 {
		opts.Window = 60 * time.Second
	}
	vf := &Verifier{v: v, opts: opts, tree: tlog.NewTree(), counts: map[string]int{},
		closed: map[string]time.Time{}, expunged: map[string]bool{}}
	vf.r.Key, vf.r.KeyPinned, vf.r.Window = opts.Key, opts.Key != "", Duration(opts.Window)
	if p := opts.Prefix; p != nil {
		tree, err := tlog.TreeFrom(p.Size, p.Hashes)
		if err != nil {
			vf.problem(0, "integrity", "the range's prefix: %v", err)
		} else {
			vf.tree = tree
		}
	}
	return vf
}

// expectedFirst is the first sequence the history should start at.
func (vf *Verifier) expectedFirst() uint64 {
	if p := vf.opts.Prefix; p != nil {
		return max(p.FirstSeq, 1) + p.Size
	}
	return 1
}

func (vf *Verifier) problem(seq uint64, check, format string, args ...any) {
	vf.counts[check]++
	if vf.counts[check] <= maxProblems {
		vf.r.Problems = append(vf.r.Problems, Problem{Seq: seq, Check: check, Detail: fmt.Sprintf(format, args...)})
	}
}

// Add checks one message. Messages must come in the order read; a sequence out of order
// or missing is itself a finding.
func (vf *Verifier) Add(m ledger.Msg) { vf.add(decode(vf.v, m)) }

// decoded is a message with what can be worked out of it alone, on any goroutine: its
// events (one, or a command's batch) and their data, or why they do not decode.
type decoded struct {
	m     ledger.Msg
	evs   []schemas.Event
	data  []any
	err   error
	found []Finding
	kids  []string
}

func decode(v *schemas.Validator, m ledger.Msg) *decoded {
	d := &decoded{m: m}
	d.decode(v)
	return d
}

func (d *decoded) decode(v *schemas.Validator) {
	d.evs, d.data, d.err = v.EventsData(d.m.Data)
	for _, ev := range d.evs {
		found, kids := scan(ev.Data)
		d.found, d.kids = append(d.found, found...), append(d.kids, kids...)
	}
}

// AddAll reads messages with read and checks them as Add does, decoding them on workers
// goroutines (the schema check is most of the work) and checking them in the order read.
// It returns read's error; every goroutine it starts has ended when it returns.
func (vf *Verifier) AddAll(read func(fn func(ledger.Msg) error) error, workers int) error {
	return InOrder(read, workers, func(m ledger.Msg) *decoded { return decode(vf.v, m) },
		func(d *decoded) error { vf.add(d); return nil })
}

func (vf *Verifier) add(d *decoded) {
	m := d.m
	if vf.r.Messages == 0 {
		vf.r.FirstSeq, vf.next = m.Seq, m.Seq
		if want := vf.expectedFirst(); m.Seq != want {
			vf.problem(m.Seq, "completeness", "the history starts at sequence %d, not %d: events before it are missing (the stream never deletes)", m.Seq, want)
			vf.hole = true
		}
	}
	switch {
	case m.Seq < vf.next:
		vf.problem(m.Seq, "completeness", "sequence %d comes after %d: out of order or repeated", m.Seq, vf.next-1)
		vf.hole = true
	case m.Seq == vf.next+1:
		vf.problem(m.Seq, "completeness", "sequence %d is missing", vf.next)
		vf.hole = true
	case m.Seq > vf.next:
		vf.problem(m.Seq, "completeness", "sequences %d to %d are missing", vf.next, m.Seq-1)
		vf.hole = true
	}
	vf.next = max(vf.next, m.Seq+1)
	vf.r.Messages++
	vf.r.LastSeq = max(vf.r.LastSeq, m.Seq)

	if d.err != nil {
		vf.r.Events++ // what it holds is unknown; it counts as one
		vf.problem(m.Seq, "schema", "%v", d.err)
	} else {
		vf.r.Events += len(d.evs)
		vf.lastEvent = d.evs[len(d.evs)-1].Time
		vf.scanned(m.Seq, d)
		for i, ev := range d.evs {
			vf.event(m.Seq, ev, d.data[i])
		}
	}
	// The message's bytes are the leaf, whatever they hold: a checkpoint covers them all.
	if err := vf.tree.Append(m.Data); err != nil {
		vf.problem(m.Seq, "integrity", "hash: %v", err)
	}
	vf.checkPublished(m.Seq)
}

// checkPublished compares the published checkpoint with the tree once the tree reaches
// its size.
func (vf *Verifier) checkPublished(seq uint64) {
	if len(vf.opts.Checkpoint) == 0 || vf.pubChecked || vf.opts.Key == "" {
		return
	}
	if vf.published == nil {
		cp, err := tlog.Open(vf.opts.Checkpoint, vf.opts.Key)
		if err != nil {
			vf.pubChecked = true
			vf.problem(0, "integrity", "the published checkpoint: %v", err)
			return
		}
		vf.published = &cp
	}
	if vf.tree.Size() < vf.published.Size {
		return
	}
	vf.pubChecked = true
	root, _ := vf.tree.Root()
	if !bytes.Equal(root, vf.published.Root) {
		vf.problem(seq, "integrity", "the history does not extend the published checkpoint of %d messages: its first %d messages hash to another root (rewritten, or another stream)", vf.published.Size, vf.published.Size)
	}
}

// scanned reports what the scan of a message's events found: personal data, and values
// sealed under the key of a transaction expunged before it.
func (vf *Verifier) scanned(seq uint64, dec *decoded) {
	for _, f := range dec.found {
		vf.problem(seq, "personal data", "%s at %s", f.Detector, f.Path)
	}
	// A sealed value under the key of a transaction that was expunged.
	for _, kid := range dec.kids {
		if vf.expunged[kid] {
			vf.problem(seq, "forgetting", "an event after transaction %s was expunged is sealed under its key", kid)
		}
	}
}

// event runs the checks of one decoded event, before its message's leaf is added.
func (vf *Verifier) event(seq uint64, ev schemas.Event, data any) {
	switch d := data.(type) {
	case schemas.CheckpointSigned:
		vf.checkpoint(seq, d)
	case schemas.CheckpointKeyRotated:
		vf.rotation(seq, d)
	case schemas.TransactionClosed:
		vf.r.Closed++
		vf.closed[d.TxnID] = ev.Time
	case schemas.TransactionExpunged:
		closedAt, ok := vf.closed[d.TxnID]
		if !ok {
			if !vf.expunged[d.TxnID] && vf.opts.Prefix == nil { // in a range, it may have closed before
				vf.problem(seq, "forgetting", "transaction %s expunged without a close before it", d.TxnID)
			}
			return
		}
		delete(vf.closed, d.TxnID)
		vf.expunged[d.TxnID] = true
		vf.r.Expunged++
		lag := d.KeyDestroyedAt.Sub(closedAt)
		vf.lags = append(vf.lags, lag)
		if !d.ClosedAt.Equal(closedAt) || lag < 0 {
			vf.problem(seq, "forgetting", "transaction %s: the expunge record says it closed at %s and its key went at %s, but it closed at %s",
				d.TxnID, d.ClosedAt.UTC().Format(time.RFC3339Nano), d.KeyDestroyedAt.UTC().Format(time.RFC3339Nano), closedAt.UTC().Format(time.RFC3339Nano))
		}
		if lag > vf.opts.Window {
			vf.problem(seq, "forgetting", "transaction %s: its key went %s after the close, beyond the window of %s", d.TxnID, lag.Round(time.Millisecond), vf.opts.Window)
		}
	}
}

// rotation follows a change of the checkpoint key, if the key in force signed it.
func (vf *Verifier) rotation(seq uint64, d schemas.CheckpointKeyRotated) {
	if vf.r.Key == "" {
		vf.problem(seq, "integrity", "a checkpoint key rotation with no key in force to check it (pin the first key with --key)")
		return
	}
	next, err := tlog.OpenRotation([]byte(d.Note), vf.r.Key)
	switch {
	case err != nil:
		vf.problem(seq, "integrity", "a checkpoint key rotation not signed by the key in force: %v", err)
	case next != d.Key:
		vf.problem(seq, "integrity", "a checkpoint key rotation whose note names %s, not %s", next, d.Key)
	default:
		vf.r.Key = next
		vf.r.KeyRotations++
	}
}

// historyFirst is the first sequence of the whole history.
func (vf *Verifier) historyFirst() uint64 {
	if p := vf.opts.Prefix; p != nil {
		return max(p.FirstSeq, 1)
	}
	return vf.r.FirstSeq
}

// checkpoint checks one checkpoint against the tree of every message before it.
func (vf *Verifier) checkpoint(seq uint64, d schemas.CheckpointSigned) {
	vf.r.Checkpoints++
	if vf.r.Key == "" {
		vf.r.Key = d.Key // trusted on first use: the report says it was not pinned
	}
	if d.Key != vf.r.Key {
		vf.problem(seq, "integrity", "checkpoint signed with key %s, not %s (a key change is not signed by the old key)", d.Key, vf.r.Key)
		return
	}
	cp, err := tlog.Open([]byte(d.Note), vf.r.Key)
	if err != nil {
		vf.problem(seq, "integrity", "checkpoint signature: %v", err)
		return
	}
	root, err := vf.tree.Root()
	if err != nil {
		vf.problem(seq, "integrity", "%v", err)
		return
	}
	switch {
	case d.LastSeq != seq-1 || d.FirstSeq != vf.historyFirst() || cp.Size != d.Size || !bytes.Equal(cp.Root, d.Root):
		vf.problem(seq, "integrity", "checkpoint fields disagree with its note or its place (covers %d to %d, stands at %d)", d.FirstSeq, d.LastSeq, seq)
	case cp.Size != vf.tree.Size():
		vf.problem(seq, "integrity", "checkpoint of %d messages, but %d precede it: messages were removed or inserted", cp.Size, vf.tree.Size())
	case !bytes.Equal(cp.Root, root):
		vf.problem(seq, "integrity", "checkpoint root differs from the events before it: an event was changed, inserted, removed or reordered")
	default:
		vf.r.SignedTo, vf.cpSeq = seq-1, seq
	}
}

// Finish ends the verification.
func (vf *Verifier) Finish() Report {
	r := vf.r
	if vf.r.Messages == 0 {
		vf.problem(0, "completeness", "the history is empty")
	}
	if len(vf.opts.Checkpoint) > 0 && !vf.pubChecked {
		if vf.opts.Key == "" {
			vf.problem(0, "integrity", "a published checkpoint needs the key it was signed with (--key)")
		} else if cp, err := tlog.Open(vf.opts.Checkpoint, vf.opts.Key); err != nil {
			vf.problem(0, "integrity", "the published checkpoint: %v", err)
		} else {
			vf.problem(0, "integrity", "the history holds %d messages, fewer than the published checkpoint's %d: it was cut short, deleted or replaced", vf.tree.Size(), cp.Size)
		}
	}
	if vf.r.Checkpoints == 0 && vf.r.Messages > 0 {
		vf.problem(0, "integrity", "no checkpoint: nothing in the history is signed")
	}
	if vf.cpSeq > 0 {
		r.UnsignedTail = int(r.LastSeq - vf.cpSeq) // the checkpoint itself is not a tail
	} else {
		r.UnsignedTail = r.Messages
	}
	end := vf.opts.End
	if end.IsZero() {
		end = vf.lastEvent
	}
	ids := make([]string, 0, len(vf.closed))
	for id := range vf.closed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if end.Sub(vf.closed[id]) <= vf.opts.Window || vf.opts.Cut {
			vf.r.Pending++ // within the window, or its expunge is after the range
			continue
		}
		vf.problem(0, "forgetting", "transaction %s closed at %s and was never expunged", id, vf.closed[id].UTC().Format(time.RFC3339))
	}
	r.Pending = vf.r.Pending
	if len(vf.lags) > 0 {
		slices.Sort(vf.lags)
		q := func(p float64) Duration { return Duration(vf.lags[int(p*float64(len(vf.lags)-1))]) }
		r.LagP50, r.LagP99, r.LagMax = q(0.5), q(0.99), Duration(vf.lags[len(vf.lags)-1])
	}
	r.Problems = vf.r.Problems
	if r.Problems == nil {
		r.Problems = []Problem{}
	}
	for check, n := range vf.counts {
		if n > maxProblems {
			r.Problems = append(r.Problems, Problem{Check: check, Detail: fmt.Sprintf("and %d more", n-maxProblems)})
		}
	}
	r.OK = len(r.Problems) == 0
	return r
}

// Verdict is the report's one line.
func (r Report) Verdict() string {
	if r.OK {
		key := "the pinned key"
		if !r.KeyPinned {
			key = "the key on the stream (not pinned: give --key)"
		}
		return fmt.Sprintf("VERIFIED: %d events in %d messages, signed to %d by %s, %d unsigned; %d transactions closed, all expunged within %s (%d pending); no personal data found",
			r.Events, r.Messages, r.SignedTo, key, r.UnsignedTail, r.Closed, time.Duration(r.Window), r.Pending)
	}
	checks := map[string]bool{}
	for _, p := range r.Problems {
		checks[p.Check] = true
	}
	return fmt.Sprintf("FAILED: %d problems (%s) in %d events", len(r.Problems), strings.Join(slices.Sorted(mapsKeys(checks)), ", "), r.Events)
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Finding is a string that looks like personal data.
type Finding struct {
	Detector string
	Path     string
}

// detectors are the shapes of personal data looked for in every string of an event's
// data outside sealed values, with what each leaves alone to avoid false alarms.
var detectors = []struct {
	Name, Rule string
	re         *regexp.Regexp
}{
	{"e-mail address", "a word, @, a domain with a dot", regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+`)},
	{"card number", "9 to 19 digits in a row, not inside a longer run of hex digits or a UUID; not in a barcode or a title (ISBNs)", regexp.MustCompile(`(^|[^0-9A-Fa-f-])[0-9]{9,19}($|[^0-9A-Fa-f-])`)},
	{"phone number", "10 or more digits with spaces, dots, dashes or brackets between, not an RFC 3339 time", regexp.MustCompile(`\+?\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}`)},
	{"date of birth", "a bare date YYYY-MM-DD: Lethe's events carry full RFC 3339 times, never a bare date", regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)},
}

// Detect returns the strings of an event's data, outside sealed values and the fields
// meant to hold hashes and signatures, that look like personal data.
func Detect(data json.RawMessage) []Finding {
	found, _ := scan(data)
	return found
}

// scan walks an event's data once: the strings that look like personal data (Detect),
// and the kid of every sealed value.
func scan(data json.RawMessage) (found []Finding, kids []string) {
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ct := x["ct"]; ct {
				if kid, ok := x["kid"].(string); ok {
					kids = append(kids, kid)
				}
				return // sealed
			}
			for k, e := range x {
				switch k {
				case "card_hash", "root", "note", "key":
					continue // hashes and signatures: shapes of hex and base64 by design
				}
				walk(path+"/"+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s/%d", path, i), e)
			}
		case string:
			if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return
			}
			field := path[strings.LastIndex(path, "/")+1:]
			for _, d := range detectors {
				if d.Name == "card number" && (field == "barcode" || field == "title") {
					continue
				}
				if d.re.MatchString(x) {
					found = append(found, Finding{Detector: d.Name, Path: path})
				}
			}
		}
	}
	var v any
	if json.Unmarshal(data, &v) == nil {
		walk("", v)
	}
	return found, kids
}
