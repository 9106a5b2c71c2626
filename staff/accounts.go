package staff

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/phc"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// The store is a Pebble database. Each account is one key, "a/" + name, whose value is
// the JSON of record. Names are case-sensitive.

// Errors of the store.
var (
	// ErrInUse is returned by Open when another process (or another Store in this
	// process) holds the store.
	ErrInUse = errors.New("the staff store is in use, probably by a running `lethe serve`; stop it first")
	// ErrBadCredentials is Verify's only answer for an unknown name, a disabled account
	// and a wrong password alike.
	ErrBadCredentials = schemas.Errorf(schemas.CodeUnauthenticated, "wrong name or password")
	// ErrNotFound: no account has that name.
	ErrNotFound = schemas.Errorf(schemas.CodeNotFound, "no staff account has that name")
	// ErrExists: Add was given a name that is taken.
	ErrExists = schemas.Errorf(schemas.CodeConflict, "a staff account with that name already exists")
	// ErrBadName: a name breaks the naming rule. It does not repeat the name, which may
	// be a password typed into the wrong field.
	ErrBadName = schemas.Errorf(schemas.CodeInvalid, "a staff account name is 1 to 64 characters: ASCII letters, digits, '.', '_' or '-'")
	// ErrBadRole: a role is not one of policy.StaffRoles().
	ErrBadRole = schemas.Errorf(schemas.CodeInvalid, "a staff role is circulation, administrator or auditor")

	errClosed = errors.New("staff store is closed")
)

// Account is a staff account. It never holds the password or its hash.
type Account struct {
	Name            string      `json:"name"`
	Role            policy.Role `json:"role"`
	Disabled        bool        `json:"disabled"`
	Created         time.Time   `json:"created"`
	PasswordChanged time.Time   `json:"password_changed"`
}

// record is the stored value of an account.
type record struct {
	Role            policy.Role `json:"role"`
	Disabled        bool        `json:"disabled"`
	Created         time.Time   `json:"created"`
	PasswordChanged time.Time   `json:"password_changed"`
	// StatusChanged is when the account was last disabled or enabled (or created): of two
	// nodes' copies, the later status wins (MergeRecords). Zero in records older than it.
	StatusChanged time.Time `json:"status_changed,omitzero"`
	Hash          string    `json:"hash"`
}

func (r record) account(name string) Account {
	return Account{Name: name, Role: r.Role, Disabled: r.Disabled, Created: r.Created, PasswordChanged: r.PasswordChanged}
}

// Store holds the staff accounts.
type Store struct {
	// mu guards db (nil once closed) and serializes read-modify-write of records.
	// Argon2 runs outside it.
	mu     sync.RWMutex
	db     *pebble.DB
	lock   *pebble.Lock
	logger *slog.Logger
	now    func() time.Time

	// version counts the records written since Open, so that a replica notices a change
	// by polling (Version) without reading every record.
	version atomic.Uint64

	// hashing bounds concurrent argon2 computations: each takes 19 MiB, and a burst of
	// logins must not take the server's memory.
	hashing chan struct{}

	// dummy is a random hash with the current parameters, verified against when a name
	// is unknown so that the answer takes as long as for a known name.
	dummy phc.Hash
}

// Open opens (creating if need be) the staff store in dir. Only one process may have it
// open: while `lethe serve` runs, Open fails with ErrInUse.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(slog.String("component", "staff"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open staff store: %w", err)
	}
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		if lockHeld(err) {
			return nil, ErrInUse
		}
		return nil, fmt.Errorf("open staff store: %w", err)
	}
	plog := logger.With(slog.String("component", "pebble"))
	db, err := pebble.Open(dir, &pebble.Options{Lock: lock, Logger: keystore.PebbleLogger(plog),
		EventListener: &pebble.EventListener{DataCorruption: keystore.PebbleCorruption(plog)}})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open staff store: %w", keystore.Damaged(err))
	}
	// Read every account once: a damaged file then fails the start with its cause,
	// instead of the first login that reads it. The store holds a few hundred bytes per
	// account, so this costs nothing.
	if err := checkAll(db); err != nil {
		db.Close()
		lock.Close()
		return nil, fmt.Errorf("open staff store %s: %w", dir, err)
	}
	dummy := phc.Hash{Params: phc.Current(), Salt: make([]byte, phc.SaltLen), Key: make([]byte, phc.KeyLen)}
	rand.Read(dummy.Salt) // crypto/rand.Read never fails (Go 1.24 and later)
	rand.Read(dummy.Key)
	return &Store{
		db:      db,
		lock:    lock,
		logger:  logger,
		now:     time.Now,
		hashing: make(chan struct{}, min(runtime.GOMAXPROCS(0), 4)),
		dummy:   dummy,
	}, nil
}

// lockHeld reports whether err from pebble.LockDirectory means someone else holds the
// lock: fcntl refused (EAGAIN or EACCES, unwrapped), or this process already holds it.
// An error creating the lock file is a *fs.PathError and means something else.
func lockHeld(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return false
	}
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}

// Close closes the store. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// ValidName reports whether name is a well-formed account name: 1 to 64 ASCII letters,
// digits, '.', '_' or '-'. ASCII only, so that two names that look alike are alike.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func dbKey(name string) []byte { return []byte("a/" + name) }

// get reads a record. The caller holds mu (either way).
func (s *Store) get(name string) (record, error) {
	if s.db == nil {
		return record{}, errClosed
	}
	if !ValidName(name) {
		return record{}, ErrBadName
	}
	v, closer, err := s.db.Get(dbKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return record{}, ErrNotFound
	}
	if err != nil {
		return record{}, fmt.Errorf("read staff account: %w", err)
	}
	defer closer.Close()
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("decode staff account: %w", err)
	}
	return r, nil
}

// put writes a record durably. The caller holds mu for writing.
func (s *Store) put(name string, r record) error {
	if s.db == nil {
		return errClosed
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.db.Set(dbKey(name), v, pebble.Sync); err != nil {
		return fmt.Errorf("write staff account: %w", err)
	}
	s.version.Add(1)
	return nil
}

// update applies f to the record of name under the write lock and stores the result.
func (s *Store) update(name string, f func(*record) error) (Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.get(name)
	if err != nil {
		return Account{}, err
	}
	if err := f(&r); err != nil {
		return Account{}, err
	}
	if err := s.put(name, r); err != nil {
		return Account{}, err
	}
	return r.account(name), nil
}

// hash runs hashPassword within the bound on concurrent hashing.
func (s *Store) hash(password string) (string, error) {
	s.hashing <- struct{}{}
	defer func() { <-s.hashing }()
	return phc.New(password)
}

// matches runs h.matches within the bound on concurrent hashing.
func (s *Store) matches(h phc.Hash, password string) bool {
	s.hashing <- struct{}{}
	defer func() { <-s.hashing }()
	return h.Matches(password)
}

// Add creates an account. It fails with ErrExists if the name is taken.
func (s *Store) Add(name string, role policy.Role, password string) error {
	if !ValidName(name) {
		return ErrBadName
	}
	if !role.Valid() {
		return ErrBadRole
	}
	if err := checkPassword(name, password); err != nil {
		return err
	}
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.get(name); err == nil {
		return ErrExists
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	now := s.now().UTC()
	if err := s.put(name, record{Role: role, Created: now, PasswordChanged: now, StatusChanged: now, Hash: h}); err != nil {
		return err
	}
	s.logger.Info("staff account added", slog.String("name", name), slog.String("role", string(role)))
	return nil
}

// Disable disables an account: it can no longer log in, and (through Auth.Require) its
// sessions stop. Disabling a disabled account changes only the time of its status, so
// that in a cluster it wins over an enable this node has not heard of yet.
func (s *Store) Disable(name string) error {
	_, err := s.update(name, func(r *record) error {
		r.Disabled, r.StatusChanged = true, after(s.now().UTC(), r.StatusChanged)
		return nil
	})
	if err == nil {
		s.logger.Info("staff account disabled", slog.String("name", name))
	}
	return err
}

// Enable enables a disabled account. Enabling an enabled account changes only the time
// of its status, as Disable does.
func (s *Store) Enable(name string) error {
	_, err := s.update(name, func(r *record) error {
		r.Disabled, r.StatusChanged = false, after(s.now().UTC(), r.StatusChanged)
		return nil
	})
	if err == nil {
		s.logger.Info("staff account enabled", slog.String("name", name))
	}
	return err
}

// SetPassword replaces an account's password, subject to the password policy.
func (s *Store) SetPassword(name, password string) error {
	if !ValidName(name) {
		return ErrBadName
	}
	if err := checkPassword(name, password); err != nil {
		return err
	}
	// Fail on an unknown name before spending a hash on it.
	if _, err := s.Get(name); err != nil {
		return err
	}
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	_, err = s.update(name, func(r *record) error {
		r.Hash, r.PasswordChanged = h, after(s.now().UTC(), r.PasswordChanged)
		return nil
	})
	if err == nil {
		s.logger.Info("staff password changed", slog.String("name", name))
	}
	return err
}

// Get returns an account.
func (s *Store) Get(name string) (Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, err := s.get(name)
	if err != nil {
		return Account{}, err
	}
	return r.account(name), nil
}

// List returns every account, sorted by name.
func (s *Store) List() ([]Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, errClosed
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("a/"), UpperBound: []byte("a0")})
	if err != nil {
		return nil, err
	}
	out := []Account{}
	for it.First(); it.Valid(); it.Next() {
		var r record
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			it.Close()
			return nil, fmt.Errorf("decode staff account: %w", err)
		}
		out = append(out, r.account(strings.TrimPrefix(string(it.Key()), "a/")))
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// Verify checks a name and password and returns the account. An unknown name, a disabled
// account and a wrong password all give ErrBadCredentials, after the same argon2 work, so
// neither the answer nor its timing tells which names exist. A hash made with older
// parameters is replaced with a current one.
func (s *Store) Verify(name, password string) (Account, error) {
	r, err := s.getShared(name)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadName) {
		s.matches(s.dummy, password)
		return Account{}, ErrBadCredentials
	}
	if err != nil {
		return Account{}, err
	}
	h, err := phc.Parse(r.Hash)
	if err != nil {
		s.logger.Error("staff password hash is malformed", slog.String("name", name))
		s.matches(s.dummy, password)
		return Account{}, ErrBadCredentials
	}
	if !s.matches(h, password) || r.Disabled {
		return Account{}, ErrBadCredentials
	}
	if h.Stale() {
		s.rehash(name, r.Hash, password)
	}
	return r.account(name), nil
}

func (s *Store) getShared(name string) (record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.get(name)
}

// rehash replaces old, a correct but stale hash of name's password, unless the password
// has changed meanwhile. A failure only costs the upgrade.
func (s *Store) rehash(name, old, password string) {
	h, err := s.hash(password)
	if err == nil {
		_, err = s.update(name, func(r *record) error {
			if r.Hash != old {
				return errors.New("password changed meanwhile")
			}
			r.Hash = h
			return nil
		})
	}
	if err != nil {
		s.logger.Warn("staff password rehash", slog.String("name", name), slog.Any("err", err))
		return
	}
	s.logger.Info("staff password rehashed with current parameters", slog.String("name", name))
}

// checkAll reads and decodes every record of the store.
func checkAll(db *pebble.DB) error {
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if !strings.HasPrefix(string(it.Key()), "a/") {
			continue
		}
		var r record
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			it.Close()
			return errors.New("a staff account record does not decode: the store is damaged")
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("read staff accounts: %w", keystore.Damaged(err))
	}
	return nil
}
