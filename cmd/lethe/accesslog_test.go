package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/policy"
)

// TestAccessLogListsUnreadableEntries: garbage and a forged copy of a genuine entry on
// the ACCESS stream never make the access log fail. The route and the CLI list them as
// unreadable, in their place and without their bytes, and the rest as it was.
func TestAccessLogListsUnreadableEntries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.account(clerk, policy.Circulation)
	id := h.register("21000000000831", "Una Readable", "1984-04-04")
	if status, _ := h.lookup(clerk, map[string]any{"basis": "card", "card": "21000000000831"}); status != http.StatusOK {
		t.Fatal("lookup refused")
	}
	ctx := ctxT(t)
	s, err := h.s.JS.Stream(ctx, access.StreamName)
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
	forged["staff"] = adminName
	forgedBody, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	const marker = "GARBAGEQX4471"
	for _, body := range [][]byte{[]byte("\x00 not an entry " + marker), forgedBody} {
		if _, err := h.s.JS.Publish(ctx, access.Subject, body); err != nil {
			t.Fatal(err)
		}
	}
	if status, _ := h.lookup(clerk, map[string]any{"basis": "card", "card": "21000000000831"}); status != http.StatusOK {
		t.Fatal("lookup after the garbage refused")
	}

	status, body := h.requestAs(adminName, http.MethodGet, "/api/access-log", nil)
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
	for _, q := range []string{"?staff=" + adminName, "?staff=" + clerk, "?patron=" + id} {
		var got []access.Listed
		if status := h.get("/api/access-log"+q, &got); status != http.StatusOK {
			t.Errorf("GET /api/access-log%s = %d, want 200", q, status)
		}
		for _, e := range got {
			if e.Outcome == access.Unreadable || (e.Action == "lookup" && e.Staff != clerk) {
				t.Errorf("GET /api/access-log%s lists %+v: a filtered listing holds genuine entries only", q, e)
			}
		}
	}

	var out, errOut syncBuffer
	env := map[string]string{"LETHE_USER": adminName, "LETHE_PASSWORD": staffPassword}
	err = run(context.Background(), []string{"access-log", "--server", h.s.HTTPURL}, func(k string) string { return env[k] }, nil, &out, &errOut)
	text := out.String()
	if err != nil || !strings.Contains(text, access.Unreadable+": "+access.ReasonUndecodable) ||
		!strings.Contains(text, access.Unreadable+": "+access.ReasonUnverified) || strings.Count(text, id) != 2 {
		t.Errorf("lethe access-log: %v\n%s%s", err, text, errOut.String())
	}
	if strings.Contains(text, marker) {
		t.Errorf("lethe access-log repeats the garbage:\n%s", text)
	}
}
