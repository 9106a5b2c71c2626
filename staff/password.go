package staff

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/imagineif/lethe/schemas"
)

// Password hashes are argon2id in the PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. The parameters travel with each hash, so
// they can be raised here later: old hashes still verify with their own parameters and are
// rehashed with the new ones at the next successful login.
//
// The parameters are OWASP's minimum for argon2id (19 MiB, two passes, one lane).
const (
	argonMemory  = 19456 // KiB
	argonTime    = 2
	argonThreads = 1
	saltLen      = 16
	keyLen       = 32
)

// Bounds on parameters read back from the store, so that a damaged or hostile hash cannot
// make a login allocate gigabytes or spin for minutes.
const (
	maxMemory = 1 << 20 // KiB: 1 GiB
	maxTime   = 64
)

// The password policy, in characters (Unicode code points).
const (
	minPasswordChars = 12
	maxPasswordChars = 256
)

// b64 is the PHC string format's base64: standard alphabet, no padding; strict, so that
// each hash has one spelling.
func b64() *base64.Encoding { return base64.RawStdEncoding.Strict() }

// hashParams are the argon2id parameters of one hash.
type hashParams struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
}

func currentParams() hashParams {
	return hashParams{memory: argonMemory, time: argonTime, threads: argonThreads}
}

// phcHash is a parsed PHC string.
type phcHash struct {
	params hashParams
	salt   []byte
	key    []byte
}

// hashPassword returns the PHC string of password under a fresh random salt.
func hashPassword(password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	p := currentParams()
	return phcHash{params: p, salt: salt, key: argon2Key(password, salt, p, keyLen)}.String(), nil
}

// String is the PHC encoding.
func (h phcHash) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		h.params.memory, h.params.time, h.params.threads, b64().EncodeToString(h.salt), b64().EncodeToString(h.key))
}

// errBadHash never carries the hash: it is as good as a password to an offline attacker.
var errBadHash = errors.New("stored password hash is malformed")

// parseHash parses a PHC argon2id string. It accepts only the canonical spelling that
// String writes.
func parseHash(s string) (phcHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return phcHash{}, errBadHash
	}
	var h phcHash
	p := &h.params
	// Sscanf is lenient (signs, leading zeros, trailing text); the canonical spelling is not.
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil ||
		fmt.Sprintf("m=%d,t=%d,p=%d", p.memory, p.time, p.threads) != parts[3] {
		return phcHash{}, errBadHash
	}
	if p.threads == 0 || p.time == 0 || p.time > maxTime || p.memory < 8*uint32(p.threads) || p.memory > maxMemory {
		return phcHash{}, errBadHash
	}
	var err error
	if h.salt, err = b64().DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return phcHash{}, errBadHash
	}
	if h.key, err = b64().DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return phcHash{}, errBadHash
	}
	return h, nil
}

// matches reports, in time independent of where the keys differ, whether password hashes
// to h.
func (h phcHash) matches(password string) bool {
	k := argon2Key(password, h.salt, h.params, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(k, h.key) == 1
}

func argon2Key(password string, salt []byte, p hashParams, n uint32) []byte {
	return argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, n)
}

// stale reports whether h was made with other parameters than hashPassword uses now.
func (h phcHash) stale() bool {
	return h.params != currentParams() || len(h.salt) != saltLen || len(h.key) != keyLen
}

// checkPassword applies the password policy. Its errors never contain the password.
func checkPassword(name, password string) error {
	if !utf8.ValidString(password) {
		return schemas.Errorf(schemas.CodeInvalid, "a password must be valid UTF-8 text")
	}
	n := utf8.RuneCountInString(password)
	if n < minPasswordChars {
		return schemas.Errorf(schemas.CodeInvalid, "a password must be at least %d characters long", minPasswordChars)
	}
	if n > maxPasswordChars {
		return schemas.Errorf(schemas.CodeInvalid, "a password must be at most %d characters long", maxPasswordChars)
	}
	if strings.EqualFold(password, name) {
		return schemas.Errorf(schemas.CodeInvalid, "a password must not be the account name")
	}
	return nil
}
