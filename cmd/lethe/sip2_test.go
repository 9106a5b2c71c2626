package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/schemas"
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

// TestSIP2Client: lethe sip2 logs in as a kiosk and checks an item out and in; a refused
// checkout and a wrong password exit non-zero; the password is never printed.
func TestSIP2Client(t *testing.T) {
	h := lethetest.New(t, lethetest.WithSIP2(false))
	h.Register("21000000000777", "Sip Client", "1980-01-01")
	h.Register("21000000000778", "Sip Other", "1980-01-01")
	h.Catalog("30000777", 1000)
	user, pw := h.SIP2Kiosk("main", "cli")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lethe := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		args = append([]string{"sip2", "--server", h.SIP2Addr(), "--user", user, "--password-file", pwFile}, args...)
		err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
		return out.String(), err
	}
	out, err := lethe("checkout", "21000000000777", "30000777")
	if err != nil || !regexp.MustCompile(`(?m)^< 121NUY.*AJTitle 30000777\|AH`).MatchString(out) {
		t.Fatalf("lethe sip2 checkout = %v\n%s", err, out)
	}
	if strings.Contains(out, pw) || !strings.Contains(out, "CO********") {
		t.Errorf("the password was printed:\n%s", out)
	}
	if out, err := lethe("checkout", "21000000000778", "30000777"); err == nil || !strings.Contains(out, "< 120") {
		t.Errorf("a checkout of the item on loan = %v\n%s", err, out)
	}
	if out, err := lethe("checkin", "30000777"); err != nil || !strings.Contains(out, "< 101") {
		t.Errorf("lethe sip2 checkin = %v\n%s", err, out)
	}
	if out, err := lethe("--checksums=false", "send", "9900302.00"); err != nil || !strings.Contains(out, "> 9900302.00\n< 98YYYY") {
		t.Errorf("lethe sip2 send 99 = %v\n%s", err, out)
	}
	if err := os.WriteFile(pwFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := lethe("status"); err == nil {
		t.Error("a wrong password exited 0")
	}
	if n := lethetest.CountType(h.Events(), schemas.TypeItemCheckedOut); n != 1 {
		t.Errorf("%d checkouts on the stream, want 1", n)
	}
}

// TestSIP2ClientTLS: lethe sip2 --tls --ca-cert against a TLS listener.
func TestSIP2ClientTLS(t *testing.T) {
	certFile, keyFile, _ := testkit.SelfSignedCert(t)
	h := lethetest.New(t, lethetest.WithSIP2(false), lethetest.WithSIP2Config(func(c *node.SIP2Config) { c.TLSCert, c.TLSKey = certFile, keyFile }))
	user, pw := h.SIP2Kiosk("main", "cli")
	var out, errOut bytes.Buffer
	args := []string{"sip2", "--tls", "--ca-cert", certFile, "--user", user, "status"}
	env := map[string]string{"LETHE_SIP2_LISTEN": h.SIP2Addr(), "LETHE_SIP2_PASSWORD": pw}
	if err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("lethe sip2 --tls status: %v\n%s%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "< 98YYYY") {
		t.Errorf("lethe sip2 --tls status:\n%s", out.String())
	}
}
