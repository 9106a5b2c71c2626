package projections

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
)

// patronMsgs makes patron events, numbered after seq.
type patronMsgs struct {
	t   *testing.T
	seq uint64
}

func (p *patronMsgs) msg(typ, id string, data any) ledger.Msg {
	p.t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		p.t.Fatal(err)
	}
	subject := ledger.PatronSubject(id)
	ev := schemas.Event{SpecVersion: "1.0", ID: uuid.Must(uuid.NewV7()).String(), Type: typ, Source: "lethe/test",
		Subject: subject, Time: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC), DataContentType: "application/json",
		DataSchema: schemas.DataSchema(typ), CommandID: uuid.NewString(), Data: raw}
	body, err := json.Marshal(ev)
	if err != nil {
		p.t.Fatal(err)
	}
	p.seq++
	return ledger.Msg{Seq: p.seq, Subject: subject, Data: body}
}

// registered is a patron.registered event. The profile key does not exist, so the
// projector indexes no name; the account is open all the same.
func (p *patronMsgs) registered(id string) ledger.Msg {
	return p.msg(schemas.TypePatronRegistered, id, schemas.PatronRegistered{PatronID: id, HomeBranch: "main",
		Profile: schemas.Sealed{KID: id, Nonce: make([]byte, 24), CT: make([]byte, 52)}})
}

func (p *patronMsgs) closed(id string) ledger.Msg {
	return p.msg(schemas.TypePatronClosed, id, schemas.PatronClosed{PatronID: id})
}

// accessRows returns every a/ and r/ row of the database, key and value.
func accessRows(t *testing.T, db *pebble.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range []string{pAccess, pAccessBy} {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(p), UpperBound: prefixEnd([]byte(p))})
		if err != nil {
			t.Fatal(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			out[string(it.Key())] = string(it.Value())
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestAccessIndexGoesWithTheAccount: pseudonyms are indexed only for open accounts, all
// of an account's rows go in the batch that applies its close, no key holds an id, and a
// rebuild, which cannot derive the index, still compares equal.
func TestAccessIndexGoesWithTheAccount(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	s := openTestStore(t, keys, v, "live")
	a, b, never := uuid.NewString(), uuid.NewString(), uuid.NewString()
	pm := &patronMsgs{t: t}
	history := []ledger.Msg{pm.registered(a), pm.registered(b)}
	if err := s.Apply(history); err != nil {
		t.Fatal(err)
	}
	if err := s.IndexAccess([]string{a, b, never, a}, []string{"kidA1", "kidB1", "kidN1", "kidA2"}); err != nil {
		t.Fatalf("IndexAccess(...) = %v", err)
	}
	if err := s.IndexAccess([]string{a}, nil); err == nil {
		t.Error("IndexAccess with fewer pseudonyms than accounts = nil error, want error")
	}
	kids, err := s.AccessKIDs(a)
	if slices.Sort(kids); err != nil || !slices.Equal(kids, []string{"kidA1", "kidA2"}) {
		t.Errorf("AccessKIDs(a) = %v, %v, want [kidA1 kidA2]", kids, err)
	}
	if id, err := s.PatronByAccessKID("kidB1"); err != nil || id != b {
		t.Errorf("PatronByAccessKID(kidB1) = %q, %v, want %q", id, err, b)
	}
	if _, err := s.PatronByAccessKID("kidN1"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("PatronByAccessKID of an account never open = %v, want ErrNotFound", err)
	}
	for k := range accessRows(t, s.db) {
		for _, id := range []string{a, b} {
			if bytes.Contains([]byte(k), []byte(id)) {
				t.Errorf("index key %q holds a patron id", k)
			}
		}
	}

	closeA := pm.closed(a)
	history = append(history, closeA)
	if err := s.Apply([]ledger.Msg{closeA}); err != nil {
		t.Fatal(err)
	}
	if kids, err := s.AccessKIDs(a); err != nil || len(kids) != 0 {
		t.Errorf("AccessKIDs(a) after close = %v, %v, want none", kids, err)
	}
	for _, kid := range []string{"kidA1", "kidA2"} {
		if id, err := s.PatronByAccessKID(kid); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("PatronByAccessKID(%s) after close = %q, %v, want ErrNotFound", kid, id, err)
		}
	}
	if err := s.IndexAccess([]string{a}, []string{"kidA3"}); err != nil {
		t.Errorf("IndexAccess(closed account) = %v", err)
	}
	rows := accessRows(t, s.db)
	if len(rows) != 2 || rows[pAccess+"kidB1"] != b {
		t.Errorf("index rows after a's close = %q, want only b's two", rows)
	}
	for _, val := range rows {
		if val == a {
			t.Error("an index row still names the closed account")
		}
	}

	fresh := openTestStore(t, keys, v, "rebuilt")
	if err := fresh.Apply(history); err != nil {
		t.Fatal(err)
	}
	if d, err := compare(s.db, fresh.db); err != nil || !d.Equal() {
		t.Errorf("compare(live, rebuilt) = %+v, %v, want equal: the index is not derivable", d, err)
	}
}

// TestAccessIndexRacesClose: pseudonyms indexed while the account's close is applied are
// either deleted by that close or never written; none is left behind.
func TestAccessIndexRacesClose(t *testing.T) {
	t.Parallel()
	keys, v := testKeys(t)
	s := openTestStore(t, keys, v, "live")
	id := uuid.NewString()
	pm := &patronMsgs{t: t}
	if err := s.Apply([]ledger.Msg{pm.registered(id)}); err != nil {
		t.Fatal(err)
	}
	closeMsg := pm.closed(id)
	start, enough := make(chan struct{}), make(chan struct{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written int
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				kid := uuid.NewString()
				if err := s.IndexAccess([]string{id}, []string{kid}); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Patron(id); errors.Is(err, model.ErrNotFound) {
					return // closed: nothing more may be indexed
				} else if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if written++; written == 8 {
					close(enough) // the close has rows to delete
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	select {
	case <-enough:
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for pseudonyms to be indexed")
	}
	if err := s.Apply([]ledger.Msg{closeMsg}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if written == 0 {
		t.Fatal("no pseudonym was indexed before the close: the test proves nothing")
	}
	if rows := accessRows(t, s.db); len(rows) != 0 {
		t.Errorf("after the close, %d index rows remain, want none (%d were written)", len(rows), written)
	}
}
