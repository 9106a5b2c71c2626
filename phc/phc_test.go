package phc

import (
	"bytes"
	"strings"
	"testing"
)

func TestPHCRoundTrip(t *testing.T) {
	t.Parallel()
	const pw = "correct horse battery staple"
	enc, err := New(pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("New = %q, want prefix $argon2id$v=19$m=19456,t=2,p=1$", enc)
	}
	if strings.Contains(enc, pw) {
		t.Errorf("New = %q contains the password", enc)
	}
	h, err := Parse(enc)
	if err != nil {
		t.Fatalf("Parse(%q) = %v", enc, err)
	}
	if got := h.String(); got != enc {
		t.Errorf("Parse(%q).String() = %q, want the input", enc, got)
	}
	if len(h.Salt) != SaltLen || len(h.Key) != KeyLen || h.Params != Current() || h.Stale() {
		t.Errorf("Parse(%q) = %+v, want a current 16-byte salt and 32-byte key", enc, h)
	}
	if !h.Matches(pw) {
		t.Errorf("Matches(right password) = false")
	}
	if h.Matches(pw + "!") {
		t.Errorf("Matches(wrong password) = true")
	}
	// Two hashes of one password differ: the salt is random.
	enc2, err := New(pw)
	if err != nil {
		t.Fatal(err)
	}
	if enc2 == enc {
		t.Errorf("two hashes of one password are equal: %q", enc)
	}
}

func TestParseHashRejectsMalformed(t *testing.T) {
	t.Parallel()
	good := Hash{Params: Current(), Salt: bytes.Repeat([]byte{1}, 16), Key: bytes.Repeat([]byte{2}, 32)}.String()
	if _, err := Parse(good); err != nil {
		t.Fatalf("Parse(%q) = %v, want nil", good, err)
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
		if h, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %+v, nil; want an error", s, h)
		}
	}
}
