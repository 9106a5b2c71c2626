package identity

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRegistry: add, revoke and list identities; the file holds public keys only, and a
// version that changes with every replacement.
func TestRegistry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := Open(dir)
	if v, err := r.Version(); err != nil || v != "" {
		t.Fatalf("Version() of an empty directory = %q, %v, want \"\"", v, err)
	}
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	k, seed, err := r.Add(Kiosk, "main", "k1", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Add(Kiosk, "main", "k1", now); !errors.Is(err, ErrExists) {
		t.Errorf("Add of an active kiosk again = %v, want ErrExists", err)
	}
	if _, _, err := r.Add(Kiosk, "main.x", "k2", now); err == nil {
		t.Error("Add with a branch that is not a subject token succeeded")
	}
	a, _, err := r.Add(Auditor, "", "ann", now)
	if err != nil {
		t.Fatal(err)
	}
	v1, _ := r.Version()
	active, err := r.Active()
	if err != nil || len(active) != 2 || active[k.PublicKey].Label() != "kiosk main/k1" || active[a.PublicKey].Account() != "auditor:ann" {
		t.Fatalf("Active() = %v, %v", active, err)
	}
	if _, err := r.Revoke(Kiosk, "main", "k1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Revoke(Kiosk, "main", "k1", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke of a revoked kiosk = %v, want ErrNotFound", err)
	}
	if v2, _ := r.Version(); v2 == v1 {
		t.Error("Version() did not change when the registry was replaced")
	}
	all, _ := r.List()
	if len(all) != 2 || all[0].Active() || !all[1].Active() {
		t.Errorf("List() = %+v, want the revoked kiosk and the auditor", all)
	}
	file, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, seed) || !bytes.Contains(file, []byte(k.PublicKey)) {
		t.Error("the registry holds a seed, or not the public key")
	}
	if st, _ := os.Stat(r.Path()); st.Mode().Perm()&0o077 != 0 {
		t.Errorf("registry mode %v, readable by others", st.Mode().Perm())
	}
}

// TestCredentialsRoundTrip: a credentials file names its kiosk and holds the seed NATS
// tools read.
func TestCredentialsRoundTrip(t *testing.T) {
	t.Parallel()
	id, seed, err := Open(t.TempDir()).Add(Kiosk, "north", "k7", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteCredentials(&b, id, seed, "tls://lethe.example:4222"); err != nil {
		t.Fatal(err)
	}
	kp, err := ReadCredentials(b.Bytes())
	if err != nil {
		t.Fatalf("ReadCredentials = %v", err)
	}
	if pub, _ := kp.PublicKey(); pub != id.PublicKey {
		t.Errorf("credentials hold key %s, want %s", pub, id.PublicKey)
	}
	if branch, kiosk, ok := KioskOf(b.Bytes()); !ok || branch != "north" || kiosk != "k7" {
		t.Errorf("KioskOf = %q, %q, %v, want north, k7", branch, kiosk, ok)
	}
	if !strings.Contains(b.String(), "lethe.kiosk.north.k7.>") {
		t.Error("the file does not say which subjects the kiosk may use")
	}
	if _, err := ReadCredentials([]byte("# nothing here\n")); err == nil {
		t.Error("ReadCredentials of a file with no seed succeeded")
	}
}
