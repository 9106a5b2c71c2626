package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// withRawStream opens a stopped data directory's JetStream store with a private server,
// as an attacker with the disk or a damaged restore would, and hands f its JetStream.
func withRawStream(t *testing.T, data string, f func(js jetstream.JetStream)) {
	t.Helper()
	srv := testkit.StartJetStream(t, func(o *server.Options) { o.StoreDir, o.SyncAlways = filepath.Join(data, "nats"), false })
	defer srv.Close()
	f(srv.JS)
}

// recreate deletes CIRC and makes it again with cfg and n messages.
func recreate(t *testing.T, js jetstream.JetStream, cfg jetstream.StreamConfig, n int) {
	t.Helper()
	ctx := testkit.Context(t)
	if err := js.DeleteStream(ctx, ledger.StreamName); err != nil {
		t.Fatal(err)
	}
	if cfg.Name == "" {
		return
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := js.Publish(ctx, "circ.item.X", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartRefusesAStreamThatLostHistory: a start checks the stream against what the
// projections applied and refuses, with the cause, a stream that is missing, shorter, or
// does not start at sequence 1, and one whose configuration drifted from append-only; it
// never recreates an empty stream behind the projections' back.
func TestStartRefusesAStreamThatLostHistory(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		tamper func(t *testing.T, js jetstream.JetStream, applied uint64)
		want   []string
	}{
		{"missing", func(t *testing.T, js jetstream.JetStream, _ uint64) {
			recreate(t, js, jetstream.StreamConfig{}, 0)
		}, []string{"stream is missing", "restore the stream"}},
		{"recreated shorter", func(t *testing.T, js jetstream.JetStream, applied uint64) {
			recreate(t, js, ledger.StreamConfig(1), int(applied)-2)
		}, []string{"shorter", "ends at sequence"}},
		{"first sequence moved", func(t *testing.T, js jetstream.JetStream, applied uint64) {
			cfg := ledger.StreamConfig(1)
			cfg.FirstSeq = applied + 5
			recreate(t, js, cfg, 3)
		}, []string{"starts at sequence"}},
		{"trimmed by limits", func(t *testing.T, js jetstream.JetStream, _ uint64) {
			s, err := js.Stream(testkit.Context(t), ledger.StreamName)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			cfg.MaxMsgs, cfg.MaxAge = 5, time.Hour
			if _, err := js.UpdateStream(testkit.Context(t), cfg); err != nil {
				t.Fatal(err)
			}
		}, []string{"configuration drifted", "max_msgs is 5, want -1", "max_age is 1h0m0s, want 0s"}},
		{"sealed", func(t *testing.T, js jetstream.JetStream, _ uint64) {
			s, err := js.Stream(testkit.Context(t), ledger.StreamName)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			cfg.Sealed = true
			if _, err := js.UpdateStream(testkit.Context(t), cfg); err != nil {
				t.Fatal(err)
			}
		}, []string{"configuration drifted", "sealed is true, want false"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := lethetest.New(t)
			h.Register("21000000000701", "Hal History", "1980-01-01")
			h.Catalog("H1", 100)
			applied := h.S.Proj.Applied()
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
			withRawStream(t, h.Cfg.Data, func(js jetstream.JetStream) { c.tamper(t, js, applied) })
			s, err := node.Start(context.Background(), h.Cfg)
			if err == nil {
				s.Stop()
				t.Fatalf("start after the stream was %s succeeded, want a refusal", c.name)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("start error = %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestStartReportsLostEvents: a stream file damaged while the server was stopped loses
// acknowledged events. Losing the tail of what was applied is refused (the stream is
// shorter); losing one inside it is reported on /healthz as degraded, in the log and in a
// metric, never served silently.
func TestStartReportsLostEvents(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Register("21000000000702", "Dee Damage", "1980-01-01")
	for _, b := range []string{"D1", "D2", "D3", "D4", "D5", "D6"} {
		h.Catalog(b, 100)
	}
	var lostSeq uint64
	if err := ledger.Read(testkit.Context(t), h.S.JS, ledger.ReadOptions{}, func(m ledger.Msg) error {
		if strings.Contains(string(m.Data), `"D3"`) {
			lostSeq = m.Seq
		}
		return nil
	}); err != nil || lostSeq == 0 {
		t.Fatalf("the D3 event's sequence: %v", err)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	// Flip bytes inside the third message's payload in the stream's block file.
	blocks, err := filepath.Glob(filepath.Join(h.Cfg.Data, "nats", "jetstream", "$G", "streams", ledger.StreamName, "msgs", "*.blk"))
	if err != nil || len(blocks) == 0 {
		t.Fatalf("no block files: %v", err)
	}
	slices.Sort(blocks)
	data, err := os.ReadFile(blocks[0])
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), `"D3"`)
	if i < 0 {
		t.Fatal("the D3 event is not in the first block")
	}
	copy(data[i:], "XXXX")
	if err := os.WriteFile(blocks[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	h.Start()
	var health desk.Health
	var status int
	var body []byte
	testkit.WaitFor(t, "healthz reports the damage", func() bool {
		status, body = h.RequestAs("", http.MethodGet, "/healthz", nil)
		return json.Unmarshal(body, &health) == nil && health.Status != "ok"
	})
	if want := fmt.Sprintf("[%d]", lostSeq); status != http.StatusOK || health.Status != "degraded" || !strings.Contains(health.Damage, want) {
		t.Errorf("healthz after a damaged block = %d %s, want degraded naming the loss of sequence %d", status, body, lostSeq)
	}
	if !strings.Contains(h.Logs.String(), "the stream is damaged") {
		t.Error("no log line reports the damage")
	}
	if !strings.Contains(h.Scrape(), "lethe_stream_damaged 1") {
		t.Error("metric lethe_stream_damaged is not 1")
	}
}
