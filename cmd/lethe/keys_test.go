package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// liveKey is a key the keystore must keep through a rotation, named without its id.
type liveKey struct {
	what string // "transaction key 0", "profile key 1": no ids in test output
	kind keystore.Kind
	id   string
	key  []byte
}

// liveKeys reads every key an event of the stream names that exists in the stopped data
// directory's keystore: transaction keys of open loans, profile keys of open accounts. It
// fails unless there are at least minTxn and minProfile of them.
func liveKeys(t *testing.T, data string, evs []schemas.Event, minTxn, minProfile int) []liveKey {
	t.Helper()
	m, err := keystore.LoadMaster(filepath.Join(data, "master.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Open(filepath.Join(data, "keystore"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	var out []liveKey
	n := map[keystore.Kind]int{}
	for _, ev := range evs {
		var d struct {
			TxnID    string `json:"txn_id"`
			PatronID string `json:"patron_id"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		kind, id := keystore.Transaction, d.TxnID
		switch ev.Type {
		case schemas.TypeItemCheckedOut:
		case schemas.TypePatronRegistered:
			kind, id = keystore.Profile, d.PatronID
		default:
			continue
		}
		k, err := ks.Get(kind, id)
		if errors.Is(err, keystore.ErrNotFound) {
			continue // closed and expunged
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, liveKey{fmt.Sprintf("%s key %d", kind, n[kind]), kind, id, k})
		n[kind]++
	}
	if n[keystore.Transaction] < minTxn || n[keystore.Profile] < minProfile {
		t.Fatalf("live keys: %d transaction, %d profile; want at least %d and %d (the fixture is wrong)", n[keystore.Transaction], n[keystore.Profile], minTxn, minProfile)
	}
	return out
}

// checkKeys opens the keystore with the master key file as a start without a pending
// rotation does, and checks that every live key opens, unchanged.
func checkKeys(t *testing.T, data string, want []liveKey) keystore.MasterKey {
	t.Helper()
	path := filepath.Join(data, "master.key")
	if keystore.RotationPending(path) {
		t.Fatalf("a rotation is still pending after the next open")
	}
	m, err := keystore.LoadMaster(path, "")
	if err != nil {
		t.Fatalf("master key after the next open: %v", err)
	}
	ks, err := keystore.Open(filepath.Join(data, "keystore"), m, nil)
	if err != nil {
		t.Fatalf("open keystore with %s: %v", path, err)
	}
	defer ks.Close()
	for _, k := range want {
		got, err := ks.Get(k.kind, k.id)
		if err != nil || !bytes.Equal(got, k.key) {
			t.Errorf("%s after the next open: err = %v, equal = %v; want the same key", k.what, err, bytes.Equal(got, k.key))
		}
	}
	return m
}

// masterFiles returns the master keys held by files named master.key* in data (zeroed
// or half-written files hold none), and the names of all such files.
func masterFiles(t *testing.T, data string) (keys map[string]keystore.MasterKey, names []string) {
	t.Helper()
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	keys = map[string]keystore.MasterKey{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "master.key") {
			continue
		}
		names = append(names, e.Name())
		b, err := os.ReadFile(filepath.Join(data, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if m, err := keystore.ParseMaster(string(b)); err == nil {
			keys[e.Name()] = m
		}
	}
	return keys, names
}

// wantWrongMaster checks that m opens nothing in the data directory's keystore.
func wantWrongMaster(t *testing.T, data string, m keystore.MasterKey, what string) {
	t.Helper()
	ks, err := keystore.Open(filepath.Join(data, "keystore"), m, nil)
	if err == nil {
		ks.Close()
	}
	if !errors.Is(err, keystore.ErrWrongMaster) {
		t.Errorf("Open with %s: error = %v, want ErrWrongMaster", what, err)
	}
}

// copyDir copies a stopped data directory, modes included.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, info.Mode().Perm())
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// killedAt runs lethe keys rotate on data in a child process, stops it at step and kills
// it there (SIGKILL).
func killedAt(t *testing.T, data string, step keystore.Step) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "keys", "rotate", "--data", data)
	cmd.Env = append(os.Environ(), childEnv+"=lethe", stopAtEnv+"="+string(step))
	var out, errOut testkit.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	stdin, err := cmd.StdinPipe() // never written: the child blocks on it at the step
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // ends when the child does, which the kill below ensures
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), "stopped at "+string(step)) {
		select {
		case err := <-exited:
			t.Fatalf("keys rotate exited before step %s: %v\nstdout: %s\nstderr: %s", step, err, out.String(), errOut.String())
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			t.Fatalf("keys rotate did not reach step %s in 60s", step)
		case <-tick.C:
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err = <-exited
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("keys rotate after the kill at %s: %v, want killed", step, err)
	}
}

// nextOpen is how a data directory is opened after a kill.
type nextOpen struct {
	name string
	open func(t *testing.T, data string)
}

func noEnv(string) string { return "" }

func nextOpens() []nextOpen {
	return []nextOpen{
		{"serve", func(t *testing.T, data string) {
			// What lethe serve opens before it serves: keystore, projections, NATS, stream.
			n, err := node.Open(context.Background(), node.Config{Data: data, NATSListen: "off", Sync: "always",
				Location: time.UTC, Logger: slog.New(slog.DiscardHandler), Existing: true})
			if err != nil {
				t.Fatalf("serve's open after the kill: %v", err)
			}
			n.Close()
		}},
		{"rebuild", func(t *testing.T, data string) {
			var out, errOut testkit.SyncBuffer
			if err := run(context.Background(), []string{"projections", "rebuild", "--data", data}, noEnv, nil, &out, &errOut); err != nil {
				t.Fatalf("projections rebuild after the kill: %v\n%s", err, errOut.String())
			}
		}},
		{"keys rotate", func(t *testing.T, data string) {
			var out, errOut testkit.SyncBuffer
			if err := run(context.Background(), []string{"keys", "rotate", "--data", data}, noEnv, nil, &out, &errOut); err != nil {
				t.Fatalf("keys rotate after the kill: %v\n%s", err, errOut.String())
			}
		}},
	}
}

// TestKeysRotateKilledAtEveryStep kills a real lethe keys rotate process (SIGKILL) after
// each step of the rotation, and opens the data directory again with serve's open,
// projections rebuild or keys rotate, every step with each. After the kill at most the
// old and the new master key files exist. The next open works; every transaction key of
// an open loan and every profile key opens, unchanged; afterwards master.key is the only
// master key file. Once the rotation is complete (finished by the open, or rotated again
// after the open undid it) neither the old key nor an abandoned new one opens the
// keystore.
func TestKeysRotateKilledAtEveryStep(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Catalog("RK1", 1000)
	h.Catalog("RK2", 1000)
	h.Register("21000000000700", "Una Rotate", "1980-01-01")
	h.Register("21000000000701", "Vic Rotate", "1985-01-01")
	h.MustCheckout("21000000000700", "RK1") // stays open
	h.MustCheckout("21000000000701", "RK2")
	h.Checkin("RK2") // closed and expunged: its key is gone before the rotation
	h.ExpungeAll()
	evs := h.Events()

	h.Offline(func() {
		want := liveKeys(t, h.Cfg.Data, evs, 1, 2)
		for _, step := range keystore.RotationSteps() {
			for _, next := range nextOpens() {
				t.Run(string(step)+"/"+next.name, func(t *testing.T) {
					data := copyDir(t, h.Cfg.Data)
					old, err := keystore.LoadMaster(filepath.Join(data, "master.key"), "")
					if err != nil {
						t.Fatal(err)
					}
					killedAt(t, data, step)
					left, _ := masterFiles(t, data)
					if len(left) > 2 {
						t.Errorf("master key files after the kill at %s = %d, want at most 2", step, len(left))
					}
					var abandoned []keystore.MasterKey
					for _, m := range left {
						if m.ID != old.ID {
							abandoned = append(abandoned, m)
						}
					}

					next.open(t, data)
					active := checkKeys(t, data, want)
					keys, names := masterFiles(t, data)
					if len(names) != 1 || len(keys) != 1 || keys["master.key"].ID != active.ID {
						t.Errorf("master key files after the next open = %v, want only master.key", names)
					}

					if active.ID == old.ID {
						// The open undid the rotation: the abandoned key opens nothing, and a
						// rotation now completes.
						for _, m := range abandoned {
							wantWrongMaster(t, data, m, "the abandoned new key, after the undo")
						}
						var out, errOut testkit.SyncBuffer
						if err := run(context.Background(), []string{"keys", "rotate", "--data", data}, noEnv, nil, &out, &errOut); err != nil {
							t.Fatalf("keys rotate after the undo: %v\n%s", err, errOut.String())
						}
						active = checkKeys(t, data, want)
					}
					for _, m := range append(abandoned, old) {
						if m.ID != active.ID {
							wantWrongMaster(t, data, m, "a replaced master key, once the rotation is complete")
						}
					}
				})
			}
		}
	})
}

// TestKeysRotateAfterLeftoverNext: a master.key.next left by a crash of an earlier
// version used to make every later rotation fail with "file already exists". Now the
// next rotation resolves it and completes.
func TestKeysRotateAfterLeftoverNext(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Register("21000000000710", "Wes Leftover", "1980-01-01")
	evs := h.Events()
	h.Offline(func() {
		want := liveKeys(t, h.Cfg.Data, evs, 0, 1)
		path := filepath.Join(h.Cfg.Data, "master.key")
		old, err := keystore.LoadMaster(path, "")
		if err != nil {
			t.Fatal(err)
		}
		leftover, err := keystore.GenerateMasterFile(path + ".next")
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut testkit.SyncBuffer
		if err := run(context.Background(), []string{"keys", "rotate", "--data", h.Cfg.Data}, noEnv, nil, &out, &errOut); err != nil {
			t.Fatalf("keys rotate with a leftover master.key.next: %v\n%s", err, errOut.String())
		}
		if !strings.Contains(out.String(), "rotated:") {
			t.Errorf("keys rotate output = %q, want it to say rotated", out.String())
		}
		checkKeys(t, h.Cfg.Data, want)
		wantWrongMaster(t, h.Cfg.Data, old, "the old master key, after the rotation")
		wantWrongMaster(t, h.Cfg.Data, leftover, "the leftover new key, after the rotation")
		if _, names := masterFiles(t, h.Cfg.Data); len(names) != 1 {
			t.Errorf("master key files after the rotation = %v, want only master.key", names)
		}
	})
}
