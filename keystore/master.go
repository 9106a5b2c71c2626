package keystore

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// MasterKeySize is the length in bytes of a master key.
const MasterKeySize = 32

// MasterKey is the key that wraps every key in a Store. It never prints or
// logs its key bytes: fmt and slog show only the ID.
type MasterKey struct {
	// ID names the key without revealing it: the hex encoding of the first
	// 8 bytes of SHA-256 of the key. Wrapped values record it.
	ID string
	// key is behind a pointer so that printing a struct that holds a
	// MasterKey by reflection shows an address, not key bytes.
	key *[MasterKeySize]byte
}

func newMasterKey(b []byte) (MasterKey, error) {
	if len(b) != MasterKeySize {
		return MasterKey{}, fmt.Errorf("master key must be %d bytes, got %d", MasterKeySize, len(b))
	}
	var zero [MasterKeySize]byte
	if subtle.ConstantTimeCompare(b, zero[:]) == 1 {
		return MasterKey{}, errors.New("master key is all zero")
	}
	k := new([MasterKeySize]byte)
	copy(k[:], b)
	return MasterKey{ID: hex.EncodeToString(masterID(k)), key: k}, nil
}

func masterID(k *[MasterKeySize]byte) []byte {
	sum := sha256.Sum256(k[:])
	return sum[:8]
}

// valid reports whether m holds a key and its ID matches it.
func (m MasterKey) valid() bool {
	return m.key != nil && m.ID == hex.EncodeToString(masterID(m.key))
}

// String returns "master key <ID>".
func (m MasterKey) String() string { return "master key " + m.ID }

// Format prints the ID whatever the verb, so that no format prints the key.
func (m MasterKey) Format(f fmt.State, _ rune) { io.WriteString(f, m.String()) }

// LogValue implements slog.LogValuer: the key logs as its ID.
func (m MasterKey) LogValue() slog.Value { return slog.StringValue(m.ID) }

// ParseMaster decodes a master key written as 64 hex digits or as standard
// base64 (with padding) of 32 bytes. Surrounding whitespace is ignored.
// Errors never quote the text.
func ParseMaster(text string) (MasterKey, error) {
	text = strings.TrimSpace(text)
	var (
		b   []byte
		err error
	)
	if len(text) == 2*MasterKeySize {
		b, err = hex.DecodeString(text)
	} else {
		b, err = base64.StdEncoding.DecodeString(text)
	}
	if err != nil {
		return MasterKey{}, errors.New("master key is neither hex nor standard base64")
	}
	return newMasterKey(b)
}

// LoadMaster loads the master key from env, the value of an environment
// variable, when it is non-empty, and otherwise from the file at path. Both
// hold the key as ParseMaster accepts it. The file must not be readable,
// writable or executable by group or others.
func LoadMaster(path, env string) (MasterKey, error) {
	if env != "" {
		m, err := ParseMaster(env)
		if err != nil {
			return MasterKey{}, fmt.Errorf("load master key from environment: %w", err)
		}
		return m, nil
	}
	if path == "" {
		return MasterKey{}, errors.New("load master key: neither an environment value nor a file is given")
	}
	m, err := loadMasterFile(path)
	if err != nil {
		return MasterKey{}, fmt.Errorf("load master key: %w", err)
	}
	return m, nil
}

func loadMasterFile(path string) (MasterKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return MasterKey{}, err
	}
	if !fi.Mode().IsRegular() {
		return MasterKey{}, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return MasterKey{}, fmt.Errorf("%s is accessible by group or others (mode %04o); make it 0600", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return MasterKey{}, err
	}
	m, err := ParseMaster(string(data))
	if err != nil {
		return MasterKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// GenerateMasterFile creates a new random master key and writes it, base64
// encoded, to a new file at path with mode 0600. The file appears atomically
// and complete (written to a temporary file, synced, hard-linked into place,
// directory synced). It refuses to replace an existing file: the error then
// wraps fs.ErrExist.
func GenerateMasterFile(path string) (MasterKey, error) {
	m, err := generateMasterFile(path)
	if err != nil {
		return MasterKey{}, fmt.Errorf("generate master key: %w", err)
	}
	return m, nil
}

func generateMasterFile(path string) (MasterKey, error) {
	if _, err := os.Lstat(path); err == nil {
		return MasterKey{}, fmt.Errorf("%s: %w", path, fs.ErrExist)
	}
	var b [MasterKeySize]byte
	rand.Read(b[:])
	m, err := newMasterKey(b[:])
	clear(b[:])
	if err != nil {
		return MasterKey{}, err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".master-*.tmp")
	if err != nil {
		return MasterKey{}, err
	}
	defer os.Remove(tmp.Name())
	text := base64.StdEncoding.EncodeToString(m.key[:]) + "\n"
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return MasterKey{}, err
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return MasterKey{}, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return MasterKey{}, err
	}
	if err := tmp.Close(); err != nil {
		return MasterKey{}, err
	}
	// A hard link, unlike a rename, fails if path already exists.
	if err := os.Link(tmp.Name(), path); err != nil {
		return MasterKey{}, err
	}
	if err := os.Remove(tmp.Name()); err != nil {
		return MasterKey{}, err
	}
	if err := syncDir(dir); err != nil {
		return MasterKey{}, err
	}
	return m, nil
}

// DestroyMasterFile overwrites the master key file at path with zeros,
// syncs it, removes it and syncs its directory. This is best effort at the
// file level: the file system or the disk may keep copies of the old blocks.
// That residue is what master key rotation bounds: keys wrapped under a
// destroyed master key cannot be unwrapped even if the wrapped bytes survive.
func DestroyMasterFile(path string) error {
	if err := destroyMasterFile(path); err != nil {
		return fmt.Errorf("destroy master key file: %w", err)
	}
	return nil
}

func destroyMasterFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(make([]byte, fi.Size())); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}
