package keystore

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testMaster(t *testing.T) MasterKey {
	t.Helper()
	b := make([]byte, MasterKeySize)
	rand.Read(b)
	m, err := newMasterKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask may have narrowed it
		t.Fatal(err)
	}
}

func TestParseMasterEncodings(t *testing.T) {
	t.Parallel()
	raw := make([]byte, MasterKeySize)
	rand.Read(raw)
	want, err := newMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"hex":               hex.EncodeToString(raw),
		"HEX":               strings.ToUpper(hex.EncodeToString(raw)),
		"base64":            base64.StdEncoding.EncodeToString(raw),
		"base64 with space": "  " + base64.StdEncoding.EncodeToString(raw) + "\n",
	} {
		got, err := ParseMaster(text)
		if err != nil {
			t.Errorf("ParseMaster(%s) error: %v", name, err)
			continue
		}
		if got.ID != want.ID || *got.key != *want.key {
			t.Errorf("ParseMaster(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestParseMasterRejectsBadKeys(t *testing.T) {
	t.Parallel()
	short := make([]byte, 31)
	rand.Read(short)
	long := make([]byte, 33)
	rand.Read(long)
	raw := make([]byte, 32)
	rand.Read(raw)
	for name, text := range map[string]string{
		"empty":           "",
		"31 bytes hex":    hex.EncodeToString(short),
		"33 bytes hex":    hex.EncodeToString(long),
		"31 bytes b64":    base64.StdEncoding.EncodeToString(short),
		"33 bytes b64":    base64.StdEncoding.EncodeToString(long),
		"not an encoding": "this is not a key at all!",
		"all zero":        hex.EncodeToString(make([]byte, 32)),
		"unpadded base64": base64.RawStdEncoding.EncodeToString(raw),
	} {
		_, err := ParseMaster(text)
		if err == nil {
			t.Errorf("ParseMaster(%s) = nil error, want error", name)
			continue
		}
		if text != "" && strings.Contains(err.Error(), text) {
			t.Errorf("ParseMaster(%s) error %q quotes the key text", name, err)
		}
	}
}

func TestLoadMasterPrefersEnvironment(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "master.key")
	fileKey, envKey := testMaster(t), testMaster(t)
	writeFile(t, path, base64.StdEncoding.EncodeToString(fileKey.key[:])+"\n", 0o600)

	got, err := LoadMaster(path, hex.EncodeToString(envKey.key[:]))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != envKey.ID {
		t.Errorf("LoadMaster(file, env) ID = %s, want env key %s", got.ID, envKey.ID)
	}
	got, err = LoadMaster(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != fileKey.ID {
		t.Errorf("LoadMaster(file, \"\") ID = %s, want file key %s", got.ID, fileKey.ID)
	}
	if _, err := LoadMaster(path, "bogus"); err == nil {
		t.Error("LoadMaster with a bad environment value = nil error, want error (no fallback to the file)")
	}
	if _, err := LoadMaster("", ""); err == nil {
		t.Error("LoadMaster(\"\", \"\") = nil error, want error")
	}
}

func TestLoadMasterRefusesReadableFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := base64.StdEncoding.EncodeToString(testMaster(t).key[:])
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o601} {
		path := filepath.Join(dir, fmt.Sprintf("key-%o", mode))
		writeFile(t, path, text, mode)
		_, err := LoadMaster(path, "")
		if err == nil || !strings.Contains(err.Error(), "group or others") {
			t.Errorf("LoadMaster(mode %04o) error = %v, want refusal naming group or others", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		path := filepath.Join(dir, fmt.Sprintf("key-%o", mode))
		writeFile(t, path, text, mode)
		if _, err := LoadMaster(path, ""); err != nil {
			t.Errorf("LoadMaster(mode %04o) error = %v, want nil", mode, err)
		}
	}
}

func TestLoadMasterBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "short.key")
	writeFile(t, path, hex.EncodeToString(make([]byte, 16)), 0o600)
	if _, err := LoadMaster(path, ""); err == nil {
		t.Error("LoadMaster(16-byte key) = nil error, want error")
	}
	if _, err := LoadMaster(filepath.Join(dir, "missing"), ""); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadMaster(missing) error = %v, want fs.ErrNotExist", err)
	}
	if _, err := LoadMaster(dir, ""); err == nil {
		t.Error("LoadMaster(directory) = nil error, want error")
	}
}

func TestGenerateMasterFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	m, err := GenerateMasterFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("generated file mode = %04o, want 0600", perm)
	}
	loaded, err := LoadMaster(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID != m.ID || *loaded.key != *m.key {
		t.Errorf("LoadMaster(generated) = %v, want %v", loaded, m)
	}

	before, _ := os.ReadFile(path)
	if _, err := GenerateMasterFile(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("GenerateMasterFile(existing) error = %v, want fs.ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("GenerateMasterFile(existing) changed the file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after generate, want 1 (no temp files)", len(entries))
	}
}

func TestDestroyMasterFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "master.key")
	if _, err := GenerateMasterFile(path); err != nil {
		t.Fatal(err)
	}
	if err := DestroyMasterFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("master file after destroy: Lstat error = %v, want not exist", err)
	}
	if err := DestroyMasterFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DestroyMasterFile(missing) error = %v, want fs.ErrNotExist", err)
	}
}

func TestMasterKeyNeverPrints(t *testing.T) {
	t.Parallel()
	m := testMaster(t)
	secrets := []string{
		hex.EncodeToString(m.key[:]),
		base64.StdEncoding.EncodeToString(m.key[:]),
		string(m.key[:]),
		fmt.Sprint(m.key[:]),
	}
	holder := struct {
		name string
		m    MasterKey
	}{"x", m}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("loaded", "master", m, "holder", holder)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("loaded", "master", m)
	outputs := []string{
		fmt.Sprint(m), fmt.Sprintf("%v %+v %#v %s %x %q", m, m, m, m, m, m),
		fmt.Sprintf("%v %+v %#v", holder, holder, holder),
		fmt.Sprintf("%v %+v", &holder, &holder),
		logs.String(),
	}
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output %q contains the key", out)
			}
		}
	}
	if !strings.Contains(fmt.Sprint(m), m.ID) {
		t.Errorf("fmt.Sprint(master) = %q, want it to name ID %s", fmt.Sprint(m), m.ID)
	}
}
