package main

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/staff"
)

func TestStaffCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const (
		alicePW  = "first-admin-password-3c9d"
		alicePW2 = "second-admin-password-77e1"
		bobPW    = "desk-password-0a5f19"
		weakPW   = "tooshort"
	)
	var seen strings.Builder // every line the CLI wrote, to check that no password is among them
	lethe := func(env map[string]string, stdin string, args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
		seen.WriteString(out.String() + errOut.String())
		if err != nil {
			seen.WriteString(err.Error())
		}
		return out.String(), err
	}
	noEnv := map[string]string{}
	dataEnv := map[string]string{"LETHE_DATA": dir}

	// The first administrator: name before the flags.
	out, err := lethe(noEnv, alicePW+"\n", "staff", "add", "alice", "--role", "administrator", "--data", dir)
	if err != nil || !strings.Contains(out, "added alice (administrator)") {
		t.Fatalf("staff add alice = %q, %v; want it added", out, err)
	}
	// Flags before the name, the data directory from LETHE_DATA, no trailing newline.
	if out, err := lethe(dataEnv, bobPW, "staff", "add", "--role", "circulation", "bob"); err != nil || !strings.Contains(out, "added bob (circulation)") {
		t.Fatalf("staff add --role circulation bob = %q, %v; want it added", out, err)
	}
	out, err = lethe(dataEnv, "", "staff", "list")
	if err != nil || !hasRow(out, "alice", "administrator", "enabled") || !hasRow(out, "bob", "circulation", "enabled") {
		t.Fatalf("staff list = %q, %v; want alice and bob, enabled", out, err)
	}

	if out, err := lethe(dataEnv, "", "staff", "disable", "bob"); err != nil || !strings.Contains(out, "disabled bob") {
		t.Fatalf("staff disable bob = %q, %v", out, err)
	}
	if out, _ := lethe(dataEnv, "", "staff", "list"); !hasRow(out, "bob", "circulation", "disabled") {
		t.Errorf("staff list after disable = %q, want bob disabled", out)
	}
	if out, err := lethe(dataEnv, "", "staff", "enable", "bob"); err != nil || !strings.Contains(out, "enabled bob") {
		t.Fatalf("staff enable bob = %q, %v", out, err)
	}

	// A weak password is refused with the rule it breaks, and changes nothing.
	_, err = lethe(dataEnv, weakPW+"\n", "staff", "passwd", "alice")
	if err == nil || !strings.Contains(err.Error(), "at least 12 characters") || exitCode(err) != 1 {
		t.Errorf("staff passwd with a weak password = %v, want an error about 12 characters", err)
	}
	if _, err := lethe(dataEnv, "alice\n", "staff", "add", "alice2", "--role", "auditor"); err == nil {
		t.Errorf("staff add with a short password = nil error")
	}
	if _, err := lethe(dataEnv, "alice.admin.1\n", "staff", "add", "alice.admin.1", "--role", "auditor"); err == nil || !strings.Contains(err.Error(), "account name") {
		t.Errorf("staff add with the name as password = %v, want an error about the account name", err)
	}
	// Only the first line is the password.
	if out, err := lethe(dataEnv, alicePW2+"\nsomething else\n", "staff", "passwd", "alice"); err != nil || !strings.Contains(out, "changed the password of alice") {
		t.Fatalf("staff passwd alice = %q, %v", out, err)
	}

	for _, c := range []struct {
		what  string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"add without --role", alicePW, []string{"staff", "add", "carol"}, 2, "--role"},
		{"add with the kiosk role", alicePW, []string{"staff", "add", "carol", "--role", "kiosk"}, 2, "--role"},
		{"add without a name", alicePW, []string{"staff", "add", "--role", "auditor"}, 2, "NAME"},
		{"add with a bad name", alicePW, []string{"staff", "add", "carol smith", "--role", "auditor"}, 2, "name"},
		{"add an existing account", alicePW, []string{"staff", "add", "bob", "--role", "auditor"}, 1, "already exists"},
		{"add without a password", "", []string{"staff", "add", "carol", "--role", "auditor"}, 1, "no password"},
		{"passwd of an unknown account", alicePW, []string{"staff", "passwd", "nobody"}, 1, "no staff account"},
		{"disable an unknown account", "", []string{"staff", "disable", "nobody"}, 1, "no staff account"},
		{"an extra argument", "", []string{"staff", "disable", "bob", "alice"}, 2, "unexpected argument"},
		{"an unknown command", "", []string{"staff", "remove", "bob"}, 2, "unknown staff command"},
		{"no command", "", []string{"staff"}, 2, "no staff command"},
	} {
		_, err := lethe(dataEnv, c.stdin, c.args...)
		if err == nil || exitCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v (exit %d), want exit %d and %q", c.what, err, exitCode(err), c.code, c.msg)
		}
	}

	// What the CLI wrote is what is stored.
	st, err := staff.Open(filepath.Join(dir, "staff"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := st.Verify("alice", alicePW2); err != nil || a.Role != policy.Administrator {
		t.Errorf("Verify(alice, new password) = %+v, %v; want the administrator", a, err)
	}
	if _, err := st.Verify("alice", alicePW); err == nil {
		t.Errorf("Verify(alice, old password) = nil error, want refused")
	}
	if _, err := st.Get("carol"); err == nil {
		t.Errorf("carol exists: a refused add stored her")
	}
	// While the store is open (as under lethe serve) the CLI says so.
	if _, err := lethe(dataEnv, "", "staff", "list"); err == nil || !strings.Contains(err.Error(), "lethe serve") {
		t.Errorf("staff list while the store is open = %v, want an error naming lethe serve", err)
	}
	st.Close()

	for _, pw := range []string{alicePW, alicePW2, bobPW, weakPW} {
		if strings.Contains(seen.String(), pw) {
			t.Errorf("the CLI printed the password %q", pw)
		}
	}
}

// hasRow reports whether some line of out starts with the fields, as whole words.
func hasRow(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
			return true
		}
	}
	return false
}
