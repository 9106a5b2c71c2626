// Package phc hashes secrets people choose (staff passwords, patron PINs) with argon2id,
// in the PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. The parameters travel with each hash, so
// they can be raised here later: old hashes still verify with their own parameters, and
// Stale says when one should be made again. The parameters are OWASP's minimum for
// argon2id (19 MiB, two passes, one lane).
package phc

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

const (
	argonMemory  = 19456 // KiB
	argonTime    = 2
	argonThreads = 1
	// SaltLen and KeyLen are the lengths New makes.
	SaltLen = 16
	KeyLen  = 32
)

// Bounds on parameters read back, so that a damaged or hostile hash cannot make a check
// allocate gigabytes or spin for minutes.
const (
	maxMemory = 1 << 20 // KiB: 1 GiB
	maxTime   = 64
)

// b64 is the PHC string format's base64: standard alphabet, no padding; strict, so that
// each hash has one spelling.
func b64() *base64.Encoding { return base64.RawStdEncoding.Strict() }

// Params are the argon2id parameters of one hash.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// Current are the parameters New uses.
func Current() Params {
	return Params{Memory: argonMemory, Time: argonTime, Threads: argonThreads}
}

// Hash is a parsed PHC string.
type Hash struct {
	Params Params
	Salt   []byte
	Key    []byte
}

// New returns the PHC string of secret under a fresh random salt.
func New(secret string) (string, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	p := Current()
	return Hash{Params: p, Salt: salt, Key: Key(secret, salt, p, KeyLen)}.String(), nil
}

// String is the PHC encoding.
func (h Hash) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		h.Params.Memory, h.Params.Time, h.Params.Threads, b64().EncodeToString(h.Salt), b64().EncodeToString(h.Key))
}

// ErrBadHash never carries the hash: it is as good as the secret to an offline attacker.
var ErrBadHash = errors.New("stored hash is malformed")

// Parse parses a PHC argon2id string. It accepts only the canonical spelling that String
// writes.
func Parse(s string) (Hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return Hash{}, ErrBadHash
	}
	var h Hash
	p := &h.Params
	// Sscanf is lenient (signs, leading zeros, trailing text); the canonical spelling is not.
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil ||
		fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Time, p.Threads) != parts[3] {
		return Hash{}, ErrBadHash
	}
	if p.Threads == 0 || p.Time == 0 || p.Time > maxTime || p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory {
		return Hash{}, ErrBadHash
	}
	var err error
	if h.Salt, err = b64().DecodeString(parts[4]); err != nil || len(h.Salt) < 8 || len(h.Salt) > 64 {
		return Hash{}, ErrBadHash
	}
	if h.Key, err = b64().DecodeString(parts[5]); err != nil || len(h.Key) < 16 || len(h.Key) > 64 {
		return Hash{}, ErrBadHash
	}
	return h, nil
}

// Matches reports, in time independent of where the keys differ, whether secret hashes
// to h.
func (h Hash) Matches(secret string) bool {
	k := Key(secret, h.Salt, h.Params, uint32(len(h.Key)))
	return subtle.ConstantTimeCompare(k, h.Key) == 1
}

// Key is argon2id of secret under salt and p, n bytes long.
func Key(secret string, salt []byte, p Params, n uint32) []byte {
	return argon2.IDKey([]byte(secret), salt, p.Time, p.Memory, p.Threads, n)
}

// Stale reports whether h was made with other parameters than New uses now.
func (h Hash) Stale() bool {
	return h.Params != Current() || len(h.Salt) != SaltLen || len(h.Key) != KeyLen
}
