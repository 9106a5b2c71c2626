package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/imagineif/lethe/kiosk"
	"github.com/imagineif/lethe/node"
)

// start times starts of the history's data directory, stopped, as lethe serve starts it:
// raw is the embedded NATS server alone recovering the streams (node.OpenNATS), Lethe a
// whole start until GET /healthz answers 200. Then the two reads each start makes in the
// background: the checkpointer catching up (from the last checkpoint's saved tree; once,
// for comparison, without it) and the scrub reading the stream through.
func (b *bencher) start(ctx context.Context) error {
	var raws, healthy, trees, scrubs []float64
	var events uint64
	for i := range b.plan.startRuns {
		b.prog.set("start %d/%d: the embedded server alone", i+1, b.plan.startRuns)
		t0 := time.Now()
		n, err := node.OpenNATS(node.Config{Data: b.history, NATSListen: "off", Sync: "always", Logger: b.logger})
		if err != nil {
			return err
		}
		raws = append(raws, ms(time.Since(t0)))
		n.Close()
		b.prog.set("start %d/%d: lethe", i+1, b.plan.startRuns)
		st, err := b.timeStart(ctx)
		if err != nil {
			return err
		}
		events = st.events
		healthy, trees, scrubs = append(healthy, ms(st.healthy)), append(trees, ms(st.tree)), append(scrubs, ms(st.scrub))
		if st.resumed == 0 {
			b.warn("start %d: the checkpointer did not resume from the saved tree", i+1)
		}
	}
	b.prog.set("start: lethe without the checkpoint's saved tree")
	if err := os.Remove(filepath.Join(b.history, node.TreeFile)); err != nil {
		return fmt.Errorf("the history's saved checkpoint tree: %w", err)
	}
	full, err := b.timeStart(ctx)
	if err != nil {
		return err
	}
	n := len(healthy)
	note := fmt.Sprintf("%s messages, %s; median of %d", thousands(int64(events)), b.historyFilled, n)
	h := newRow("start", "to a healthy /healthz (raw: the embedded server recovering the streams alone)", "ms", ptr(median(raws)), median(healthy)).
		note(note + "; the history was written inside the stream's one-hour deduplication window, whose message ids JetStream's recovery reads back: a real stream's last hour holds far fewer")
	if events >= LargeEvents {
		h = h.target("< 2 s", median(healthy) < 2000)
	}
	b.add(h,
		newRow("start", "checkpoint tree caught up, from the saved tree", "ms", nil, median(trees)).
			note(fmt.Sprintf("%s; without the saved tree, every event hashed again: %s", note, formatValue(ms(full.tree), "ms"))),
		newRow("start", "scrub read the stream through (in the background)", "ms", nil, median(scrubs)).note(note))
	return nil
}

// startTimes is what one start of the history took, from the call to node.Start.
type startTimes struct {
	healthy time.Duration // until GET /healthz answered 200
	tree    time.Duration // until the checkpointer held every message in the stream at healthy
	scrub   time.Duration // until the scrub had read the stream through
	events  uint64        // the stream's last sequence at healthy
	resumed uint64        // the messages the checkpointer took from the saved tree
}

// timeStart starts the history's data directory as lethe serve does (fsync before every
// acknowledgement, the staff HTTP server on a loopback port), times it, and stops it.
func (b *bencher) timeStart(ctx context.Context) (startTimes, error) {
	var st startTimes
	cfg := node.ServiceConfig{
		Config: node.Config{Data: b.history, NATSListen: "off", Sync: "always", Replicas: 1,
			Location: time.UTC, Logger: b.logger},
		HTTP: "127.0.0.1:0", SweepInterval: time.Minute, RulesInterval: time.Hour,
		Kiosks: kiosk.Config{Rate: -1},
	}
	t0 := time.Now()
	s, err := node.Start(ctx, cfg)
	if err != nil {
		return st, err
	}
	defer s.Stop()
	deadline := t0.Add(time.Minute)
	until := func(what string, done func() (bool, error)) error {
		for {
			ok, err := done()
			if ok || err != nil {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no %s within a minute of the start", what)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	err = until("healthy /healthz", func() (bool, error) {
		resp, err := http.Get(s.HTTPURL + "/healthz")
		if err != nil {
			return false, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return st, err
	}
	st.healthy = time.Since(t0)
	if st.events, err = s.StreamLast(ctx); err != nil {
		return st, err
	}
	// Both in the background, at once: each is timed when it is first seen done. The
	// checkpointer is done when it holds every message there was at healthy, or when it
	// appended a checkpoint (which it does only once it has caught up, and which is itself
	// hashed only at its next round).
	err = until("end of the background reads", func() (bool, error) {
		if cs := s.CheckpointStatus(); st.tree == 0 && (cs.Hashed >= st.events || cs.Seq != 0) {
			st.tree, st.resumed = time.Since(t0), cs.Resumed
		}
		select {
		case <-s.Scrubbed():
			if st.scrub == 0 {
				st.scrub = time.Since(t0)
			}
		default:
		}
		return st.tree != 0 && st.scrub != 0, nil
	})
	if err != nil {
		return st, err
	}
	if h := s.Proj.Health(); h.Damage != "" {
		return st, fmt.Errorf("the scrub found the history damaged: %s", h.Damage)
	}
	return st, nil
}
