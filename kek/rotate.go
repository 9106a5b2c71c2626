package kek

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// The rotation's messages go over core NATS request/reply, never a stream, so no KEK is
// ever persisted by JetStream. A KEK travels sealed with HPKE (RFC 9180, X25519,
// HKDF-SHA256, ChaCha20-Poly1305) to the receiving node's key, and every message is signed
// by its sender's Ed25519 node key, so no one else can plant a KEK or end an epoch.

// subjectPrefix is the subject of a node's rotation messages: <prefix>.<node id>.
const subjectPrefix = "lethe.cluster.kek"

// Identity is a node's keys: Ed25519 to sign, X25519 to receive KEKs.
type Identity struct {
	ID   string
	Sign ed25519.PrivateKey
	Box  *ecdh.PrivateKey
}

// Peer is what the other nodes know of a node: its id and public keys.
type Peer struct {
	ID   string
	Sign ed25519.PublicKey
	Box  *ecdh.PublicKey
}

// NewIdentity makes a node's keys.
func NewIdentity(id string) (Identity, error) {
	_, sign, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	box, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	return Identity{ID: id, Sign: sign, Box: box}, nil
}

// Peer is the public part of the identity.
func (i Identity) Peer() Peer {
	return Peer{ID: i.ID, Sign: i.Sign.Public().(ed25519.PublicKey), Box: i.Box.PublicKey()}
}

// message is one rotation message. Sealed is the KEK sealed to the receiver (prepare,
// and the answer to fetch).
type message struct {
	Op     string `json:"op"` // prepare, switch, commit, abort, fetch, or ok in an answer
	Epoch  uint64 `json:"epoch"`
	From   string `json:"from"`
	To     string `json:"to"`
	Sealed []byte `json:"sealed,omitempty"`
	// Switched, in the answer to prepare: the node already wraps under the epoch (a
	// rotation an earlier leader began switching), so it must be finished.
	Switched bool `json:"switched,omitempty"`
	// Other and SealedOther, in the answer to fetch: the epoch held beside the current one
	// during a rotation, and its KEK.
	Other       uint64 `json:"other,omitempty"`
	SealedOther []byte `json:"sealed_other,omitempty"`
	Error       string `json:"error,omitempty"`
	Sig         []byte `json:"sig"`
}

func (m *message) signed() []byte {
	b := []byte("lethe kek\x00" + m.Op + "\x00" + m.From + "\x00" + m.To + "\x00" + m.Error + "\x00")
	b = binary.BigEndian.AppendUint64(b, m.Epoch)
	b = binary.BigEndian.AppendUint64(b, m.Other)
	if m.Switched {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Sealed)))
	b = append(b, m.Sealed...)
	return append(b, m.SealedOther...)
}

func (m *message) sign(id Identity) { m.Sig = ed25519.Sign(id.Sign, m.signed()) }

func (m *message) verify(p Peer) bool { return ed25519.Verify(p.Sign, m.signed(), m.Sig) }

var suite = struct {
	kdf  hpke.KDF
	aead hpke.AEAD
}{hpke.HKDFSHA256(), hpke.ChaCha20Poly1305()}

func sealInfo(epoch uint64, to string) []byte {
	return binary.BigEndian.AppendUint64([]byte("lethe kek seal\x00"+to+"\x00"), epoch)
}

func sealTo(p Peer, epoch uint64, kek [Size]byte) ([]byte, error) {
	pk, err := hpke.NewDHKEMPublicKey(p.Box)
	if err != nil {
		return nil, err
	}
	return hpke.Seal(pk, suite.kdf, suite.aead, sealInfo(epoch, p.ID), kek[:])
}

func openFor(id Identity, epoch uint64, sealed []byte) ([Size]byte, error) {
	var kek [Size]byte
	sk, err := hpke.NewDHKEMPrivateKey(id.Box)
	if err != nil {
		return kek, err
	}
	plain, err := hpke.Open(sk, suite.kdf, suite.aead, sealInfo(epoch, id.ID), sealed)
	if err != nil || len(plain) != Size {
		return kek, errors.New("kek: a sealed KEK that does not open")
	}
	copy(kek[:], plain)
	clear(plain)
	return kek, nil
}

// Member answers the rotation messages to one node: it prepares and commits epochs on
// its keyring, and gives the current KEK to a known peer that missed rotations.
type Member struct {
	id    Identity
	ring  *Keyring
	peers map[string]Peer
	sub   *nats.Subscription
	mu    sync.Mutex // one message at a time

	// members, when set (Follow), is read again when a message comes from a sender this
	// member does not know: a node that just joined asks for the KEK at once.
	members    *Members
	lastLookup time.Time
}

// Follow makes the member read the member list again, at most every 200 ms, when a
// message comes from a sender it does not know.
func (m *Member) Follow(members *Members) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members = members
}

// lookupLocked refreshes the peers from the member list; m.mu is held.
func (m *Member) lookupLocked() {
	if m.members == nil || time.Since(m.lastLookup) < 200*time.Millisecond {
		return
	}
	m.lastLookup = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	peers, err := m.members.List(ctx)
	if err != nil {
		return
	}
	m.peers = map[string]Peer{}
	for _, p := range peers {
		m.peers[p.ID] = p
	}
}

// Serve subscribes the node to its rotation subject. peers are the cluster's nodes whose
// messages it accepts. Close unsubscribes.
func Serve(nc *nats.Conn, id Identity, ring *Keyring, peers []Peer) (*Member, error) {
	m := &Member{id: id, ring: ring, peers: map[string]Peer{}}
	for _, p := range peers {
		m.peers[p.ID] = p
	}
	sub, err := nc.Subscribe(subjectPrefix+"."+id.ID, m.handle)
	if err != nil {
		return nil, err
	}
	m.sub = sub
	return m, nil
}

// SetPeers replaces the nodes whose messages the member accepts (the member list
// changed).
func (m *Member) SetPeers(peers []Peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peers = map[string]Peer{}
	for _, p := range peers {
		m.peers[p.ID] = p
	}
}

// Close stops answering; it waits for a message being handled.
func (m *Member) Close() error {
	err := m.sub.Unsubscribe()
	m.mu.Lock()
	defer m.mu.Unlock()
	return err
}

func (m *Member) handle(msg *nats.Msg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var req message
	answer := message{Op: "ok", From: m.id.ID}
	reply := func() {
		answer.sign(m.id)
		raw, _ := json.Marshal(answer)
		_ = msg.Respond(raw)
	}
	if json.Unmarshal(msg.Data, &req) != nil || req.To != m.id.ID {
		answer.Error = "malformed"
		reply()
		return
	}
	answer.To, answer.Epoch = req.From, req.Epoch
	peer, ok := m.peers[req.From]
	if !ok || !req.verify(peer) {
		m.lookupLocked() // a node that joined since, or whose keys changed (a lost disk)
		peer, ok = m.peers[req.From]
	}
	if !ok || !req.verify(peer) {
		answer.Error = "unknown sender or bad signature"
		reply()
		return
	}
	switch req.Op {
	case "prepare":
		if m.ring.Current() >= req.Epoch && m.holds(req.Epoch) {
			answer.Switched = true
			break
		}
		kek, err := openFor(m.id, req.Epoch, req.Sealed)
		if err == nil {
			err = m.ring.Prepare(req.Epoch, kek)
			clear(kek[:])
		}
		if err != nil {
			answer.Error = err.Error()
		}
	case "switch":
		if err := m.ring.Switch(req.Epoch); err != nil {
			answer.Error = err.Error()
		}
	case "commit":
		if err := m.ring.Commit(req.Epoch); err != nil && m.ring.Current() != req.Epoch {
			answer.Error = err.Error()
		}
	case "abort":
		if err := m.ring.Abort(req.Epoch); err != nil {
			answer.Error = err.Error()
		}
	case "fetch":
		epoch := m.ring.Current()
		kek, ok := m.ring.kek(epoch)
		if !ok {
			answer.Error = ErrNoEpoch.Error()
			break
		}
		sealed, err := sealTo(peer, epoch, kek)
		clear(kek[:])
		if err != nil {
			answer.Error = err.Error()
			break
		}
		answer.Epoch, answer.Sealed = epoch, sealed
		if other := m.ring.beside(); other != 0 {
			if okek, ok := m.ring.kek(other); ok {
				sealed, err := sealTo(peer, other, okek)
				clear(okek[:])
				if err != nil {
					answer.Error = err.Error()
					break
				}
				answer.Other, answer.SealedOther = other, sealed
			}
		}
	default:
		answer.Error = "unknown operation"
	}
	reply()
}

func (m *Member) holds(epoch uint64) bool {
	_, ok := m.ring.kek(epoch)
	return ok
}

// request sends one signed message to a peer and checks its signed answer.
func request(ctx context.Context, nc *nats.Conn, from Identity, to Peer, req message) (message, error) {
	req.From, req.To = from.ID, to.ID
	req.sign(from)
	raw, _ := json.Marshal(req)
	// Each request has its own bound. A request to a member that has just stopped
	// answering can be lost without "no responders": its subscription's interest lingers
	// on the other servers of the NATS cluster for a moment. Unbounded, that request held
	// the rotation, and the epoch lock, for as long as the caller's lease lasted.
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subjectPrefix+"."+to.ID, raw)
	if err != nil {
		return message{}, fmt.Errorf("kek: %s to %s: %w", req.Op, to.ID, err)
	}
	var ans message
	if json.Unmarshal(msg.Data, &ans) != nil || ans.From != to.ID || ans.To != from.ID || !ans.verify(to) {
		return message{}, fmt.Errorf("kek: %s to %s: an answer that is not the node's", req.Op, to.ID)
	}
	if ans.Error != "" {
		return ans, fmt.Errorf("kek: %s to %s: %s", req.Op, to.ID, ans.Error)
	}
	return ans, nil
}

// requestTimeout bounds one request of a rotation or a catch-up to one member: its work
// is in memory (a seal, a switch after the wraps in flight), so an answer slower than this
// is an answer lost.
const requestTimeout = 10 * time.Second

// Rotation is what a rotation did.
type Rotation struct {
	Epoch    uint64
	Rewraps  int
	Duration time.Duration
}

// Rotate ends the current epoch across the cluster, led by this node (the holder of the
// rotation's lease). members are every node of the cluster, this one included; each step
// needs all of them:
//
//  1. prepare: the next KEK (drawn fresh, or the one this node holds prepared from a
//     rotation that did not finish) is sent to every member, which keeps it beside the
//     current one without using it. If a member cannot be reached and none has switched,
//     the rotation is abandoned (abort) and the old epoch stays: nothing was wrapped
//     under the new KEK.
//  2. switch: every member wraps under the new epoch from now on, after the wraps it has in
//     flight, and retains the old KEK.
//  3. re-wrap: every live key still under the old epoch is wrapped under the new one.
//  4. commit: every member forgets the old KEK. From then on no KEK that exists anywhere
//     unwraps a key destroyed before step 3.
//
// A rotation stopped after a member switched is finished by the next (this node's or
// another leader's, which holds the new KEK since every member prepared it), never
// abandoned: keys may be wrapped under either KEK until its re-wrap.
func Rotate(ctx context.Context, nc *nats.Conn, self Identity, ring *Keyring, store *Store, members []Peer) (Rotation, error) {
	start := time.Now()
	cur := ring.Current()
	if _, ok := ring.kek(cur); !ok {
		return Rotation{}, ErrNoEpoch
	}
	next := cur + 1
	if b := ring.beside(); b != 0 && b < cur {
		next = cur // this node switched to cur and its rotation did not finish
	} else if err := prepare(ctx, nc, self, ring, members, next); err != nil {
		return Rotation{}, err
	}
	for _, p := range members {
		if _, err := request(ctx, nc, self, p, message{Op: "switch", Epoch: next}); err != nil {
			return Rotation{}, err
		}
	}
	n, err := store.Rewrap(ctx)
	if err != nil {
		return Rotation{}, err
	}
	for _, p := range members {
		if _, err := request(ctx, nc, self, p, message{Op: "commit", Epoch: next}); err != nil {
			return Rotation{}, err
		}
	}
	return Rotation{Epoch: next, Rewraps: n, Duration: time.Since(start)}, nil
}

// prepare sends the next epoch's KEK to every member (step 1 of Rotate).
func prepare(ctx context.Context, nc *nats.Conn, self Identity, ring *Keyring, members []Peer, next uint64) error {
	kek, ok := ring.kek(next)
	if !ok {
		// Fresh randomness, mixed with the current KEK: a weak random source on this node
		// alone cannot make the next KEK predictable to whoever lacks the current one.
		curKEK, _ := ring.kek(next - 1)
		fresh := make([]byte, Size)
		rand.Read(fresh)
		derived, err := hkdf.Key(sha256.New, fresh, curKEK[:], "lethe kek epoch", Size)
		clear(fresh)
		clear(curKEK[:])
		if err != nil {
			return err
		}
		copy(kek[:], derived)
		clear(derived)
	}
	defer clear(kek[:])
	var (
		prepared []Peer
		switched bool
		failed   error
	)
	for _, p := range members {
		sealed, err := sealTo(p, next, kek)
		if err != nil {
			return err
		}
		ans, err := request(ctx, nc, self, p, message{Op: "prepare", Epoch: next, Sealed: sealed})
		if err != nil {
			failed = err
			continue
		}
		prepared = append(prepared, p)
		switched = switched || ans.Switched
	}
	if failed == nil {
		return nil
	}
	if !switched {
		// No member wraps under the new KEK: abandon it, so that a later rotation may
		// draw another (those that miss the abort have theirs replaced then).
		for _, p := range prepared {
			_, _ = request(ctx, nc, self, p, message{Op: "abort", Epoch: next})
		}
	}
	return failed
}

// CatchUp asks peer for its KEKs (the current epoch's, and the one beside it during a
// rotation) and adopts them: a node that missed rotations does this when it returns,
// forgetting what it held.
func CatchUp(ctx context.Context, nc *nats.Conn, self Identity, ring *Keyring, peer Peer) (uint64, error) {
	ans, err := request(ctx, nc, self, peer, message{Op: "fetch"})
	if err != nil {
		return 0, err
	}
	kek, err := openFor(self, ans.Epoch, ans.Sealed)
	if err != nil {
		return 0, err
	}
	defer clear(kek[:])
	var other [Size]byte
	if ans.Other != 0 {
		if other, err = openFor(self, ans.Other, ans.SealedOther); err != nil {
			return 0, err
		}
		defer clear(other[:])
	}
	if ans.Epoch < ring.Current() {
		return ring.Current(), fmt.Errorf("kek: %s is behind this node (epoch %d < %d)", peer.ID, ans.Epoch, ring.Current())
	}
	return ans.Epoch, ring.Adopt(ans.Epoch, kek, ans.Other, other)
}
