package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagineif/lethe/schemas"
)

func TestItemsImport(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "items.csv")
	os.WriteFile(good, []byte("barcode,title,collection,branch,replacement_cents\n"+
		"I1,\"Moby-Dick; or, The Whale\",fiction,main,2599\nI2,Atlas,reference,north,4000\n"), 0o600)
	password := staffPassword
	env := func(k string) string {
		return map[string]string{"LETHE_USER": adminName, "LETHE_PASSWORD": password}[k]
	}
	lethe := func(args ...string) (string, error) {
		var out, errOut syncBuffer
		err := run(context.Background(), args, env, strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	// The CLI acts as a staff account: a wrong password imports nothing.
	password = "not the password at all"
	if _, err := lethe("items", "import", "--server", h.s.httpURL, good); schemas.CodeOf(err) != schemas.CodeUnauthenticated {
		t.Fatalf("import with a wrong password: %v, want unauthenticated", err)
	}
	password = staffPassword
	if out, err := lethe("items", "import", "--server", h.s.httpURL, good); err != nil || !strings.Contains(out, "imported 2 items, 0 refused") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	it, err := h.s.proj.Item("I1")
	if err != nil || it.Title != "Moby-Dick; or, The Whale" || it.ReplacementCents != 2599 || it.Branch != "main" {
		t.Fatalf("item I1 = %+v, %v", it, err)
	}
	last := h.streamLast()
	if _, err := lethe("items", "import", "--server", h.s.httpURL, good); err != nil {
		t.Fatal(err)
	}
	if after := h.streamLast(); after != last {
		t.Fatalf("importing the same file again appended %d events, want 0", after-last)
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("barcode,title,collection,branch,replacement_cents\nI3,Fine,fiction,main,100\nI4,Bad,fiction,main,ten dollars\n"), 0o600)
	if out, err := lethe("items", "import", "--server", h.s.httpURL, bad); err == nil || !strings.Contains(out+err.Error(), "line 3") {
		t.Fatalf("import of a bad file: %v\n%s; want an error naming line 3", err, out)
	}
	if _, err := h.s.proj.Item("I3"); err == nil {
		t.Fatal("a file with a bad row imported its good rows")
	}
	// lethe do runs one staff command through the same API.
	out, err := lethe("do", "--server", h.s.httpURL, schemas.CmdRegisterPatron,
		`{"home_branch":"main","card":"21000000000700","profile":{"name":"Yan Do","birth_date":"1980-01-01"}}`)
	if err != nil || !strings.Contains(out, "patron_id") {
		t.Fatalf("do register_patron: %v\n%s", err, out)
	}
	h.mustCheckout("21000000000700", "I2")
	if _, err := lethe("do", "--server", h.s.httpURL, schemas.CmdReturn, `{"barcode":"nope.nope"}`); err == nil {
		t.Fatal("do with an unsafe barcode = nil error, want the server's coded error")
	}
}
