package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTestScript runs the repository's ./test, the README's test command, with fake go,
// gcc, chromium, id and apt-get on PATH that record how they are called, and a stand-in
// for /etc/debian_version (LETHE_TEST_DEBIAN_VERSION_FILE): it runs go test -race when
// everything is there, installs what is missing on Debian as root, and otherwise stops
// with one line that says what to install, calling no go test.
func TestTestScript(t *testing.T) {
	t.Parallel()
	script, err := filepath.Abs("../../test")
	if err != nil {
		t.Fatal(err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	chmod, err := exec.LookPath("chmod")
	if err != nil {
		t.Fatal(err)
	}
	const goTest = "go test -race ./... LETHE_CHROMIUM=BIN/chromium"
	for _, c := range []struct {
		name      string
		args      []string
		have      []string // fake tools on PATH besides bash, go and id
		goVersion string
		uid       string
		debian    bool
		aptFails  bool
		env       []string
		wantCode  int
		wantCalls []string // apt-get and go test calls, in order
		wantErr   string   // the whole of stderr
	}{
		{name: "everything there", have: []string{"gcc", "chromium"}, debian: true, uid: "1000",
			wantCalls: []string{goTest}},
		{name: "arguments without a package", args: []string{"-run", "TestDemoRuns"}, have: []string{"gcc", "chromium"},
			wantCalls: []string{"go test -race -run TestDemoRuns ./... LETHE_CHROMIUM=BIN/chromium"}},
		{name: "arguments with a package", args: []string{"-run", "TestX", "./desk"}, have: []string{"gcc", "chromium"},
			wantCalls: []string{"go test -race -run TestX ./desk LETHE_CHROMIUM=BIN/chromium"}},
		{name: "LETHE_CHROMIUM instead of chromium on PATH", have: []string{"gcc"}, env: []string{"LETHE_CHROMIUM=/opt/chrome"},
			wantCalls: []string{"go test -race ./... LETHE_CHROMIUM=/opt/chrome"}},
		{name: "missing chromium, not root", have: []string{"gcc"}, debian: true, uid: "1000", wantCode: 2,
			wantErr: "./test: missing chromium: run as root: apt-get install -y chromium\n"},
		{name: "missing chromium and gcc, root on Debian", debian: true, uid: "0",
			wantCalls: []string{"apt-get update -qq DEBIAN_FRONTEND=noninteractive",
				"apt-get install -y -qq chromium gcc DEBIAN_FRONTEND=noninteractive", goTest},
			wantErr: "./test: missing chromium and gcc: installing with apt-get\n"},
		{name: "apt-get fails", have: []string{"chromium"}, debian: true, uid: "0", aptFails: true, wantCode: 2,
			wantCalls: []string{"apt-get update -qq DEBIAN_FRONTEND=noninteractive"},
			wantErr:   "./test: missing gcc: installing with apt-get\n./test: apt-get could not install gcc\n"},
		{name: "Go too old", have: []string{"gcc", "chromium"}, goVersion: "go1.19.8", debian: true, uid: "0", wantCode: 2,
			wantErr: "./test: Go 1.26 or later is needed, this is go1.19: install it from https://go.dev/dl/ (Debian's golang package is older)\n"},
		{name: "not Debian, missing chromium", have: []string{"gcc"}, uid: "0", wantCode: 2,
			wantErr: "./test: missing chromium: install chromium with your system's package manager (LETHE_CHROMIUM may name a Chrome binary instead)\n"},
		{name: "not Debian, missing chromium and gcc", uid: "0", wantCode: 2,
			wantErr: "./test: missing chromium and gcc: install chromium and gcc with your system's package manager (LETHE_CHROMIUM may name a Chrome binary instead)\n"},
		{name: "apt-get installs nothing", have: []string{"gcc"}, debian: true, uid: "0", env: []string{"FAKE_APT_NOOP=1"}, wantCode: 2,
			wantCalls: []string{"apt-get update -qq DEBIAN_FRONTEND=noninteractive", "apt-get install -y -qq chromium DEBIAN_FRONTEND=noninteractive"},
			wantErr:   "./test: missing chromium: installing with apt-get\n./test: apt-get installed chromium, but there is no chromium on PATH\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			bin, log := filepath.Join(dir, "bin"), filepath.Join(dir, "calls")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			// The script finds everything on PATH: bash for its #!, and the fakes.
			if err := os.Symlink(bash, filepath.Join(bin, "bash")); err != nil {
				t.Fatal(err)
			}
			fakes := map[string]string{
				"go": `case "$1" in
  version) echo "go version $FAKE_GO_VERSION linux/amd64" ;;
  *) echo "go $* LETHE_CHROMIUM=$LETHE_CHROMIUM" >>"$FAKE_LOG" ;;
esac`,
				"id": `[ "$1" = -u ] && echo "$FAKE_UID"`,
				// apt-get install puts a fake of each package on PATH.
				"apt-get": `echo "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >>"$FAKE_LOG"
[ "$FAKE_APT_EXIT" = 0 ] || exit "$FAKE_APT_EXIT"
[ "$1" = install ] && [ -z "$FAKE_APT_NOOP" ] || exit 0
for p in "$@"; do
  case "$p" in -*|install) ;; *) echo '#!/bin/sh' >"$FAKE_BIN/$p"; "$FAKE_CHMOD" +x "$FAKE_BIN/$p" ;; esac
done`,
				"gcc":      `echo "gcc $*" >>"$FAKE_LOG"`,
				"chromium": `echo "chromium $*" >>"$FAKE_LOG"`,
			}
			for _, name := range append([]string{"go", "id", "apt-get"}, c.have...) {
				if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+fakes[name]+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			debian := filepath.Join(dir, "debian_version")
			if c.debian {
				if err := os.WriteFile(debian, []byte("12.11\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			version, aptExit := "go1.26.1", "0"
			if c.goVersion != "" {
				version = c.goVersion
			}
			if c.aptFails {
				aptExit = "100"
			}
			cmd := exec.Command(script, c.args...)
			cmd.Dir = dir
			cmd.Env = append([]string{"PATH=" + bin, "LETHE_TEST_DEBIAN_VERSION_FILE=" + debian, "FAKE_LOG=" + log,
				"FAKE_GO_VERSION=" + version, "FAKE_UID=" + c.uid, "FAKE_APT_EXIT=" + aptExit, "FAKE_BIN=" + bin, "FAKE_CHMOD=" + chmod}, c.env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.wantCode {
				t.Errorf("./test %q exited %d, want %d\nstderr: %s", c.args, code, c.wantCode, stderr.String())
			}
			if stderr.String() != c.wantErr {
				t.Errorf("./test %q stderr = %q, want %q", c.args, stderr.String(), c.wantErr)
			}
			var calls []string
			if b, err := os.ReadFile(log); err == nil {
				calls = strings.Split(strings.TrimSuffix(strings.ReplaceAll(string(b), bin, "BIN"), "\n"), "\n")
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.wantCalls, calls); diff != "" {
				t.Errorf("./test %q called (-want +got):\n%s", c.args, diff)
			}
		})
	}
}
