package node_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/tlog"
)

// treeHistory is a running server with loans made, returned and expunged, and a signed
// checkpoint over them: a history whose tree the next start may resume.
func treeHistory(t *testing.T) *lethetest.Harness {
	t.Helper()
	h := lethetest.New(t)
	h.Register("21000000000881", "Tilda Tree", "1980-03-03")
	for _, b := range []string{"T1", "T2", "T3"} {
		h.Catalog(b, 100)
	}
	h.MustCheckout("21000000000881", "T1")
	h.MustCheckout("21000000000881", "T2")
	h.Checkin("T1")
	h.ExpungeAll()
	if seq, err := h.S.Checkpoint(testkit.Context(t)); err != nil || seq == 0 {
		t.Fatalf("Checkpoint() = %d, %v; want a checkpoint", seq, err)
	}
	return h
}

// copyPrivate copies the data directory src into dst, readable by the owner alone, as
// Lethe requires of its master key.
func copyPrivate(t *testing.T, dst, src string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dst, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o700)
		}
		return os.Chmod(path, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkpointAt reads the checkpoint event at seq.
func checkpointAt(t *testing.T, s *node.Service, seq uint64) schemas.CheckpointSigned {
	t.Helper()
	m, err := s.Stream.GetMsg(testkit.Context(t), seq)
	if err != nil {
		t.Fatalf("message %d: %v", seq, err)
	}
	_, data, err := s.V.EventData(m.Data)
	cp, ok := data.(schemas.CheckpointSigned)
	if err != nil || !ok {
		t.Fatalf("message %d is %T (%v), want a checkpoint", seq, data, err)
	}
	return cp
}

// freshRoot hashes every message before seq, as an auditor does.
func freshRoot(t *testing.T, s *node.Service, seq uint64) (uint64, []byte) {
	t.Helper()
	tree := tlog.NewTree()
	err := ledger.Read(testkit.Context(t), s.JS, ledger.ReadOptions{}, func(m ledger.Msg) error {
		if m.Seq < seq {
			return tree.Append(m.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	root, err := tree.Root()
	if err != nil {
		t.Fatal(err)
	}
	return tree.Size(), root
}

// waitCaughtUp waits until the checkpointer has the whole stream in its tree.
func waitCaughtUp(t *testing.T, h *lethetest.Harness) node.CheckpointStatus {
	t.Helper()
	last := h.StreamLast()
	testkit.WaitFor(t, "the checkpointer to catch up", func() bool { return h.S.CheckpointStatus().Hashed >= last })
	return h.S.CheckpointStatus()
}

// TestCheckpointTreeResumes: a restart resumes the checkpoint tree from the last
// checkpoint's saved tree and hashes only the messages after it, and the checkpoint it
// then appends is the one a start that hashes the whole stream appends: same size, root,
// note and signature, at the same sequence, and its root is the auditor's.
func TestCheckpointTreeResumes(t *testing.T) {
	t.Parallel()
	h := treeHistory(t)
	ctx := testkit.Context(t)
	h.Checkin("T2")
	h.ExpungeAll()
	// The stop appends a last checkpoint and saves its tree; a copy of the stopped
	// directory without the saved tree is the control, which hashes everything.
	fresh := t.TempDir()
	h.Offline(func() {
		copyPrivate(t, fresh, h.Cfg.Data)
		if err := os.Remove(filepath.Join(fresh, node.TreeFile)); err != nil {
			t.Fatalf("the stop saved no tree: %v", err)
		}
	})
	last := h.StreamLast() // the stop's checkpoint
	st := waitCaughtUp(t, h)
	if st.Resumed != last-1 || st.Hashed != last {
		t.Errorf("after a restart the checkpointer resumed %d and holds %d messages, want %d resumed (all but the last checkpoint) and %d",
			st.Resumed, st.Hashed, last-1, last)
	}
	if strings.Contains(h.Logs.String(), "rebuilt from the stream") {
		t.Errorf("the start rebuilt the tree:\n%s", h.Logs.String())
	}
	resumedSeq, err := h.S.Checkpoint(ctx)
	if err != nil || resumedSeq == 0 {
		t.Fatalf("Checkpoint() after resuming = %d, %v", resumedSeq, err)
	}
	resumed := checkpointAt(t, h.S, resumedSeq)
	size, root := freshRoot(t, h.S, resumedSeq)
	if resumed.Size != size || !bytes.Equal(resumed.Root, root) {
		t.Errorf("resumed checkpoint = size %d root %x, the auditor's tree = size %d root %x", resumed.Size, resumed.Root, size, root)
	}
	if _, err := tlog.Open([]byte(resumed.Note), h.S.VerifierKey()); err != nil {
		t.Errorf("the resumed checkpoint's note: %v", err)
	}

	cfg := h.Cfg
	cfg.Data = fresh
	s, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	freshSeq, err := s.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.CheckpointStatus(); st.Resumed != 0 || st.Hashed != freshSeq-1 {
		t.Errorf("without a saved tree: resumed %d, holds %d; want 0 and %d", st.Resumed, st.Hashed, freshSeq-1)
	}
	if freshSeq != resumedSeq {
		t.Errorf("the fresh start's checkpoint is at %d, the resumed one's at %d", freshSeq, resumedSeq)
	}
	if diff := cmp.Diff(checkpointAt(t, s, freshSeq), resumed); diff != "" {
		t.Errorf("resumed checkpoint differs from a fresh start's (-fresh +resumed):\n%s", diff)
	}
}

// TestCheckpointTreeNotTrusted: a saved tree the stream does not confirm is not used; the
// start hashes the whole stream and the checkpoint is the auditor's. Each case changes
// the saved tree of a stopped server.
func TestCheckpointTreeNotTrusted(t *testing.T) {
	t.Parallel()
	edit := func(f func(st map[string]any)) func(t *testing.T, path string, old []byte) {
		return func(t *testing.T, path string, _ []byte) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var st map[string]any
			if err := json.Unmarshal(raw, &st); err != nil {
				t.Fatal(err)
			}
			f(st)
			raw, _ = json.Marshal(st)
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string, old []byte)
	}{
		{"damaged", func(t *testing.T, path string, _ []byte) {
			if err := os.WriteFile(path, []byte(`{"version": 1, "size": 3, "has`), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"a hash changed", edit(func(st map[string]any) {
			hashes := st["hashes"].([]any)
			hashes[0] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
		})},
		{"a size its hashes do not fit", edit(func(st map[string]any) { st["size"] = st["size"].(float64) + 1 })},
		{"not a checkpoint's sequence", edit(func(st map[string]any) { st["checkpoint_seq"] = 1.0 })},
		{"past the stream's end", edit(func(st map[string]any) { st["checkpoint_seq"] = 1e6 })},
		{"signed by a key rotated since", func(t *testing.T, path string, old []byte) {
			// The tree of the checkpoint before the rotation, as a crash right after
			// rotating would leave it.
			if err := os.WriteFile(path, old, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := treeHistory(t)
			path := filepath.Join(h.Cfg.Data, node.TreeFile)
			old, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "signed by a key rotated since" {
				if _, _, err := h.S.RotateCheckpointKey(testkit.Context(t)); err != nil {
					t.Fatal(err)
				}
			}
			h.Offline(func() { tc.change(t, path, old) })
			last := h.StreamLast()
			if st := waitCaughtUp(t, h); st.Resumed != 0 || st.Hashed != last {
				t.Errorf("resumed %d and holds %d messages, want 0 resumed and all %d hashed", st.Resumed, st.Hashed, last)
			}
			if !strings.Contains(h.Logs.String(), "the checkpoint tree is rebuilt from the stream") {
				t.Errorf("the start does not say why it rebuilt the tree:\n%s", h.Logs.String())
			}
			seq, err := h.S.Checkpoint(testkit.Context(t))
			if err != nil || seq == 0 {
				t.Fatalf("Checkpoint() = %d, %v", seq, err)
			}
			cp := checkpointAt(t, h.S, seq)
			if size, root := freshRoot(t, h.S, seq); cp.Size != size || !bytes.Equal(cp.Root, root) {
				t.Errorf("checkpoint = size %d root %x, the auditor's tree = size %d root %x", cp.Size, cp.Root, size, root)
			}
			// The checkpoint saved the tree again: the next start resumes.
			h.Restart()
			if st := waitCaughtUp(t, h); st.Resumed == 0 {
				t.Errorf("the start after a checkpoint did not resume: %+v", st)
			}
		})
	}
}

// TestCheckpointTreeDamagedStream: a stream file damaged while the server was stopped,
// inside the range the saved tree covers, which the restart does not read again: the
// start's checks (or its scrub) find the hole, and no checkpoint is appended over it. The
// undamaged restart, as the control, checkpoints.
func TestCheckpointTreeDamagedStream(t *testing.T) {
	t.Parallel()
	for _, damaged := range []bool{false, true} {
		t.Run(map[bool]string{false: "control", true: "damaged"}[damaged], func(t *testing.T) {
			t.Parallel()
			h := treeHistory(t)
			h.Offline(func() {
				if !damaged {
					return
				}
				blks, _ := filepath.Glob(filepath.Join(h.Cfg.Data, "nats", "jetstream", "*", "streams", "CIRC", "msgs", "*.blk"))
				if len(blks) == 0 {
					t.Fatal("no block file of CIRC")
				}
				b, err := os.ReadFile(blks[0])
				if err != nil {
					t.Fatal(err)
				}
				for i := len(b) / 3; i < len(b)/3+4; i++ {
					b[i] ^= 0xff
				}
				if err := os.WriteFile(blks[0], b, 0o600); err != nil {
					t.Fatal(err)
				}
			})
			if !damaged {
				if st := waitCaughtUp(t, h); st.Resumed == 0 || st.Broken != "" {
					t.Fatalf("the undamaged restart: %+v, want a resumed tree", st)
				}
				if seq, err := h.S.Checkpoint(testkit.Context(t)); err != nil || seq == 0 {
					t.Errorf("Checkpoint() on the undamaged stream = %d, %v; want a checkpoint", seq, err)
				}
				return
			}
			testkit.WaitFor(t, "the hole to be found", func() bool { return h.S.CheckpointStatus().Broken != "" })
			last := h.StreamLast()
			if seq, err := h.S.Checkpoint(testkit.Context(t)); err == nil || seq != 0 {
				t.Errorf("Checkpoint() on a stream with a hole = %d, %v; want an error and no checkpoint", seq, err)
			}
			if h.StreamLast() != last {
				t.Errorf("the stream moved from %d to %d: something was appended over the hole", last, h.StreamLast())
			}
		})
	}
}
