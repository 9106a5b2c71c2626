package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// TestKilledInsideGroupCommits: a real lethe serve, with eight desk clients checking
// their items out and in as fast as they are answered (so commands arrive while others
// commit and share group commits, and every return is one message of two events), is
// killed (SIGKILL) in the middle of it: with eight commands in flight at every moment,
// the kill lands inside a commit. At the next start every acknowledged command is
// on the stream exactly once, no command is there twice or in part (a return's close
// with it), the projections equal a rebuild from the stream, and once the expunger has
// run no transaction key is left but the open loans'.
func TestKilledInsideGroupCommits(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	const clients = 8
	cards := make([]string, clients)
	for i := range clients {
		cards[i] = fmt.Sprintf("210000000009%02d", 60+i)
		h.Register(cards[i], fmt.Sprintf("Kit Kill %d", i), "1980-01-01")
		h.Catalog(fmt.Sprintf("GC%d", i), 1000)
	}
	data := h.Cfg.Data
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	url, _, kill := serveChild(t, data)
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(path, token string, v any) (int, []byte, error) {
		raw, _ := json.Marshal(v)
		req, _ := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(staff.ClientHeader, "cli")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body, nil
	}
	status, body, err := post("/api/login", "", map[string]string{"name": lethetest.Admin, "password": lethetest.Password})
	var login struct {
		Result staff.SessionInfo `json:"result"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(body, &login) != nil {
		t.Fatalf("login: %d %v %s", status, err, body)
	}

	// The clients run until the kill; each records the commands acknowledged to it.
	var mu sync.Mutex
	acked := map[string]string{} // command id -> command
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			barcode := fmt.Sprintf("GC%d", i)
			for {
				for _, c := range []struct {
					name, path string
					body       func(id string) any
				}{
					{schemas.CmdCheckOut, "/api/desk/checkout", func(id string) any {
						return schemas.CheckOut{CommandID: id, Card: cards[i], Barcode: barcode}
					}},
					{schemas.CmdReturn, "/api/desk/return", func(id string) any { return schemas.Return{CommandID: id, Barcode: barcode} }},
				} {
					id := lethetest.CmdID()
					status, body, err := post(c.path, login.Result.Token, c.body(id))
					if err != nil {
						return // killed
					}
					if status != http.StatusOK {
						t.Errorf("%s %s = %d %s", c.name, barcode, status, body)
						return
					}
					mu.Lock()
					acked[id] = c.name
					mu.Unlock()
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testkit.WaitFor(t, "commands acknowledged under load", func() bool { return count() >= 200 })
	kill()
	wg.Wait()

	h.Start()
	type key struct{ id, typ string }
	seen := map[key]int{}
	for _, ev := range h.Events() {
		if ev.CommandID != "" {
			seen[key{ev.CommandID, ev.Type}]++
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("command %s has %d %s events, want one", k.id, n, k.typ)
		}
		if k.typ == schemas.TypeItemReturned && seen[key{k.id, schemas.TypeTransactionClosed}] != 1 {
			t.Errorf("return %s is on the stream without its close", k.id)
		}
	}
	first := map[string]string{schemas.CmdCheckOut: schemas.TypeItemCheckedOut, schemas.CmdReturn: schemas.TypeItemReturned}
	for id, c := range acked {
		if seen[key{id, first[c]}] != 1 {
			t.Errorf("acknowledged %s %s is not on the stream", c, id)
		}
	}
	t.Logf("%d commands acknowledged before the kill; %d command events on the stream", len(acked), len(seen))
	assertRebuildEqual(h)

	h.ExpungeAll()
	open := map[keystore.Ref]bool{}
	for i := range clients {
		if it, err := h.S.Proj.Item(fmt.Sprintf("GC%d", i)); err != nil {
			t.Fatal(err)
		} else if it.TxnID != "" {
			open[keystore.RefOf(keystore.Transaction, it.TxnID)] = true
		}
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	left := transactionKeys(t, data)
	for ref := range left {
		if !open[ref] {
			t.Errorf("a transaction key outlived its loan and the start's reconciliation: %v", ref)
		}
	}
	if len(left) != len(open) {
		t.Errorf("%d transaction keys left, want the %d open loans'", len(left), len(open))
	}
}
