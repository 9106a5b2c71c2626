package main

import (
	"context"
	"encoding/hex"
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
func (h *harness) registerMarked() (adult, minor string) {
	h.t.Helper()
	adult = mustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
		CommandID: cmdID(), HomeBranch: "main", Card: markCard,
		Profile: schemas.Profile{Name: markName, Email: markEmail, Phone: "406-555-0199", BirthDate: markBirth},
	}).PatronID
	minorBirth := h.clock.Now().AddDate(-9, 0, -3).Format("2006-01-02")
	minor = mustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
		CommandID: cmdID(), HomeBranch: "main", Card: markMinorCard,
		Profile: schemas.Profile{Name: markMinorName, BirthDate: minorBirth, Caregiver: &schemas.Caregiver{Name: markCaregiver, Contact: "406-555-0100"}},
	}).PatronID
	return adult, minor
}

// scan returns, for each needle found, the files under dir that hold it.
func scan(t testing.TB, dir string, needles map[string][]byte) map[string][]string {
	t.Helper()
	var list [][]byte
	names := map[string]string{}
	for name, n := range needles {
		list = append(list, n)
		names[hex.EncodeToString(n)] = name
	}
	found, err := keystore.ScanDir(dir, list)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for k, files := range found {
		if len(files) > 0 {
			out[names[k]] = files
		}
	}
	return out
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
func (h *harness) accessKIDs() []string {
	h.t.Helper()
	ctx := ctxT(h.t)
	s, err := h.s.JS.Stream(ctx, access.StreamName)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var kids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			h.t.Fatal(err)
		}
		var e access.Entry
		if err := json.Unmarshal(m.Data, &e); err != nil {
			h.t.Fatalf("access entry %d: %v", seq, err)
		}
		for _, p := range e.Patrons {
			kids = append(kids, p.KID)
		}
	}
	return kids
}

func TestForensicFileScan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	adult, minor := h.registerMarked()
	// Both accounts are on the access record: each entry's pseudonym is indexed in the
	// projections, with the account's id, while the account is open.
	h.record(markCard)
	h.record(markMinorCard)
	minorKIDs, err := h.s.Proj.AccessKIDs(minor)
	if err != nil || len(minorKIDs) != 1 {
		t.Fatalf("AccessKIDs(minor) = %v, %v, want the kiosk's entry", minorKIDs, err)
	}
	for _, b := range []string{"F1", "F2", "F3"} {
		h.catalog(b, 1000)
	}
	for _, b := range []string{"F1", "F2"} {
		h.mustCheckout(markCard, b)
	}
	h.mustCheckout(markMinorCard, "F3")
	txns := map[string]string{"F1": h.txnOf("F1"), "F2": h.txnOf("F2"), "F3": h.txnOf("F3")}
	rawKeys := map[string][]byte{}
	for b, id := range txns {
		k, err := h.s.Keys.Get(keystore.Transaction, id)
		if err != nil {
			t.Fatal(err)
		}
		rawKeys[b] = k
	}
	data := h.cfg.Data
	// Every scan runs on a stopped service, as someone who seized the disk would see it;
	// a scan of a live store could miss a file a compaction is replacing.
	var wrapped map[string][]byte
	h.offline(func() { wrapped = wrappedKeys(t, data, []string{txns["F1"], txns["F2"], txns["F3"]}) })

	personal := map[string][]byte{}
	for _, m := range personalMarkers() {
		personal[m] = []byte(m)
	}
	checkNoPersonalData := func(when string) {
		t.Helper()
		if found := scan(t, data, personal); len(found) > 0 {
			t.Fatalf("%s: personal data in files: %v", when, found)
		}
	}
	h.offline(func() { checkNoPersonalData("while loans are open") })
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
	h.offline(func() {
		found := scan(t, filepath.Join(data, "projections"), indexNeedles(minorKIDs))
		if len(found) != 1+len(minorKIDs) {
			t.Fatalf("before close the minor's index rows must be on disk (found %v): the scan would prove nothing", found)
		}
	})
	h.offline(func() {
		for _, b := range []string{"F1", "F2", "F3"} {
			found := map[string]bool{}
			for _, dir := range stores {
				for name := range scan(t, dir, linkNeedles(b)) {
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

	h.checkin("F1")
	h.checkin("F3")
	// The minor's account closes: every pseudonym on the access stream that is not the
	// adult's open account's must leave the projections' files with it.
	mustDesk[schemas.Accepted](h, schemas.CmdClosePatron, schemas.ClosePatron{CommandID: cmdID(), PatronID: minor})
	h.expungeAll()
	adultKIDs, err := h.s.Proj.AccessKIDs(adult)
	if err != nil || len(adultKIDs) == 0 {
		t.Fatalf("AccessKIDs(adult) = %v, %v, want the open account's pseudonyms", adultKIDs, err)
	}
	if kids, err := h.s.Proj.AccessKIDs(minor); err != nil || len(kids) != 0 {
		t.Fatalf("AccessKIDs(minor) after close = %v, %v, want none", kids, err)
	}
	var closedKIDs []string
	for _, k := range h.accessKIDs() {
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
		if found := scan(t, proj, indexNeedles(closedKIDs)); len(found) > 0 {
			t.Errorf("%s: the closed account's index rows are still in files: %v", when, found)
		}
		if found := scan(t, proj, map[string][]byte{"adult's pseudonym": []byte(adultKIDs[0])}); len(found) == 0 {
			t.Errorf("%s: the open account's index row vanished from disk: the scan would prove nothing", when)
		}
		for _, b := range []string{"F1", "F3"} {
			for _, dir := range stores {
				if found := scan(t, dir, linkNeedles(b)); len(found) > 0 {
					t.Errorf("%s: closed transaction %s: %v still in %s", when, b, found, dir)
				}
			}
		}
		found := false
		for _, dir := range stores {
			if len(scan(t, dir, map[string][]byte{"wrapped": wrapped[txns["F2"]]})) > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: the open transaction's wrapped key vanished from disk", when)
		}
		checkNoPersonalData(when)
	}
	h.offline(func() { checkAfter("after close and sweep") })
	h.restart()
	h.offline(func() { checkAfter("after close and reopen") })
	if rec := h.record(markCard); len(rec.Loans) != 1 || rec.Loans[0].Barcode != "F2" {
		t.Fatalf("the open loan must survive: %+v", rec)
	}
}

// TestStreamHoldsNoPlaintext reads the raw stream as anyone holding it (a replica, a
// backup, an audit export) would, with a plain JetStream consumer.
func TestStreamHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	adult, minor := h.registerMarked()
	h.catalog("S1", 1000)
	h.mustCheckout(markCard, "S1")
	h.clock.Advance(30 * day)
	h.checkin("S1")
	mustDesk[schemas.Accepted](h, schemas.CmdAssessFee, schemas.AssessFee{CommandID: cmdID(), PatronID: minor, AmountCents: 150})
	mustDesk[schemas.Accepted](h, schemas.CmdReportCardLost, schemas.ReportCardLost{CommandID: cmdID(), Card: markMinorCard})

	ctx := ctxT(t)
	cons, err := h.s.JS.OrderedConsumer(ctx, ledger.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	last := h.streamLast()
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
	h := newHarness(t)
	adult, minor := h.registerMarked()
	h.replies = &syncBuffer{} // the registration replies carry the new patron ids, by design
	h.catalog("P1", 1000)
	h.catalog("P2", 1000)
	h.mustCheckout(markCard, "P1")
	h.record(markCard)
	wantCode(t, h.checkout(markMinorCard, "P1"), schemas.CodeConflict)
	wantCode(t, h.checkout(markCard+"0", "P2"), schemas.CodeNotFound)
	wantCode(t, h.kiosk("k1", schemas.CmdCheckOut, []byte(`{"command_id":"`+cmdID()+`","card":"`+markCard+`","barcode":"`+markName+`"}`)), schemas.CodeInvalid)
	wantCode(t, h.kiosk("k1", schemas.CmdCheckOut, []byte(`{"command_id":"`+cmdID()+`","card":"`+markName+`","barcode":"P2"}`)), schemas.CodeInvalid)
	wantCode(t, h.kiosk("k1", schemas.CmdPatronInfo, []byte(`{"card":"`+markCard+`","name":"`+markName+`"}`)), schemas.CodeInvalid)
	wantCode(t, h.kiosk("k1", schemas.CmdPatronInfo, []byte(`{"card":`+markCard+`}`)), schemas.CodeInvalid)
	wantCode(t, h.kiosk("k1", schemas.CmdRenew, schemas.Renew{CommandID: cmdID(), Card: markMinorCard, Barcode: "P1"}), schemas.CodeForbidden)
	h.desk(schemas.CmdRegisterPatron, map[string]any{"command_id": cmdID(), "home_branch": "main", "card": markCard,
		"profile": map[string]any{"name": markName, "birth_date": markBirth}}) // card in use
	h.desk(schemas.CmdRegisterPatron, map[string]any{"command_id": cmdID(), "home_branch": "main",
		"profile": map[string]any{"name": markName, "birth_date": markEmail}}) // not a date
	h.desk(schemas.CmdIssueCard, map[string]any{"command_id": cmdID(), "patron_id": adult, "card": markMinorCard})
	h.desk(schemas.CmdReportCardLost, map[string]any{"command_id": cmdID(), "card": markCard})
	wantCode(t, h.checkout(markCard, "P2"), schemas.CodeForbidden)
	h.checkin("P1")
	h.expungeAll()

	for what, text := range map[string]string{"log": h.logs.String(), "replies": h.replies.String()} {
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
	h := newHarness(t)
	h.registerMarked()
	h.catalog("A1", 1000)
	h.catalog("A2", 1000)
	for _, b := range []string{"A1", "A2"} {
		h.mustCheckout(markCard, b)
	}
	closedTxn := h.txnOf("A1")
	openTxn := h.txnOf("A2")
	h.checkin("A1")
	h.expungeAll()
	data := h.cfg.Data
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
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
	if !strings.Contains(errOut.String(), "all valid against their schemas") {
		t.Errorf("audit summary = %q", errOut.String())
	}
	h.start()
}

// TestMetricsCountWithoutPatronData reads /metrics: the counts and lags are there and no
// label or value holds patron data.
func TestMetricsCountWithoutPatronData(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	adult, minor := h.registerMarked()
	h.catalog("M1", 1000)
	h.catalog("M2", 1000)
	for _, b := range []string{"M1", "M2"} {
		h.mustCheckout(markCard, b)
	}
	h.checkin("M1")
	h.expungeAll()
	resp, err := http.Get(h.s.HTTPURL + "/metrics")
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
