package keystore

import (
	"crypto/hkdf"
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
// Derive returns a key for one purpose outside the keystore, derived from the master key
// with HKDF-SHA256 under label: a cluster's node seals its KEKs and its identity under
// one, so that the master key's bytes never leave this package and each use has a key
// of its own.
func (m MasterKey) Derive(label string) ([MasterKeySize]byte, error) {
	var out [MasterKeySize]byte
	if !m.valid() {
		return out, errors.New("derive from an invalid master key")
	}
	k, err := hkdf.Key(sha256.New, m.key[:], nil, "lethe "+label, MasterKeySize)
	if err != nil {
		return out, err
	}
	copy(out[:], k)
	clear(k)
	return out, nil
}

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
// and complete (written to <path>.tmp, synced, hard-linked into place,
// directory synced); a <path>.tmp that a crash left behind is cleared first.
// It refuses to replace an existing file: the error then wraps fs.ErrExist.
func GenerateMasterFile(path string) (MasterKey, error) {
	m := randomMaster()
	if err := writeMasterFile(path, m, noStep); err != nil {
		return MasterKey{}, fmt.Errorf("generate master key: %w", err)
	}
	return m, nil
}

// randomMaster returns a fresh random master key.
func randomMaster() MasterKey {
	var b [MasterKeySize]byte
	for {
		rand.Read(b[:])
		m, err := newMasterKey(b[:])
		if err == nil {
			clear(b[:])
			return m
		}
		// All zero: once in 2^256 draws.
	}
}

// writeMasterFile writes m to a new file at path: to path+tempSuffix first, then a hard
// link, which unlike a rename fails if path exists. step is called once the temporary
// file is complete (StepNewKeyTemp); its error stops the write there, as a crash would.
func writeMasterFile(path string, m MasterKey, step func(Step) error) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w", path, fs.ErrExist)
	}
	dir := filepath.Dir(path)
	tmp := path + tempSuffix
	if err := clearTemp(tmp, path); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	text := base64.StdEncoding.EncodeToString(m.key[:]) + "\n"
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp) // the key in it never wrapped anything
		return err
	}
	if err := step(StepNewKeyTemp); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Remove(tmp); err != nil {
		return err
	}
	return syncDir(dir)
}

// clearTemp removes a temporary key file that a crash left behind. If it is a second
// link of target (the crash came between the link and the removal), only the link goes;
// otherwise the key in it was never linked anywhere, so never used, and it is destroyed.
func clearTemp(tmp, target string) error {
	ti, err := os.Lstat(tmp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(target); err == nil && os.SameFile(ti, fi) {
		if err := os.Remove(tmp); err != nil {
			return err
		}
		return syncDir(filepath.Dir(tmp))
	}
	return destroyMasterFile(tmp)
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
	if err := zeroFile(path); err != nil {
		return err
	}
	return removeSynced(path)
}

// zeroFile overwrites the file at path with zeros, in place, and syncs it.
func zeroFile(path string) error {
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
	return f.Close()
}

// removeSynced removes path and syncs its directory, so that the removal survives a crash.
func removeSynced(path string) error {
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
