package staff

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imagineif/lethe/phc"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

func openStore(t *testing.T, dir string, logger *slog.Logger) *Store {
	t.Helper()
	s, err := Open(dir, logger)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAccountsLifecycle(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), nil)
	const pw, pw2 = "a long enough secret", "another long secret"

	if err := s.Add("alice", policy.Administrator, pw); err != nil {
		t.Fatalf("Add(alice) = %v", err)
	}
	got, err := s.Get("alice")
	if err != nil {
		t.Fatalf("Get(alice) = %v", err)
	}
	if got.Name != "alice" || got.Role != policy.Administrator || got.Disabled || got.Created.IsZero() || !got.PasswordChanged.Equal(got.Created) {
		t.Errorf("Get(alice) = %+v, want an enabled administrator created now", got)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Account{got}, list); diff != "" {
		t.Errorf("List() differs (-want +got):\n%s", diff)
	}

	v, err := s.Verify("alice", pw)
	if err != nil || v != got {
		t.Errorf("Verify(alice, right) = %+v, %v; want %+v, nil", v, err, got)
	}
	_, wrongErr := s.Verify("alice", pw2)
	_, unknownErr := s.Verify("nobody", pw)

	if err := s.Disable("alice"); err != nil {
		t.Fatalf("Disable(alice) = %v", err)
	}
	if a, _ := s.Get("alice"); !a.Disabled {
		t.Errorf("Get(alice) after Disable = %+v, want Disabled", a)
	}
	_, disabledErr := s.Verify("alice", pw)
	for what, err := range map[string]error{"wrong password": wrongErr, "unknown account": unknownErr, "disabled account": disabledErr} {
		if err != ErrBadCredentials {
			t.Errorf("Verify(%s) = %v, want ErrBadCredentials", what, err)
		}
	}

	if err := s.Enable("alice"); err != nil {
		t.Fatalf("Enable(alice) = %v", err)
	}
	if _, err := s.Verify("alice", pw); err != nil {
		t.Errorf("Verify(alice) after Enable = %v, want nil", err)
	}

	if err := s.SetPassword("alice", pw2); err != nil {
		t.Fatalf("SetPassword(alice) = %v", err)
	}
	if _, err := s.Verify("alice", pw); err != ErrBadCredentials {
		t.Errorf("Verify(alice, old password) = %v, want ErrBadCredentials", err)
	}
	a, err := s.Verify("alice", pw2)
	if err != nil {
		t.Errorf("Verify(alice, new password) = %v, want nil", err)
	}
	if !a.PasswordChanged.After(a.Created) && !a.PasswordChanged.Equal(a.Created) {
		t.Errorf("PasswordChanged = %v before Created = %v", a.PasswordChanged, a.Created)
	}
}

func TestAccountsRefuse(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), nil)
	const pw = "a long enough secret"
	if err := s.Add("bob", policy.Circulation, pw); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		err  error
		code schemas.Code
	}{
		{"Add(existing)", s.Add("bob", policy.Auditor, "some other password"), schemas.CodeConflict},
		{"Add(empty name)", s.Add("", policy.Auditor, pw), schemas.CodeInvalid},
		{"Add(65-char name)", s.Add(strings.Repeat("a", 65), policy.Auditor, pw), schemas.CodeInvalid},
		{"Add(name with space)", s.Add("bob smith", policy.Auditor, pw), schemas.CodeInvalid},
		{"Add(non-ASCII name)", s.Add("böb", policy.Auditor, pw), schemas.CodeInvalid},
		{"Add(name with slash)", s.Add("a/b", policy.Auditor, pw), schemas.CodeInvalid},
		{"Add(kiosk role)", s.Add("k1", policy.Kiosk, pw), schemas.CodeInvalid},
		{"Add(no role)", s.Add("k2", "", pw), schemas.CodeInvalid},
		{"Add(short password)", s.Add("carol", policy.Auditor, "short"), schemas.CodeInvalid},
		{"Add(password = name)", s.Add("carol.reader", policy.Auditor, "carol.reader"), schemas.CodeInvalid},
		{"SetPassword(short)", s.SetPassword("bob", "short"), schemas.CodeInvalid},
		{"SetPassword(unknown)", s.SetPassword("nobody", pw), schemas.CodeNotFound},
		{"Disable(unknown)", s.Disable("nobody"), schemas.CodeNotFound},
		{"Enable(unknown)", s.Enable("nobody"), schemas.CodeNotFound},
	} {
		if got := schemas.CodeOf(tc.err); tc.err == nil || got != tc.code {
			t.Errorf("%s = %v, want code %s", tc.what, tc.err, tc.code)
		}
		if tc.err != nil && strings.Contains(tc.err.Error(), pw) {
			t.Errorf("%s = %v, which repeats the password", tc.what, tc.err)
		}
	}
	if _, err := s.Get("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nobody) = %v, want ErrNotFound", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 {
		t.Errorf("List() = %+v, %v; want bob only", list, err)
	}
}

func TestOpenInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add("alice", policy.Auditor, "a long enough secret"); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, nil)
	if !errors.Is(err, ErrInUse) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), "lethe serve") {
		t.Errorf("second Open = %q, want it to name lethe serve", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, err := s.Get("alice"); err == nil {
		t.Errorf("Get after Close = nil error, want one")
	}
	s = openStore(t, dir, nil)
	if a, err := s.Get("alice"); err != nil || a.Role != policy.Auditor {
		t.Errorf("Get(alice) after reopening = %+v, %v; want the auditor", a, err)
	}
}

// The password never reaches the disk: only its hash does.
func TestPasswordNotOnDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "marker-password-7d1f0c"
	if err := s.Add("alice", policy.Auditor, pw); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	found := 0
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "$argon2id$") {
			found++
		}
		if strings.Contains(string(b), pw) {
			t.Errorf("%s holds the password", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Errorf("no file holds an argon2id hash: the scan looked in the wrong place")
	}
}

// A hash made with older (weaker) parameters still verifies and is replaced by one with
// the current parameters.
func TestStaleHashRehashed(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), nil)
	const pw = "a long enough secret"
	old := phc.Hash{Params: phc.Params{Memory: 8192, Time: 1, Threads: 1}, Salt: []byte("sixteen byte slt")}
	old.Key = phc.Key(pw, old.Salt, old.Params, phc.KeyLen)
	s.mu.Lock()
	err := s.put("alice", record{Role: policy.Auditor, Hash: old.String()})
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify("alice", pw); err != nil {
		t.Fatalf("Verify(alice) with an old hash = %v", err)
	}
	r, err := s.getShared("alice")
	if err != nil {
		t.Fatal(err)
	}
	h, err := phc.Parse(r.Hash)
	if err != nil || h.Stale() {
		t.Fatalf("hash after Verify = %q (%v), want current parameters", r.Hash, err)
	}
	if _, err := s.Verify("alice", pw); err != nil {
		t.Errorf("Verify(alice) after rehash = %v", err)
	}
}
