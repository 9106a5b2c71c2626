package keystore

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/crypto/chacha20poly1305"
)

// Errors returned by Store methods. Callers compare with errors.Is.
var (
	// ErrNotFound: the key was never created, or it was destroyed. The
	// store cannot tell which, by design.
	ErrNotFound = errors.New("key not found")
	// ErrExists: Create was called for a key that already exists.
	ErrExists = errors.New("key already exists")
	// ErrWrongMaster: the store's keys are wrapped under another master key.
	ErrWrongMaster = errors.New("keys are wrapped under a different master key")
	// ErrDecrypt: an AEAD ciphertext did not authenticate.
	ErrDecrypt = errors.New("decryption failed")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("keystore closed")
)

// KeySize is the length in bytes of every key the store hands out.
const KeySize = 32

// Kind says what a key protects. It is part of the key's identity: the same
// id under two kinds names two different keys.
type Kind uint8

const (
	// Transaction keys encrypt the patron reference of one transaction (a
	// loan with its fines, or a stand-alone fee).
	Transaction Kind = 1
	// Profile keys encrypt one patron's profile.
	Profile Kind = 2

	// kindSystem holds the store's own keys; callers cannot reach it.
	kindSystem Kind = 0xff
)

// String returns "transaction", "profile" or "kind(N)".
func (k Kind) String() string {
	switch k {
	case Transaction:
		return "transaction"
	case Profile:
		return "profile"
	case kindSystem:
		return "system"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) public() bool { return k == Transaction || k == Profile }

// The ids of the system keys: the store's own keys, created by the first Open that lacks
// them, never destroyed, re-wrapped by Rotate like every other key.
const (
	cardHashID   = "card-hash"   // CardHash
	nameHashID   = "name-hash"   // NameHash and NameKeyID
	accessMACID  = "access-mac"  // AccessMAC: the ledger's MAC on access-record entries
	systemSealID = "system-seal" // SealSystem and UnsealSystem
	// checkpointSignID is the seed of the Ed25519 key that signs the stream's checkpoints
	// (CheckpointSeed).
	checkpointSignID = "checkpoint-sign"
)

// Ref names a stored key without its id: the kind and SHA-256(kind || 0x00
// || id). The store keeps only refs, so no file holds an id.
type Ref struct {
	Kind Kind
	Hash [sha256.Size]byte
}

// RefOf returns the ref of the key for (kind, id), as the store computes it.
func RefOf(kind Kind, id string) Ref {
	h := sha256.New()
	h.Write([]byte{byte(kind), 0})
	h.Write([]byte(id))
	r := Ref{Kind: kind}
	h.Sum(r.Hash[:0])
	return r
}

// String returns the kind and the hex hash, such as "transaction:9f86d0…".
func (r Ref) String() string { return r.Kind.String() + ":" + hex.EncodeToString(r.Hash[:]) }

// Entry describes a stored key for reconciliation.
type Entry struct {
	Ref     Ref
	Created time.Time
}

// Pebble keys are keyPrefix, kind, hash.
const (
	keyPrefix = 'k'
	dbKeyLen  = 2 + sha256.Size
)

func dbKey(r Ref) []byte {
	k := make([]byte, 0, dbKeyLen)
	k = append(k, keyPrefix, byte(r.Kind))
	return append(k, r.Hash[:]...)
}

func refOfDBKey(k []byte) (Ref, bool) {
	if len(k) != dbKeyLen || k[0] != keyPrefix {
		return Ref{}, false
	}
	r := Ref{Kind: Kind(k[1])}
	copy(r.Hash[:], k[2:])
	return r, true
}

// The wrapped value format (version 1) is described in the package comment.
const (
	valueVersion = 1
	headerLen    = 1 + 8 + 8
	valueLen     = headerLen + chacha20poly1305.NonceSizeX + KeySize + chacha20poly1305.Overhead
)

type header struct {
	masterID [8]byte
	created  time.Time
}

func parseValue(v []byte) (header, []byte, []byte, error) {
	var h header
	if len(v) == 0 || v[0] != valueVersion {
		return h, nil, nil, errors.New("unknown wrapped key version")
	}
	if len(v) != valueLen {
		return h, nil, nil, fmt.Errorf("wrapped key has %d bytes, want %d", len(v), valueLen)
	}
	copy(h.masterID[:], v[1:9])
	h.created = time.UnixMilli(int64(binary.BigEndian.Uint64(v[9:17])))
	nonce := v[headerLen : headerLen+chacha20poly1305.NonceSizeX]
	return h, nonce, v[headerLen+chacha20poly1305.NonceSizeX:], nil
}

// master is the current master key with its AEAD.
type master struct {
	key  MasterKey
	id   [8]byte
	aead cipher.AEAD
}

func newMaster(m MasterKey) (*master, error) {
	if !m.valid() {
		return nil, errors.New("invalid master key")
	}
	aead, err := chacha20poly1305.NewX(m.key[:])
	if err != nil {
		return nil, err
	}
	mk := &master{key: m, aead: aead}
	copy(mk.id[:], masterID(m.key))
	return mk, nil
}

func (m *master) wrap(k, key []byte, created time.Time) []byte {
	v := make([]byte, headerLen, valueLen)
	v[0] = valueVersion
	copy(v[1:9], m.id[:])
	binary.BigEndian.PutUint64(v[9:17], uint64(created.UnixMilli()))
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	ad := make([]byte, 0, headerLen+len(k))
	ad = append(append(ad, v...), k...)
	v = append(v, nonce...)
	return m.aead.Seal(v, nonce, key, ad)
}

func (m *master) unwrap(k, v []byte) ([]byte, error) {
	h, nonce, ct, err := parseValue(v)
	if err != nil {
		return nil, err
	}
	if h.masterID != m.id {
		return nil, ErrWrongMaster
	}
	ad := make([]byte, 0, headerLen+len(k))
	ad = append(append(ad, v[:headerLen]...), k...)
	key, err := m.aead.Open(nil, nonce, ct, ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return key, nil
}

// Store holds transaction and profile keys in its own Pebble database,
// wrapped under a master key. Destroyed keys leave the files at the next
// Sweep. A Store is safe for concurrent use.
type Store struct {
	db     *pebble.DB
	fs     vfs.FS // the file system under db: vfs.Default, or a crashable one in tests
	logger *slog.Logger
	now    func() time.Time
	// The system keys, immutable after Open. Each has one use, so that a value made
	// for one purpose can never pass for another.
	cardKey, nameKey, macKey, sealKey, signKey *[KeySize]byte
	signMu                                     sync.Mutex // guards signKey's bytes, which a checkpoint key rotation replaces

	// mu is held shared by every operation and exclusively by Rotate and
	// Close; it guards m and closed.
	mu     sync.RWMutex
	m      *master
	closed bool

	// stripes serialize Create and Destroy of the same key, so that the
	// existence check and the write are atomic and the counts stay exact,
	// while writes of different keys still commit in one group.
	stripes [64]sync.Mutex

	// sweepMu serializes erasures (Sweep and Rotate). Lock order: sweepMu,
	// then mu.
	sweepMu sync.Mutex
	// gen counts changes that leave data to erase; swept is its value at
	// the start of the last successful erasure.
	gen, swept atomic.Uint64

	transactions, profiles atomic.Int64
	destroyed              atomic.Int64

	// pool is the Pool running on the store, if any: the keys it holds ready are not
	// in use, so List, Export and Stats leave them out.
	pool atomic.Pointer[Pool]

	// remote holds the keys of a cluster's node (OpenRemote); nil on a single node. With
	// it, the live counts are not kept: the keys are every node's, not this one's.
	remote Remote

	statsMu   sync.Mutex
	sweeps    int64
	lastSweep time.Time
	sweepTook time.Duration
}

// Open opens (or creates) the key store in dir, a directory that belongs to
// the store alone. It returns an error wrapping ErrWrongMaster when the
// stored keys are wrapped under a key other than master. It creates any system
// key the store does not hold yet (those of CardHash, NameHash, AccessMAC and
// SealSystem).
func Open(dir string, master MasterKey, logger *slog.Logger) (*Store, error) {
	s, err := open(dir, vfs.Default, master, logger)
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w", Damaged(err))
	}
	return s, nil
}

// open opens the store in dir on fsys: vfs.Default, or a crashable file system in tests.
func open(dir string, fsys vfs.FS, mk MasterKey, logger *slog.Logger) (*Store, error) {
	m, err := newMaster(mk)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := PebbleOptions(logger)
	opts.FS = noReuseFS{fsys}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	logger = logger.With(slog.String("component", "keystore"))
	s := &Store{db: db, fs: fsys, logger: logger, now: time.Now, m: m}
	// A crash can lose destroys that were acknowledged but not yet swept;
	// the first Sweep after Open always runs.
	s.gen.Store(1)
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	logger.Info("keystore opened", slog.String("master", mk.ID),
		slog.Int64("transactions", s.transactions.Load()), slog.Int64("profiles", s.profiles.Load()))
	return s, nil
}

// load checks that every value is wrapped under the current master key,
// counts the keys, and loads (or creates) the system keys.
func (s *Store) load() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyPrefix}, UpperBound: []byte{keyPrefix + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		ref, ok := refOfDBKey(it.Key())
		if !ok {
			it.Close()
			return errors.New("malformed key in store")
		}
		h, _, _, err := parseValue(it.Value())
		if err != nil {
			it.Close()
			return fmt.Errorf("%s: %w", ref.Kind, err)
		}
		if h.masterID != s.m.id {
			it.Close()
			return fmt.Errorf("master key %s given, keys wrapped under %x: %w", s.m.key.ID, h.masterID, ErrWrongMaster)
		}
		s.count(ref.Kind, 1)
	}
	if err := it.Close(); err != nil {
		return err
	}

	return s.loadSystemKeys(s.systemKey)
}

// loadSystemKeys reads every system key with get, which creates one that is missing.
func (s *Store) loadSystemKeys(get func(id string) ([]byte, error)) error {
	for _, sk := range []struct {
		id  string
		dst **[KeySize]byte
	}{{cardHashID, &s.cardKey}, {nameHashID, &s.nameKey}, {accessMACID, &s.macKey}, {systemSealID, &s.sealKey}, {checkpointSignID, &s.signKey}} {
		key, err := get(sk.id)
		if err != nil {
			return err
		}
		*sk.dst = new([KeySize]byte)
		copy((*sk.dst)[:], key)
		clear(key)
	}
	return nil
}

// systemKey loads the system key id, creating it (synced) if the store has none yet.
func (s *Store) systemKey(id string) ([]byte, error) {
	ref := RefOf(kindSystem, id)
	key, err := s.get(ref)
	if errors.Is(err, ErrNotFound) {
		key = make([]byte, KeySize)
		rand.Read(key)
		err = s.db.Set(dbKey(ref), s.m.wrap(dbKey(ref), key, s.now()), pebble.Sync)
	}
	if errors.Is(err, ErrDecrypt) {
		// Same master ID but the key does not open the value.
		err = fmt.Errorf("system key %s: %w", id, ErrWrongMaster)
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

func (s *Store) count(k Kind, d int64) {
	if s.remote != nil {
		return
	}
	switch k {
	case Transaction:
		s.transactions.Add(d)
	case Profile:
		s.profiles.Add(d)
	}
}

// Close closes the store. Further calls return ErrClosed; Close itself is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close keystore: %w", err)
	}
	return nil
}

// rlock takes mu shared and fails if the store is closed.
func (s *Store) rlock() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) stripe(r Ref) *sync.Mutex { return &s.stripes[int(r.Hash[0])%len(s.stripes)] }

func checkKind(k Kind) error {
	if !k.public() {
		return fmt.Errorf("invalid key kind %d", uint8(k))
	}
	return nil
}

// Create makes a new random key for (kind, id), stores it wrapped and
// synced to disk, and returns a copy of it. Acknowledged means durable: the
// key is on disk before Create returns, so an event encrypted under it can
// be appended safely. It returns an error wrapping ErrExists if the key
// already exists; a destroyed key can be created again.
func (s *Store) Create(kind Kind, id string) ([]byte, error) {
	key, err := s.create(kind, id)
	if err != nil {
		return nil, fmt.Errorf("create %s key: %w", kind, err)
	}
	return key, nil
}

func (s *Store) create(kind Kind, id string) ([]byte, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, errors.New("empty id")
	}
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	ref := RefOf(kind, id)
	mu := s.stripe(ref)
	mu.Lock()
	defer mu.Unlock()
	if s.remote != nil {
		return s.remoteCreate(ref)
	}
	k := dbKey(ref)
	if _, closer, err := s.db.Get(k); err == nil {
		closer.Close()
		return nil, ErrExists
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, err
	}
	key := make([]byte, KeySize)
	rand.Read(key)
	if err := s.db.Set(k, s.m.wrap(k, key, s.now()), pebble.Sync); err != nil {
		return nil, err
	}
	s.count(kind, 1)
	return key, nil
}

// Get returns a copy of the key for (kind, id), or an error wrapping
// ErrNotFound if it was never created or has been destroyed.
func (s *Store) Get(kind Kind, id string) ([]byte, error) {
	key, err := s.getPublic(kind, id)
	if err != nil {
		return nil, fmt.Errorf("get %s key: %w", kind, err)
	}
	return key, nil
}

func (s *Store) getPublic(kind Kind, id string) ([]byte, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return s.get(RefOf(kind, id))
}

// get reads and unwraps; the caller holds mu.
func (s *Store) get(ref Ref) ([]byte, error) {
	if s.remote != nil && ref.Kind.public() {
		return s.remoteGet(ref)
	}
	k := dbKey(ref)
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return s.m.unwrap(k, v)
}

// Destroy deletes the key for (kind, id), synced to disk. It is idempotent.
// From then on Get returns ErrNotFound; the bytes leave the files at the
// next Sweep.
func (s *Store) Destroy(kind Kind, id string) error {
	return s.DestroyRef(RefOf(kind, id))
}

// DestroyRef is Destroy by ref, for reconciliation with List.
func (s *Store) DestroyRef(ref Ref) error {
	if err := s.destroy(ref); err != nil {
		return fmt.Errorf("destroy %s key: %w", ref.Kind, err)
	}
	return nil
}

// DestroyAll destroys the keys for (kind, id) of every id in one synced batch: one fsync
// for all of them, where Destroy pays one each. The expunger destroys the keys of every
// transaction that closed since its last pass this way, so forgetting keeps up with any
// rate of closes. It is idempotent, like Destroy.
func (s *Store) DestroyAll(kind Kind, ids []string) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	refs := make([]Ref, len(ids))
	for i, id := range ids {
		refs[i] = RefOf(kind, id)
	}
	if err := s.destroyRefs(refs); err != nil {
		return fmt.Errorf("destroy %s keys: %w", kind, err)
	}
	return nil
}

// DestroyRefs is DestroyAll by ref, of any public kinds: one synced batch. The start's
// reconciliation destroys the keys no open transaction or account uses with it, so a
// start after a crash pays one fsync for them however many there are (the unused keys of
// the Pool among them).
func (s *Store) DestroyRefs(refs []Ref) error {
	if err := s.destroyRefs(refs); err != nil {
		return fmt.Errorf("destroy keys: %w", err)
	}
	return nil
}

func (s *Store) destroyRefs(refs []Ref) error {
	for _, r := range refs {
		if err := checkKind(r.Kind); err != nil {
			return err
		}
	}
	if len(refs) == 0 {
		return nil
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	gone, err := s.deleteRefs(refs)
	if err != nil {
		return err
	}
	for k, n := range gone {
		s.count(k, -int64(n))
	}
	return nil
}

// deleteRefs deletes the keys of refs that exist, in one synced batch, and returns how
// many of each kind it deleted; the caller holds mu shared and keeps the live counts.
func (s *Store) deleteRefs(refs []Ref) (map[Kind]int, error) {
	refs = uniqueRefs(refs)
	defer s.lockStripes(refs)()
	if s.remote != nil {
		gone := map[Kind]int{}
		for _, ref := range refs {
			if err := s.remoteDestroy(ref); err != nil {
				return nil, err
			}
			gone[ref.Kind]++
		}
		s.destroyed.Add(int64(len(refs)))
		return gone, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	gone := map[Kind]int{}
	n := 0
	for _, ref := range refs {
		k := dbKey(ref)
		_, closer, err := s.db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		closer.Close()
		if err := b.Delete(k, nil); err != nil {
			return nil, err
		}
		gone[ref.Kind]++
		n++
	}
	if n == 0 {
		return gone, nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	s.destroyed.Add(int64(n))
	s.gen.Add(1)
	return gone, nil
}

// createRefs stores a new random key under every ref, in one synced batch, and returns
// them in the order of refs. It refuses the whole batch with ErrExists if a ref's key
// exists or a ref comes twice, and then writes nothing. The caller holds mu shared and
// keeps the live counts.
func (s *Store) createRefs(refs []Ref) ([][]byte, error) {
	if len(uniqueRefs(refs)) != len(refs) {
		return nil, ErrExists
	}
	defer s.lockStripes(refs)()
	if s.remote != nil {
		keys := make([][]byte, 0, len(refs))
		for _, ref := range refs {
			key, err := s.remoteCreate(ref)
			if err != nil {
				for i, k := range keys {
					clear(k)
					_ = s.remoteDestroy(refs[i]) // made by this call: not in use
				}
				return nil, err
			}
			keys = append(keys, key)
		}
		return keys, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	now := s.now()
	keys := make([][]byte, len(refs))
	fail := func(err error) ([][]byte, error) {
		for _, k := range keys {
			clear(k)
		}
		return nil, err
	}
	for i, ref := range refs {
		k := dbKey(ref)
		if _, closer, err := s.db.Get(k); err == nil {
			closer.Close()
			return fail(ErrExists)
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return fail(err)
		}
		keys[i] = make([]byte, KeySize)
		rand.Read(keys[i])
		if err := b.Set(k, s.m.wrap(k, keys[i], now), nil); err != nil {
			return fail(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fail(err)
	}
	return keys, nil
}

// uniqueRefs returns refs without repeats, in their first order.
func uniqueRefs(refs []Ref) []Ref {
	seen := make(map[Ref]bool, len(refs))
	out := make([]Ref, 0, len(refs))
	for _, r := range refs {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// lockStripes locks every stripe the refs fall on, in ascending order, and returns the
// unlock: a concurrent Create or Destroy of one of these keys waits, and no two batches
// deadlock.
func (s *Store) lockStripes(refs []Ref) (unlock func()) {
	var on [len(s.stripes)]bool
	for _, r := range refs {
		on[int(r.Hash[0])%len(s.stripes)] = true
	}
	for i, o := range on {
		if o {
			s.stripes[i].Lock()
		}
	}
	return func() {
		for i, o := range on {
			if o {
				s.stripes[i].Unlock()
			}
		}
	}
}

func (s *Store) destroy(ref Ref) error {
	if err := checkKind(ref.Kind); err != nil {
		return err
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	mu := s.stripe(ref)
	mu.Lock()
	defer mu.Unlock()
	if s.remote != nil {
		if err := s.remoteDestroy(ref); err != nil {
			return err
		}
		s.destroyed.Add(1)
		return nil
	}
	k := dbKey(ref)
	_, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	closer.Close()
	if err := s.db.Delete(k, pebble.Sync); err != nil {
		return err
	}
	s.count(ref.Kind, -1)
	s.destroyed.Add(1)
	s.gen.Add(1)
	return nil
}

// List returns the refs and creation times of all keys of kind, in ref
// order. It reads no key material. The expunger uses it at startup to
// destroy transaction keys that no open transaction references (compare
// with RefOf). Keys a running Pool holds ready are not listed: they are in
// use by the pool, which hands each to one transaction or destroys it.
func (s *Store) List(kind Kind) ([]Entry, error) {
	es, err := s.list(kind)
	if err != nil {
		return nil, fmt.Errorf("list %s keys: %w", kind, err)
	}
	return es, nil
}

func (s *Store) list(kind Kind) ([]Entry, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if s.remote != nil {
		es, err := s.remoteList(kind)
		if err != nil {
			return nil, err
		}
		pool := s.pool.Load()
		return slices.DeleteFunc(es, func(e Entry) bool { return pool.holds(e.Ref) }), nil
	}
	// The iterator is closed before returning: a long-lived iterator would
	// keep obsolete tables, and so destroyed keys, on disk.
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{keyPrefix, byte(kind)},
		UpperBound: []byte{keyPrefix, byte(kind) + 1},
	})
	if err != nil {
		return nil, err
	}
	var es []Entry
	pool := s.pool.Load()
	for it.First(); it.Valid(); it.Next() {
		ref, ok := refOfDBKey(it.Key())
		if !ok {
			it.Close()
			return nil, errors.New("malformed key in store")
		}
		// A key is the pool's from before its commit until it is taken, so a key the
		// iterator sees is either still held (skipped here) or taken, and then a
		// transaction's like any other.
		if pool.holds(ref) {
			continue
		}
		h, _, _, err := parseValue(it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		es = append(es, Entry{Ref: ref, Created: h.created})
	}
	return es, it.Close()
}

// CardHash returns the hex HMAC-SHA256 of a card number under the system key
// "card-hash", for looking up cards without storing their numbers. The card
// number is normalized by trimming surrounding white space only; anything
// else (case, inner spaces, leading zeros) is significant. The system key is
// created on first Open, is never destroyed, and survives Rotate, so hashes
// are stable for the life of the store: they are on the stream for good
// (card.issued, card.reported_lost), and nothing that could compute a card's
// hash under a new key (its number) is kept. The README's threat model says
// what that leaves exposed, and its Design section how to bound it.
func (s *Store) CardHash(card string) string {
	mac := hmac.New(sha256.New, s.cardKey[:])
	mac.Write([]byte(strings.TrimSpace(card)))
	return hex.EncodeToString(mac.Sum(nil))
}

// NameHash is the keyed hash under which the projections index a patron's name, so staff
// can find an account by the name on a photo ID without any plaintext name at rest. Case
// and runs of white space do not matter. It has a system key of its own ("name-hash"),
// not the card key's: name hashes live only in the projections, which can compute them
// again from the sealed profiles of open accounts, so this key can change (see NameKeyID)
// without touching the stream, while the card key cannot (see CardHash).
func (s *Store) NameHash(name string) string {
	mac := hmac.New(sha256.New, s.nameKey[:])
	mac.Write([]byte("name\x00"))
	mac.Write([]byte(strings.ToLower(strings.Join(strings.Fields(name), " "))))
	return hex.EncodeToString(mac.Sum(nil))
}

// NameKeyID names the key of NameHash without revealing it (16 hex digits of an HMAC of a
// constant under it). The projections record it next to their name index and build the
// index again when it changes, as it did when the name key was split from the card key.
func (s *Store) NameKeyID() string {
	mac := hmac.New(sha256.New, s.nameKey[:])
	mac.Write([]byte("lethe name-hash key id"))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

// AccessMAC is HMAC-SHA256 of msg under the system key "access-mac": the ledger's seal on
// an entry of the access record (package access defines msg). The key is never destroyed
// and survives Rotate, so an entry stays verifiable for the life of the store; it keys
// nothing else.
func (s *Store) AccessMAC(msg []byte) []byte {
	mac := hmac.New(sha256.New, s.macKey[:])
	mac.Write(msg)
	return mac.Sum(nil)
}

// CheckpointSeed returns a copy of the system key "checkpoint-sign": the seed of the
// Ed25519 key that signs the stream's checkpoints (package tlog). A master key rotation
// re-wraps it; only a checkpoint key rotation (StageCheckpointSeed,
// FinishCheckpointRotation), announced on the stream under the old key, replaces it.
func (s *Store) CheckpointSeed() []byte {
	s.signMu.Lock()
	defer s.signMu.Unlock()
	out := make([]byte, KeySize)
	copy(out, s.signKey[:])
	return out
}

// SealSystem is Seal under the system key "system-seal": for what must stay readable to
// the system for the life of the store and must still not be in the clear anywhere, such
// as a court order's reference on an access entry that names no patron.
func (s *Store) SealSystem(plaintext, ad []byte) (nonce, ct []byte, err error) {
	return Seal(s.sealKey[:], plaintext, ad)
}

// UnsealSystem reverses SealSystem, with Unseal's errors.
func (s *Store) UnsealSystem(nonce, ct, ad []byte) ([]byte, error) {
	return Unseal(s.sealKey[:], nonce, ct, ad)
}

// Sweep makes the destroys done so far physical: afterwards no file of the
// store's directory holds a destroyed key's wrapped value or Pebble key (see
// Erase). It does nothing when nothing was destroyed since the last
// successful sweep: an idle sweep would still rewrite tables and manifests.
// The first Sweep after Open always runs, because destroys acknowledged
// before a crash may not have been swept.
func (s *Store) Sweep(ctx context.Context) error {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if err := s.rlock(); err != nil {
		return fmt.Errorf("sweep keystore: %w", err)
	}
	defer s.mu.RUnlock()
	if err := s.erase(ctx); err != nil {
		return fmt.Errorf("sweep keystore: %w", err)
	}
	return nil
}

// erase runs Erase if there is work; the caller holds sweepMu and mu.
func (s *Store) erase(ctx context.Context) error {
	g := s.gen.Load()
	if g == s.swept.Load() {
		return nil
	}
	start := s.now()
	if err := erase(ctx, s.db, s.fs, compactAll); err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	took := s.now().Sub(start)
	s.swept.Store(g)
	s.statsMu.Lock()
	s.sweeps++
	s.lastSweep = start
	s.sweepTook = took
	s.statsMu.Unlock()
	s.logger.Debug("keystore swept", slog.Duration("took", took))
	return nil
}

// Rotate re-wraps every stored key under newMaster in one synced batch, so
// that a crash leaves all keys under the old master or all under the new
// one, never a mix. Then it erases the old wrapped values from the files
// (see Erase) and the store goes on with newMaster. After Rotate returns
// nil, the old master key can be destroyed, and opening the store with it
// fails with ErrWrongMaster.
//
// If the erasure fails, the re-wrap has still taken effect (the store uses
// newMaster) and the error says so; the next Sweep retries the erasure.
// Keep the old master key until an erasure succeeds. RotateFile does all of
// this for a master key file, with the key files, in steps a crash cannot
// leave half done.
func (s *Store) Rotate(ctx context.Context, newMaster MasterKey) error {
	if err := s.rotate(ctx, newMaster); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	return nil
}

func (s *Store) rotate(ctx context.Context, next MasterKey) error {
	if s.remote != nil {
		return ErrClusterNode
	}
	nm, err := newMaster(next)
	if err != nil {
		return err
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if err := s.rewrap(nm); err != nil {
		return err
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.erase(ctx); err != nil {
		return fmt.Errorf("keys re-wrapped, but old values not yet erased: %w", err)
	}
	return nil
}

// rewrap re-wraps all keys under nm in one batch and switches to it.
func (s *Store) rewrap(nm *master) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if nm.id == s.m.id {
		return errors.New("new master key has the same ID as the current one")
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyPrefix}, UpperBound: []byte{keyPrefix + 1}})
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		h, _, _, err := parseValue(it.Value())
		if err != nil {
			it.Close()
			return err
		}
		key, err := s.m.unwrap(k, it.Value())
		if err != nil {
			it.Close()
			return err
		}
		err = b.Set(k, nm.wrap(k, key, h.created), nil)
		clear(key)
		if err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	s.m = nm
	s.gen.Add(1)
	s.logger.Info("keystore master key rotated", slog.String("master", nm.key.ID))
	return nil
}

// Stats are counters a caller can export as metrics.
type Stats struct {
	// Transactions and Profiles count live keys by kind. Transactions leaves out the
	// keys a Pool holds ready, which no transaction uses yet: those are Pooled.
	Transactions, Profiles int64
	Pooled                 int64
	// DestroyedSinceOpen counts keys destroyed since Open.
	DestroyedSinceOpen int64
	// PendingErasure is true when destroyed keys (or old wrapped values)
	// may still be in files: a Sweep has work to do.
	PendingErasure bool
	// Sweeps counts erasures that ran and succeeded since Open.
	Sweeps int64
	// LastSweep is when the last successful erasure started, and
	// LastSweepDuration how long it took; zero before the first.
	LastSweep         time.Time
	LastSweepDuration time.Duration
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Transactions:       s.transactions.Load(),
		Profiles:           s.profiles.Load(),
		DestroyedSinceOpen: s.destroyed.Load(),
		PendingErasure:     s.gen.Load() != s.swept.Load(),
	}
	if p := s.pool.Load(); p != nil {
		// The pool changes its share of the transaction count and its ready keys under
		// its lock, together.
		p.mu.Lock()
		st.Pooled = int64(len(p.ready))
		st.Transactions = s.transactions.Load() - st.Pooled
		p.mu.Unlock()
	}
	s.statsMu.Lock()
	st.Sweeps, st.LastSweep, st.LastSweepDuration = s.sweeps, s.lastSweep, s.sweepTook
	s.statsMu.Unlock()
	return st
}

// Seal encrypts plaintext under key (32 bytes, from the store) with
// XChaCha20-Poly1305 and a fresh random nonce, authenticating ad as well.
func Seal(key, plaintext, ad []byte) (nonce, ct []byte, err error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	nonce = make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	return nonce, aead.Seal(nil, nonce, plaintext, ad), nil
}

// Unseal reverses Seal. It returns an error wrapping ErrDecrypt when the
// key, nonce, ciphertext or associated data do not match. (It is not named
// Open, which opens a Store.)
func Unseal(key, nonce, ct, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	if len(nonce) != chacha20poly1305.NonceSizeX {
		return nil, fmt.Errorf("unseal: nonce has %d bytes, want %d: %w", len(nonce), chacha20poly1305.NonceSizeX, ErrDecrypt)
	}
	pt, err := aead.Open(nil, nonce, ct, ad)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", ErrDecrypt)
	}
	return pt, nil
}
