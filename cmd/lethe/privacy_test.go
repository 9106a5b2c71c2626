package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// Marker values: unique strings that cannot appear in a file, log line or message by
// accident.
const (
	markCard      = "CARDQX7391046628"
	markName      = "Zephyrine Quillfeather"
	markEmail     = "zq.marker@example.org"
	markBirth     = "1931-02-27"
	markCaregiver = "Ottoline Marchbanks"
	markMinorCard = "CARDQX5550001111"
	markMinorName = "Tamsin Quillfeather"
)

func personalMarkers() []string {
	return []string{markCard, markName, markEmail, markBirth, markCaregiver, markMinorCard, markMinorName}
}

// registerMarked registers an adult and a minor whose profiles hold the markers.
func registerMarked(h *lethetest.Harness) (adult, minor string) {
	h.T.Helper()
	adult = lethetest.MustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
		CommandID: lethetest.CmdID(), HomeBranch: "main", Card: markCard,
		Profile: schemas.Profile{Name: markName, Email: markEmail, Phone: "406-555-0199", BirthDate: markBirth},
	}).PatronID
	minorBirth := h.Clock.Now().AddDate(-9, 0, -3).Format("2006-01-02")
	minor = lethetest.MustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
		CommandID: lethetest.CmdID(), HomeBranch: "main", Card: markMinorCard,
		Profile: schemas.Profile{Name: markMinorName, BirthDate: minorBirth, Caregiver: &schemas.Caregiver{Name: markCaregiver, Contact: "406-555-0100"}},
	}).PatronID
	return adult, minor
}

// wrappedKeys reads the wrapped form of transaction keys straight from the keystore's
// Pebble files (the service must be stopped): what a thief with the disk would find.
func wrappedKeys(t testing.TB, data string, txns []string) map[string][]byte {
	t.Helper()
	opts := keystore.PebbleOptions(nil)
	opts.ReadOnly = true
	db, err := pebble.Open(filepath.Join(data, "keystore"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string][]byte{}
	for _, id := range txns {
		r := keystore.RefOf(keystore.Transaction, id)
		k := append([]byte{'k', byte(keystore.Transaction)}, r.Hash[:]...)
		v, closer, err := db.Get(k)
		if err != nil {
			t.Fatalf("wrapped key of an open transaction: %v", err)
		}
		out[id] = append([]byte(nil), v...)
		closer.Close()
	}
	return out
}

// accessKIDs are the pseudonyms of every patron reference on the access stream.
func accessKIDs(h *lethetest.Harness) []string {
	h.T.Helper()
	ctx := testkit.Context(h.T)
	s, err := h.S.JS.Stream(ctx, access.StreamName)
	if err != nil {
		h.T.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.T.Fatal(err)
	}
	var kids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			h.T.Fatal(err)
		}
		var e access.Entry
		if err := json.Unmarshal(m.Data, &e); err != nil {
			h.T.Fatalf("access entry %d: %v", seq, err)
		}
		for _, p := range e.Patrons {
			kids = append(kids, p.KID)
		}
	}
	return kids
}

func TestForensicFileScan(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	adult, minor := registerMarked(h)
	// Both accounts are on the access record: each entry's pseudonym is indexed in the
	// projections, with the account's id, while the account is open.
	h.Record(markCard)
	h.Record(markMinorCard)
	minorKIDs, err := h.S.Proj.AccessKIDs(minor)
	if err != nil || len(minorKIDs) != 1 {
		t.Fatalf("AccessKIDs(minor) = %v, %v, want the kiosk's entry", minorKIDs, err)
	}
	for _, b := range []string{"F1", "F2", "F3"} {
		h.Catalog(b, 1000)
	}
	for _, b := range []string{"F1", "F2"} {
		h.MustCheckout(markCard, b)
	}
	h.MustCheckout(markMinorCard, "F3")
	txns := map[string]string{"F1": h.TxnOf("F1"), "F2": h.TxnOf("F2"), "F3": h.TxnOf("F3")}
	rawKeys := map[string][]byte{}
	for b, id := range txns {
		k, err := h.S.Keys.Get(keystore.Transaction, id)
		if err != nil {
			t.Fatal(err)
		}
		rawKeys[b] = k
	}
	data := h.Cfg.Data
	// Every scan runs on a stopped service, as someone who seized the disk would see it;
	// a scan of a live store could miss a file a compaction is replacing.
	var wrapped map[string][]byte
	h.Offline(func() { wrapped = wrappedKeys(t, data, []string{txns["F1"], txns["F2"], txns["F3"]}) })

	personal := map[string][]byte{}
	for _, m := range personalMarkers() {
		personal[m] = []byte(m)
	}
	checkNoPersonalData := func(when string) {
		t.Helper()
		if found := lethetest.Scan(t, data, personal); len(found) > 0 {
			t.Fatalf("%s: personal data in files: %v", when, found)
		}
	}
	h.Offline(func() { checkNoPersonalData("while loans are open") })
	linkNeedles := func(b string) map[string][]byte {
		return map[string][]byte{"raw key": rawKeys[b], "wrapped key": wrapped[txns[b]], "txn id": []byte(txns[b])}
	}
	stores := []string{filepath.Join(data, "keystore"), filepath.Join(data, "projections")}
	indexNeedles := func(kids []string) map[string][]byte {
		n := map[string][]byte{"minor's patron id": []byte(minor)}
		for i, k := range kids {
			n[fmt.Sprintf("pseudonym %d", i)] = []byte(k)
		}
		return n
	}
	h.Offline(func() {
		found := lethetest.Scan(t, filepath.Join(data, "projections"), indexNeedles(minorKIDs))
		if len(found) != 1+len(minorKIDs) {
			t.Fatalf("before close the minor's index rows must be on disk (found %v): the scan would prove nothing", found)
		}
	})
	h.Offline(func() {
		for _, b := range []string{"F1", "F2", "F3"} {
			found := map[string]bool{}
			for _, dir := range stores {
				for name := range lethetest.Scan(t, dir, linkNeedles(b)) {
					found[name] = true
				}
			}
			if found["raw key"] {
				t.Fatalf("%s: an unwrapped transaction key is in a file", b)
			}
			if !found["wrapped key"] || !found["txn id"] {
				t.Fatalf("%s: before close the wrapped key and id must be on disk (found %v): the scan would prove nothing", b, found)
			}
		}
	})

	h.Checkin("F1")
	h.Checkin("F3")
	// The minor's account closes: every pseudonym on the access stream that is not the
	// adult's open account's must leave the projections' files with it.
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: minor})
	h.ExpungeAll()
	adultKIDs, err := h.S.Proj.AccessKIDs(adult)
	if err != nil || len(adultKIDs) == 0 {
		t.Fatalf("AccessKIDs(adult) = %v, %v, want the open account's pseudonyms", adultKIDs, err)
	}
	if kids, err := h.S.Proj.AccessKIDs(minor); err != nil || len(kids) != 0 {
		t.Fatalf("AccessKIDs(minor) after close = %v, %v, want none", kids, err)
	}
	var closedKIDs []string
	for _, k := range accessKIDs(h) {
		if !slices.Contains(adultKIDs, k) {
			closedKIDs = append(closedKIDs, k)
		}
	}
	if !slices.Contains(closedKIDs, minorKIDs[0]) {
		t.Fatalf("pseudonyms on the stream not of the open account = %v, want the minor's %v among them", closedKIDs, minorKIDs)
	}
	checkAfter := func(when string) {
		t.Helper()
		proj := filepath.Join(data, "projections")
		if found := lethetest.Scan(t, proj, indexNeedles(closedKIDs)); len(found) > 0 {
			t.Errorf("%s: the closed account's index rows are still in files: %v", when, found)
		}
		if found := lethetest.Scan(t, proj, map[string][]byte{"adult's pseudonym": []byte(adultKIDs[0])}); len(found) == 0 {
			t.Errorf("%s: the open account's index row vanished from disk: the scan would prove nothing", when)
		}
		for _, b := range []string{"F1", "F3"} {
			for _, dir := range stores {
				if found := lethetest.Scan(t, dir, linkNeedles(b)); len(found) > 0 {
					t.Errorf("%s: closed transaction %s: %v still in %s", when, b, found, dir)
				}
			}
		}
		found := false
		for _, dir := range stores {
			if len(lethetest.Scan(t, dir, map[string][]byte{"wrapped": wrapped[txns["F2"]]})) > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: the open transaction's wrapped key vanished from disk", when)
		}
		checkNoPersonalData(when)
	}
	h.Offline(func() { checkAfter("after close and sweep") })
	h.Restart()
	h.Offline(func() { checkAfter("after close and reopen") })
	if rec := h.Record(markCard); len(rec.Loans) != 1 || rec.Loans[0].Barcode != "F2" {
		t.Fatalf("the open loan must survive: %+v", rec)
	}
}

// TestStreamHoldsNoPlaintext reads the raw stream as anyone holding it (a replica, a
// backup, an audit export) would, with a plain JetStream consumer.
func TestStreamHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	adult, minor := registerMarked(h)
	h.Catalog("S1", 1000)
	h.MustCheckout(markCard, "S1")
	h.Clock.Advance(30 * day)
	h.Checkin("S1")
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdAssessFee, schemas.AssessFee{CommandID: lethetest.CmdID(), PatronID: minor, AmountCents: 150})
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdReportCardLost, schemas.ReportCardLost{CommandID: lethetest.CmdID(), Card: markMinorCard})

	ctx := testkit.Context(t)
	cons, err := h.S.JS.OrderedConsumer(ctx, ledger.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	last := h.StreamLast()
	n := 0
	for n < int(last) {
		batch, err := cons.Fetch(100)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			n++
			whole := m.Subject() + " " + string(m.Data())
			for k, vs := range m.Headers() {
				whole += " " + k + ":" + strings.Join(vs, ",")
			}
			for _, mark := range personalMarkers() {
				if strings.Contains(whole, mark) {
					t.Errorf("message %q holds personal data %q", m.Subject(), mark)
				}
			}
			if strings.HasPrefix(m.Subject(), "circ.item.") || strings.HasPrefix(m.Subject(), "circ.fee.") {
				for _, id := range []string{adult, minor} {
					if strings.Contains(whole, id) {
						t.Errorf("circulation message %q names a patron in plaintext", m.Subject())
					}
				}
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLogsAndRepliesHoldNoPersonalData drives successes and every kind of refusal, then
// scans the captured log and every reply for personal data and patron ids.
func TestLogsAndRepliesHoldNoPersonalData(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	adult, minor := registerMarked(h)
	h.Replies = &testkit.SyncBuffer{} // the registration replies carry the new patron ids, by design
	h.Catalog("P1", 1000)
	h.Catalog("P2", 1000)
	h.MustCheckout(markCard, "P1")
	h.Record(markCard)
	lethetest.WantCode(t, h.Checkout(markMinorCard, "P1"), schemas.CodeConflict)
	lethetest.WantCode(t, h.Checkout(markCard+"0", "P2"), schemas.CodeNotFound)
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdCheckOut, []byte(`{"command_id":"`+lethetest.CmdID()+`","card":"`+markCard+`","barcode":"`+markName+`"}`)), schemas.CodeInvalid)
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdCheckOut, []byte(`{"command_id":"`+lethetest.CmdID()+`","card":"`+markName+`","barcode":"P2"}`)), schemas.CodeInvalid)
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdPatronInfo, []byte(`{"card":"`+markCard+`","name":"`+markName+`"}`)), schemas.CodeInvalid)
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdPatronInfo, []byte(`{"card":`+markCard+`}`)), schemas.CodeInvalid)
	lethetest.WantCode(t, h.Kiosk("k1", schemas.CmdRenew, schemas.Renew{CommandID: lethetest.CmdID(), Card: markMinorCard, Barcode: "P1"}), schemas.CodeForbidden)
	h.Desk(schemas.CmdRegisterPatron, map[string]any{"command_id": lethetest.CmdID(), "home_branch": "main", "card": markCard,
		"profile": map[string]any{"name": markName, "birth_date": markBirth}}) // card in use
	h.Desk(schemas.CmdRegisterPatron, map[string]any{"command_id": lethetest.CmdID(), "home_branch": "main",
		"profile": map[string]any{"name": markName, "birth_date": markEmail}}) // not a date
	h.Desk(schemas.CmdIssueCard, map[string]any{"command_id": lethetest.CmdID(), "patron_id": adult, "card": markMinorCard})
	h.Desk(schemas.CmdReportCardLost, map[string]any{"command_id": lethetest.CmdID(), "card": markCard})
	lethetest.WantCode(t, h.Checkout(markCard, "P2"), schemas.CodeForbidden)
	h.Checkin("P1")
	h.ExpungeAll()

	for what, text := range map[string]string{"log": h.Logs.String(), "replies": h.Replies.String()} {
		if text == "" && what == "log" {
			t.Fatal("no log captured: the scan would prove nothing")
		}
		for _, mark := range append(personalMarkers(), adult, minor) {
			if strings.Contains(text, mark) {
				t.Errorf("%s holds %q", what, mark)
			}
		}
	}
}

// TestAuditReplayNeedsNoKeys runs lethe audit replay against the stream: patron references
// show as sealed while open and expunged after, and it holds no personal data.
func TestAuditReplayNeedsNoKeys(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	registerMarked(h)
	h.Catalog("A1", 1000)
	h.Catalog("A2", 1000)
	for _, b := range []string{"A1", "A2"} {
		h.MustCheckout(markCard, b)
	}
	closedTxn := h.TxnOf("A1")
	openTxn := h.TxnOf("A2")
	h.Checkin("A1")
	h.ExpungeAll()
	data := h.Cfg.Data
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	var out, errOut testkit.SyncBuffer
	if err := run(context.Background(), []string{"audit", "replay", "--data", data, "--format", "json"}, func(string) string { return "" }, nil, &out, &errOut); err != nil {
		t.Fatalf("audit replay: %v\n%s", err, errOut.String())
	}
	text := out.String()
	for _, mark := range personalMarkers() {
		if strings.Contains(text, mark) {
			t.Errorf("audit output holds %q", mark)
		}
	}
	wantLine := func(txn, patron string) {
		t.Helper()
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, `"txn_id":"`+txn+`"`) && strings.Contains(line, "checked_out") {
				if !strings.Contains(line, `"patron":"`+patron+`"`) {
					t.Errorf("checkout of %s shows %s, want patron %q", txn, line, patron)
				}
				return
			}
		}
		t.Errorf("no checkout line for %s in:\n%s", txn, text)
	}
	wantLine(closedTxn, "expunged")
	wantLine(openTxn, "sealed")
	if !strings.Contains(errOut.String(), "events (lethe audit verify checks them") {
		t.Errorf("audit summary = %q", errOut.String())
	}
	h.Start()
}

// TestMetricsCountWithoutPatronData reads /metrics: the counts and lags are there and no
// label or value holds patron data.
func TestMetricsCountWithoutPatronData(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	adult, minor := registerMarked(h)
	h.Catalog("M1", 1000)
	h.Catalog("M2", 1000)
	for _, b := range []string{"M1", "M2"} {
		h.MustCheckout(markCard, b)
	}
	h.Checkin("M1")
	h.ExpungeAll()
	resp, err := http.Get(h.S.HTTPURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		"lethe_open_transactions 1\n", "lethe_items_on_loan 1\n", "lethe_pending_expunges 0\n",
		"lethe_expunge_lag_seconds_count 1\n", "lethe_erasure_lag_seconds_count 1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, mark := range append(personalMarkers(), adult, minor) {
		if strings.Contains(text, mark) {
			t.Errorf("/metrics holds %q", mark)
		}
	}
}
