package node_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imagineif/lethe/backup"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/projections"
	"github.com/imagineif/lethe/schemas"
)

// TestBackupRestore makes a backup of a serving library through POST /api/backup, goes
// on (a loan returned after the backup), loses the server, and restores: from the backup
// alone (the library as at the backup, rebuilt equal to itself), and with the stream that
// survived (the return is there, and its key, which the backup holds, is destroyed again
// before the restore returns). When the backup's retention ends, its key is gone: restore
// refuses it, and no key that still exists opens it.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	ctx := testkit.Context(t)
	h.Register("21000000000701", "Ada Backup", "1980-01-01")
	h.Register("21000000000702", "Bo Backup", "1981-02-02")
	for _, b := range []string{"B1", "B2", "B3"} {
		h.Catalog(b, 100)
	}
	h.MustCheckout("21000000000701", "B1") // open throughout
	h.MustCheckout("21000000000702", "B2") // returned after the backup
	h.MustCheckout("21000000000702", "B3") // returned before it
	h.Checkin("B3")
	h.ExpungeAll()
	txnB1, txnB2 := h.TxnOf("B1"), h.TxnOf("B2")

	// Only an administrator may make one, and every request is on the access record.
	h.Account("clerk", policy.Circulation)
	before := h.AccessEntries()
	if status, _ := h.RequestAs("clerk", http.MethodPost, "/api/backup", nil); status != http.StatusForbidden {
		t.Fatalf("a clerk's backup: status %d, want 403", status)
	}
	status, file := h.RequestAs(lethetest.Admin, http.MethodPost, "/api/backup", nil)
	if status != http.StatusOK {
		t.Fatalf("backup: status %d: %s", status, file)
	}
	if got := h.AccessEntries(); got != before+2 {
		t.Errorf("access entries after a refused and a made backup: %d more, want 2", got-before)
	}
	if e := h.LastAccessEntry(); e.Action != string(policy.MakeBackup) || e.Scope != policy.BackupCopy || e.Staff != lethetest.Admin {
		t.Errorf("the backup's access entry = %+v", e)
	}
	hdr, err := backup.ReadHeader(bufio.NewReader(bytes.NewReader(file)))
	if err != nil {
		t.Fatal(err)
	}
	atBackup := h.StreamLast()
	if hdr.Streams[ledger.StreamName] != atBackup || !hdr.Expires.Equal(hdr.Created.Add(backup.DefaultRetention)) {
		t.Errorf("header = %+v, want the stream at %d and the default retention", hdr, atBackup)
	}
	// Nothing identifying is in the file: it is sealed.
	if found := lethetest.ScanBytes(file, "Ada Backup", "Bo Backup", "21000000000701", "21000000000702", txnB1, txnB2); len(found) > 0 {
		t.Errorf("the backup file holds %v in the clear", found)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "one.backup")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}

	// After the backup: B2 comes back; its key is destroyed on the live server.
	h.Checkin("B2")
	h.ExpungeAll()
	h.AssertExpunged(txnB2)
	// A second backup an hour later, whose key outlives the first's.
	h.Clock.Advance(time.Hour)
	status, file2 := h.RequestAs(lethetest.Admin, http.MethodPost, "/api/backup", nil)
	if status != http.StatusOK {
		t.Fatalf("second backup: status %d", status)
	}
	old := h.Cfg.Data
	master := filepath.Join(old, "master.key")
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	logger := slog.New(slog.NewTextHandler(h.Logs, nil))
	restore := func(data, streamFrom string, now time.Time) (node.Restored, error) {
		return node.Restore(ctx, node.RestoreConfig{
			Config: node.Config{Data: data, MasterKeyFile: master, Location: time.UTC, Logger: logger, Sync: "always"},
			File:   path, StreamFrom: streamFrom, Now: func() time.Time { return now },
		})
	}
	now := hdr.Created.Add(time.Minute)

	// 1. The backup alone: the library as it was, B1 and B2 on loan, and a rebuild of the
	// restored stream equal to the restored projections.
	alone := filepath.Join(dir, "alone")
	res, err := restore(alone, "", now)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if res.Open != 2 || res.Streams[ledger.StreamName] != atBackup || res.Destroyed != 0 {
		t.Errorf("restored from the backup alone: %+v, want 2 open, the stream at %d, nothing destroyed", res, atBackup)
	}
	checkRestored(t, alone, master, map[string]bool{txnB1: true, txnB2: true})

	// 2. With the stream that survived: B2's return is on it, and its key, which the
	// backup holds, was destroyed again before Restore returned.
	survived := filepath.Join(dir, "survived")
	res, err = restore(survived, old, now)
	if err != nil {
		t.Fatalf("restore with the surviving stream: %v", err)
	}
	if res.Open != 1 || res.Streams[ledger.StreamName] <= atBackup || res.Destroyed < 1 {
		t.Errorf("restored with the surviving stream: %+v, want 1 open, the stream past %d, B2's key destroyed", res, atBackup)
	}
	checkRestored(t, survived, master, map[string]bool{txnB1: true, txnB2: false})
	t.Logf("restored with the surviving stream: %+v", res)

	// Bad input changes nothing: a directory in use, a file cut short, a file that is not
	// a backup.
	if _, err := restore(survived, "", now); err == nil {
		t.Error("restore into a directory that is not empty succeeded")
	}
	cut := filepath.Join(dir, "cut.backup")
	os.WriteFile(cut, file[:len(file)-100], 0o600)
	if _, err := node.Restore(ctx, node.RestoreConfig{Config: node.Config{Data: filepath.Join(dir, "cut"), MasterKeyFile: master, Logger: logger},
		File: cut, Now: func() time.Time { return now }}); err == nil {
		t.Error("a backup cut short restored")
	}
	if _, err := os.Stat(filepath.Join(dir, "cut")); err == nil {
		t.Error("a failed restore left its directory behind")
	}
	os.WriteFile(cut, []byte("LETHE-BACKUP 1\n{\"id\":\"x\"}\nnot age"), 0o600)
	if _, err := node.Restore(ctx, node.RestoreConfig{Config: node.Config{Data: filepath.Join(dir, "cut2"), MasterKeyFile: master, Logger: logger},
		File: cut, Now: func() time.Time { return now }}); !errors.Is(err, backup.ErrKeyGone) {
		t.Errorf("a backup of an unknown key: %v, want ErrKeyGone", err)
	}

	// 3. The retention ends: the key is destroyed, the backup refused and unreadable by
	// every key that still exists.
	expired := hdr.Expires.Add(time.Second)
	if n, err := backup.OpenKeyring(backup.KeyringPath(master)).Prune(expired); err != nil || n != 1 {
		t.Fatalf("prune at the first backup's expiry: %d destroyed, %v; want 1", n, err)
	}
	gone := filepath.Join(dir, "gone")
	if _, err := restore(gone, "", expired); !errors.Is(err, backup.ErrKeyGone) {
		t.Fatalf("restore after the retention: %v, want ErrKeyGone", err)
	}
	if entries, _ := os.ReadDir(gone); len(entries) > 0 {
		t.Errorf("a refused restore made %d entries in its directory", len(entries))
	}
	m, err := keystore.LoadMaster(master, "")
	if err != nil {
		t.Fatal(err)
	}
	kr := backup.OpenKeyring(backup.KeyringPath(master))
	entries, err := kr.Entries()
	if err != nil || len(entries) != 1 {
		t.Fatalf("keyring after the prune: %d entries, %v; want the second backup's", len(entries), err)
	}
	for _, e := range entries {
		ident, _, err := kr.Identity(m, e.ID, expired)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(bytes.NewReader(file))
		if _, err := backup.ReadHeader(br); err != nil {
			t.Fatal(err)
		}
		if _, err := backup.NewReader(br, ident); err == nil {
			t.Errorf("the first backup opens with key %s, which still exists", e.ID)
		}
		// The negative control: the same key opens its own backup.
		br = bufio.NewReader(bytes.NewReader(file2))
		if _, err := backup.ReadHeader(br); err != nil {
			t.Fatal(err)
		}
		if _, err := backup.NewReader(br, ident); err != nil {
			t.Errorf("the second backup does not open with its own key: %v", err)
		}
	}
}

// checkRestored opens a restored data directory as serve would: the projections rebuilt
// from its stream equal its projections row for row, and the transaction keys are
// exactly those of want's open transactions.
func checkRestored(t *testing.T, data, master string, want map[string]bool) {
	t.Helper()
	ctx := testkit.Context(t)
	n, err := node.Open(ctx, node.Config{Data: data, MasterKeyFile: master, NATSListen: "off", Location: time.UTC, Existing: true, Sync: "always"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Proj.CatchUp(ctx, n.JS); err != nil {
		t.Fatal(err)
	}
	diff, err := n.Proj.Rebuild(ctx, n.JS, filepath.Join(t.TempDir(), "rebuild"), projections.Config{Location: time.UTC}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !diff.Equal() {
		t.Errorf("%s: a rebuild differs from the restored projections: %+v", filepath.Base(data), diff)
	}
	for txn, open := range want {
		_, err := n.Keys.Get(keystore.Transaction, txn)
		if open && err != nil {
			t.Errorf("%s: the key of an open transaction: %v", filepath.Base(data), err)
		}
		if !open && !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("%s: the key of a transaction closed after the backup: err = %v, want ErrNotFound", filepath.Base(data), err)
		}
	}
}

// TestBackupWithoutKeyring: with the master key from the environment and no keyring
// named, a backup is refused with unavailable, saying what to give, and the refusal is on
// the access record; the server goes on serving.
func TestBackupWithoutKeyring(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, func(c *node.ServiceConfig) {
		c.MasterKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	})
	before := h.AccessEntries()
	status, body := h.RequestAs(lethetest.Admin, http.MethodPost, "/api/backup", nil)
	if status != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("--backup-keyring")) {
		t.Fatalf("backup without a keyring: %d %s, want 503 naming --backup-keyring", status, body)
	}
	if e := h.LastAccessEntry(); h.AccessEntries() != before+1 || e.Scope != policy.Refused || e.Action != string(policy.MakeBackup) {
		t.Errorf("the refused backup on the access record: %+v", e)
	}
	h.Catalog("W1", 100) // still serving
}

// TestOneBackupAtATime: a backup asked for while another is being made is refused with
// conflict; the first completes.
func TestOneBackupAtATime(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	ctx := testkit.Context(t)
	var second error
	var out bytes.Buffer
	err := h.S.Backup(ctx, func(string) error {
		second = h.S.Backup(ctx, func(string) error { return nil }, io.Discard)
		return nil
	}, &out)
	if err != nil || out.Len() == 0 {
		t.Fatalf("the first backup: %v, %d bytes", err, out.Len())
	}
	if schemas.CodeOf(second) != schemas.CodeConflict {
		t.Errorf("a backup during another: %v, want conflict", second)
	}
}
