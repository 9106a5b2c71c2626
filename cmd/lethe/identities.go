package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/imagineif/lethe/identity"
)

const identitiesUsage = `usage: lethe kiosks add BRANCH KIOSK [--out FILE] [--data DIR]
       lethe kiosks revoke BRANCH KIOSK [--data DIR]
       lethe kiosks list [--data DIR]
       lethe kiosks sip2-password BRANCH KIOSK [--data DIR]
       lethe auditors add NAME [--out FILE] [--data DIR]
       lethe auditors revoke NAME [--data DIR]
       lethe auditors list [--data DIR]

add writes the identity's NATS credentials file (an NKey seed) to --out, default
<branch>-<kiosk>.nk or <name>.nk in the current directory, mode 0600. It is shown once:
Lethe keeps only the public key, in <data>/identities.json. A running server picks up an
added or revoked identity within seconds; revoking closes its open connections.

A kiosk is also a SIP2 login for self-check machines (lethe serve --sip2-listen): user id
BRANCH/KIOSK and a generated password, printed once by add; Lethe keeps only its argon2id
hash. sip2-password makes a new one, and the old one stops working.
`

// cmdIdentities manages kiosk or auditor identities: kind is identity.Kiosk or Auditor.
func cmdIdentities(_ context.Context, kind identity.Kind, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, identitiesUsage)
		return &exitError{2, fmt.Errorf("no %ss command given", kind)}
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "add", "revoke", "list":
	case "sip2-password":
		if kind != identity.Kiosk {
			fmt.Fprint(stderr, identitiesUsage)
			return &exitError{2, fmt.Errorf("only kiosks have SIP2 logins")}
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, identitiesUsage)
		return nil
	default:
		fmt.Fprint(stderr, identitiesUsage)
		return &exitError{2, fmt.Errorf("unknown %ss command %q", kind, sub)}
	}
	f := newFlags(string(kind)+"s "+sub, getenv, stderr)
	data := f.str("data", "./lethe-data", "data directory; identities are <data>/identities.json")
	out := new(string)
	url := new(string)
	if sub == "add" {
		out = f.String("out", "", "credentials file to write (default <branch>-<kiosk>.nk, or <name>.nk)")
		url = f.String("url", "", "the NATS URL kiosks or auditors use, written into the file's comments")
	}
	pos, err := parseInterleaved(f, rest)
	if err != nil {
		return err
	}
	want := map[identity.Kind]int{identity.Kiosk: 2, identity.Auditor: 1}[kind]
	if sub == "list" {
		want = 0
	}
	if len(pos) != want {
		fmt.Fprint(stderr, identitiesUsage)
		return &exitError{2, fmt.Errorf("lethe %ss %s takes %d arguments", kind, sub, want)}
	}
	var branch, name string
	switch len(pos) {
	case 2:
		branch, name = pos[0], pos[1]
	case 1:
		name = pos[0]
	}
	if _, err := os.Stat(*data); err != nil {
		return fmt.Errorf("data directory %s: %w", *data, err)
	}
	reg := identity.Open(*data)
	now := time.Now()
	switch sub {
	case "add":
		id, seed, err := reg.Add(kind, branch, name, now)
		if err != nil {
			return fmt.Errorf("add %s: %w", identity.Identity{Kind: kind, Branch: branch, Name: name}.Label(), err)
		}
		path := *out
		if path == "" {
			path = name + ".nk"
			if kind == identity.Kiosk {
				path = branch + "-" + name + ".nk"
			}
		}
		file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			_, _ = reg.Revoke(kind, branch, name, now) // an identity nobody holds the key of
			return fmt.Errorf("credentials file: %w", err)
		}
		err = identity.WriteCredentials(file, id, seed, *url)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_, _ = reg.Revoke(kind, branch, name, now)
			os.Remove(path)
			return fmt.Errorf("credentials file: %w", err)
		}
		fmt.Fprintf(stdout, "added %s (NKey %s); credentials written to %s\n", id.Label(), id.PublicKey, path)
		if kind == identity.Kiosk {
			fmt.Fprintf(stdout, "it may send requests on %s\n", id.Imports()[0].Subject)
			if err := printSIP2Login(stdout, reg, branch, name); err != nil {
				return err
			}
		}
	case "sip2-password":
		return printSIP2Login(stdout, reg, branch, name)
	case "revoke":
		id, err := reg.Revoke(kind, branch, name, now)
		if err != nil {
			return fmt.Errorf("revoke %s: %w", identity.Identity{Kind: kind, Branch: branch, Name: name}.Label(), err)
		}
		fmt.Fprintf(stdout, "revoked %s (NKey %s); a running server closes its connections within seconds\n", id.Label(), id.PublicKey)
	case "list":
		ids, err := reg.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tNKEY\tADDED\tREVOKED")
		for _, id := range ids {
			if id.Kind != kind {
				continue
			}
			revoked := "-"
			if id.Revoked != nil {
				revoked = id.Revoked.Format(time.RFC3339)
			}
			label := id.Name
			if kind == identity.Kiosk {
				label = id.Branch + "/" + id.Name
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", label, id.PublicKey, id.Added.Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	}
	return nil
}

// printSIP2Login gives a kiosk a new SIP2 password and prints its SIP2 login, once.
func printSIP2Login(stdout io.Writer, reg *identity.Registry, branch, kiosk string) error {
	password, err := reg.SetSIP2Password(branch, kiosk)
	if err != nil {
		return fmt.Errorf("SIP2 password of kiosk %s/%s: %w", branch, kiosk, err)
	}
	fmt.Fprintf(stdout, "SIP2 login (shown once; Lethe keeps only its hash): user id %s, password %s\n",
		identity.SIP2User(branch, kiosk), password)
	return nil
}
