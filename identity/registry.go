package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/imagineif/lethe/internal/atomicfile"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nkeys"
)

// FileName is the registry's file in the data directory.
const FileName = "identities.json"

// fileFormat is the registry file's current version.
const fileFormat = 1

type file struct {
	Version    int        `json:"version"`
	Identities []Identity `json:"identities"`
}

// Registry is the identities of one data directory.
type Registry struct {
	dir string
}

// Open returns the registry of the data directory dir. Nothing is read until it is used;
// a directory without a registry file has no identities.
func Open(dir string) *Registry { return &Registry{dir: dir} }

// Path is the registry file.
func (r *Registry) Path() string { return filepath.Join(r.dir, FileName) }

// List returns every identity, revoked ones included, in the order they were added.
func (r *Registry) List() ([]Identity, error) {
	f, err := r.read()
	return f.Identities, err
}

// Active returns the identities that may connect, by public key.
func (r *Registry) Active() (map[string]Identity, error) {
	f, err := r.read()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Identity, len(f.Identities))
	for _, id := range f.Identities {
		if id.Active() {
			out[id.PublicKey] = id
		}
	}
	return out, nil
}

// Version is what changes whenever the registry file is replaced: the server polls it to
// reload. It is empty when there is no file.
func (r *Registry) Version() (string, error) {
	st, err := os.Stat(r.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("identity registry: %w", err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		// The inode changes on every atomic replacement, even within one mtime tick.
		return fmt.Sprintf("%d/%d/%d", sys.Ino, st.ModTime().UnixNano(), st.Size()), nil
	}
	return fmt.Sprintf("%d/%d", st.ModTime().UnixNano(), st.Size()), nil
}

// Add creates an identity with a fresh NKey and returns it with its seed, which Lethe does
// not keep: write it into the credentials file now (Credentials). A kiosk or auditor name
// that is active already is ErrExists.
func (r *Registry) Add(kind Kind, branch, n string, now time.Time) (Identity, []byte, error) {
	if err := validate(kind, branch, n); err != nil {
		return Identity{}, nil, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Identity{}, nil, fmt.Errorf("create nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return Identity{}, nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return Identity{}, nil, err
	}
	id := Identity{Kind: kind, Branch: branch, Name: n, PublicKey: pub, Added: now.UTC()}
	err = r.update(func(f *file) error {
		if slices.ContainsFunc(f.Identities, func(o Identity) bool { return o.Active() && o.Account() == id.Account() }) {
			return ErrExists
		}
		// Added after every revocation of the name this registry knows, even if this
		// machine's clock is behind the one that revoked: a revocation covers what was
		// added before it (Merge), and this identity comes after it.
		for _, o := range f.Identities {
			if o.Account() == id.Account() && o.Revoked != nil {
				id.Added = after(id.Added, *o.Revoked)
			}
		}
		f.Identities = append(f.Identities, id)
		return nil
	})
	if err != nil {
		return Identity{}, nil, err
	}
	return id, seed, nil
}

// Revoke ends an active identity: from the moment the running server reloads the
// registry (within seconds), its open connections are closed and it cannot connect again.
// The entry stays, marked revoked, so the registry shows who could connect when. If the
// name has several active identities (added on two nodes of a cluster at once), all of
// them end; the first is returned.
func (r *Registry) Revoke(kind Kind, branch, n string, now time.Time) (Identity, error) {
	var out Identity
	err := r.update(func(f *file) error {
		want := Identity{Kind: kind, Branch: branch, Name: n}.Account()
		found := false
		for i, id := range f.Identities {
			if id.Active() && id.Account() == want {
				t := now.UTC()
				f.Identities[i].Revoked = &t
				if !found {
					out = f.Identities[i]
				}
				found = true
			}
		}
		if !found {
			return ErrNotFound
		}
		return nil
	})
	return out, err
}

func (r *Registry) read() (file, error) {
	data, err := os.ReadFile(r.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return file{Version: fileFormat}, nil
	} else if err != nil {
		return file{}, fmt.Errorf("identity registry: %w", err)
	}
	var f file
	if err := schemas.DecodeStrict(data, &f); err != nil {
		return file{}, fmt.Errorf("identity registry %s is damaged: %w", r.Path(), err)
	}
	if f.Version != fileFormat {
		return file{}, fmt.Errorf("identity registry %s has format %d; this lethe reads format %d", r.Path(), f.Version, fileFormat)
	}
	for _, id := range f.Identities {
		if id.Validate() != nil {
			return file{}, fmt.Errorf("identity registry %s holds an invalid entry", r.Path())
		}
	}
	return f, nil
}

// errUnchanged, from an update's change, leaves the file as it is: its Version stays, so
// the server does not reload for nothing.
var errUnchanged = errors.New("unchanged")

// update changes the registry under its lock and replaces the file atomically: written
// to a temporary file, synced, renamed over the old one, and the directory synced.
func (r *Registry) update(change func(*file) error) error {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return fmt.Errorf("identity registry: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(r.dir, "identities.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("identity registry lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("identity registry lock: %w", err)
	}
	f, err := r.read()
	if err != nil {
		return err
	}
	if err := change(&f); errors.Is(err, errUnchanged) {
		return nil
	} else if err != nil {
		return err
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(r.Path(), append(data, '\n')); err != nil {
		return fmt.Errorf("identity registry: %w", err)
	}
	return nil
}
