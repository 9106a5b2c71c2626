package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/imagineif/lethe/identity"
)

const usage = `lethe — a circulation ledger for public libraries that forgets on purpose

usage: lethe <command> [flags]

commands:
  serve                 run the ledger: embedded NATS JetStream, projections, expunger, HTTP API
  demo                  a simulated library day in a fresh data directory, with a live summary
  audit replay          print the stream as an auditor sees it (no keys needed)
  audit verify          check the history: complete, signed, schemas, no personal data, forgetting kept
  audit export          write the history as JSON lines (--out FILE), for verify --file and analysis
  audit pubkey          print the key that signs checkpoints, for auditors to pin (server stopped)
  audit checkpoint      print the latest signed checkpoint, for the library to publish
  audit prove SEQ       the proof that one event is in the history the latest checkpoint signs
  audit stats           anonymous aggregates over a range (loans by day, branch, collection), small counts suppressed
  items import FILE     catalog items from a CSV file (barcode,title,collection,branch,replacement_cents)
  do COMMAND [JSON]     send one staff command to a running server (JSON from the argument or stdin)
  access-log            print the access record of a running server (administrators)
  staff COMMAND [NAME]  staff accounts: add, disable, enable, passwd, list (server stopped)
  kiosks COMMAND        kiosk identities for NATS: add BRANCH KIOSK, revoke BRANCH KIOSK, list
  auditors COMMAND      auditor identities for NATS: add NAME, revoke NAME, list
  kiosk COMMAND         a test kiosk: checkout CARD BARCODE, return BARCODE, renew CARD BARCODE, info CARD
  sip2 COMMAND          a test self-check over SIP2: status, checkout CARD BARCODE, checkin BARCODE, info CARD, item BARCODE, send MESSAGE...
  backup DIR            write a backup of a running server into DIR (administrators), sealed to a key that expires
  restore FILE          make a new data directory from a backup (--data NEW)
  keys rotate           re-wrap every key under a new master key and destroy the old one (server stopped)
  keys rotate-checkpoint  replace the key that signs checkpoints, announced under the old one (server stopped)
  projections rebuild   rebuild the projections from the stream and compare with the live ones (server stopped)
  projections skip SEQ  let stopped projections pass over an event they cannot apply (administrators; recorded)
  simulate              the simulated library against a running server or cluster (staff HTTP API, kiosks over NATS)
  cluster certs|init    a cluster's certificates (a private CA, one per node); a new cluster's first administrator and identities
  cluster status        a running node's view of its cluster: nodes, copies, key-encryption epoch, erasure window
  cluster remove-node N take a stopped or lost node off the member list (administrators)
  bench [--quick]       measure Lethe next to raw JetStream and Pebble doing the same I/O (--json FILE)
  version               print the version

Run 'lethe <command> -h' for the flags of a command. Every flag can also be set with an
environment variable: --data is LETHE_DATA, --http is LETHE_HTTP, and so on.
`

// exitError carries a process exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

// run is the whole program: it reads flags and environment and nothing else global.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, getenv, stdin, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{2, errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, getenv, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, getenv, stdout, stderr)
	case "audit":
		switch {
		case len(rest) > 0 && rest[0] == "replay":
			return cmdAuditReplay(ctx, rest[1:], getenv, stdout, stderr)
		case len(rest) > 0 && rest[0] == "verify":
			return cmdAuditVerify(ctx, rest[1:], getenv, stdout, stderr)
		case len(rest) > 0 && rest[0] == "export":
			return cmdAuditExport(ctx, rest[1:], getenv, stdout, stderr)
		case len(rest) > 0 && rest[0] == "pubkey":
			return cmdAuditPubkey(ctx, rest[1:], getenv, stdout, stderr)
		case len(rest) > 0 && rest[0] == "checkpoint":
			return cmdAuditCheckpoint(ctx, rest[1:], getenv, stdout, stderr)
		case len(rest) > 0 && rest[0] == "stats":
			return cmdAuditStats(ctx, rest[1:], getenv, stdout, stderr)
		case len(rest) > 0 && rest[0] == "prove":
			return cmdAuditProve(ctx, rest[1:], getenv, stdout, stderr)
		}
		return &exitError{2, errors.New("usage: lethe audit replay|verify|export|stats|prove|pubkey|checkpoint [flags]")}
	case "items":
		if len(rest) == 0 || rest[0] != "import" {
			return &exitError{2, errors.New("usage: lethe items import [flags] FILE.csv")}
		}
		return cmdItemsImport(ctx, rest[1:], getenv, stdin, stdout, stderr)
	case "do":
		return cmdDo(ctx, rest, getenv, stdin, stdout, stderr)
	case "access-log":
		return cmdAccessLog(ctx, rest, getenv, stdin, stdout, stderr)
	case "staff":
		return cmdStaff(ctx, rest, getenv, stdin, stdout, stderr)
	case "kiosks":
		return cmdIdentities(ctx, identity.Kiosk, rest, getenv, stdout, stderr)
	case "kiosk":
		return cmdKiosk(ctx, rest, getenv, stdout, stderr)
	case "sip2":
		return cmdSIP2(ctx, rest, getenv, stdout, stderr)
	case "auditors":
		return cmdIdentities(ctx, identity.Auditor, rest, getenv, stdout, stderr)
	case "backup":
		return cmdBackup(ctx, rest, getenv, stdin, stdout, stderr)
	case "restore":
		return cmdRestore(ctx, rest, getenv, stdout, stderr)
	case "keys":
		switch {
		case len(rest) > 0 && rest[0] == "rotate":
			return cmdKeysRotate(ctx, rest[1:], getenv, stdout, stderr)
		case len(rest) > 0 && rest[0] == "rotate-checkpoint":
			return cmdKeysRotateCheckpoint(ctx, rest[1:], getenv, stdout, stderr)
		}
		return &exitError{2, errors.New("usage: lethe keys rotate|rotate-checkpoint [flags]")}
	case "projections":
		switch {
		case len(rest) > 0 && rest[0] == "rebuild":
			return cmdRebuild(ctx, rest[1:], getenv, stdout, stderr)
		case len(rest) > 0 && rest[0] == "skip":
			return cmdSkip(ctx, rest[1:], getenv, stdin, stdout, stderr)
		}
		return &exitError{2, errors.New("usage: lethe projections rebuild|skip [flags]")}
	case "simulate":
		return cmdSimulate(ctx, rest, getenv, stdin, stdout, stderr)
	case "cluster":
		return cmdCluster(ctx, rest, getenv, stdin, stdout, stderr)
	case "bench":
		return cmdBench(ctx, rest, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "lethe", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &exitError{2, fmt.Errorf("unknown command %q", cmd)}
}

const version = "0.1.0"

// flags is a flag set whose defaults come from LETHE_* environment variables: precedence
// is flag, then environment, then the built-in default.
type flags struct {
	*flag.FlagSet
	getenv func(string) string
}

func newFlags(name string, getenv func(string) string, stderr io.Writer) flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return flags{fs, getenv}
}

func envName(flagName string) string {
	return "LETHE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f flags) str(name, def, help string) *string {
	if v := f.getenv(envName(name)); v != "" {
		def = v
	}
	return f.String(name, def, help+" ("+envName(name)+")")
}

// parse parses args. After -h it returns flag.ErrHelp, which run turns into success.
func (f flags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{2, err}
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
