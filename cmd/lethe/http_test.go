package main

import (
	"strings"
	"testing"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/internal/testkit"
)

// TestHTTPLimitFlags: the connection caps come from the flag, else LETHE_*, else the
// defaults, and nonsense is refused before anything starts.
func TestHTTPLimitFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args          []string
		env           map[string]string
		total, per    int
		wantErrSubstr string
	}{
		{nil, nil, desk.DefaultMaxConns, desk.DefaultMaxConnsPerIP, ""},
		{[]string{"--http-max-conns", "100", "--http-max-conns-per-ip", "100"}, nil, 100, 100, ""},
		{nil, map[string]string{"LETHE_HTTP_MAX_CONNS": "2000", "LETHE_HTTP_MAX_CONNS_PER_IP": "500"}, 2000, 500, ""},
		{[]string{"--http-max-conns-per-ip", "8"}, map[string]string{"LETHE_HTTP_MAX_CONNS_PER_IP": "500"}, desk.DefaultMaxConns, 8, ""},
		{[]string{"--http-max-conns", "0"}, nil, 0, 0, "--http-max-conns must"},
		{[]string{"--http-max-conns", "10", "--http-max-conns-per-ip", "11"}, nil, 0, 0, "--http-max-conns-per-ip must"},
		{nil, map[string]string{"LETHE_HTTP_MAX_CONNS_PER_IP": "many"}, 0, 0, "--http-max-conns-per-ip must"},
	} {
		var stderr testkit.SyncBuffer
		f := newFlags("serve", func(k string) string { return c.env[k] }, &stderr)
		build := serviceFlags(f, t.TempDir(), "60s", "127.0.0.1:4222")
		if err := f.parse(c.args); err != nil {
			t.Fatalf("parse(%q): %v", c.args, err)
		}
		cfg, err := build()
		if c.wantErrSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErrSubstr) {
				t.Errorf("serve %q with %v: %v, want an error with %q", c.args, c.env, err, c.wantErrSubstr)
			}
			continue
		}
		if err != nil || cfg.HTTPServer.MaxConns != c.total || cfg.HTTPServer.MaxConnsPerIP != c.per {
			t.Errorf("serve %q with %v: caps %d, %d per address, %v; want %d, %d", c.args, c.env,
				cfg.HTTPServer.MaxConns, cfg.HTTPServer.MaxConnsPerIP, err, c.total, c.per)
		}
	}
}
