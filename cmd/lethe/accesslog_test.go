package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/policy"
)

// TestAccessLogListsUnreadableEntries: garbage and a forged copy of a genuine entry on
// the ACCESS stream never make the access log fail. The route and the CLI list them as
// unreadable, in their place and without their bytes, and the rest as it was.
func TestAccessLogListsUnreadableEntries(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Account(clerk, policy.Circulation)
	id := h.Register("21000000000831", "Una Readable", "1984-04-04")
	if status, _ := h.Lookup(clerk, map[string]any{"basis": "card", "card": "21000000000831"}); status != http.StatusOK {
		t.Fatal("lookup refused")
	}
	ctx := testkit.Context(t)
	s, err := h.S.JS.Stream(ctx, access.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	genuine, err := s.GetLastMsgForSubject(ctx, access.Subject)
	if err != nil {
		t.Fatal(err)
	}
	// The clerk's lookup, copied with the staff account changed, as someone who can write
	// to the stream would do to blame another account.
	var forged map[string]any
	if err := json.Unmarshal(genuine.Data, &forged); err != nil {
		t.Fatal(err)
	}
	forged["staff"] = lethetest.Admin
	forgedBody, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	const marker = "GARBAGEQX4471"
	for _, body := range [][]byte{[]byte("\x00 not an entry " + marker), forgedBody} {
		if _, err := h.S.JS.Publish(ctx, access.Subject, body); err != nil {
			t.Fatal(err)
		}
	}
	if status, _ := h.Lookup(clerk, map[string]any{"basis": "card", "card": "21000000000831"}); status != http.StatusOK {
		t.Fatal("lookup after the garbage refused")
	}

	status, body := h.RequestAs(lethetest.Admin, http.MethodGet, "/api/access-log", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/access-log = %d %s, want 200", status, body)
	}
	if strings.Contains(string(body), marker) {
		t.Errorf("GET /api/access-log repeats the garbage: %s", body)
	}
	var entries []access.Listed
	if err := json.Unmarshal(body, &entries); err != nil {
		t.Fatal(err)
	}
	var unreadable []access.Listed
	lookups := 0
	for _, e := range entries {
		switch {
		case e.Outcome == access.Unreadable:
			unreadable = append(unreadable, e)
		case e.Action == "lookup":
			lookups++
			if e.Staff != clerk || len(e.Patrons) != 1 || e.Patrons[0] != id {
				t.Errorf("GET /api/access-log lookup = %+v, want the clerk's lookup of the patron", e)
			}
		}
	}
	want := []access.Listed{
		{Seq: genuine.Sequence + 1, Outcome: access.Unreadable, Reason: access.ReasonUndecodable, Patrons: []string{}},
		{Seq: genuine.Sequence + 2, Outcome: access.Unreadable, Reason: access.ReasonUnverified, Patrons: []string{}},
	}
	if lookups != 2 || len(unreadable) != 2 || unreadable[0].Seq != want[0].Seq || unreadable[0].Reason != want[0].Reason ||
		unreadable[1].Seq != want[1].Seq || unreadable[1].Reason != want[1].Reason {
		t.Errorf("GET /api/access-log = %d lookups and unreadable %+v, want 2 lookups and %+v", lookups, unreadable, want)
	}
	for _, q := range []string{"?staff=" + lethetest.Admin, "?staff=" + clerk, "?patron=" + id} {
		var got []access.Listed
		if status := h.Get("/api/access-log"+q, &got); status != http.StatusOK {
			t.Errorf("GET /api/access-log%s = %d, want 200", q, status)
		}
		for _, e := range got {
			if e.Outcome == access.Unreadable || (e.Action == "lookup" && e.Staff != clerk) {
				t.Errorf("GET /api/access-log%s lists %+v: a filtered listing holds genuine entries only", q, e)
			}
		}
	}

	var out, errOut testkit.SyncBuffer
	env := map[string]string{"LETHE_USER": lethetest.Admin, "LETHE_PASSWORD": lethetest.Password}
	err = run(context.Background(), []string{"access-log", "--server", h.S.HTTPURL}, func(k string) string { return env[k] }, nil, &out, &errOut)
	text := out.String()
	if err != nil || !strings.Contains(text, access.Unreadable+": "+access.ReasonUndecodable) ||
		!strings.Contains(text, access.Unreadable+": "+access.ReasonUnverified) || strings.Count(text, id) != 2 {
		t.Errorf("lethe access-log: %v\n%s%s", err, text, errOut.String())
	}
	if strings.Contains(text, marker) {
		t.Errorf("lethe access-log repeats the garbage:\n%s", text)
	}
}

// TestAccessLogGolden: what `lethe access-log` prints for a fixed sequence of lookups, on
// every basis, granted and refused, by each role, at a kiosk and for the collections
// export, on the test's fixed clock, is in testdata/access-log.table. Patron ids are
// random (made at registration), so each is replaced with <patron-N>, in the order the
// patrons were registered; entry ids are not in the table, and sequences and times are
// the stream's and the clock's.
func TestAccessLogGolden(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Clock.Set(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC))
	h.Account(clerk, policy.Circulation)
	h.Account(auditorAcct, policy.Auditor)
	patrons := []string{
		h.Register("21000000000841", "Ada Golden", "1970-04-04"),
		h.RegisterMinor("21000000000842", "Kit Golden", "2018-06-01", "Cara Golden"),
	}
	for _, l := range []struct {
		as     string
		req    map[string]any
		status int
	}{
		{clerk, map[string]any{"basis": "card", "card": "21000000000841"}, http.StatusOK},
		{clerk, map[string]any{"basis": "in_person", "name": "Ada Golden", "birth_date": "1970-04-04", "photo_id_checked": true}, http.StatusOK},
		{clerk, map[string]any{"basis": "card", "card": "21000000009999"}, http.StatusForbidden},
		{clerk, map[string]any{"basis": "caregiver_photo_id", "name": "Kit Golden", "caregiver_name": "Cara Golden", "photo_id_checked": true}, http.StatusOK},
		{clerk, map[string]any{"basis": "caregiver_with_card", "card": "21000000000842"}, http.StatusOK},
		{auditorAcct, map[string]any{"basis": "card", "card": "21000000000841"}, http.StatusForbidden},
		{clerk, map[string]any{"basis": "court_order", "name": "Ada Golden", "order_ref": "DV-26-0002"}, http.StatusForbidden},
		{lethetest.Admin, map[string]any{"basis": "court_order", "name": "Ada Golden", "order_ref": "DV-26-0001"}, http.StatusOK},
	} {
		h.Clock.Advance(time.Minute)
		if status, d := h.Lookup(l.as, l.req); status != l.status {
			t.Fatalf("lookup as %s %v = %d %+v, want %d", l.as, l.req, status, d.Error, l.status)
		}
	}
	h.Clock.Advance(time.Minute)
	h.Record("21000000000842")
	h.Clock.Advance(time.Minute)
	if status := h.Get("/api/collections", nil); status != http.StatusOK {
		t.Fatalf("GET /api/collections = %d", status)
	}

	var out, errOut testkit.SyncBuffer
	env := map[string]string{"LETHE_USER": lethetest.Admin, "LETHE_PASSWORD": lethetest.Password}
	err := run(context.Background(), []string{"access-log", "--server", h.S.HTTPURL}, func(k string) string { return env[k] }, nil, &out, &errOut)
	if err != nil {
		t.Fatalf("lethe access-log: %v\n%s", err, errOut.String())
	}
	text := out.String()
	for i, id := range patrons {
		if !strings.Contains(text, id) {
			t.Errorf("the access log does not name patron %d", i+1)
		}
		text = strings.ReplaceAll(text, id, fmt.Sprintf("<patron-%d>", i+1))
	}
	if ids := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-`).FindAllString(text, -1); len(ids) > 0 {
		t.Errorf("the access log names ids the test does not know: %v", ids)
	}
	golden(t, "access-log.table", []byte(text+errOut.String()))
}
