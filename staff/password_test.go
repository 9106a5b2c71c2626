package staff

import (
	"bytes"
	"strings"
	"testing"
)

func TestPHCRoundTrip(t *testing.T) {
	t.Parallel()
	const pw = "correct horse battery staple"
	enc, err := hashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hashPassword = %q, want prefix $argon2id$v=19$m=19456,t=2,p=1$", enc)
	}
	if strings.Contains(enc, pw) {
		t.Errorf("hashPassword = %q contains the password", enc)
	}
	h, err := parseHash(enc)
	if err != nil {
		t.Fatalf("parseHash(%q) = %v", enc, err)
	}
	if got := h.String(); got != enc {
		t.Errorf("parseHash(%q).String() = %q, want the input", enc, got)
	}
	if len(h.salt) != saltLen || len(h.key) != keyLen || h.params != currentParams() || h.stale() {
		t.Errorf("parseHash(%q) = %+v, want a current 16-byte salt and 32-byte key", enc, h)
	}
	if !h.matches(pw) {
		t.Errorf("matches(right password) = false")
	}
	if h.matches(pw + "!") {
		t.Errorf("matches(wrong password) = true")
	}
	// Two hashes of one password differ: the salt is random.
	enc2, err := hashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if enc2 == enc {
		t.Errorf("two hashes of one password are equal: %q", enc)
	}
}

func TestParseHashRejectsMalformed(t *testing.T) {
	t.Parallel()
	good := phcHash{params: currentParams(), salt: bytes.Repeat([]byte{1}, 16), key: bytes.Repeat([]byte{2}, 32)}.String()
	if _, err := parseHash(good); err != nil {
		t.Fatalf("parseHash(%q) = %v, want nil", good, err)
	}
	salt, key := "AQEBAQEBAQEBAQEBAQEBAQ", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"
	for _, s := range []string{
		"",
		"plaintext password",
		"$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=019456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=+2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1,x=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=4,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=99999999,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=1000,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$AQ$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$AgIC",
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "$",
		"x$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
	} {
		if h, err := parseHash(s); err == nil {
			t.Errorf("parseHash(%q) = %+v, nil; want an error", s, h)
		}
	}
}

func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, password string
		ok             bool
	}{
		{"alice", "elevenchars", false},
		{"alice", "twelve chars", true},
		{"alice", strings.Repeat("é", 11), false}, // 22 bytes, 11 characters
		{"alice", strings.Repeat("é", 12), true},
		{"alice", strings.Repeat("x", 256), true},
		{"alice", strings.Repeat("x", 257), false},
		{"alice.librarian", "alice.librarian", false},
		{"alice.librarian", "Alice.Librarian", false},
		{"alice", "\xff\xfe invalid utf-8", false},
	} {
		err := checkPassword(tc.name, tc.password)
		if (err == nil) != tc.ok {
			t.Errorf("checkPassword(%q, %q) = %v, want ok=%v", tc.name, tc.password, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), tc.password) {
			t.Errorf("checkPassword(%q, %q) = %v, which repeats the password", tc.name, tc.password, err)
		}
	}
}
