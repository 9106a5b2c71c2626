package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imagineif/lethe/backup"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// backupFlags declares the backup keyring's flags, shared by serve, demo and restore.
func backupFlags(f flags) (keyring, retention *string) {
	keyring = f.str("backup-keyring", "", "the backup keyring's file; default <master-key-file>.backups, beside the master key")
	retention = f.str("backup-retention", backup.DefaultRetention.String(), "how long a backup can be restored: its key is destroyed after this")
	return keyring, retention
}

// cmdBackup asks a running server for a backup (POST /api/backup, administrators) and
// writes it into a directory, under the name the server gives it, through a temporary
// file that is synced and renamed: a file named lethe-*.backup is always whole.
func cmdBackup(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("backup", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return &exitError{2, errors.New("usage: lethe backup [flags] DIR")}
	}
	dir := f.Arg(0)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return &exitError{2, fmt.Errorf("%s is not a directory", dir)}
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".lethe-backup-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	name, n, err := c.download(ctx, "/api/backup", tmp)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// A transfer cut short is an error of the copy above (the server cuts the connection
	// when a backup fails while sending); the header is checked before the file gets its
	// name. The sealed content is checked by restore, which has the key.
	h, err := checkBackupFile(tmp.Name())
	if err != nil {
		return fmt.Errorf("backup: the file received is not whole: %w", err)
	}
	if name == "" || filepath.Base(name) != name || !strings.HasSuffix(name, ".backup") {
		name = "lethe-" + h.ID + ".backup"
	}
	target := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	fmt.Fprintf(stdout, "wrote %s (%s bytes): %d keys, ledger to event %d; restorable until %s, when its key is destroyed\n",
		target, count(int(n)), h.Keys, h.Streams["CIRC"], h.Expires.Local().Format(time.RFC1123))
	return nil
}

// checkBackupFile reads the header of a backup file: enough to show it is one.
func checkBackupFile(path string) (backup.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return backup.Header{}, err
	}
	defer f.Close()
	return backup.ReadHeader(bufio.NewReader(f))
}

// download makes one POST request and copies a 200 answer's body to w, returning the
// file name the server suggests and the bytes copied; any other answer is the coded
// error.
func (c *client) download(ctx context.Context, path string, w io.Writer) (string, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, nil)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(staff.ClientHeader, "cli")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("reach lethe at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error schemas.Error `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error.Code != "" {
			return "", 0, &e.Error
		}
		return "", 0, fmt.Errorf("lethe answered %s", resp.Status)
	}
	name := ""
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
		name = params["filename"]
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return "", n, fmt.Errorf("the server stopped sending after %d bytes: %w", n, err)
	}
	return name, n, nil
}

// cmdRestore makes a new data directory from a backup file.
func cmdRestore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("restore", getenv, stderr)
	data := f.str("data", "", "the new data directory: must not exist, or be empty")
	masterFile := f.str("master-key-file", "", "the master key file that seals the backup keyring (or LETHE_MASTER_KEY)")
	keyring, _ := backupFlags(f)
	streamFrom := f.str("stream-from", "", "an old data directory whose nats/ survived: take its streams, which extend the backup's, instead of the backup's")
	level := f.str("log-level", "warn", "debug, info, warn or error")
	tz := f.str("timezone", "Local", "the library's time zone (as given to serve)")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return &exitError{2, errors.New("usage: lethe restore --data NEW [flags] FILE")}
	}
	if *data == "" {
		return &exitError{2, errors.New("--data is required: the new data directory")}
	}
	logger, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fmt.Errorf("--timezone: %w", err)
	}
	res, err := node.Restore(ctx, node.RestoreConfig{
		Config: node.Config{Data: *data, MasterKeyFile: *masterFile, MasterKey: getenv("LETHE_MASTER_KEY"),
			BackupKeyring: *keyring, Location: loc, Logger: logger},
		File: f.Arg(0), StreamFrom: *streamFrom,
	})
	if errors.Is(err, backup.ErrKeyGone) {
		return &exitError{3, err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored backup %s (made %s) into %s: ledger to event %d, access record to entry %d, %d open transactions\n",
		res.Header.ID, res.Header.Created.Local().Format(time.RFC1123), *data, res.Streams["CIRC"], res.Streams["ACCESS"], res.Open)
	fmt.Fprintf(stdout, "%d of the backup's %d keys belonged to transactions or accounts the stream says closed: destroyed again and swept\n",
		max(res.Destroyed, 0), res.Keys)
	fmt.Fprintf(stdout, "start it with: lethe serve --data %s\n", *data)
	return nil
}
