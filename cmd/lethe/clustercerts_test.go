package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/staff"
)

// letheCLI runs the CLI with no environment and returns stdout and the error.
func letheCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
	return out.String(), err
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClusterCerts(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs")
	caKey := filepath.Join(t.TempDir(), "ca.key")
	out, err := letheCLI(t, "cluster", "certs", "--out", dir, "--nodes", "lethe1,lethe2,lethe3",
		"--hosts", "lethe.example.org,192.0.2.7", "--ca-key", caKey)
	if err != nil {
		t.Fatalf("cluster certs = %v", err)
	}
	if !strings.Contains(out, filepath.Join(dir, "lethe2.key")+" (private key, mode 0600)") {
		t.Errorf("cluster certs printed %q, want each file it wrote", out)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"ca.crt", "lethe1.crt", "lethe1.key", "lethe2.crt", "lethe2.key", "lethe3.crt", "lethe3.key"}
	if !slices.Equal(names, want) {
		t.Fatalf("files in --out = %v, want %v (the CA's key only where --ca-key says)", names, want)
	}

	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("ca.crt: IsCA %v, key %v; want an ECDSA CA", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, n := range []string{"lethe1", "lethe2", "lethe3"} {
		crt := filepath.Join(dir, n+".crt")
		key := filepath.Join(dir, n+".key")
		if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want mode 0600", key, err, fi.Mode().Perm())
		}
		if fi, err := os.Stat(crt); err != nil || fi.Mode().Perm()&0o044 == 0 {
			t.Errorf("%s: %v; want a certificate others may read", crt, err)
		}
		if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
			t.Errorf("%s with %s: %v", crt, key, err)
		}
		c := readCert(t, crt)
		if c.PublicKeyAlgorithm != x509.ECDSA || c.IsCA {
			t.Errorf("%s: key %v, IsCA %v; want an ECDSA leaf", crt, c.PublicKeyAlgorithm, c.IsCA)
		}
		// Both usages, for every name: routes are TLS both ways, and the same certificate
		// serves NATS and HTTPS.
		for _, host := range []string{n, "localhost", "127.0.0.1", "lethe.example.org", "192.0.2.7"} {
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("%s for %s, usage %v: %v", crt, host, usage, err)
				}
			}
		}
		other := map[string]string{"lethe1": "lethe2", "lethe2": "lethe3", "lethe3": "lethe1"}[n]
		if err := c.VerifyHostname(other); err == nil {
			t.Errorf("%s verifies for %s: a node's certificate must name that node only", crt, other)
		}
	}
	// The CA's key, where asked for, signs certificates the others trust.
	if fi, err := os.Stat(caKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("--ca-key %s: %v; want it written with mode 0600", caKey, err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), caKey); err != nil {
		t.Errorf("ca.crt with the --ca-key file: %v", err)
	}

	// A mutual TLS handshake between two nodes, as their routes make it.
	mtls(t, dir, "lethe1", "lethe2")

	// Nothing is overwritten: a second run into the same directory fails and leaves every
	// file as it was; so does one whose only existing file is the last it would write.
	before := map[string][]byte{}
	for _, n := range want {
		before[n], _ = os.ReadFile(filepath.Join(dir, n))
	}
	if _, err := letheCLI(t, "cluster", "certs", "--out", dir, "--nodes", "lethe1,lethe2,lethe3"); err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Errorf("cluster certs into a full directory = %v, want a refusal to overwrite", err)
	}
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, "lethe4.key"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := letheCLI(t, "cluster", "certs", "--out", dir2, "--nodes", "lethe3,lethe4"); err == nil || !strings.Contains(err.Error(), "lethe4.key exists") {
		t.Errorf("cluster certs over an existing key = %v, want a refusal naming it", err)
	}
	if left, _ := os.ReadDir(dir2); len(left) != 1 {
		t.Errorf("after a refusal --out holds %d files, want only the one that was there", len(left))
	}
	for _, n := range want {
		if b, _ := os.ReadFile(filepath.Join(dir, n)); !bytes.Equal(b, before[n]) {
			t.Errorf("%s changed after a refused run", n)
		}
	}

	// --existing-ok keeps a whole set that verifies (a container's second start), and
	// refuses a partial one or one that does not verify.
	if out, err := letheCLI(t, "cluster", "certs", "--out", dir, "--nodes", "lethe1,lethe2,lethe3", "--existing-ok"); err != nil || !strings.Contains(out, "kept the certificates") {
		t.Errorf("cluster certs --existing-ok over a whole set = %q, %v; want it kept", out, err)
	}
	for _, n := range want {
		if b, _ := os.ReadFile(filepath.Join(dir, n)); !bytes.Equal(b, before[n]) {
			t.Errorf("%s changed with --existing-ok", n)
		}
	}
	if _, err := letheCLI(t, "cluster", "certs", "--out", dir, "--nodes", "lethe1,lethe2,lethe3,lethe4", "--existing-ok"); err == nil || !strings.Contains(err.Error(), "partial set") {
		t.Errorf("cluster certs --existing-ok with a node more = %v, want a partial set refused", err)
	}
	other := t.TempDir()
	if _, err := letheCLI(t, "cluster", "certs", "--out", other, "--nodes", "lethe1,lethe2,lethe3", "--existing-ok"); err != nil {
		t.Fatalf("cluster certs --existing-ok into an empty directory = %v, want a new set", err)
	}
	forged, _ := os.ReadFile(filepath.Join(other, "ca.crt"))
	if err := os.WriteFile(filepath.Join(other, "ca.crt"), before["ca.crt"], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := letheCLI(t, "cluster", "certs", "--out", other, "--nodes", "lethe1,lethe2,lethe3", "--existing-ok"); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("cluster certs --existing-ok with another set's ca.crt = %v, want it refused", err)
	}
	if bytes.Equal(forged, before["ca.crt"]) {
		t.Error("two runs made the same CA")
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "lethe1"}, "--out is required"},
		{[]string{"--out", t.TempDir()}, "--nodes is required"},
		{[]string{"--out", t.TempDir(), "--nodes", "lethe1,../x"}, "not a node name"},
		{[]string{"--out", t.TempDir(), "--nodes", "lethe1,LETHE1"}, "named twice"},
		{[]string{"--out", t.TempDir(), "--nodes", "ca"}, "not a node name"},
		{[]string{"--out", t.TempDir(), "--nodes", "lethe1", "--hosts", "a b"}, "neither an IP address nor a host name"},
	} {
		_, err := letheCLI(t, append([]string{"cluster", "certs"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != 2 {
			t.Errorf("cluster certs %v = %v (exit %d), want a usage error saying %q", c.args, err, exitCode(err), c.want)
		}
	}
}

// mtls makes a TLS connection from node a (as client) to node b (as server), each
// presenting its certificate and requiring the other's, against the set's CA.
func mtls(t *testing.T, dir, a, b string) {
	t.Helper()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("ca.crt: %v", err)
	}
	pair := func(n string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, n+".crt"), filepath.Join(dir, n+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair(b)}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		peer <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{pair(a)}, RootCAs: pool, ServerName: b, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("%s dialing %s with mutual TLS: %v", a, b, err)
	}
	_, _ = io.WriteString(c, "x") // completes the server's view of the handshake under TLS 1.3
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != b {
		t.Errorf("%s sees the server as %q, want %q", a, got, b)
	}
	if got := <-peer; got != a {
		t.Errorf("%s sees the client as %q, want %q", b, got, a)
	}
}

func TestClusterInit(t *testing.T) {
	t.Parallel()
	data, secrets := t.TempDir(), filepath.Join(t.TempDir(), "secrets")
	args := []string{"cluster", "init", "--data", data, "--secrets", secrets, "--admin", "boss",
		"--kiosks", "main/sim1,north/sim2", "--auditors", "ann", "--url", "tls://lethe1:4222"}
	out, err := letheCLI(t, args...)
	if err != nil {
		t.Fatalf("cluster init = %v", err)
	}
	pwFile := filepath.Join(secrets, "boss.password")
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	password := strings.TrimSpace(string(pw))
	if len(password) < 20 || !strings.Contains(out, "sign in with password "+password) {
		t.Errorf("cluster init printed %q; want the generated password (%d characters) shown once", out, len(password))
	}
	for _, f := range []string{pwFile, filepath.Join(secrets, "main-sim1.nk"), filepath.Join(secrets, "north-sim2.nk"), filepath.Join(secrets, "ann.nk")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v; want it with mode 0600", f, err)
		}
	}
	st, err := staff.Open(filepath.Join(data, "staff"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Verify("boss", password); err != nil {
		t.Errorf("log in as boss with the file's password: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	active, err := identity.Open(data).Active()
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := os.ReadFile(filepath.Join(secrets, "north-sim2.nk"))
	kp, err := identity.ReadCredentials(creds)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	if id, ok := active[pub]; !ok || id.Branch != "north" || id.Name != "sim2" || !strings.Contains(string(creds), "tls://lethe1:4222") {
		t.Errorf("north-sim2.nk's key is %+v in the registry (%v); want kiosk north/sim2 active, the URL in its comments", id, ok)
	}
	if len(active) != 3 {
		t.Errorf("%d active identities, want 3", len(active))
	}

	// Again: everything is there, nothing changes, and no password is printed.
	out, err = letheCLI(t, args...)
	if err != nil || strings.Contains(out, password) || strings.Count(out, "already there") != 4 {
		t.Errorf("cluster init again = %q, %v; want four 'already there' and no password", out, err)
	}
	if again, _ := os.ReadFile(pwFile); !bytes.Equal(again, pw) {
		t.Error("the password file changed on a second init")
	}
	if a2, _ := identity.Open(data).Active(); len(a2) != 3 {
		t.Errorf("%d active identities after a second init, want 3", len(a2))
	}

	// A credentials file lost while its identity lives: refused, saying what to do.
	if err := os.Remove(filepath.Join(secrets, "ann.nk")); err != nil {
		t.Fatal(err)
	}
	if _, err := letheCLI(t, args...); err == nil || !strings.Contains(err.Error(), "revoke it") {
		t.Errorf("cluster init without ann.nk = %v, want a refusal saying to revoke", err)
	}
	// An administrator's password file lost: refused too.
	if err := os.Remove(pwFile); err != nil {
		t.Fatal(err)
	}
	if _, err := letheCLI(t, "cluster", "init", "--data", data, "--secrets", secrets, "--admin", "boss"); err == nil || !strings.Contains(err.Error(), "staff passwd") {
		t.Errorf("cluster init without the password file = %v, want a refusal saying to set a password", err)
	}
	if _, err := letheCLI(t, "cluster", "init", "--data", data); err == nil || exitCode(err) != 2 {
		t.Errorf("cluster init without --secrets = %v, want a usage error", err)
	}
	if _, err := letheCLI(t, "cluster", "init", "--data", data, "--secrets", secrets, "--admin", "", "--kiosks", "main"); err == nil || exitCode(err) != 2 {
		t.Errorf("cluster init --kiosks main = %v, want a usage error", err)
	}
	if _, err := letheCLI(t, "cluster", "frobnicate"); err == nil || exitCode(err) != 2 {
		t.Errorf("cluster frobnicate = %v, want a usage error", err)
	}
}
