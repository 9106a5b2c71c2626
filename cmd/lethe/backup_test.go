package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/backup"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
)

// TestBackupAndRestoreCommands: `lethe backup DIR` writes a whole file under the server's
// name for it; the master key is rotated (the keyring is re-sealed under the new key);
// `lethe restore` makes a new data directory with the rotated key, refuses a directory
// in use, and exits 3 once the backup's key is destroyed.
func TestBackupAndRestoreCommands(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t)
	h.Register("21000000000711", "Cy Command", "1979-07-07")
	h.Catalog("C1", 100)
	h.MustCheckout("21000000000711", "C1")
	env := map[string]string{"LETHE_USER": lethetest.Admin, "LETHE_PASSWORD": lethetest.Password}
	getenv := func(k string) string { return env[k] }
	dir := t.TempDir()
	var out, errOut testkit.SyncBuffer
	if err := run(context.Background(), []string{"backup", "--server", h.S.HTTPURL, dir}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("lethe backup: %v\n%s", err, errOut.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || !strings.HasPrefix(filepath.Base(files[0]), "lethe-") || !strings.HasSuffix(files[0], ".backup") {
		t.Fatalf("backup directory holds %v, want one lethe-*.backup (and no temporary file)", files)
	}
	if !strings.Contains(out.String(), files[0]) || !strings.Contains(out.String(), "restorable until") {
		t.Errorf("lethe backup printed %q", out.String())
	}
	if err := run(context.Background(), []string{"backup", "--server", h.S.HTTPURL, filepath.Join(dir, "missing")}, getenv, nil, &out, &errOut); exitCode(err) != 2 {
		t.Errorf("backup into a directory that does not exist: %v, want exit 2", err)
	}
	data := h.Cfg.Data
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	master := filepath.Join(data, "master.key")
	if err := run(context.Background(), []string{"keys", "rotate", "--data", data}, getenv, nil, &testkit.SyncBuffer{}, &errOut); err != nil {
		t.Fatalf("keys rotate: %v\n%s", err, errOut.String())
	}

	restored := filepath.Join(t.TempDir(), "restored")
	out = testkit.SyncBuffer{}
	args := []string{"restore", "--data", restored, "--master-key-file", master, files[0]}
	if err := run(context.Background(), args, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("lethe restore with the rotated master key: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "1 open transactions") || !strings.Contains(out.String(), "lethe serve --data "+restored) {
		t.Errorf("lethe restore printed %q", out.String())
	}
	if err := run(context.Background(), args, getenv, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into the restored directory again: %v", err)
	}
	// The key's retention ends: exit 3, and nothing made.
	if n, err := backup.OpenKeyring(backup.KeyringPath(master)).Prune(time.Now().Add(backup.DefaultRetention + time.Minute)); err != nil || n != 1 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	gone := filepath.Join(t.TempDir(), "gone")
	err := run(context.Background(), []string{"restore", "--data", gone, "--master-key-file", master, files[0]}, getenv, nil, &out, &errOut)
	if exitCode(err) != 3 || !strings.Contains(err.Error(), "gone") {
		t.Errorf("restore after the retention: %v (exit %d), want exit 3", err, exitCode(err))
	}
	if _, err := os.Stat(gone); err == nil {
		t.Error("a refused restore made its directory")
	}
}
