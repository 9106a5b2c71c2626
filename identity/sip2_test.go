package identity

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSIP2Login: a kiosk's SIP2 password logs in as that kiosk and no other; the registry
// holds its argon2id hash only; auditors have none; revoked kiosks and damaged hashes are
// refused.
func TestSIP2Login(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := Open(dir)
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for _, k := range []string{"k1", "k2"} {
		if _, _, err := r.Add(Kiosk, "main", k, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.Add(Auditor, "", "ann", now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetSIP2Password("", "ann"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetSIP2Password of an auditor = %v, want ErrNotFound", err)
	}
	pw, err := r.SetSIP2Password("main", "k1")
	if err != nil {
		t.Fatal(err)
	}
	if len(pw) != sip2PasswordLen || strings.Trim(pw, sip2Alphabet) != "" {
		t.Errorf("password %d characters outside the alphabet", len(pw))
	}
	id, err := r.SIP2Login("main/k1", pw)
	if err != nil || id.Branch != "main" || id.Name != "k1" {
		t.Errorf("SIP2Login(main/k1) = %+v, %v", id, err)
	}
	for _, c := range []struct{ user, pw string }{
		{"main/k2", pw}, {"main/k1", pw + "x"}, {"main/k1", ""}, {"k1", pw}, {"main/ann", pw}, {"/ann", pw},
	} {
		if _, err := r.SIP2Login(c.user, c.pw); err == nil {
			t.Errorf("SIP2Login(%q, ...) succeeded", c.user)
		}
	}
	data, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), pw) || !strings.Contains(string(data), `"sip2_password": "$argon2id$`) {
		t.Errorf("registry holds:\n%s", data)
	}
	// A damaged hash makes the registry unreadable, like any invalid entry.
	if err := os.WriteFile(r.Path(), []byte(strings.Replace(string(data), "$argon2id$", "$argon2i$", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.List(); err == nil {
		t.Error("a registry with a damaged SIP2 hash was read")
	}
	if err := os.WriteFile(r.Path(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Revoke(Kiosk, "main", "k1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SIP2Login("main/k1", pw); err == nil {
		t.Error("a revoked kiosk logged in")
	}
}
