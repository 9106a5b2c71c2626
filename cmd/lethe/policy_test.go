package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// Staff accounts of the policy tests, one per role besides the administrator.
const (
	clerk       = "clerk"   // circulation
	auditorAcct = "auditor" // auditorAcct
)

// TestAccessLogForgetsClosedAccounts: an administrator lists and filters the access
// record; after a patron's account is closed, their entries stay but can no longer be
// tied to them, in the API, the CLI and the raw stream.
func TestAccessLogForgetsClosedAccounts(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Account(clerk, policy.Circulation)
	id := h.Register("21000000000821", "Lou Lookup", "1985-02-02")
	for range 2 {
		if status, _ := h.Lookup(clerk, map[string]any{"basis": "card", "card": "21000000000821"}); status != 200 {
			t.Fatal("lookup refused")
		}
	}
	h.Lookup(clerk, map[string]any{"basis": "in_person", "name": "Lou Lookup", "birth_date": "1999-09-09", "photo_id_checked": true})
	// A court order's reference may name the person: it goes with the account too.
	const order = "State v. Lou Lookup, DC-26-0412"
	if status, d := h.Lookup(lethetest.Admin, map[string]any{"basis": "court_order", "card": "21000000000821", "order_ref": order}); status != 200 {
		t.Fatalf("court order = %d %+v", status, d.Error)
	}
	var entries []access.Listed
	if status := h.Get("/api/access-log?staff="+lethetest.Admin, &entries); status != 200 || len(entries) == 0 || entries[0].OrderRef != order {
		t.Fatalf("administrator's entries = %d %+v, want the court order with its reference", status, entries)
	}
	if status := h.Get("/api/access-log?staff="+clerk, &entries); status != 200 || len(entries) != 3 {
		t.Fatalf("access log of %s = %d %+v, want 3 entries", clerk, status, entries)
	}
	for _, e := range entries {
		if len(e.Patrons) != 1 || e.Patrons[0] != id || e.Role != policy.Circulation {
			t.Errorf("entry %+v, want the patron while the account is open", e)
		}
	}
	if entries[2].Outcome != access.Refused || entries[2].Clause != policy.ClauseInPerson {
		t.Errorf("third entry = %+v, want the refused in-person request", entries[2])
	}
	today := h.Clock.Now().Format(time.DateOnly)
	tomorrow := h.Clock.Now().AddDate(0, 0, 1).Format(time.DateOnly)
	if status := h.Get("/api/access-log?from="+tomorrow, &entries); status != 200 || len(entries) != 0 {
		t.Errorf("access log from tomorrow = %d %+v, want none", status, entries)
	}
	if status := h.Get("/api/access-log?from="+today+"&to="+today+"&staff="+clerk, &entries); status != 200 || len(entries) != 3 {
		t.Errorf("access log of today = %d, %d entries, want 3", status, len(entries))
	}
	if status, _ := h.RequestAs(clerk, http.MethodGet, "/api/access-log", nil); status != 403 {
		t.Errorf("access log as circulation staff = %d, want 403", status)
	}

	// Close the account: the profile key is destroyed, the entries stay, anonymous.
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdClosePatron, schemas.ClosePatron{CommandID: lethetest.CmdID(), PatronID: id})
	h.ExpungeAll()
	// The clerk's refused attempt to read the access record is on it too.
	if status := h.Get("/api/access-log?staff="+clerk, &entries); status != 200 || len(entries) != 4 || entries[3].Action != string(policy.ReadAccessLog) {
		t.Fatalf("access log after close = %d %+v, want the 3 lookups and the refused read", status, entries)
	}
	for _, e := range entries[:3] {
		if len(e.Patrons) != 1 || e.Patrons[0] != access.Erased {
			t.Errorf("entry after close = %+v, want the patron erased", e)
		}
	}
	if status := h.Get("/api/access-log?staff="+lethetest.Admin, &entries); status != 200 || entries[0].OrderRef != access.Erased || entries[0].Patrons[0] != access.Erased {
		t.Errorf("court order entry after close = %d %+v, want the reference and the patron erased", status, entries[0])
	}
	// The CLI reads the same record.
	var out, errOut testkit.SyncBuffer
	env := map[string]string{"LETHE_USER": lethetest.Admin, "LETHE_PASSWORD": lethetest.Password}
	err := run(context.Background(), []string{"access-log", "--server", h.S.HTTPURL, "--staff", clerk}, func(k string) string { return env[k] }, nil, &out, &errOut)
	if err != nil || strings.Count(out.String(), access.Erased) != 3 || !strings.Contains(out.String(), "in-person") {
		t.Errorf("lethe access-log: %v\n%s%s", err, out.String(), errOut.String())
	}
	// Nothing on the access stream names the patron in the clear, before or after.
	raw := rawStream(h, access.StreamName)
	for _, secret := range []string{id, "21000000000821", "Lou Lookup", "1985-02-02", lethetest.Password, "DC-26-0412"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the access stream holds %q in the clear", secret)
		}
	}
}

// rawStream is every message of a stream, concatenated, read with a plain consumer.
func rawStream(h *lethetest.Harness, name string) []byte {
	h.T.Helper()
	ctx := testkit.Context(h.T)
	s, err := h.S.JS.Stream(ctx, name)
	if err != nil {
		h.T.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.T.Fatal(err)
	}
	var all []byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			h.T.Fatal(err)
		}
		all = append(all, m.Subject...)
		for k, v := range m.Header {
			all = append(all, k...)
			all = append(all, strings.Join(v, ",")...)
		}
		all = append(all, m.Data...)
	}
	return all
}

// TestPlainHTTPOnlyOnLoopback: the staff API refuses to listen beyond loopback without TLS.
func TestPlainHTTPOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{"127.0.0.1:0": true, "localhost:8080": true, "[::1]:0": true,
		":8080": false, "0.0.0.0:8080": false, "192.0.2.7:8080": false, "library.example:8080": false} {
		if got := node.Loopback(addr); got != want {
			t.Errorf("node.Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
	var out, errOut testkit.SyncBuffer
	err := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--http", "0.0.0.0:0", "--nats-listen", "off"},
		func(string) string { return "" }, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("serve on 0.0.0.0 without TLS: %v, want a refusal naming --tls-cert", err)
	}
}
