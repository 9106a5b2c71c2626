// Package kek holds the cluster's key-encryption keys (docs/design.md §11): in cluster
// mode every Lethe key lives in a replicated JetStream KV bucket wrapped under the KEK of
// an epoch, and the KEK itself is never written to JetStream. Each node keeps the KEKs it
// holds in memory and in one small file sealed under its master key, overwritten in place
// when an epoch ends, so that once every node dropped an epoch's KEK nothing that still
// exists can unwrap a key that was destroyed before it: JetStream's residue of the key
// (block files, raft logs) is ciphertext under a key that is gone.
//
// This package is the mechanism: the keyring (Keyring), the wrapped keys in a KV bucket
// (Store), and the two-phase rotation between nodes over core NATS (Member, Rotate). It is
// not yet wired into lethe serve.
package kek

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// Size is the size of a KEK and of the master key that seals a keyring file.
const Size = 32

// maxHeld is how many KEKs a keyring holds at once: the current epoch's and, during a
// rotation, the next one.
const maxHeld = 2

// fileSize is the keyring file's fixed size: a nonce and the sealed slots. The file is
// always exactly this long and always rewritten at offset 0, so each write replaces the
// same blocks instead of leaving a shorter file's tail or a renamed file's old inode.
const fileSize = chacha20poly1305.NonceSizeX + maxHeld*(8+Size) + 8 + chacha20poly1305.Overhead

// Errors.
var (
	ErrNoEpoch   = errors.New("kek: this node holds no KEK of that epoch")
	ErrBadFile   = errors.New("kek: the keyring file does not open with this master key (a wrong key, or a damaged file)")
	ErrWrapped   = errors.New("kek: a wrapped key that does not open (damaged, or not this cluster's)")
	ErrOldEpoch  = errors.New("kek: the epoch is not the next one")
	ErrNotHeld   = errors.New("kek: the epoch to commit is not held")
	errKeyLength = errors.New("kek: a key must be 32 bytes")
)

// Keyring is one node's KEKs, by epoch.
type Keyring struct {
	path   string
	master [Size]byte

	// wraps is held (read) by every wrap that is on its way into the bucket, and
	// (write) by Prepare: once a node acknowledged the next epoch, no key wrapped under
	// an older one is still in flight there, so the leader's re-wrap that follows finds
	// every such key.
	wraps sync.RWMutex

	mu      sync.RWMutex
	current uint64
	keks    map[uint64]*[Size]byte
}

// OpenKeyring opens the node's keyring file at path, sealed under master. A missing file
// is an empty keyring (epoch 0, no KEK): the node then learns the current KEK from the
// cluster (Start for the first node, a peer for the others).
func OpenKeyring(path string, master [Size]byte) (*Keyring, error) {
	k := &Keyring{path: path, master: master, keks: map[uint64]*[Size]byte{}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kek: read keyring: %w", err)
	}
	if len(raw) != fileSize {
		return nil, ErrBadFile
	}
	aead, _ := chacha20poly1305.NewX(master[:])
	nonce, ct := raw[:chacha20poly1305.NonceSizeX], raw[chacha20poly1305.NonceSizeX:]
	plain, err := aead.Open(nil, nonce, ct, []byte("lethe kek keyring"))
	if err != nil {
		return nil, ErrBadFile
	}
	k.current = binary.BigEndian.Uint64(plain)
	for i := range maxHeld {
		slot := plain[8+i*(8+Size):]
		epoch := binary.BigEndian.Uint64(slot)
		if epoch == 0 {
			continue
		}
		var kek [Size]byte
		copy(kek[:], slot[8:8+Size])
		k.keks[epoch] = &kek
	}
	clear(plain)
	return k, nil
}

// Start gives an empty keyring its first epoch, with a fresh KEK: the first node of a new
// cluster does this once.
func (k *Keyring) Start() (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.current != 0 {
		return k.current, nil
	}
	var kek [Size]byte
	rand.Read(kek[:])
	k.keks[1], k.current = &kek, 1
	return 1, k.persistLocked()
}

// Current is the epoch keys are wrapped under now; 0 while the keyring is empty.
func (k *Keyring) Current() uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.current
}

// Epochs lists the epochs whose KEK this node holds.
func (k *Keyring) Epochs() []uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []uint64
	for e := range k.keks {
		out = append(out, e)
	}
	return out
}

// Prepare adds the next epoch's KEK beside the current one, durably, without using it
// yet: keys are still wrapped under the current epoch until Commit. epoch must be
// current+1.
func (k *Keyring) Prepare(epoch uint64, kek [Size]byte) error {
	k.wraps.Lock()
	defer k.wraps.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if epoch != k.current+1 {
		return ErrOldEpoch
	}
	k.keks[epoch] = &kek
	return k.persistLocked()
}

// Commit makes epoch the current one and forgets every older KEK: they are overwritten in
// the file and cleared from memory.
func (k *Keyring) Commit(epoch uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keks[epoch]; !ok {
		return ErrNotHeld
	}
	for e, kek := range k.keks {
		if e < epoch {
			clear(kek[:])
			delete(k.keks, e)
		}
	}
	k.current = epoch
	return k.persistLocked()
}

// Adopt replaces this node's KEKs with epoch's, learned from a peer when the node missed
// rotations (it was down or cut off): everything older is forgotten.
func (k *Keyring) Adopt(epoch uint64, kek [Size]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for e, old := range k.keks {
		clear(old[:])
		delete(k.keks, e)
	}
	k.keks[epoch], k.current = &kek, epoch
	return k.persistLocked()
}

// newest is the newest epoch held.
func (k *Keyring) newest() uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var n uint64
	for e := range k.keks {
		n = max(n, e)
	}
	return n
}

// kek returns a copy of the KEK of epoch.
func (k *Keyring) kek(epoch uint64) ([Size]byte, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	p, ok := k.keks[epoch]
	if !ok {
		return [Size]byte{}, false
	}
	return *p, true
}

// persistLocked rewrites the file in place: same size, offset 0, synced. Slots not in use
// are zeros under the seal.
func (k *Keyring) persistLocked() error {
	plain := make([]byte, 8+maxHeld*(8+Size))
	defer clear(plain)
	binary.BigEndian.PutUint64(plain, k.current)
	i := 0
	for e, kek := range k.keks {
		if i == maxHeld {
			return fmt.Errorf("kek: more than %d KEKs held", maxHeld)
		}
		slot := plain[8+i*(8+Size):]
		binary.BigEndian.PutUint64(slot, e)
		copy(slot[8:], kek[:])
		i++
	}
	aead, _ := chacha20poly1305.NewX(k.master[:])
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	out := aead.Seal(nonce, nonce, plain, []byte("lethe kek keyring"))
	f, err := os.OpenFile(k.path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("kek: write keyring: %w", err)
	}
	if _, err := f.WriteAt(out, 0); err != nil {
		f.Close()
		return fmt.Errorf("kek: write keyring: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("kek: sync keyring: %w", err)
	}
	return f.Close()
}

// Wrapped keys: epoch (8 bytes) ‖ nonce (24) ‖ XChaCha20-Poly1305(KEK_epoch, key, ad),
// with the associated data kind ‖ 0 ‖ id ‖ epoch, so a wrapped value cannot be moved to
// another key's name or replayed under another epoch.

func wrapAD(kind, id string, epoch uint64) []byte {
	ad := make([]byte, 0, len(kind)+len(id)+9)
	ad = append(ad, kind...)
	ad = append(ad, 0)
	ad = append(ad, id...)
	return binary.BigEndian.AppendUint64(ad, epoch)
}

// Wrap wraps key under the newest KEK this node holds: the current epoch's, or from
// Prepare on, the next one's, so that the re-wrap after Prepare leaves nothing behind.
func (k *Keyring) Wrap(kind, id string, key []byte) ([]byte, error) {
	if len(key) != Size {
		return nil, errKeyLength
	}
	epoch := k.newest()
	kek, ok := k.kek(epoch)
	if !ok {
		return nil, ErrNoEpoch
	}
	defer clear(kek[:])
	aead, _ := chacha20poly1305.NewX(kek[:])
	out := binary.BigEndian.AppendUint64(nil, epoch)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, key, wrapAD(kind, id, epoch)), nil
}

// Unwrap opens a wrapped key with the KEK of the epoch it names; ErrNoEpoch when this
// node no longer (or not yet) holds it.
func (k *Keyring) Unwrap(kind, id string, wrapped []byte) ([]byte, error) {
	if len(wrapped) < 8+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, ErrWrapped
	}
	epoch := binary.BigEndian.Uint64(wrapped)
	kek, ok := k.kek(epoch)
	if !ok {
		return nil, ErrNoEpoch
	}
	defer clear(kek[:])
	aead, _ := chacha20poly1305.NewX(kek[:])
	nonce := wrapped[8 : 8+chacha20poly1305.NonceSizeX]
	key, err := aead.Open(nil, nonce, wrapped[8+chacha20poly1305.NonceSizeX:], wrapAD(kind, id, epoch))
	if err != nil {
		return nil, ErrWrapped
	}
	return key, nil
}

// EpochOf is the epoch a wrapped key names.
func EpochOf(wrapped []byte) uint64 {
	if len(wrapped) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(wrapped)
}
