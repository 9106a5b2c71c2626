package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
)

// mountTmpfs mounts a tmpfs of size (such as "64m") on a fresh directory, for a test that
// fills a disk without filling the machine's, and unmounts it at cleanup. Without the
// right to mount it skips the test, saying what is missing; CI runs as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("%s needs a file system of its own to fill: `mount -t tmpfs -o size=%s tmpfs DIR` failed (%v: %s); run it as root (CI does)",
			t.Name(), size, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		// A server stopped by an earlier cleanup may close its last files just after.
		testkit.WaitFor(t, "umount "+dir, func() bool { return exec.Command("umount", dir).Run() == nil })
	})
	return dir
}

// freeBytes is what statfs says an ordinary user may still write on dir's file system.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// fillDisk writes a ballast file in dir until its file system has at most leave bytes
// free; with leave 0, until it takes no more (statfs then says 0). It returns the file.
func fillDisk(dir string, leave uint64) (string, error) {
	f, err := os.CreateTemp(dir, "ballast-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		free, err := freeBytes(dir)
		if err != nil {
			return f.Name(), err
		}
		if free <= leave {
			return f.Name(), nil
		}
		n := min(uint64(len(chunk)), free-leave)
		if leave > 0 {
			n &^= 4095 // whole pages, so the file system's count moves by what was written
			if n == 0 {
				return f.Name(), nil
			}
		}
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) && leave == 0 && len(chunk) > 1 {
				chunk = chunk[:len(chunk)/2]
				continue
			}
			if errors.Is(err, syscall.ENOSPC) && leave == 0 {
				return f.Name(), nil
			}
			return f.Name(), err
		}
	}
}

// mustFill fills dir's disk to at most leave bytes free and returns the ballast file.
func mustFill(t *testing.T, dir string, leave uint64) string {
	t.Helper()
	path, err := fillDisk(dir, leave)
	if err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	free, err := freeBytes(dir)
	if err != nil || free > leave {
		t.Fatalf("free after filling = %d (%v), want at most %d", free, err, leave)
	}
	return path
}

// pebbleFullChild is the child process of TestPebbleFatalOnFullDisk: a keystore on a
// disk that fills up, creating keys until Pebble cannot write its WAL.
func pebbleFullChild(dir string) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	master, err := keystore.ParseMaster(strings.Repeat("5a", keystore.MasterKeySize))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	keys, err := keystore.Open(filepath.Join(dir, "keystore"), master, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	if _, err := fillDisk(dir, 0); err != nil {
		fmt.Fprintln(os.Stderr, "child: fill:", err)
		os.Exit(1)
	}
	for i := range 100_000 {
		if _, err := keys.Create(keystore.Transaction, "txn-"+strconv.Itoa(i)); err != nil {
			fmt.Fprintln(os.Stderr, "child: create returned an error instead:", err)
			os.Exit(1)
		}
	}
	fmt.Fprintln(os.Stderr, "child: 100000 keys created on a full disk")
}

// TestPebbleFatalOnFullDisk measures what Pebble does when the disk fills under a commit,
// with Lethe's logger: the process exits with keystore.ExitPebbleFatal, naming the file
// and "no space left on device", and does not panic. It is why the ledger stops taking
// work before the disk is full.
func TestPebbleFatalOnFullDisk(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "16m")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=pebble-full", "LETHE_FULL_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != keystore.ExitPebbleFatal {
		t.Fatalf("child exit = %v, want exit code %d\n%s", err, keystore.ExitPebbleFatal, out)
	}
	for _, want := range []string{"pebble: fatal commit error: write ", filepath.Join(dir, "keystore"), "no space left on device"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "panic") {
		t.Errorf("output has a panic:\n%s", out)
	}
}

// TestStartOnFullDisk starts lethe serve on a disk with less free than --min-free-disk:
// the start is refused with the free space, the minimum and the flag, and it does not
// hang (Pebble retries a flush forever when it opens a database with a log to replay on a
// full disk) or stop the process.
func TestStartOnFullDisk(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfs(t, "64m")
	key := masterKeyFile(t)

	// A library that ran once, so there are logs to replay, on a disk filled to the brim.
	used := filepath.Join(mnt, "used")
	h := lethetest.New(t, func(c *node.ServiceConfig) { c.Data, c.MasterKeyFile, c.MinFreeDisk = used, key, 8<<20 })
	h.Catalog("FULL1", 1000)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	ballast := mustFill(t, mnt, 0)
	out, err := runServe(t, []string{"--data", used, "--master-key-file", key, "--min-free-disk", "8MiB"}, nil)
	wantErr(t, err, out, "the disk holding the data directory "+used+" has 0 MiB free", "less than the minimum of 8 MiB", "--min-free-disk")

	// A fresh data directory with a little room, but less than asked for.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	mustFill(t, mnt, 4<<20)
	fresh := filepath.Join(mnt, "fresh")
	out, err = runServe(t, []string{"--data", fresh, "--master-key-file", key, "--min-free-disk", "16MiB"}, nil)
	wantErr(t, err, out, "the disk holding the data directory "+fresh+" has ", "MiB free, less than the minimum of 16 MiB", "--min-free-disk, LETHE_MIN_FREE_DISK")
	if _, err := os.Stat(filepath.Join(fresh, "keystore")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("keystore after a refused start: %v, want none", err)
	}
}

// TestDiskFull fills the data directory's disk under a running Lethe. Below the minimum
// free, kiosk and desk commands and disclosures are refused with unavailable naming the
// disk; nothing is appended and no key is made; a retry of an applied command is still
// answered; the log says so once; the expunger goes on destroying keys and the erasure
// sweep runs. When space returns the same commands succeed, with no restart, and a
// rebuild from the stream equals the projections. The same holds with the disk filled to
// the last byte.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfs(t, "64m")
	key := masterKeyFile(t)
	data := filepath.Join(mnt, "data")
	const minFree = 16 << 20
	h := lethetest.New(t, func(c *node.ServiceConfig) {
		c.Data, c.MasterKeyFile, c.MinFreeDisk = data, key, minFree
		c.NoExpungeLoop = true // a closed loan waits, so the test can expunge it on a full disk
	})
	for _, b := range []string{"DF1", "DF2", "DF3", "DF4"} {
		h.Catalog(b, 1000)
	}
	const card = "21000000000700"
	h.Register(card, "Dee Full", "1980-01-01")
	h.MustCheckout(card, "DF1")
	applied := schemas.CheckOut{CommandID: lethetest.CmdID(), Card: card, Barcode: "DF2"}
	if r := h.Kiosk("k1", schemas.CmdCheckOut, applied); !r.OK {
		t.Fatalf("checkout of DF2 = %+v", r.Error)
	}
	h.Checkin("DF1") // closed; its key waits for the expunger

	ballast := mustFill(t, mnt, minFree/2)
	seq, keys := h.StreamLast(), h.S.Keys.Stats().Transactions
	checkout := schemas.CheckOut{CommandID: lethetest.CmdID(), Card: card, Barcode: "DF3"}
	catalog := schemas.CatalogItem{CommandID: lethetest.CmdID(), ItemCataloged: schemas.ItemCataloged{
		Barcode: "DF5", Title: "Title DF5", Collection: "fiction", Branch: "main", ReplacementCents: 1000}}
	diskCause := "the disk holding the data directory has "
	resume := "MiB free; writes resume above 16 MiB"
	for range 3 {
		r := h.Kiosk("k1", schemas.CmdCheckOut, checkout)
		wantRefusal(t, "kiosk checkout", r, diskCause, resume)
		wantRefusal(t, "kiosk patron_info", h.Kiosk("k1", schemas.CmdPatronInfo, schemas.PatronInfo{Card: card}), diskCause, resume)
		status, body := h.Desk(schemas.CmdCatalogItem, catalog)
		wantDeskRefusal(t, status, body, diskCause, resume)
	}
	// A retry of a command applied before the disk filled writes nothing: it is answered.
	if r := h.Kiosk("k1", schemas.CmdCheckOut, applied); !r.OK {
		t.Errorf("retry of an applied checkout on a nearly full disk = %+v, want its answer", r.Error)
	}
	if got := h.StreamLast(); got != seq {
		t.Errorf("stream last sequence = %d after refused commands, want %d", got, seq)
	}
	if got := h.S.Keys.Stats().Transactions; got != keys {
		t.Errorf("transaction keys = %d after refused commands, want %d", got, keys)
	}
	logs := h.Logs.String()
	if n := strings.Count(logs, "the disk holding the data directory is nearly full"); n != 1 {
		t.Errorf("log lines naming the full disk = %d, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "min_free_mib=16") {
		t.Errorf("log does not name the minimum:\n%s", logs)
	}

	// The expunger is not refused: destroying keys frees space and keeps the promise.
	n, err := h.S.Expunger.ExpungeNow(testkit.Context(t))
	if err != nil || n != 1 {
		t.Fatalf("ExpungeNow on a nearly full disk = %d, %v; want 1, nil", n, err)
	}
	if got := h.S.Keys.Stats().Transactions; got != keys-1 {
		t.Errorf("transaction keys after expunging = %d, want %d", got, keys-1)
	}
	if got := h.StreamLast(); got != seq+1 {
		t.Errorf("stream last sequence after expunging = %d, want %d (one expunged record)", got, seq+1)
	}
	if err := h.S.Expunger.Sweep(testkit.Context(t)); err != nil {
		t.Errorf("erasure sweep on a nearly full disk: %v", err)
	}

	// Space returns: the very same commands go through, without a restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if r := h.Kiosk("k1", schemas.CmdCheckOut, checkout); !r.OK {
		t.Fatalf("checkout after space returned = %+v, want ok", r.Error)
	}
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdCatalogItem, catalog)
	if !strings.Contains(h.Logs.String(), "the disk holding the data directory has room again") {
		t.Errorf("log does not say the disk has room again:\n%s", h.Logs)
	}

	// The disk filled to the last byte: refused, not stopped; then back.
	ballast = mustFill(t, mnt, 0)
	seq = h.StreamLast()
	full := schemas.CheckOut{CommandID: lethetest.CmdID(), Card: card, Barcode: "DF4"}
	wantRefusal(t, "kiosk checkout on a full disk", h.Kiosk("k1", schemas.CmdCheckOut, full), diskCause+"0 MiB free", resume)
	status, body := h.Desk(schemas.CmdRegisterPatron, schemas.RegisterPatron{CommandID: lethetest.CmdID(), HomeBranch: "main",
		Profile: schemas.Profile{Name: "Ann Other", BirthDate: "1990-02-03"}})
	wantDeskRefusal(t, status, body, diskCause+"0 MiB free", resume)
	if got := h.StreamLast(); got != seq {
		t.Errorf("stream last sequence = %d after refused commands on a full disk, want %d", got, seq)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if r := h.Kiosk("k1", schemas.CmdCheckOut, full); !r.OK {
		t.Fatalf("checkout after the full disk emptied = %+v, want ok", r.Error)
	}
	if logs := h.Logs.String(); strings.Contains(logs, "panic") || strings.Contains(logs, "pebble fatal") {
		t.Errorf("log has a panic or a Pebble fatal error:\n%s", logs)
	}

	if err := h.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	var out, errOut strings.Builder
	err = run(context.Background(), []string{"projections", "rebuild", "--data", data, "--master-key-file", key, "--timezone", "UTC"},
		func(string) string { return "" }, nil, &out, &errOut)
	if err != nil || !strings.Contains(out.String(), "equal to the live projections") {
		t.Fatalf("projections rebuild = %v, %q (%s), want equal", err, out.String(), errOut.String())
	}
}

// wantRefusal checks a kiosk reply is unavailable with a message holding every want.
func wantRefusal(t *testing.T, what string, r schemas.Reply, want ...string) {
	t.Helper()
	if r.OK || r.Error == nil || r.Error.Code != schemas.CodeUnavailable {
		t.Fatalf("%s = %+v (error %+v), want unavailable", what, r, r.Error)
	}
	for _, w := range want {
		if !strings.Contains(r.Error.Message, w) {
			t.Errorf("%s message = %q, want it to say %q", what, r.Error.Message, w)
		}
	}
}

// wantDeskRefusal checks a desk reply is 503 unavailable with a message holding every want.
func wantDeskRefusal(t *testing.T, status int, body []byte, want ...string) {
	t.Helper()
	var e struct {
		Error schemas.Error `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || status != http.StatusServiceUnavailable || e.Error.Code != schemas.CodeUnavailable {
		t.Fatalf("desk reply = %d %s, want %d unavailable", status, body, http.StatusServiceUnavailable)
	}
	for _, w := range want {
		if !strings.Contains(e.Error.Message, w) {
			t.Errorf("desk message = %q, want it to say %q", e.Error.Message, w)
		}
	}
}

// TestMinFreeDiskFlag checks the sizes --min-free-disk takes, and that a number without
// a unit is refused rather than guessed at.
func TestMinFreeDiskFlag(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{"0": 0, "256MiB": 256 << 20, "2GiB": 2 << 30, "512KiB": 512 << 10,
		"1TiB": 1 << 40, "4096B": 4096, " 64MiB ": 64 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "256", "256MB", "1.5GiB", "-1MiB", "MiB", "99999999999TiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
	out, err := runServe(t, []string{"--data", t.TempDir(), "--min-free-disk", "256"}, nil)
	if exitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), "--min-free-disk: not a size") {
		t.Errorf("serve --min-free-disk 256 = %v (exit %d), want a usage error naming the flag\n%s", err, exitCode(err), out)
	}
}
