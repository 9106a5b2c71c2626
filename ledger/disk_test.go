package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// bigEvents returns n events on subject of about 50 KiB each.
func bigEvents(subject string, n int) []schemas.Event {
	evs := testEvents(subject, n)
	for i := range evs {
		evs[i].Data = []byte(`{"pad":"` + strings.Repeat("x", 50<<10) + `"}`)
	}
	return evs
}

// TestAppendWhenJetStreamIsOutOfStorage fills JetStream to its own storage limit, where
// it answers err_code 10023 ("insufficient resources"). A single message and an atomic
// batch are then refused as unavailable (errStoreFull), never internal.
func TestAppendWhenJetStreamIsOutOfStorage(t *testing.T) {
	t.Parallel()
	app, _ := testStreamWith(t, func(o *server.Options) { o.JetStreamMaxStore = 1 << 20 })
	ctx := context.Background()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = app.append(ctx, uuid.NewString(), Expect{}, bigEvents("circ.item.FULL", 1))
	}
	if !errors.Is(err, errStoreFull) || schemas.CodeOf(err) != schemas.CodeUnavailable || !strings.Contains(err.Error(), "err_code 10023") {
		t.Fatalf("append beyond JetStream's storage limit = %v, want %v with err_code 10023", err, errStoreFull)
	}
	_, err = app.append(ctx, uuid.NewString(), Expect{}, testEvents("circ.item.FULL", 2))
	if !errors.Is(err, errStoreFull) || schemas.CodeOf(err) != schemas.CodeUnavailable {
		t.Fatalf("a command of two events beyond JetStream's storage limit = %v, want %v", err, errStoreFull)
	}
	// Two commands committed together, in one atomic batch: refused whole, then each on
	// its own, and each refused as out of storage.
	group := unit{mustReq(t, uuid.NewString(), Expect{}, testEvents("circ.item.FULL2", 2)), mustReq(t, uuid.NewString(), Expect{}, testEvents("circ.item.FULL3", 1))}
	app.commit([]unit{group})
	for _, r := range group {
		if res := <-r.done; !errors.Is(res.err, errStoreFull) {
			t.Fatalf("a group commit beyond JetStream's storage limit = %v, want %v", res.err, errStoreFull)
		}
	}
}

// TestAppendOnAFullDisk appends to a stream whose disk is full, measuring what JetStream
// answers: an atomic batch (two commands committed together) is refused with err_code
// 10176 ("atomic publish batch is incomplete", its staging store could not be written),
// a single message is not answered at all, and the stream goes on failing after space
// returns (until the server restarts). Each must reach the caller as unavailable, and a
// ledger whose disk guard sees the full disk names it.
func TestAppendOnAFullDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("TestAppendOnAFullDisk needs a file system of its own to fill: `mount -t tmpfs` failed (%v: %s); run it as root (CI does)",
			err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { unmount(t, dir) })
	app, _ := testStreamWith(t, func(o *server.Options) { o.StoreDir = filepath.Join(dir, "nats") })
	app.timeout = time.Second // a write that failed is never answered
	ctx := context.Background()
	if _, err := app.append(ctx, uuid.NewString(), Expect{}, testEvents("circ.item.A", 1)); err != nil {
		t.Fatalf("append before the disk filled: %v", err)
	}
	ballast := filepath.Join(dir, "ballast")
	fill(t, ballast)

	inbox := nats.NewInbox()
	sub, err := app.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	group := unit{mustReq(t, uuid.NewString(), Expect{}, testEvents("circ.item.A", 2)), mustReq(t, uuid.NewString(), Expect{}, testEvents("circ.item.B", 1))}
	if err := app.send(group.msgs(), inbox); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ack pubAck
	if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Error == nil || ack.Error.ErrCode != 10176 {
		t.Fatalf("atomic batch on a full disk = %s, want refused with err_code 10176", m.Data)
	}
	// The group commit then commits each command on its own, as single messages: the last
	// page of the stream's block may still take one, and then no write is answered.
	app.commit([]unit{group})
	for _, r := range group {
		if res := <-r.done; res.err != nil && schemas.CodeOf(res.err) != schemas.CodeUnavailable {
			t.Fatalf("a group commit on a full disk = %v, want stored or unavailable", res.err)
		}
	}
	// The last page of the stream's block may hold a few more messages before a write fails.
	var single error
	for i := 0; i < 100 && single == nil; i++ {
		_, single = app.append(ctx, uuid.NewString(), Expect{}, testEvents("circ.item.A", 1))
	}
	if single == nil || schemas.CodeOf(single) != schemas.CodeUnavailable {
		t.Fatalf("single append on a full disk = %v, want unavailable", single)
	}

	guard := &Ledger{disk: &diskGuard{free: func() (uint64, error) { return statfsFree(dir) }, min: 1 << 20,
		logger: slog.New(slog.DiscardHandler)}}
	named := guard.appendFailed(schemas.CmdCheckOut, single)
	if schemas.CodeOf(named) != schemas.CodeUnavailable ||
		schemas.Public(named).Message != "the disk holding the data directory has 0 MiB free; writes resume above 1 MiB" {
		t.Fatalf("append failure with the disk full = %v, want unavailable naming the disk", named)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	// JetStream keeps the failed write and fails every later one until it restarts. If a
	// version stops doing that, README's "When the disk fills" must say so.
	if _, err := app.append(ctx, uuid.NewString(), Expect{}, testEvents("circ.item.A", 1)); err == nil {
		t.Errorf("append after space returned = nil, want the stream still failing until a restart (JetStream changed: update README)")
	} else if schemas.CodeOf(err) != schemas.CodeUnavailable {
		t.Errorf("append after space returned = %v, want unavailable", err)
	}
}

// unmount detaches dir lazily: JetStream (v2.15.2) keeps the staging file of an atomic
// batch it abandoned on a write error open until the process exits, so the mount stays
// busy after the server shut down.
func unmount(t *testing.T, dir string) {
	if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
		t.Errorf("umount -l %s: %v: %s", dir, err, out)
	}
}

// fill writes path until the disk takes no more.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for chunk := make([]byte, 1<<20); len(chunk) > 0; {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			chunk = chunk[:len(chunk)/2]
		}
	}
	if free, err := statfsFree(filepath.Dir(path)); err != nil || free != 0 {
		t.Fatalf("free after filling = %d, %v; want 0", free, err)
	}
}

func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
