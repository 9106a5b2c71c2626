package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/node"
)

// TestStartupErrors starts lethe serve on a data directory with one thing wrong at a time
// and checks that the start fails with an error naming that cause, without a panic and
// without an unformatted verb: a panic in closing used to hide these causes, and a
// damaged table used to be reported as Pebble's format string.
func TestStartupErrors(t *testing.T) {
	t.Parallel()
	key := masterKeyFile(t)
	h := lethetest.New(t, func(c *node.ServiceConfig) { c.MasterKeyFile = key })
	h.Catalog("SE1", 1000)
	h.Register("21000000000800", "Sta Rtup", "1980-01-01")
	h.MustCheckout("21000000000800", "SE1")
	h.Checkin("SE1")
	h.ExpungeAll() // the sweep flushes: the keystore has tables on disk
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	base := h.Cfg.Data

	keyText, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	writeKey := func(t *testing.T, text []byte, mode os.FileMode) string {
		path := filepath.Join(t.TempDir(), "master.key")
		if err := os.WriteFile(path, text, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is under the umask
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name string
		// setup damages data (a copy of base) or makes what the row needs, and returns the
		// arguments after --data and the environment.
		setup func(t *testing.T, data string) ([]string, map[string]string)
		want  []string
		check func(t *testing.T, data string) // what must hold after the refused start
	}{
		{
			name: "wrong master key",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				return []string{"--master-key-file", masterKeyFile(t)}, nil
			},
			want: []string{"open keystore: master key ", "keys are wrapped under a different master key"},
		},
		{
			name: "missing master key file",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				return []string{"--master-key-file", filepath.Join(data, "..", "nowhere.key")}, nil
			},
			want: []string{"master key: load master key: ", "nowhere.key: no such file or directory"},
			check: func(t *testing.T, data string) {
				for _, p := range []string{filepath.Join(data, "..", "nowhere.key"), filepath.Join(data, "master.key")} {
					if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("stat %s after the refused start = %v, want not exist: no key may be generated", p, err)
					}
				}
			},
		},
		{
			name: "garbage master key file",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				return []string{"--master-key-file", writeKey(t, []byte("this is no key\n"), 0o600)}, nil
			},
			want: []string{"master key: load master key: ", "master key is neither hex nor standard base64"},
		},
		{
			name: "master key file readable by others",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				return []string{"--master-key-file", writeKey(t, keyText, 0o644)}, nil
			},
			want: []string{"is accessible by group or others (mode 0644); make it 0600"},
		},
		{
			name: "garbage LETHE_MASTER_KEY",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				return []string{"--master-key-file", key}, map[string]string{"LETHE_MASTER_KEY": "no-such-key-value"}
			},
			want: []string{"load master key from environment: master key is neither hex nor standard base64"},
		},
		{
			name: "second serve on the same data directory",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				startLetheProcess(t, data, "--master-key-file", key) // stopped at the subtest's end
				return []string{"--master-key-file", key}, nil
			},
			want: []string{"is in use by another lethe process (stop it first)"},
		},
		{
			name: "damaged keystore table",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				damage(t, newest(t, filepath.Join(data, "keystore"), ".sst"), 100)
				return []string{"--master-key-file", key}, nil
			},
			want: []string{"open keystore: a database file is damaged: ", ".sst (pebble: ", "checksum mismatch"},
		},
		{
			name: "damaged projections manifest",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				damage(t, newest(t, filepath.Join(data, "projections"), "MANIFEST-"), 20)
				return []string{"--master-key-file", key}, nil
			},
			want: []string{"open projections: a database file is damaged", "malformed manifest file"},
		},
		{
			name: "damaged staff store",
			setup: func(t *testing.T, data string) ([]string, map[string]string) {
				damage(t, newest(t, filepath.Join(data, "staff"), ".sst"), 100)
				return []string{"--master-key-file", key}, nil
			},
			want: []string{"open staff store ", "a database file is damaged: ", ".sst (pebble: ", "checksum mismatch"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			if err := os.CopyFS(data, os.DirFS(base)); err != nil {
				t.Fatal(err)
			}
			args, env := tc.setup(t, data)
			out, err := runServe(t, append([]string{"--data", data}, args...), env)
			wantErr(t, err, out, tc.want...)
			if strings.Contains(err.Error()+out, "no-such-key-value") {
				t.Errorf("the start error or log repeats the key's text: %v\n%s", err, out)
			}
			if tc.check != nil {
				tc.check(t, data)
			}
		})
	}
}

// newest returns the file in dir whose name holds kind (".sst", "MANIFEST-") and sorts
// last: Pebble numbers its files in order, so that is the newest one.
func newest(t *testing.T, dir, kind string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.Contains(e.Name(), kind) && !strings.HasPrefix(e.Name(), "marker.") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatalf("no %s file in %s", kind, dir)
	}
	slices.Sort(names)
	return filepath.Join(dir, names[len(names)-1])
}

// damage overwrites 8 bytes of a file at off.
func damage(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef}, off); err != nil {
		t.Fatal(err)
	}
}

// masterKeyFile generates a master key in a directory of its own, as on another disk.
func masterKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if _, err := keystore.GenerateMasterFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// runServe runs `lethe serve` in this process, on the HTTP port 0 without a NATS
// listener, with env as its environment, until it returns or a short deadline passes. A
// panic fails the test with its value instead of taking the test binary down. It returns
// what was written to stderr and the error.
func runServe(t *testing.T, args []string, env map[string]string) (stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut testkit.SyncBuffer
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("lethe serve panicked: %v\n%s", p, errOut.String())
			}
		}()
		err = run(ctx, append([]string{"serve", "--http", "127.0.0.1:0", "--nats-listen", "off"}, args...),
			func(k string) string { return env[k] }, nil, &out, &errOut)
	}()
	return errOut.String(), err
}

// wantErr checks that a failed start returned an error holding every want, and that
// neither the error nor the log shows a panic or an unformatted verb.
func wantErr(t *testing.T, err error, log string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("lethe serve = nil, want an error saying %q\n%s", want, log)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("lethe serve = %q, want it to say %q", err, w)
		}
	}
	for _, bad := range []string{"panic", "%v", "%s", "<corruption detail carrier>"} {
		if strings.Contains(err.Error()+log, bad) {
			t.Errorf("error or log shows %q: %v\n%s", bad, err, log)
		}
	}
}
