package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

// library makes the events of a library day: items, patrons, loans opened and closed,
// numbered from the sequence after the last it made.
type library struct {
	t    testing.TB
	keys *keystore.Store
	seq  uint64
	at   time.Time
	msgs []ledger.Msg
	open []loan // open loans, oldest first
}

type loan struct{ txn, barcode string }

func newLibrary(t testing.TB, keys *keystore.Store) *library {
	return &library{t: t, keys: keys, at: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)}
}

// add appends an event with a fresh command id.
func (l *library) add(id, typ, subject string, data any) {
	l.t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		l.t.Fatal(err)
	}
	ev := schemas.Event{SpecVersion: "1.0", ID: id, Type: typ, Source: "lethe/test", Subject: subject, Time: l.at,
		DataContentType: "application/json", DataSchema: schemas.DataSchema(typ), CommandID: uuid.NewString(), Data: raw}
	body, err := json.Marshal(ev)
	if err != nil {
		l.t.Fatal(err)
	}
	l.seq++
	l.msgs = append(l.msgs, ledger.Msg{Seq: l.seq, Subject: subject, Data: body})
}

// take returns the events made since the last take.
func (l *library) take() []ledger.Msg {
	m := l.msgs
	l.msgs = nil
	return m
}

func eventID() string { return uuid.Must(uuid.NewV7()).String() }

func (l *library) catalog(barcode string) {
	l.add(eventID(), schemas.TypeItemCataloged, "circ.item."+barcode, schemas.ItemCataloged{
		Barcode: barcode, Title: "A book of some length " + barcode, Collection: "adult-fiction", Branch: "main", ReplacementCents: 1500})
}

// register registers a patron; the profile key does not exist, so no name is indexed.
func (l *library) register(id string) {
	l.add(eventID(), schemas.TypePatronRegistered, ledger.PatronSubject(id), schemas.PatronRegistered{PatronID: id, HomeBranch: "main",
		Profile: schemas.Sealed{KID: id, Nonce: make([]byte, 24), CT: make([]byte, 52)}})
}

// checkout lends barcode. With a patron, the reference is sealed under a real
// transaction key, as the ledger seals it, so the projections link the loan to the
// patron's row; without one it cannot be opened (as in a replay after the close).
func (l *library) checkout(barcode, patron string) string {
	l.t.Helper()
	txn, id := uuid.NewString(), eventID()
	ref := schemas.Sealed{KID: txn, Nonce: make([]byte, 24), CT: make([]byte, 52)}
	if patron != "" {
		key, err := l.keys.Create(keystore.Transaction, txn)
		if err != nil {
			l.t.Fatal(err)
		}
		if ref, err = seal.Patron(key, patron, id, txn); err != nil {
			l.t.Fatal(err)
		}
	}
	l.add(id, schemas.TypeItemCheckedOut, "circ.item."+barcode, schemas.ItemCheckedOut{TxnID: txn, Barcode: barcode,
		Patron: ref, Branch: "main", Station: "k1", Due: l.at.Add(21 * 24 * time.Hour)})
	l.open = append(l.open, loan{txn, barcode})
	return txn
}

// checkin returns the i-th open loan (0 the oldest), closes it and records it expunged,
// as a kiosk return and the expunger would.
func (l *library) checkin(i int) loan {
	ln := l.open[i]
	l.open = append(l.open[:i], l.open[i+1:]...)
	subject := "circ.item." + ln.barcode
	l.add(eventID(), schemas.TypeItemReturned, subject, schemas.ItemReturned{TxnID: ln.txn, Barcode: ln.barcode, Branch: "main", Station: "k2"})
	l.add(eventID(), schemas.TypeTransactionClosed, subject, schemas.TransactionClosed{TxnID: ln.txn})
	l.add(eventID(), schemas.TypeTransactionExpunged, ledger.ExpungedSubject,
		schemas.TransactionExpunged{TxnID: ln.txn, ClosedAt: l.at, KeyDestroyedAt: l.at})
	return ln
}

// applyAll applies the events made so far, in batches of the projector's size.
func applyAll(t testing.TB, s *Store, msgs []ledger.Msg) {
	t.Helper()
	st, err := s.newApplyState()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(msgs); i += maxBatch {
		if err := s.applyDecoded(st, s.decodeAll(msgs[i:min(i+maxBatch, len(msgs))])); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
}

// pendingState is whether the next sweep erases the whole key space, and how many keys
// it would compact around otherwise.
func (s *Store) pendingState() (all bool, keys int) {
	s.erasure.mu.Lock()
	defer s.erasure.mu.Unlock()
	return !s.erasure.known, len(s.erasure.keys)
}

func scanFor(t *testing.T, dir string, needles map[string]string) map[string][]string {
	t.Helper()
	var list [][]byte
	for _, n := range needles {
		list = append(list, []byte(n))
	}
	hits, err := keystore.ScanDir(dir, list)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for name, n := range needles {
		if files := hits[fmt.Sprintf("%x", n)]; len(files) > 0 {
			out[name] = files
		}
	}
	return out
}

// TestSweepErasesFewClosesFromLargeDatabase: in projections of 3,000 open loans (and as
// many items), the sweep after five closes compacts only around the rows those closes
// deleted or overwrote, and still no file holds a closed transaction's id: not its
// transaction row, its expunge row, its overdue entry, nor the old versions of the item
// and patron rows that named it. Open loans stay on disk, so the scan can see what is
// there; and before the sweep the closed ids are on disk, so it can see them.
func TestSweepErasesFewClosesFromLargeDatabase(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	dir := filepath.Join(t.TempDir(), "projections")
	s, err := Open(dir, keys, v, Config{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	open := true
	defer func() {
		if open {
			s.Close()
		}
	}()
	lib := newLibrary(t, keys)
	const loans = 3000
	for i := range loans + 10 {
		lib.catalog(fmt.Sprintf("B%06d", i))
	}
	patron := uuid.NewString()
	lib.register(patron)
	// Three marked loans of one patron among thousands of others: two will close.
	var marked []string
	for i := range loans {
		who := ""
		if i%1000 == 0 {
			who = patron
		}
		txn := lib.checkout(fmt.Sprintf("B%06d", i), who)
		if who != "" {
			marked = append(marked, txn)
		}
	}
	applyAll(t, s, lib.take())
	ctx := context.Background()
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if all, n := s.pendingState(); all || n != 0 {
		t.Fatalf("after the first sweep: all = %v, %d keys pending, want nothing pending", all, n)
	}

	// Close two of the marked loans and three others.
	closing := map[string]bool{marked[0]: true, marked[1]: true}
	for _, i := range []int{17, 1999, 2900} {
		closing[lib.open[i].txn] = true
	}
	for i := 0; i < len(lib.open); {
		if closing[lib.open[i].txn] {
			lib.checkin(i)
			continue
		}
		i++
	}
	closed := []string{marked[0], marked[1]}
	applyAll(t, s, lib.take())
	all, pending := s.pendingState()
	if all || pending == 0 || pending > 100 {
		t.Fatalf("after the closes: all = %v, %d keys pending, want the closes' keys only", all, pending)
	}
	gone := map[string]string{"first closed txn": closed[0], "second closed txn": closed[1]}
	if found := scanFor(t, dir, gone); len(found) != len(gone) {
		t.Fatalf("before the sweep found %v, want both closed transaction ids in files: the scan proves nothing", found)
	}
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if found := scanFor(t, dir, gone); len(found) > 0 {
		t.Errorf("after the sweep, closed transactions are still in files: %v", found)
	}
	if found := scanFor(t, dir, map[string]string{"open txn": marked[2], "patron": patron}); len(found) != 2 {
		t.Errorf("after the sweep found %v, want the open loan and its patron still on disk", found)
	}
	row, err := s.Patron(patron)
	if err != nil || len(row.Txns) != 1 || row.Txns[0] != marked[2] {
		t.Errorf("Patron(marked) = %+v, %v, want only the open loan", row, err)
	}
	open = false
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if found := scanFor(t, dir, gone); len(found) > 0 {
		t.Errorf("after close, closed transactions are in files: %v", found)
	}
}

// TestSweepAfterOpenErasesWhatWasNotRecorded: what was deleted before the store was
// opened (written before a crash, or before a stop without a sweep) was never recorded,
// so the first sweep after Open erases the whole key space.
func TestSweepAfterOpenErasesWhatWasNotRecorded(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	dir := filepath.Join(t.TempDir(), "projections")
	s, err := Open(dir, keys, v, Config{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	lib := newLibrary(t, keys)
	lib.catalog("R1")
	patron := uuid.NewString()
	lib.register(patron)
	txn := lib.checkout("R1", patron)
	applyAll(t, s, lib.take())
	lib.checkin(0)
	applyAll(t, s, lib.take())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	gone := map[string]string{"closed txn": txn}
	if found := scanFor(t, dir, gone); len(found) == 0 {
		t.Fatal("before the sweep the closed transaction is in no file: the scan proves nothing")
	}
	s, err = Open(dir, keys, v, Config{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if all, _ := s.pendingState(); !all {
		t.Fatal("after Open the next sweep does not erase everything")
	}
	if err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if found := scanFor(t, dir, gone); len(found) > 0 {
		t.Errorf("after the first sweep, the closed transaction is in %v", found)
	}
	// Nothing deleted since: the next sweep has nothing to do.
	if all, n := s.pendingState(); all || n != 0 {
		t.Errorf("after the sweep: all = %v, %d keys pending, want nothing", all, n)
	}
}

// rowDump reads every row.
func rowDump(t *testing.T, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := s.scan(nil, func(k, v []byte) error {
		out[string(k)] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSweepIsToldEveryChangedRow: every row a varied history deletes or changes after a
// sweep (loans, renewals, fines, fees, lost items, expunge records, commands leaving the
// deduplication window, a closed account with its access-record pseudonyms) is pending
// for the next sweep, which compacts only around pending rows; a row left out would keep
// its old bytes on disk.
func TestSweepIsToldEveryChangedRow(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	s := openTestStore(t, keys, v, "told")
	msgs := historyMsgs(t, 1)
	half := len(msgs) / 2
	applyAll(t, s, msgs[:half])
	// The account that closes at the end has pseudonyms on the access record.
	var closing schemas.PatronClosed
	if err := json.Unmarshal(eventData(t, msgs[len(msgs)-1]), &closing); err != nil {
		t.Fatal(err)
	}
	if err := s.IndexAccess([]string{closing.PatronID}, []string{"kid-told-1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := rowDump(t, s)
	applyAll(t, s, msgs[half:])
	after := rowDump(t, s)
	s.erasure.mu.Lock()
	pending := s.erasure.keys
	s.erasure.mu.Unlock()
	changed, deleted := 0, 0
	for k, old := range before {
		now, ok := after[k]
		switch {
		case !ok:
			deleted++
		case now != old:
			changed++
		default:
			continue
		}
		if _, told := pending[k]; !told {
			t.Errorf("row %q (prefix %s) was deleted or changed, but the sweep is not told", k, k[:2])
		}
	}
	if deleted == 0 || changed == 0 {
		t.Fatalf("%d rows deleted and %d changed, want some of each: the test proves nothing", deleted, changed)
	}
}

// eventData returns the data of a stream message's event.
func eventData(t *testing.T, m ledger.Msg) []byte {
	t.Helper()
	var ev schemas.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev.Data
}

// BenchmarkSweep measures the erasure sweep of projections holding open loans, 10× and
// 100× the sizes `lethe bench --only growth` measures (300 and 1,200 open loans), after
// some loans closed since the last sweep (each close is a return, its close and its
// expunged record; a new loan of the returned item keeps the number of open loans):
//
//	before  keystore.Erase over the whole key space: the sweep the expunger ran before
//	        Store.Sweep
//	after   Store.Sweep: compacts only around the rows deleted or overwritten since the
//	        last sweep
//	raw     Pebble's own DB.Compact over the whole key space, and nothing else
//
// Only the sweep is timed. It reports the bytes compacted per sweep, and the size of the
// database (rows, bytes, tables) it swept.
func BenchmarkSweep(b *testing.B) {
	for _, open := range []int{3_000, 12_000, 30_000, 120_000} {
		b.Run(fmt.Sprintf("open=%d", open), func(b *testing.B) {
			keys, v := testKeys(b)
			s := openTestStore(b, keys, v, "bench")
			lib := newLibrary(b, keys)
			for i := range open {
				lib.catalog(fmt.Sprintf("B%07d", i))
				lib.checkout(fmt.Sprintf("B%07d", i), "")
				if len(lib.msgs) >= 20_000 {
					applyAll(b, s, lib.take())
				}
			}
			applyAll(b, s, lib.take())
			ctx := context.Background()
			if err := s.Sweep(ctx); err != nil { // the first after Open: the whole key space
				b.Fatal(err)
			}
			rows := 0
			if err := s.scan(nil, func(_, _ []byte) error { rows++; return nil }); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(open), 1))
			for _, closes := range []int{0, 1, 10, 1000} {
				for _, mode := range []string{"before", "after", "raw"} {
					b.Run(fmt.Sprintf("closes=%d/%s", closes, mode), func(b *testing.B) {
						var compacted uint64
						for range b.N {
							b.StopTimer()
							for range closes {
								ln := lib.checkin(rng.IntN(len(lib.open)))
								lib.checkout(ln.barcode, "")
							}
							applyAll(b, s, lib.take())
							c0 := s.db.Metrics().Total().TableBytesCompacted
							b.StartTimer()
							var err error
							switch mode {
							case "before":
								err = keystore.Erase(ctx, s.db)
							case "after":
								err = s.Sweep(ctx)
							case "raw":
								err = s.db.Compact(ctx, nil, []byte("\xff\xff\xff\xff\xff"), false)
							}
							b.StopTimer()
							if err != nil {
								b.Fatal(err)
							}
							compacted += s.db.Metrics().Total().TableBytesCompacted - c0
							if mode != "after" {
								s.erasure.take() // swept, or not the sweep under test
							}
						}
						m := s.db.Metrics()
						b.ReportMetric(float64(compacted)/float64(b.N)/(1<<20), "MiB-compacted/op")
						b.ReportMetric(float64(rows), "rows")
						b.ReportMetric(float64(m.DiskSpaceUsage())/(1<<20), "MiB-db")
						b.ReportMetric(float64(m.Total().TablesCount), "tables")
					})
				}
			}
		})
	}
}
