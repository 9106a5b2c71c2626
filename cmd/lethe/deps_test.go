package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// allowedImports is the dependency direction of DESIGN.md §2 (as amended in the README):
// each package may import the standard library and these, nothing else.
var allowedImports = map[string][]string{
	"schemas":  {"github.com/santhosh-tekuri/jsonschema/v6"},
	"keystore": {"github.com/cockroachdb/pebble/v2", "golang.org/x/crypto/"},
	"ledger":   {"schemas", "keystore", "policy", "github.com/nats-io/nats.go", "github.com/google/uuid", "golang.org/x/time/rate"},
	// identity: the registry of kiosk and auditor NKeys; subjects come from ledger.
	"identity":    {"ledger", "github.com/nats-io/nkeys"},
	"projections": {"schemas", "ledger", "keystore", "github.com/cockroachdb/pebble/v2", "github.com/nats-io/nats.go/jetstream"},
	"expunger":    {"ledger", "keystore", "projections", "github.com/prometheus/client_golang/prometheus"},
	"policy":      {"schemas"},
	"access":      {"schemas", "policy", "ledger", "keystore", "github.com/nats-io/nats.go", "github.com/google/uuid"},
	"desk":        {"schemas", "policy", "ledger", "keystore", "projections", "staff", "access", "github.com/google/uuid"},
	// staff → keystore: only for the Pebble logger and corruption handler that all of
	// Lethe's Pebble databases share (a fatal error exits with its cause, a damaged file
	// is an error), so that one place decides what a Pebble failure does.
	"staff": {"schemas", "policy", "keystore", "github.com/cockroachdb/pebble/v2", "golang.org/x/crypto/"},
}

const module = "github.com/imagineif/lethe/"

// TestDependencyDirection lists each package's imports (not its tests') and checks them
// against allowedImports: nothing imports cmd/, and only cmd/ imports nats-server.
func TestDependencyDirection(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...")
	// The caller's GOFLAGS (-race, -tags, -mod) must not change what is listed or make go
	// list fail.
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if pkg == "cmd/lethe" {
			continue
		}
		allowed, ok := allowedImports[pkg]
		if !ok {
			t.Errorf("package %s has no entry in allowedImports: add it with its allowed dependencies", pkg)
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			name := strings.TrimPrefix(imp, module)
			if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
				continue // standard library
			}
			if !allowedPrefix(name, allowed) {
				t.Errorf("%s imports %s, which DESIGN.md's dependency direction does not allow", pkg, imp)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("checked %d packages, want at least 5: the listing is wrong", seen)
	}
}

func allowedPrefix(name string, allowed []string) bool {
	for _, a := range allowed {
		if name == a || strings.HasPrefix(name, strings.TrimSuffix(a, "/")+"/") {
			return true
		}
	}
	return false
}
