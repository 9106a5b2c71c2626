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
	"time"

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

// A keyring is in one of three states: the current epoch's KEK alone; the current one and
// the next one, prepared (received, not used); or, during a rotation's switch, the
// current one and the previous one, retained (keys may still be wrapped under it until
// the leader's re-wrap ends). Keys are always wrapped under the current epoch.

// Prepare adds the next epoch's KEK beside the current one, durably, without using it:
// keys are still wrapped under the current epoch until Switch. epoch must be current+1. A
// KEK prepared for the same epoch before (by a rotation that was abandoned before any node
// switched) is replaced. A previous epoch still retained is dropped: a prepare of the next
// epoch comes from a leader that committed the current one, after its re-wrap.
func (k *Keyring) Prepare(epoch uint64, kek [Size]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if epoch != k.current+1 {
		return ErrOldEpoch
	}
	for e, old := range k.keks {
		if e < k.current || e == epoch {
			clear(old[:])
			delete(k.keks, e)
		}
	}
	k.keks[epoch] = &kek
	return k.persistLocked()
}

// Switch makes the prepared epoch the current one: keys are wrapped under it from now on,
// and the previous KEK is retained to unwrap what is not yet re-wrapped. It waits for the
// wraps in flight (Keyring.wraps), so once every node has switched, no key wrapped under
// the previous epoch is still on its way into the bucket, and the leader's re-wrap finds
// them all. Switching to the current epoch again does nothing.
func (k *Keyring) Switch(epoch uint64) error {
	k.wraps.Lock()
	defer k.wraps.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if epoch == k.current {
		return nil
	}
	if _, ok := k.keks[epoch]; !ok || epoch != k.current+1 {
		return ErrNotHeld
	}
	k.current = epoch
	return k.persistLocked()
}

// Commit ends every epoch before epoch, which must be held: their KEKs are overwritten in
// the file and cleared from memory. A node that missed the switch switches now.
func (k *Keyring) Commit(epoch uint64) error {
	k.wraps.Lock()
	defer k.wraps.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keks[epoch]; !ok || epoch < k.current {
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

// ErrSwitched refuses to abandon an epoch a node already wraps under.
var ErrSwitched = errors.New("kek: this node switched to that epoch: the rotation must be finished, not abandoned")

// Abort forgets a prepared epoch that will not be used: a rotation that could not prepare
// every node is abandoned before any switched.
func (k *Keyring) Abort(epoch uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if epoch <= k.current {
		return ErrSwitched
	}
	old, ok := k.keks[epoch]
	if !ok {
		return nil
	}
	clear(old[:])
	delete(k.keks, epoch)
	return k.persistLocked()
}

// Adopt replaces this node's KEKs with a peer's, learned when the node missed rotations
// (it was down or cut off): the current epoch's, and the one beside it if the peer holds
// one (other 0: none). Everything else is forgotten.
func (k *Keyring) Adopt(epoch uint64, kek [Size]byte, other uint64, otherKEK [Size]byte) error {
	k.wraps.Lock()
	defer k.wraps.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	for e, old := range k.keks {
		clear(old[:])
		delete(k.keks, e)
	}
	k.keks[epoch], k.current = &kek, epoch
	if other != 0 && other != epoch {
		k.keks[other] = &otherKEK
	}
	return k.persistLocked()
}

// beside is the epoch held beside the current one (prepared or retained), or 0.
func (k *Keyring) beside() uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for e := range k.keks {
		if e != k.current {
			return e
		}
	}
	return 0
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

// Wrapped keys: epoch (8 bytes) ‖ created (8, Unix milliseconds) ‖ nonce (24) ‖
// XChaCha20-Poly1305(KEK_epoch, key, ad), with the associated data kind ‖ 0 ‖ id ‖ epoch ‖
// created, so a wrapped value cannot be moved to another key's name, replayed under
// another epoch, or made to look older. The creation time survives re-wraps: the start-up
// reconciliation of a node destroys only keys old enough that the event that would use
// them is on the stream if it ever will be (keystore.RemoteGrace).
const wrapHeader = 16

func wrapAD(kind, id string, epoch uint64, created int64) []byte {
	ad := make([]byte, 0, len(kind)+len(id)+17)
	ad = append(ad, kind...)
	ad = append(ad, 0)
	ad = append(ad, id...)
	ad = binary.BigEndian.AppendUint64(ad, epoch)
	return binary.BigEndian.AppendUint64(ad, uint64(created))
}

// Wrap wraps key under the current epoch's KEK. A caller that writes the value to the
// bucket holds Keyring.wraps (read) until the bucket has it: see Switch.
func (k *Keyring) Wrap(kind, id string, key []byte, created time.Time) ([]byte, error) {
	if len(key) != Size {
		return nil, errKeyLength
	}
	epoch := k.Current()
	kek, ok := k.kek(epoch)
	if !ok {
		return nil, ErrNoEpoch
	}
	defer clear(kek[:])
	aead, _ := chacha20poly1305.NewX(kek[:])
	ms := created.UnixMilli()
	out := binary.BigEndian.AppendUint64(nil, epoch)
	out = binary.BigEndian.AppendUint64(out, uint64(ms))
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, key, wrapAD(kind, id, epoch, ms)), nil
}

// Unwrap opens a wrapped key with the KEK of the epoch it names; ErrNoEpoch when this
// node no longer (or not yet) holds it.
func (k *Keyring) Unwrap(kind, id string, wrapped []byte) ([]byte, error) {
	if len(wrapped) < wrapHeader+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, ErrWrapped
	}
	epoch := binary.BigEndian.Uint64(wrapped)
	kek, ok := k.kek(epoch)
	if !ok {
		return nil, ErrNoEpoch
	}
	defer clear(kek[:])
	aead, _ := chacha20poly1305.NewX(kek[:])
	ms := int64(binary.BigEndian.Uint64(wrapped[8:]))
	nonce := wrapped[wrapHeader : wrapHeader+chacha20poly1305.NonceSizeX]
	key, err := aead.Open(nil, nonce, wrapped[wrapHeader+chacha20poly1305.NonceSizeX:], wrapAD(kind, id, epoch, ms))
	if err != nil {
		return nil, ErrWrapped
	}
	return key, nil
}

// CreatedOf is when a wrapped key was created, as its value says (authenticated by
// Unwrap, not by this).
func CreatedOf(wrapped []byte) time.Time {
	if len(wrapped) < wrapHeader {
		return time.Time{}
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(wrapped[8:])))
}

// EpochOf is the epoch a wrapped key names.
func EpochOf(wrapped []byte) uint64 {
	if len(wrapped) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(wrapped)
}
