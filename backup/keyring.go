package backup

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/imagineif/lethe/internal/atomicfile"
	"github.com/imagineif/lethe/keystore"
)

// The backup keyring holds one age identity per backup, each sealed under the master key
// (a key derived from it: keystore.SealWithMaster), and the time after which it is
// destroyed. It lives beside the master key file, not in the data directory: a backup is
// for the day the data directory is lost, and a key kept in it would be lost with it.
// Destroying an entry makes its backup unreadable for good: that is the retention rule.
//
// The file is JSON, mode 0600, replaced atomically (a synced temporary file renamed over
// it). It names no patron and holds no key in the clear.

// sealPurpose is the HKDF purpose of the key that seals keyring entries.
const sealPurpose = "backup keyring"

// DefaultRetention is how long a backup can be restored when --backup-retention is not
// given: a week of nightly backups.
const DefaultRetention = 7 * 24 * time.Hour

// KeyringPath is the keyring beside a master key file.
func KeyringPath(masterKeyFile string) string { return masterKeyFile + ".backups" }

// ErrKeyGone says a backup's key no longer exists: its retention ended (or it was made
// with another keyring). Nothing can open the backup any more.
var ErrKeyGone = errors.New("the backup's key is gone")

// Entry is one backup key.
type Entry struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Sealed holds the age identity sealed under each master key that may open it, by
	// master key ID: one, and two while a rotation re-seals them.
	Sealed map[string][]byte `json:"sealed"`
}

type keyringFile struct {
	Version int     `json:"version"`
	Keys    []Entry `json:"keys"`
}

// Keyring is the keyring file at a path. Its methods are safe for concurrent use within a
// process; only the serving process writes it.
type Keyring struct {
	path string
	mu   sync.Mutex
}

// OpenKeyring returns the keyring at path; the file is made by the first backup.
func OpenKeyring(path string) *Keyring { return &Keyring{path: path} }

// Path is the keyring's file.
func (k *Keyring) Path() string { return k.path }

func (k *Keyring) read() (keyringFile, error) {
	data, err := os.ReadFile(k.path)
	if errors.Is(err, fs.ErrNotExist) {
		return keyringFile{Version: 1}, nil
	}
	if err != nil {
		return keyringFile{}, fmt.Errorf("backup keyring: %w", err)
	}
	var f keyringFile
	if err := json.Unmarshal(data, &f); err != nil || f.Version != 1 {
		return keyringFile{}, fmt.Errorf("backup keyring %s is damaged or of another version", k.path)
	}
	return f, nil
}

// lockFile takes the keyring's file lock (<path>.lock), for a read-modify-write that
// another process may do at the same time (a serving node prunes while a restore or a
// rotation reads and writes). The caller holds mu.
func (k *Keyring) lockFile() (unlock func(), err error) {
	f, err := os.OpenFile(k.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backup keyring: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("backup keyring: lock: %w", err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

func (k *Keyring) write(f keyringFile) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(k.path, append(data, '\n')); err != nil {
		return fmt.Errorf("backup keyring: %w", err)
	}
	return nil
}

// Add makes a backup key that expires after retention, seals it under master and stores
// it; it returns the entry and the recipient to encrypt the backup to.
func (k *Keyring) Add(master keystore.MasterKey, now time.Time, retention time.Duration) (Entry, age.Recipient, error) {
	if retention <= 0 {
		return Entry{}, nil, errors.New("backup retention must be positive")
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return Entry{}, nil, err
	}
	var nonce [6]byte
	rand.Read(nonce[:])
	e := Entry{ID: now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(nonce[:]),
		Created: now.UTC().Truncate(time.Second), Expires: now.UTC().Add(retention).Truncate(time.Second)}
	sealed, err := keystore.SealWithMaster(master, sealPurpose, []byte(id.String()), []byte(e.ID))
	if err != nil {
		return Entry{}, nil, err
	}
	e.Sealed = map[string][]byte{master.ID: sealed}
	k.mu.Lock()
	defer k.mu.Unlock()
	unlock, err := k.lockFile()
	if err != nil {
		return Entry{}, nil, err
	}
	defer unlock()
	f, err := k.read()
	if err != nil {
		return Entry{}, nil, err
	}
	f.Keys = append(f.Keys, e)
	if err := k.write(f); err != nil {
		return Entry{}, nil, err
	}
	return e, id.Recipient(), nil
}

// Prune destroys every key whose retention has ended at now, and returns how many. The
// file is rewritten without them: a copy of the old file elsewhere still holds them
// (sealed under the master key), so copies of the keyring are overwritten, never kept.
func (k *Keyring) Prune(now time.Time) (int, error) {
	if _, err := os.Stat(k.path); errors.Is(err, fs.ErrNotExist) {
		return 0, nil // no backup made yet
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	unlock, err := k.lockFile()
	if err != nil {
		return 0, err
	}
	defer unlock()
	f, err := k.read()
	if err != nil {
		return 0, err
	}
	n := len(f.Keys)
	f.Keys = slices.DeleteFunc(f.Keys, func(e Entry) bool { return !now.Before(e.Expires) })
	if len(f.Keys) == n {
		return 0, nil
	}
	return n - len(f.Keys), k.write(f)
}

// Entries lists the keys, without opening any.
func (k *Keyring) Entries() ([]Entry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := k.read()
	return f.Keys, err
}

// Identity opens the key of backup id with master. It fails with ErrKeyGone when the key
// is not in the keyring or its retention ended at now, and says which master keys can
// open it when master cannot.
func (k *Keyring) Identity(master keystore.MasterKey, id string, now time.Time) (age.Identity, Entry, error) {
	entries, err := k.Entries()
	if err != nil {
		return nil, Entry{}, err
	}
	i := slices.IndexFunc(entries, func(e Entry) bool { return e.ID == id })
	if i < 0 {
		return nil, Entry{}, fmt.Errorf("backup %s: %w: not in %s (its retention ended, or it belongs to another keyring)", id, ErrKeyGone, k.path)
	}
	e := entries[i]
	if !now.Before(e.Expires) {
		return nil, e, fmt.Errorf("backup %s: %w: its retention ended at %s", id, ErrKeyGone, e.Expires.Format(time.RFC3339))
	}
	sealed, ok := e.Sealed[master.ID]
	if !ok {
		return nil, e, fmt.Errorf("backup %s: its key is sealed under master key(s) %v, not %s", id, slices.Sorted(maps.Keys(e.Sealed)), master.ID)
	}
	text, err := keystore.UnsealWithMaster(master, sealPurpose, sealed, []byte(e.ID))
	if err != nil {
		return nil, e, fmt.Errorf("backup %s: the keyring entry does not open with master key %s: %w", id, master.ID, err)
	}
	ident, err := age.ParseX25519Identity(string(text))
	clear(text)
	if err != nil {
		return nil, e, fmt.Errorf("backup %s: damaged keyring entry", id)
	}
	return ident, e, nil
}

// Reseal seals every key under next as well as under current, the master key they are
// sealed under now, and writes the keyring to path (the keyring of next's key file; the
// same file for a rotation in place). A master key rotation calls it before the old key
// is destroyed, so that whichever key survives a crash opens every backup.
func (k *Keyring) Reseal(current, next keystore.MasterKey, path string) error {
	if _, err := os.Stat(k.path); errors.Is(err, fs.ErrNotExist) {
		return nil // no backup made yet
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	unlock, err := k.lockFile()
	if err != nil {
		return err
	}
	defer unlock()
	f, err := k.read()
	if err != nil {
		return err
	}
	for i, e := range f.Keys {
		sealed, ok := e.Sealed[current.ID]
		if !ok {
			return fmt.Errorf("backup key %s is not sealed under master key %s", e.ID, current.ID)
		}
		text, err := keystore.UnsealWithMaster(current, sealPurpose, sealed, []byte(e.ID))
		if err != nil {
			return fmt.Errorf("backup key %s: %w", e.ID, err)
		}
		resealed, err := keystore.SealWithMaster(next, sealPurpose, text, []byte(e.ID))
		clear(text)
		if err != nil {
			return err
		}
		f.Keys[i].Sealed = map[string][]byte{current.ID: sealed, next.ID: resealed}
	}
	return (&Keyring{path: path}).write(f)
}
