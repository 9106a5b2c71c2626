package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagineif/lethe/identity"
)

// TestKiosksAddGivesASIP2Login: kiosks add prints the kiosk's SIP2 login once, the
// registry keeps only a hash of the password, and sip2-password replaces it.
func TestKiosksAddGivesASIP2Login(t *testing.T) {
	dir := t.TempDir()
	lethe := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("lethe %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	password := regexp.MustCompile(`SIP2 login \(shown once; Lethe keeps only its hash\): user id main/k1, password ([A-Za-z0-9]{22})\n`)
	m := password.FindStringSubmatch(lethe("kiosks", "add", "main", "k1", "--data", dir, "--out", filepath.Join(dir, "k1.nk")))
	if m == nil {
		t.Fatal("kiosks add printed no SIP2 login")
	}
	reg := identity.Open(dir)
	if _, err := reg.SIP2Login("main/k1", m[1]); err != nil {
		t.Errorf("SIP2Login with the printed password: %v", err)
	}
	ids, _ := reg.List()
	if len(ids) != 1 || !strings.HasPrefix(ids[0].SIP2Password, "$argon2id$") || strings.Contains(ids[0].SIP2Password, m[1]) {
		t.Errorf("registry holds %+v, want an argon2id hash only", ids)
	}
	n := password.FindStringSubmatch(lethe("kiosks", "sip2-password", "main", "k1", "--data", dir))
	if n == nil || n[1] == m[1] {
		t.Fatalf("sip2-password printed %v, want a new password", n)
	}
	if _, err := reg.SIP2Login("main/k1", m[1]); err == nil {
		t.Error("the old SIP2 password still logs in")
	}
	if _, err := reg.SIP2Login("main/k1", n[1]); err != nil {
		t.Errorf("the new SIP2 password: %v", err)
	}
	lethe("kiosks", "revoke", "main", "k1", "--data", dir)
	if _, err := reg.SIP2Login("main/k1", n[1]); err == nil {
		t.Error("a revoked kiosk's SIP2 password still logs in")
	}
}
