package kiosk_test

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

// rssBytes is this process's resident set size.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// Bounds of TestKioskFlood. Before the kiosk API had a worker pool, a queue bound and
// per-kiosk rates, 40,000 patron_info requests in 112 ms took the server from 44 MB to
// 912 MB, never released, and delayed real kiosks by 10 s.
// Bounds without the race detector (the README's); under -race they are scaled by
// raceScale.
const (
	floodRequests   = 40000
	floodRSSGrowth  = 64 << 20 // the whole test process, server and clients
	floodLegitP99   = 500 * time.Millisecond
	floodLegitCalls = 50
)

// TestKioskFlood: one kiosk's credentials fire 40,000 requests at once while a legitimate
// kiosk works; the server's memory stays bounded, the legitimate kiosk is answered
// promptly, and the flooding kiosk is refused (rate_limited) rather than queued.
func TestKioskFlood(t *testing.T) {
	h := lethetest.New(t, lethetest.WithNATSListen(), func(c *node.ServiceConfig) { c.Kiosks = kiosk.Config{} }) // the defaults
	h.Register("21000000000601", "Flo Flood", "1980-01-01")
	flooder := h.MustConnect(h.IdentityFile(identity.Kiosk, "main", "flood"))
	legit := h.MustConnect(h.IdentityFile(identity.Kiosk, "main", "legit"))
	// Warm up both kiosks' paths before measuring memory.
	if _, err := legit.NC.Request(ledger.KioskSubject("main", "legit", schemas.CmdPatronInfo), []byte(`{"card":"21000000000601"}`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	before := rssBytes(t)

	replies := make(chan *nats.Msg, floodRequests)
	inbox := nats.NewInbox()
	sub, err := flooder.NC.ChanSubscribe(inbox, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	body := []byte(`{"card":"21000000000601"}`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range floodRequests {
			flooder.NC.PublishRequest(ledger.KioskSubject("main", "flood", schemas.CmdPatronInfo), inbox, body)
		}
		flooder.NC.Flush()
	}()
	var lat []time.Duration
	for i := range floodLegitCalls {
		start := time.Now()
		m, err := legit.NC.Request(ledger.KioskSubject("main", "legit", schemas.CmdPatronInfo), body, 10*time.Second)
		if err != nil {
			t.Fatalf("legitimate request %d: %v", i, err)
		}
		lat = append(lat, time.Since(start))
		var r schemas.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			t.Fatalf("legitimate request %d = %s", i, m.Data)
		}
		time.Sleep(60 * time.Millisecond) // a kiosk's pace: under its rate of 20 a second
	}
	<-done
	// Count the flooder's answers until they stop coming.
	codes := map[schemas.Code]int{}
	for quiet := false; !quiet; {
		select {
		case m := <-replies:
			var r schemas.Reply
			if json.Unmarshal(m.Data, &r) == nil && r.Error != nil {
				codes[r.Error.Code]++
			} else {
				codes["ok"]++
			}
		case <-time.After(2 * time.Second):
			quiet = true
		}
	}
	growth := rssBytes(t) - before
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	t.Logf("flood of %d: answers %v; legitimate p99 %s; RSS growth %d MiB", floodRequests, codes, p99, growth>>20)
	if p99 > floodLegitP99*raceScale {
		t.Errorf("legitimate kiosk p99 = %s during the flood, want under %s", p99, floodLegitP99*raceScale)
	}
	if growth > floodRSSGrowth*raceScale {
		t.Errorf("RSS grew by %d MiB during the flood, want under %d MiB", growth>>20, floodRSSGrowth*raceScale>>20)
	}
	if codes[schemas.CodeRateLimited] < floodRequests/2 {
		t.Errorf("flood answers %v: want most refused as rate_limited", codes)
	}
	if h.S.Kiosks.Refused() == 0 {
		t.Error("the refusals metric did not count the flood")
	}
}

// TestCardMissesAreLimitedAndSummarised: guessing cards at a kiosk is cut off after a few
// misses (rate_limited for every command that presents a card, also a valid one), other
// kiosks are unaffected, and the misses are on the access record as one summary entry
// per kiosk, not one undeletable entry per guess.
func TestCardMissesAreLimitedAndSummarised(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, func(c *node.ServiceConfig) {
		c.Kiosks = kiosk.Config{MissesPerKiosk: 5, MissesTotal: 1000, MissWindow: time.Hour}
	})
	h.Register("21000000000602", "Gus Guess", "1980-01-01")
	before := h.AccessEntries()
	for i := range 5 {
		r := h.Kiosk("guesser", schemas.CmdPatronInfo, schemas.PatronInfo{Card: "2100000000" + strconv.Itoa(9000+i)})
		lethetest.WantCode(t, r, schemas.CodeNotFound)
	}
	if got := h.AccessEntries(); got != before {
		t.Errorf("the guesses wrote %d access entries one by one, want none before the summary", got-before)
	}
	// Past the limit even a valid card is refused at this kiosk, but not at another.
	lethetest.WantCode(t, h.Kiosk("guesser", schemas.CmdPatronInfo, schemas.PatronInfo{Card: "21000000000602"}), schemas.CodeRateLimited)
	lethetest.WantCode(t, h.Kiosk("guesser", schemas.CmdCheckOut, schemas.CheckOut{CommandID: lethetest.CmdID(), Card: "21000000000602", Barcode: "X"}), schemas.CodeRateLimited)
	if r := h.Kiosk("honest", schemas.CmdPatronInfo, schemas.PatronInfo{Card: "21000000000602"}); !r.OK {
		t.Fatalf("another kiosk's lookup = %+v, want ok", r.Error)
	}
	// Stopping flushes the window's summary.
	h.Restart()
	entries, err := h.S.Desk.Access.List(testkit.Context(t), access.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var summaries []access.Listed
	for _, e := range entries {
		if e.Action == "card_misses" {
			summaries = append(summaries, e)
		}
	}
	if len(summaries) != 1 || summaries[0].Requests != 5 || summaries[0].Staff != "kiosk main/guesser" || summaries[0].Outcome != access.Refused {
		t.Fatalf("card-miss summaries = %+v, want one entry for kiosk main/guesser standing for 5 requests", summaries)
	}
}

// TestKioskRateLimit: a kiosk over its rate is refused with rate_limited at once.
func TestKioskRateLimit(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, func(c *node.ServiceConfig) { c.Kiosks = kiosk.Config{Rate: 1, Burst: 3} })
	h.Catalog("RL1", 100)
	codes := map[schemas.Code]int{}
	for range 10 {
		r := h.Kiosk("busy", schemas.CmdReturn, schemas.Return{CommandID: lethetest.CmdID(), Barcode: "RL1"})
		codes[r.Error.Code]++
	}
	if codes[schemas.CodeRateLimited] < 6 || codes[schemas.CodeConflict] < 3 {
		t.Errorf("10 quick returns at 1/s with a burst of 3 = %v, want 3 answered (conflict: not on loan) and the rest rate_limited", codes)
	}
}
