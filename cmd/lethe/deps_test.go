package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// rule is what one package may import besides the standard library, and why.
type rule struct {
	allowed []string
	why     string
}

// allowedImports is the dependency direction of the design (docs/design.md): each package
// may import the standard library and its allowed list, nothing else. Nothing imports
// cmd/, and only cmd/, node (the server assembly) and the tests' testkit import
// nats-server. No package's own code may import internal/testkit or internal/lethetest:
// no rule but theirs lists them, so only tests (whose imports are not checked) do.
var allowedImports = map[string]rule{
	"schemas": {[]string{"github.com/santhosh-tekuri/jsonschema/v6", "github.com/go-json-experiment/json"},
		"the wire contract stands alone; JSON Schema validation is a library's job, not Lethe's; the one-pass strict decode of events a signed checkpoint covers is encoding/json/v2's module"},
	"model": {[]string{"schemas"},
		"the projections' row shapes embed wire types (an item row is its catalog record)"},
	"keystore": {[]string{"github.com/cockroachdb/pebble/v2", "golang.org/x/crypto/"},
		"keys and their erasure know nothing of circulation"},
	"kek": {[]string{"lease", "github.com/nats-io/nats.go", "golang.org/x/crypto/"},
		"the cluster's key-encryption keys (docs/design.md §11): a keyring, wrapped keys in a KV bucket, the rotation over core NATS; knows nothing of circulation"},
	"lease": {[]string{"github.com/nats-io/nats.go"},
		"one node of a cluster at a time runs a singleton, while it holds a lease in a JetStream KV bucket; knows nothing of circulation"},
	"seal": {[]string{"schemas", "keystore"},
		"every sealed envelope of patron data, under keystore keys, in wire shapes"},
	"policy": {[]string{"schemas"},
		"Policy 1002 is a pure function of the request; it decides on wire shapes (a patron record)"},
	"ledger": {[]string{"schemas", "model", "seal", "keystore", "policy", "phc", "github.com/nats-io/nats.go", "github.com/google/uuid"},
		"the write side decides against the model, seals with keys, asks the policy before disclosing, appends over NATS"},
	"kiosk": {[]string{"schemas", "policy", "ledger", "github.com/nats-io/nats.go", "golang.org/x/time/rate"},
		"the kiosk API's NATS transport over the ledger's commands; per-kiosk rates"},
	"sip2": {[]string{"schemas", "model", "policy", "ledger", "github.com/google/uuid", "golang.org/x/text/"},
		"the SIP2 gateway: a transport like kiosk over the ledger's commands and disclosures; command ids derived from the message (uuid); ISO-8859-1 from self-check machines (x/text)"},
	"identity": {[]string{"internal/atomicfile", "schemas", "ledger", "phc", "github.com/nats-io/nkeys"},
		"kiosk and auditor NKeys; the subjects they may use are built in ledger; the registry file is read by the one strict decoder"},
	"projections": {[]string{"schemas", "model", "seal", "ledger", "keystore", "tlog", "github.com/cockroachdb/pebble/v2", "github.com/nats-io/nats.go/jetstream"},
		"the read side follows the stream (ledger.Read) into the model's rows, opening sealed refs with keys; a rebuild hashes the stream (tlog) to check it against a signed checkpoint"},
	"expunger": {[]string{"internal/atomicfile", "schemas", "ledger", "keystore", "projections", "github.com/prometheus/client_golang/prometheus"},
		"destroys keys (keystore) of what the projections say closed, records it through the ledger; exports its lags; refuses new checkouts with a coded error (schemas) while forgetting is behind"},
	"access": {[]string{"schemas", "model", "seal", "policy", "ledger", "keystore", "github.com/nats-io/nats.go", "github.com/google/uuid"},
		"the access record is the ledger's Recorder, sealed under keystore keys, on its own stream"},
	"phc": {[]string{"golang.org/x/crypto/"},
		"argon2id PHC strings for secrets people choose: staff passwords, patron PINs, kiosks' SIP2 passwords"},
	"staff": {[]string{"schemas", "policy", "keystore", "phc", "github.com/cockroachdb/pebble/v2"},
		"accounts in Pebble; keystore only for the Pebble logger and corruption handler all of Lethe's Pebble databases share, so one place decides what a Pebble failure does"},
	"demo": {[]string{"schemas", "policy", "ledger", "identity", "staff", "node", "desk", "progress", "github.com/google/uuid", "github.com/nats-io/nats.go"},
		"the simulated library: a client of a whole server, in process (node) or over the network (the staff API's routes, desk; kiosks' NATS connections), seeded at its desk (ledger), served by kiosks, with an account and a kiosk identity for a visitor"},
	"bench": {[]string{"schemas", "ledger", "kiosk", "projections", "expunger", "audit", "node", "demo", "progress",
		"github.com/google/uuid", "github.com/nats-io/nats.go", "golang.org/x/text/"},
		"lethe bench: whole servers (node) seeded by the simulated library (demo), next to raw JetStream; replay as the auditor decodes, rebuild as the projections do; the soak reads the expunger's lags; numbers printed with x/text"},
	"progress": {[]string{"github.com/schollz/progressbar/v3"},
		"a command's progress on a terminal; knows nothing of Lethe, so any command or simulation may draw it"},
	"tlog": {[]string{"github.com/transparency-dev/merkle", "github.com/transparency-dev/formats", "golang.org/x/mod/sumdb/note"},
		"the stream as a transparency log: RFC 6962 trees and C2SP signed checkpoints, from the transparency-dev libraries, never by hand"},
	"audit": {[]string{"schemas", "ledger", "tlog", "github.com/nats-io/nats.go", "github.com/go-json-experiment/json"},
		"the auditor reads the stream with the ledger's direct reads and checks it against the schemas; no keys; replay decodes with encoding/json/v2's module, the faster decoder"},
	"backup": {[]string{"internal/atomicfile", "keystore", "filippo.io/age"},
		"the backup file (a plaintext header, sections sealed with age) and the keyring whose expiry ends a backup; its keys are sealed under the master key (keystore)"},
	"replica": {[]string{"schemas", "identity", "staff", "github.com/nats-io/nats.go"},
		"kiosk and auditor identities and staff accounts kept the same on every node through R3 KV buckets (docs/design.md §11); public data only"},
	"node": {[]string{"internal/atomicfile", "schemas", "keystore", "ledger", "projections", "expunger", "access", "identity", "kiosk", "sip2", "staff", "desk", "web", "backup", "tlog",
		"kek", "lease", "replica",
		"github.com/nats-io/nats-server/v2/server", "github.com/nats-io/nats.go", "github.com/nats-io/nkeys", "github.com/prometheus/client_golang/prometheus"},
		"the server assembly: the one package besides cmd/ that embeds nats-server (its authentication of identities), and wires every part in order; makes and restores backups"},
	"desk": {[]string{"schemas", "model", "policy", "ledger", "keystore", "projections", "expunger", "staff", "access", "github.com/google/uuid"},
		"the staff HTTP API: sessions (staff) in front of the ledger, the projections' reads (model rows) and the access record"},
	"web": {[]string{"schemas", "policy", "ledger", "projections", "expunger", "staff", "access", "desk", "catalog",
		"github.com/google/uuid", "gonum.org/v1/plot"},
		"the staff web client: pages that are clients of the staff API's handler (desk) in process, with the person's session; anonymous counts (projections, expunger) for the live numbers; charts drawn with gonum/plot"},
	"catalog": {[]string{"schemas", "ledger", "desk", "github.com/google/uuid"},
		"a catalog CSV checked against the catalog_item schema and cut into the bulk route's requests (desk's limits), for lethe items import and the web client"},
	"compose": {nil,
		"the Compose test, docker-compose.yml run for real (docs: README, 'Lethe in Docker'): test files only, so no code to allow anything"},
	"internal/atomicfile": {nil,
		"replaces a small state file whole (the erasure watermark, the checkpoint tree, the identity registry, the backup keyring): the standard library alone"},
	"internal/testkit": {[]string{"github.com/nats-io/nats-server/v2/server", "github.com/nats-io/nats.go"},
		"test support every package's tests may use, keystore's included, so it imports no Lethe package; it embeds nats-server for the tests' own JetStream, as nats-server's tests do"},
	"internal/lethetest": {[]string{"schemas", "model", "policy", "keystore", "ledger", "identity", "kiosk", "staff", "access", "desk", "node", "internal/testkit",
		"github.com/google/uuid", "github.com/nats-io/nats.go"},
		"a whole running server (node) for the tests of desk, kiosk, node and cmd/lethe, driven as kiosks (NATS), staff (the desk's HTTP API) and intruders do; external test packages only, since node imports most of Lethe"},
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
		r, ok := allowedImports[pkg]
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
			if !allowedPrefix(name, r.allowed) {
				t.Errorf("%s imports %s, which the dependency direction does not allow (the rule for %s: %s)", pkg, imp, pkg, r.why)
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
