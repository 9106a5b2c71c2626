package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tourMarker is the README line after which the tour's real-server block begins.
const tourMarker = "To run a real server instead:"

// tourBlock returns the sh block that follows tourMarker in the README.
func tourBlock(t *testing.T, readme string) string {
	t.Helper()
	_, after, ok := strings.Cut(readme, "\n"+tourMarker+"\n")
	if !ok {
		t.Fatalf("README.md has no line %q: the tour changed shape; point TestTour at its server block", tourMarker)
	}
	after = strings.TrimLeft(after, "\n")
	body, ok := strings.CutPrefix(after, "```sh\n")
	if !ok {
		t.Fatalf("README.md: the line after %q is not a ```sh block", tourMarker)
	}
	body, _, ok = strings.Cut(body, "\n```\n")
	if !ok {
		t.Fatalf("README.md: the block after %q does not end", tourMarker)
	}
	return body + "\n"
}

// TestTour runs the README tour's real-server block exactly as written, with bash: it
// builds ./lethe, adds an administrator, starts the server in the background, imports
// examples/catalog.csv, registers a patron, checks an item out and in at a kiosk, replays
// the stream as an auditor and reads the access log.
//
// What differs from a person at a terminal, all outside the block: it runs in a temporary
// directory holding symbolic links to the repository's files (so the binary, the data
// directory and the credentials files it makes land there); the environment has no
// LETHE_* variable but LETHE_HTTP and LETHE_NATS_LISTEN (free ports rather than 8080 and
// 4222, which the client commands then find as documented) and LETHE_PASSWORD (which the
// block says the CLI reads); the password `staff add` asks for comes on standard input,
// as it reads it when that is not a terminal; bash runs with -e and -x, so that a command
// that fails stops the block and each command's output follows its trace line; and an
// exit trap stops the backgrounded server with SIGTERM and waits for it.
func TestTour(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := tourBlock(t, string(readme))
	// The tour needs nothing beyond Go and the repository: no uuidgen, no nats CLI, no sleep.
	for _, tool := range []string{"uuidgen", "nats ", "sleep", "curl"} {
		for _, line := range strings.Split(block, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), tool) || strings.Contains(line, "$("+tool) || strings.Contains(line, "| "+tool) {
				t.Errorf("the tour runs %q, which is not installed with Lethe: %s", strings.TrimSpace(tool), line)
			}
		}
	}
	if !strings.HasPrefix(block, "go build -o lethe ./cmd/lethe\n") || !strings.Contains(block, "./lethe serve ") {
		t.Fatalf("the tour's block no longer builds ./lethe and serves; TestTour checks what it did:\n%s", block)
	}

	dir := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		// Not what the tour makes, if someone ran it in the repository itself.
		if n := e.Name(); n != "lethe" && n != "lethe-data" && !strings.HasSuffix(n, ".nk") && !strings.HasPrefix(n, ".") {
			if err := os.Symlink(filepath.Join(root, n), filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := []string{"LETHE_HTTP=" + freeAddr(t), "LETHE_NATS_LISTEN=" + freeAddr(t), "LETHE_PASSWORD=ada's tour password"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LETHE_") {
			env = append(env, kv)
		}
	}
	script := "set -ex\n" +
		`trap 'if [ -n "$!" ]; then kill -TERM $!; wait $!; echo "lethe serve exited with status $?"; fi' EXIT` + "\n" +
		block
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // the build may compile everything
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdin = strings.NewReader("ada's tour password\n")
	// Its own process group: should the test time out, the server goes with bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tour stopped: %v\n%s", err, out)
	}

	steps := tourSteps(string(out), "./lethe serve ")
	for _, c := range []struct {
		command string // the start of a command of the block
		want    string // a regular expression its output matches
	}{
		{"go build -o lethe ./cmd/lethe", ``},
		{"./lethe staff add ada --role administrator", `added ada \(administrator\)`},
		{"./lethe items import examples/catalog.csv", `items: 10 new, 0 updated, 0 already cataloged unchanged`},
		{"./lethe do register_patron", `"patron_id":"[^"]+"`},
		{"./lethe kiosks add main k1", `credentials written to main-k1\.nk`},
		{"./lethe kiosk --nats-creds main-k1.nk checkout 21000000000001 30000001", `"barcode": "30000001"`},
		{"./lethe kiosk --nats-creds main-k1.nk return 30000001", `"fine_cents": 0`},
		{"./lethe auditors add ann", `credentials written to ann\.nk`},
		// The checkout, the return and the transaction's close all name the patron as
		// expunged: its key is destroyed.
		{"./lethe audit replay --nats-creds ann.nk", `(?s)"type":"lethe\.item\.checked_out\.v1".*"patron":"expunged".*patron references: 0 sealed`},
		{"./lethe access-log", `SEQ\s+TIME\s+STAFF`},
		{"./lethe backup .", `wrote lethe-\S+\.backup \(.* bytes\): \d+ keys`},
	} {
		got, ok := "", false
		for _, s := range steps {
			if strings.HasPrefix(s.command, c.command) {
				got, ok = s.out, true
				break
			}
		}
		if !ok {
			t.Errorf("the tour ran no %q\n%s", c.command, out)
			continue
		}
		if !regexp.MustCompile(c.want).MatchString(got) {
			t.Errorf("%s printed no match for %s:\n%s", c.command, c.want, got)
		}
	}
	if !strings.Contains(string(out), "lethe serve exited with status 0") {
		t.Errorf("the server did not stop cleanly on SIGTERM:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "lethe")); errors.Is(err, os.ErrNotExist) {
		t.Errorf("the tour built no ./lethe in its directory")
	}
}

// tourStep is one traced command of bash -x output and what followed it.
type tourStep struct{ command, out string }

// tourSteps splits bash -x output at its trace lines. The backgrounded server's trace
// line, and its log lines, come whenever it runs: they start no step.
func tourSteps(out, background string) []tourStep {
	var steps []tourStep
	for _, line := range strings.SplitAfter(out, "\n") {
		if cmd, ok := strings.CutPrefix(line, "+ "); ok && !strings.HasPrefix(cmd, background) {
			steps = append(steps, tourStep{command: strings.Join(strings.Fields(cmd), " ")})
			continue
		}
		if len(steps) > 0 {
			steps[len(steps)-1].out += line
		}
	}
	return steps
}
