package bench

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseFlushes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, text string
		want       uint64
		noField    bool // errNoFlushField
		fails      bool
	}{
		// A virtio disk on Linux 6.18: 17 fields, flushes 16th.
		{name: "17 fields", text: "   40976     7450  1656330    15417     8251    24166  2771168    14437        0     9820    32141     3934        0   681128     1347     1053      938\n", want: 1053},
		{name: "more fields later", text: "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", want: 16},
		{name: "no flush time", text: "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 99", want: 99},
		{name: "Linux 4.18 to 5.4: discards, no flushes", text: "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", noField: true, fails: true},
		{name: "before 4.18", text: "  40976 7450 1656330 15417 8251 24166 2771168 14437 0 9820 32141", noField: true, fails: true},
		{name: "empty", text: "\n", fails: true},
		{name: "not a number", text: "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x 17", fails: true},
		{name: "negative", text: "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 -1 17", fails: true},
	} {
		got, err := parseFlushes(tc.text)
		if (err != nil) != tc.fails || errors.Is(err, errNoFlushField) != tc.noField {
			t.Errorf("%s: parseFlushes(%q) = %d, %v", tc.name, tc.text, got, err)
		} else if !tc.fails && got != tc.want {
			t.Errorf("%s: parseFlushes(%q) = %d, want %d", tc.name, tc.text, got, tc.want)
		}
	}
}

// TestDiskStat resolves device numbers in a tree laid out as /sys is: relative links
// under dev/block to the devices, a partition a directory of its disk's with a
// "partition" file.
func TestDiskStat(t *testing.T) {
	t.Parallel()
	sys := t.TempDir()
	disk := filepath.Join(sys, "devices", "pci0000:00", "virtio1", "block", "vda")
	part := filepath.Join(disk, "vda1")
	for _, dir := range []string{part, filepath.Join(sys, "dev", "block"), filepath.Join(sys, "devices", "virtual", "block", "loop0")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{
		filepath.Join(disk, "stat"):      "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 700 17\n",
		filepath.Join(part, "stat"):      "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 0 0\n",
		filepath.Join(part, "partition"): "1\n",
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"254:0": "../../devices/pci0000:00/virtio1/block/vda",
		"254:1": "../../devices/pci0000:00/virtio1/block/vda/vda1",
		"7:0":   "../../devices/virtual/block/loop0", // no stat file
	} {
		if err := os.Symlink(target, filepath.Join(sys, "dev", "block", link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		major, minor uint32
		want         string // the disk's name; "" when it fails with fs.ErrNotExist
	}{
		{254, 0, "vda"},
		{254, 1, "vda"}, // the partition's parent, not vda1 nor dev/
		{7, 0, ""},
		{0, 42, ""}, // tmpfs, overlay: no block device
	} {
		path, name, err := diskStat(sys, tc.major, tc.minor)
		if tc.want == "" {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("diskStat(%d:%d) = %q, %q, %v; want not found", tc.major, tc.minor, path, name, err)
			}
			continue
		}
		if err != nil || name != tc.want || path != filepath.Join(disk, "stat") {
			t.Errorf("diskStat(%d:%d) = %q, %q, %v; want %s's stat", tc.major, tc.minor, path, name, err, tc.want)
			continue
		}
		d := diskFlushes{stat: path, disk: name}
		if n, err := d.read(); n != 700 || err != nil {
			t.Errorf("read %s = %d, %v; want 700", path, n, err)
		}
	}
}

// TestDiskFlushesHere reads the flush count of the disk under a temporary directory, if
// it has one, around synced writes to a file there: on a disk with a write-back cache each
// fsync makes at least one flush (ext4: one or two). Other processes writing to the disk
// add theirs, so only the lower bound is checked.
func TestDiskFlushesHere(t *testing.T) {
	dir := t.TempDir()
	d := openDiskFlushes(dir)
	if d.stat == "" {
		if d.reason == "" {
			t.Fatal("no disk and no reason")
		}
		t.Skipf("not counted: %s", d.reason)
	}
	const n = 40
	f, err := os.Create(filepath.Join(dir, "synced"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	osync, err := os.OpenFile(filepath.Join(dir, "osync"), os.O_CREATE|os.O_WRONLY|os.O_SYNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer osync.Close()
	page := make([]byte, 4096)
	for _, exp := range []struct {
		name  string
		write func() error
	}{
		{"appended, fsync", func() error {
			if _, err := f.Write(page); err != nil {
				return err
			}
			return f.Sync()
		}},
		{"overwritten in place, fsync", func() error {
			if _, err := f.WriteAt(page, 0); err != nil {
				return err
			}
			return f.Sync()
		}},
		// As JetStream writes with fsync before every acknowledgement: O_SYNC.
		{"appended, O_SYNC", func() error {
			_, err := osync.Write(page)
			return err
		}},
	} {
		c, err := d.during(func() error {
			for range n {
				if err := exp.write(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.why != "" {
			t.Fatalf("not counted: %s", c.why)
		}
		t.Logf("%s: %d synced writes of %s, %d flushes of %s (%.2f each)", runtime.GOOS, n, exp.name, c.n, d.disk, float64(c.n)/n)
		cache, _ := os.ReadFile(filepath.Join(filepath.Dir(d.stat), "queue", "write_cache"))
		if strings.TrimSpace(string(cache)) == "write back" && c.n < n {
			t.Errorf("%s: %d synced writes made %d flushes of %s, whose cache is write back", exp.name, n, c.n, d.disk)
		}
	}
}

func TestFlushRows(t *testing.T) {
	t.Parallel()
	b := &bencher{flushes: diskFlushes{stat: "/sys/devices/x/block/vda/stat", disk: "vda"}}
	rows := b.flushRows("ingest, 8 kiosks", flushCount{n: 400}, flushCount{n: 900}, 200, 100, 360)
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	got := [][]string{rows[0].cells(), rows[1].cells()}
	want := [][]string{
		{"ingest, 8 kiosks", "disk flushes per round trip (raw: per 4 publishes; vda, device-wide)", "8.00", "9.00", "1.12", "", ""},
		{"ingest, 8 kiosks", "disk flushes per event (vda, device-wide)", "2.00", "2.50", "1.25", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}

	b = &bencher{flushes: diskFlushes{reason: "/tmp/x is on tmpfs (device 0:42), which has no block device"}}
	rows = b.flushRows("fixed 500 events/s", flushCount{why: b.flushes.reason}, flushCount{why: b.flushes.reason}, 1500, 375, 1500)
	if c := rows[0].cells(); c[2] != "not counted" || c[3] != "not counted: /tmp/x is on tmpfs (device 0:42), which has no block device" || c[4] != "—" {
		t.Errorf("not counted: %q", c)
	}
	raw, err := json.Marshal(rows[1])
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"section": "fixed 500 events/s", "name": "disk flushes per event", "unit": "flushes",
		"raw": nil, "lethe": nil, "ratio": nil, "not_counted": b.flushes.reason}, j); diff != "" {
		t.Errorf("JSON of a row not counted (-want +got):\n%s", diff)
	}
	// A row counted keeps its figures in JSON.
	raw, _ = json.Marshal(newRow("s", "n", "flushes", ptr(2.0), 2.5))
	if string(raw) != `{"section":"s","name":"n","unit":"flushes","raw":2,"lethe":2.5,"ratio":1.25}` {
		t.Errorf("JSON of a row counted: %s", raw)
	}
}
