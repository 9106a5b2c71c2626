package backup

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/imagineif/lethe/keystore"
)

func write(t testing.TB, r age.Recipient, sections map[string][]byte, order []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{ID: "b1", Created: time.Unix(1, 0).UTC(), Streams: map[string]uint64{"CIRC": 3}}, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range order {
		if err := w.Section(name); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(sections[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(data []byte, ident age.Identity) (map[string][]byte, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	if _, err := ReadHeader(br); err != nil {
		return nil, err
	}
	r, err := NewReader(br, ident)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for {
		name, sec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(sec)
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
}

// TestSectionsRoundTrip writes sections, empty, small and larger than a chunk, and reads
// them back; every cut of the file fails to read instead of giving part of it.
func TestSectionsRoundTrip(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789"), MaxChunk/5)
	sections := map[string][]byte{"empty": nil, "small": []byte("hello"), "big": big}
	data := write(t, id.Recipient(), sections, []string{"empty", "small", "big"})
	got, err := readAll(data, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(got["empty"]) != 0 || string(got["small"]) != "hello" || !bytes.Equal(got["big"], big) {
		t.Fatalf("read back %d sections, small %q, big %d bytes", len(got), got["small"], len(got["big"]))
	}
	for _, cut := range []int{len(data) - 1, len(data) - 20, len(data) / 2, 40, 10} {
		if _, err := readAll(data[:cut], id); err == nil {
			t.Errorf("a file cut at %d of %d bytes read without error", cut, len(data))
		}
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := readAll(data, other); err == nil {
		t.Error("another key opened the backup")
	}
}

// TestKeyring: a key opens only with its master key and only until it expires; Prune
// destroys it; Reseal makes it open with the next master key too.
func TestKeyring(t *testing.T) {
	dir := t.TempDir()
	m1, err := keystore.GenerateMasterFile(filepath.Join(dir, "m1"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := keystore.GenerateMasterFile(filepath.Join(dir, "m2"))
	if err != nil {
		t.Fatal(err)
	}
	kr := OpenKeyring(KeyringPath(filepath.Join(dir, "m1")))
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	e, rcpt, err := kr.Add(m1, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	data := write(t, rcpt, map[string][]byte{"s": []byte("x")}, []string{"s"})
	ident, _, err := kr.Identity(m1, e.ID, now.Add(59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(data, ident); err != nil {
		t.Fatalf("the backup does not open with its key: %v", err)
	}
	if _, _, err := kr.Identity(m2, e.ID, now); err == nil || !strings.Contains(err.Error(), m1.ID) {
		t.Errorf("another master key: %v, want a refusal naming %s", err, m1.ID)
	}
	if _, _, err := kr.Identity(m1, e.ID, now.Add(time.Hour)); !errors.Is(err, ErrKeyGone) {
		t.Errorf("at its expiry: %v, want ErrKeyGone", err)
	}
	raw, _ := os.ReadFile(kr.Path())
	if strings.Contains(string(raw), "AGE-SECRET-KEY") {
		t.Error("the keyring holds a key in the clear")
	}

	// Reseal under m2 (a rotation in place): both open it until the old one is gone.
	if err := kr.Reseal(m1, m2, kr.Path()); err != nil {
		t.Fatal(err)
	}
	for _, m := range []keystore.MasterKey{m1, m2} {
		if _, _, err := kr.Identity(m, e.ID, now); err != nil {
			t.Errorf("after a reseal, master key %s: %v", m.ID, err)
		}
	}
	if n, err := kr.Prune(now.Add(30 * time.Minute)); err != nil || n != 0 {
		t.Errorf("prune before the expiry: %d, %v", n, err)
	}
	if n, err := kr.Prune(now.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("prune at the expiry: %d, %v; want 1", n, err)
	}
	if _, _, err := kr.Identity(m1, e.ID, now); !errors.Is(err, ErrKeyGone) {
		t.Errorf("after the prune: %v, want ErrKeyGone", err)
	}
}

// FuzzReadBackup: no header, section or chunk sequence crashes the reader or makes it
// read without end; what it reads of a valid file it reads whole.
func FuzzReadBackup(f *testing.F) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	valid := write(f, id.Recipient(), map[string][]byte{"a": []byte("x"), "b": nil}, []string{"a", "b"})
	f.Add(valid)
	f.Add([]byte("LETHE-BACKUP 1\n{\"id\":\"x\"}\n"))
	f.Add([]byte("LETHE-BACKUP 1\n" + strings.Repeat("{", 5000)))
	f.Add([]byte("not a backup"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = readAll(data, id)
	})
}

// FuzzSections: the framing inside the seal, fed directly. No sequence of bytes crashes
// the reader, and it never returns a section after the end or without it.
func FuzzSections(f *testing.F) {
	f.Add([]byte("\x01a\x01x\x00\x03end\x00"))
	f.Add([]byte("\x01a\xff\xff\xff\xff\x0f"))
	f.Add([]byte("\x40"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newPlainReader(bytes.NewReader(data))
		for i := 0; ; i++ {
			_, sec, err := r.Next()
			if err != nil {
				if errors.Is(err, io.EOF) && !bytes.Contains(data, []byte("end")) {
					t.Fatalf("EOF without an end section in %q", data)
				}
				return
			}
			if _, err := io.Copy(io.Discard, sec); err != nil {
				return
			}
			if i > len(data) {
				t.Fatal("more sections than bytes")
			}
		}
	})
}
